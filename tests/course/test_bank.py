"""The bank: its question kinds, forms and keys (what ``load_questions`` accepts and what it refuses, naming file
and quiz), and the course's own bank (balanced: neither the position nor the length of a choice gives the answer
away; every wrong choice names the misconception it stands for)."""

import json
import math
from collections import Counter

import pytest

from course_lib.course.bank import (
    CHECKPOINT,
    KEY_FIELDS,
    KINDS,
    SELF_CHECK,
    Question,
    is_right,
    load_questions,
    read_response,
)

Q = {"id": "x", "text": "Why?", "choices": ["a", "b", "c"], "correct": 1, "explanation": "Because."}
N = {"id": "n", "text": "How many?", "answer": 768, "tolerance": 0, "explanation": "16 x 16 x 3."}
BANK = load_questions()
CHOICE_QUESTIONS = [q for q in BANK.values() if not q.numeric]
# The ids the notebooks show with quiz("id") since before the bank was balanced: none may disappear.
ORIGINAL_IDS = {
    "overview-maskrcnn-addition", "overview-annotation-format", "overview-output-masks", "overview-weights-api",
    "fpn-p4-shape", "fpn-lateral", "fpn-top-down", "fpn-p6", "rpn-anchor-count", "rpn-neutral", "rpn-box-coding",
    "rpn-nms-threshold", "roialign-quantisation", "roialign-samples", "roialign-aligned", "roialign-fpn-level",
    "heads-class-specific", "heads-per-class-nms", "heads-mask-targets", "heads-mask-loss", "coco-bbox-format",
    "coco-area", "coco-naive-flip", "coco-iscrowd", "coco-annotation-format", "finetune-num-classes",
    "finetune-ap50-vs-ap", "finetune-resume", "finetune-ddp-batch", "finetune-pitfall-label-zero",
    "own-state-dict", "own-eval-order", "own-curves-part", "own-plug-in", "real-split-overlap",
    "real-crossing-nuclei", "real-transfer", "real-stretch"}


def _write(folder, *questions, handout=False, name="a.json"):
    data = {"notebook": "99_x", **({"handout": True} if handout else {}), "questions": list(questions)}
    (folder / name).write_text(json.dumps(data))


def test_every_question_of_the_course_has_a_kind_and_its_key():
    assert BANK and all(q.kind in KINDS for q in BANK.values())
    assert all(q.has_key and q.explanation for q in BANK.values())
    assert all(q.correct is not None for q in CHOICE_QUESTIONS)
    assert all(q.correct is None and q.answer is not None for q in BANK.values() if q.numeric)


def test_the_course_keeps_every_quiz_id():
    assert ORIGINAL_IDS <= BANK.keys() and len(ORIGINAL_IDS) == 38


def _is_longest(q: Question) -> bool:
    """The right choice is (one of) the longest: ties count, as a learner who picks the longest might pick it."""
    return len(q.choices[q.correct]) >= max(len(c) for c in q.choices)


def test_the_bank_is_balanced_no_position_and_no_length_gives_the_answer_away():
    """No position holds the right choice in more than 40 % of the questions, the right choice is the longest
    in at most 40 % of them, and always picking the longest or the shortest choice scores far below passing."""
    n = len(CHOICE_QUESTIONS)
    assert n >= 38
    positions = Counter(q.correct for q in CHOICE_QUESTIONS)
    assert max(positions.values()) <= 0.4 * n, positions
    assert all(positions[i] > 0 for i in range(4)), positions  # every position is used
    longest = [q.id for q in CHOICE_QUESTIONS if _is_longest(q)]
    assert len(longest) <= 0.4 * n, longest
    shortest = [q.id for q in CHOICE_QUESTIONS if len(q.choices[q.correct]) <= min(len(c) for c in q.choices)]
    assert len(shortest) <= 0.4 * n, shortest
    # The rank of the right choice by length (0 = longest) is spread too: no rank is a shortcut.
    ranks = Counter(sorted((len(c) for c in q.choices), reverse=True).index(len(q.choices[q.correct]))
                    for q in CHOICE_QUESTIONS)
    assert max(ranks.values()) <= 0.4 * n, ranks


def test_the_balance_check_catches_an_unbalanced_bank():
    """The rule above fails on the bank as it was before (the right answer at position 0 or 1, mostly longest)."""
    skewed = [Question(f"q{i}", "99_x", "?", ("short", "the right answer, much longer than the others", "wrong",
                                              "no"), 1, ".") for i in range(10)]
    assert sum(q.correct == 1 for q in skewed) > 0.4 * len(skewed)
    assert sum(_is_longest(q) for q in skewed) > 0.4 * len(skewed)


