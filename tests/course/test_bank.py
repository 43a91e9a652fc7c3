"""The bank's question kinds and keys: what ``load_questions`` accepts and what it refuses, naming file and quiz."""

import json

import pytest

from course_lib.course.bank import CHECKPOINT, KINDS, SELF_CHECK, load_questions

Q = {"id": "x", "text": "Why?", "choices": ["a", "b", "c"], "correct": 1, "explanation": "Because."}


def _write(folder, *questions, handout=False, name="a.json"):
    data = {"notebook": "99_x", **({"handout": True} if handout else {}), "questions": list(questions)}
    (folder / name).write_text(json.dumps(data))


def test_every_question_of_the_course_has_a_kind_and_its_key():
    bank = load_questions()
    assert bank and all(q.kind in KINDS for q in bank.values())
    assert all(q.correct is not None and q.explanation for q in bank.values())


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