def test_every_wrong_choice_names_its_misconception_without_naming_the_key():
    for q in CHOICE_QUESTIONS:
        assert q.misconceptions is not None and len(q.misconceptions) == len(q.choices), q.id
        for i, m in enumerate(q.misconceptions):
            if i == q.correct:
                assert m == "", q.id
                continue
            assert 10 <= len(m) <= 160 and m.endswith("."), (q.id, i, m)
            assert q.choices[q.correct] not in m and q.explanation not in m, (q.id, i)
        assert len(set(q.misconceptions)) == len(q.misconceptions), q.id  # one idea per choice


def test_the_course_has_numeric_questions_each_with_a_tolerance():
    numeric = [q for q in BANK.values() if q.numeric]
    assert len(numeric) >= 3
    for q in numeric:
        assert q.kind == CHECKPOINT and q.choices == () and q.misconceptions is None
        assert math.isfinite(q.answer) and q.tolerance >= 0 and q.text.endswith("?") and len(q.explanation) > 40
        assert is_right(q, q.answer) and not is_right(q, q.answer + q.tolerance + 1)
    assert {q.notebook for q in numeric} >= {"01_backbone_fpn", "02_anchors_rpn", "03_roi_align"}


def test_kind_defaults_to_checkpoint_and_is_read(tmp_path):
    _write(tmp_path, Q, {**Q, "id": "y", "kind": SELF_CHECK}, {**Q, "id": "z", "kind": CHECKPOINT})
    bank = load_questions(tmp_path)
    assert [bank[i].kind for i in "xyz"] == [CHECKPOINT, SELF_CHECK, CHECKPOINT]


def test_an_unknown_kind_is_refused(tmp_path):
    _write(tmp_path, {**Q, "kind": "homework"})
    with pytest.raises(ValueError, match=r"a\.json, quiz 'x': kind 'homework' is not one of 'checkpoint', "
                                         r"'self-check'"):
        load_questions(tmp_path)


@pytest.mark.parametrize("drop", [("correct",), ("explanation",), ("correct", "explanation")])
def test_the_instructors_bank_needs_every_key(tmp_path, drop):
    _write(tmp_path, {k: v for k, v in Q.items() if k not in drop})
    with pytest.raises(ValueError, match=r"a\.json, quiz 'x': lacks 'correct'|a\.json, quiz 'x': lacks 'explanation'"):
        load_questions(tmp_path)


def test_a_handouts_checkpoint_may_lack_its_key(tmp_path):
    _write(tmp_path, {k: v for k, v in Q.items() if k not in ("correct", "explanation")},
           {**Q, "id": "y", "kind": SELF_CHECK}, handout=True)
    bank = load_questions(tmp_path)
    assert (bank["x"].correct, bank["x"].explanation, bank["x"].kind) == (None, None, CHECKPOINT)
    assert (bank["y"].correct, bank["y"].explanation) == (1, "Because.")


@pytest.mark.parametrize("handout", [False, True])
def test_a_self_check_always_needs_its_key(tmp_path, handout):
    _write(tmp_path, {"id": "s", "kind": SELF_CHECK, "text": "Why?", "choices": ["a", "b"]}, handout=handout)
    with pytest.raises(ValueError, match=r"a\.json, quiz 's': a self-check question lacks 'correct' and "
                                         r"'explanation'"):
        load_questions(tmp_path)


@pytest.mark.parametrize("bad", [3, -1, True, "1", 1.0])
def test_a_key_outside_the_choices_is_refused(tmp_path, bad):
    _write(tmp_path, {**Q, "correct": bad}, handout=True)
    with pytest.raises(ValueError, match=r"a\.json, quiz 'x': correct index .* outside 3 choices"):
        load_questions(tmp_path)


def test_a_numeric_question_loads_with_its_answer_and_tolerance(tmp_path):
    no_tolerance = {k: v for k, v in N.items() if k != "tolerance"}
    _write(tmp_path, N, {**N, "id": "m", "answer": 0.66, "tolerance": 0.005}, {**no_tolerance, "id": "d"})
    bank = load_questions(tmp_path)
    assert (bank["n"].numeric, bank["n"].choices, bank["n"].correct, bank["n"].answer) == (True, (), None, 768)
    assert bank["m"].tolerance == 0.005 and bank["d"].tolerance == 0.0  # tolerance defaults to 0
    assert bank["n"].has_key


@pytest.mark.parametrize("bad, message", [
    ({"answer": "768"}, r"answer '768' is not a finite number"),
    ({"answer": True}, r"answer True is not a finite number"),
    ({"answer": float("nan")}, r"answer nan is not a finite number"),
    ({"tolerance": -1}, r"tolerance -1 is not a number >= 0"),
    ({"tolerance": "1"}, r"tolerance '1' is not a number >= 0"),
    ({"correct": 0}, r"a numeric question \(no 'choices'\) has no 'correct'"),
    ({"misconceptions": []}, r"has no 'misconceptions'"),
    ({"answer": None}, r"lacks 'answer'"),
])
def test_a_malformed_numeric_question_is_refused(tmp_path, bad, message):
    _write(tmp_path, {**N, **bad})
    with pytest.raises(ValueError, match=r"a\.json, quiz 'n': .*" + message):
        load_questions(tmp_path)


@pytest.mark.parametrize("bad, message", [
    ({"answer": 1}, r"answered by 'correct', not 'answer'/'tolerance'"),
    ({"choices": ["a"]}, r"'choices' must be a list of at least two different, non-empty texts"),
    ({"choices": ["a", "a"]}, r"'choices' must be a list"),
    ({"choices": ["a", ""]}, r"'choices' must be a list"),
    ({"choices": "abc"}, r"'choices' must be a list"),
    ({"misconceptions": ["x", ""]}, r"'misconceptions' must list one text per choice \(3\)"),
    ({"misconceptions": ["x", "", 3]}, r"'misconceptions' must list one text per choice"),
    ({"misconceptions": ["x", "", " "]}, r"needs a sentence for every wrong choice and \"\" for the right one "
                                         r"\(check choice 2\)"),
    ({"misconceptions": ["x", "y", "z"]}, r"\(check choice 1\)"),
])
def test_malformed_choices_or_misconceptions_are_refused(tmp_path, bad, message):
    _write(tmp_path, {**Q, **bad})
    with pytest.raises(ValueError, match=r"a\.json, quiz 'x': .*" + message):
        load_questions(tmp_path)


def test_misconceptions_load_with_the_question(tmp_path):
    _write(tmp_path, {**Q, "misconceptions": ["Thinks a.", "", "Thinks c."]})
    assert load_questions(tmp_path)["x"].misconceptions == ("Thinks a.", "", "Thinks c.")


@pytest.mark.parametrize("field", KEY_FIELDS)
def test_a_handouts_checkpoint_holding_any_part_of_its_key_is_refused(tmp_path, field):
    """The empty misconception marks the right choice as surely as ``correct`` does: the student edition's
    checkpoints carry none of ``KEY_FIELDS`` (``course handout`` must drop them all)."""
    keyless = {k: v for k, v in {**Q, "misconceptions": ["Thinks a.", "", "Thinks c."]}.items()
               if k not in KEY_FIELDS}
    numeric = {k: v for k, v in N.items() if k not in KEY_FIELDS}
    _write(tmp_path, keyless, {**numeric, "id": "n"}, handout=True)
    bank = load_questions(tmp_path)
    assert not bank["x"].has_key and not bank["n"].has_key and bank["n"].numeric and bank["n"].answer is None
    value = {"correct": 1, "answer": 768, "explanation": "Because.", "misconceptions": ["Thinks a.", "", "Thinks c."]}
    leaking = {**(numeric if field == "answer" else keyless), field: value[field]}
    _write(tmp_path, leaking, handout=True)
    with pytest.raises(ValueError, match=rf"quiz '[xn]': a handout's checkpoint question still holds '{field}'"):
        load_questions(tmp_path)


def test_a_handouts_self_check_keeps_its_key_and_misconceptions(tmp_path):
    _write(tmp_path, {**Q, "kind": SELF_CHECK, "misconceptions": ["Thinks a.", "", "Thinks c."]},
           {**N, "kind": SELF_CHECK}, handout=True)
    bank = load_questions(tmp_path)
    assert bank["x"].misconceptions == ("Thinks a.", "", "Thinks c.") and bank["n"].answer == 768


def test_a_numeric_self_check_needs_its_answer(tmp_path):
    _write(tmp_path, {k: v for k, v in {**N, "kind": SELF_CHECK}.items() if k != "answer"}, handout=True)
    with pytest.raises(ValueError, match=r"quiz 'n': a self-check question lacks 'answer'"):
        load_questions(tmp_path)


def test_read_response_and_is_right():
    choice = Question("c", "99_x", "?", ("a", "b", "c"), 2, ".")
    assert [read_response(choice, r) for r in (0, 2, "b")] == [0, 2, 1]
    for bad in (3, -1, True, 1.0, "B", None, [1]):
        with pytest.raises(ValueError):
            read_response(choice, bad)
    assert is_right(choice, 2) and not is_right(choice, 1)
    number = Question("n", "99_x", "?", (), None, ".", answer=0.66, tolerance=0.005)
    assert read_response(number, 1) == 1 and read_response(number, 0.5) == 0.5
    for bad in ("0.66", True, float("nan"), float("inf"), None):
        with pytest.raises(ValueError, match="is answered with a number"):
            read_response(number, bad)
    assert is_right(number, 0.665) and is_right(number, 0.655) and is_right(number, 0.66)  # the edges count
    assert not is_right(number, 0.6651) and not is_right(number, 0.6549)
    exact = Question("e", "99_x", "?", (), None, ".", answer=768)
    assert is_right(exact, 768) and is_right(exact, 768.0) and not is_right(exact, 767)
    keyless = Question("k", "99_x", "?", (), None, None)
    with pytest.raises(ValueError, match="no answer key"):
        is_right(keyless, 1)
