import dataclasses
import html
import json
import re

import pytest

from course_lib.course import progress
from course_lib.course import quiz as Q
from course_lib.course.bank import CHECKPOINT, KINDS, SELF_CHECK, load_exercises, load_questions
from course_lib.utils.paths import REPO_ROOT as ROOT

NUMERIC_ID = "rpn-anchors-p4"  # a checkpoint answered with a number (768)


@pytest.fixture(autouse=True)
def fresh_kernel_state():
    """``FIRST_ANSWERS`` and ``WRONG_TRIES`` live as long as the kernel (here: the test process); every test
    starts without them."""
    Q.FIRST_ANSWERS.clear()
    Q.WRONG_TRIES.clear()
    yield
    Q.FIRST_ANSWERS.clear()
    Q.WRONG_TRIES.clear()


@pytest.fixture
def shuffled(monkeypatch):
    """A learner at a screen (not headless): the choices come in this learner's order."""
    monkeypatch.setenv("COURSE_HEADLESS", "0")


@pytest.fixture
def self_check(monkeypatch):
    """A self-check question in the bank (the course's own quizzes are all checkpoints today)."""
    q = dataclasses.replace(Q.BANK["overview-output-masks"], id="test-self-check", kind=SELF_CHECK)
    monkeypatch.setitem(Q.BANK, q.id, q)
    return q


@pytest.fixture
def numeric_self_check(monkeypatch):
    q = dataclasses.replace(Q.BANK[NUMERIC_ID], id="test-numeric-self-check", kind=SELF_CHECK)
    monkeypatch.setitem(Q.BANK, q.id, q)
    return q


@pytest.fixture
def keyless(monkeypatch):
    """A checkpoint as the student edition has it: no ``correct``, no ``explanation``, no ``misconceptions``."""
    q = dataclasses.replace(Q.BANK["overview-weights-api"], correct=None, explanation=None, misconceptions=None)
    monkeypatch.setitem(Q.BANK, q.id, q)
    return q


def _wrong(q):
    return (q.correct + 1) % len(q.choices)


def _names_the_key(q, text: str) -> bool:
    if q.numeric:
        return q.explanation in text
    return q.choices[q.correct] in text or f"({q.correct})" in text or q.explanation in text


def test_bank_is_well_formed():
    assert len(Q.BANK) >= 4
    for q in Q.BANK.values():
        assert q.kind in KINDS
        assert len(q.explanation) > 40 and q.text.endswith("?")
        if q.numeric:
            assert q.answer is not None and q.tolerance >= 0
            continue
        assert len(q.choices) >= 3 and len(set(q.choices)) == len(q.choices)
        assert q.correct is not None and 0 <= q.correct < len(q.choices)  # the instructor's bank has every key


def _quiz_sections():
    """``{quiz id: the title of the section that shows it}`` from the markdown headings of ``solutions/``."""
    found = {}
    for nb_path in sorted((ROOT / "solutions").glob("*.ipynb")):
        section = ""
        for cell in json.loads(nb_path.read_text())["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "markdown":
                section = next((line for line in reversed(src.splitlines()) if line.startswith("#")), section)
            elif cell["cell_type"] == "code":
                for qid in re.findall(r"""\bquiz\(\s*["']([^"']+)["']""", src):
                    found[qid] = section
    return found


def test_kind_follows_where_the_notebook_shows_the_quiz():
    """A quiz in a notebook's "Quiz checkpoint" section is a checkpoint; one inside a lesson is a self-check."""
    sections = _quiz_sections()
    assert sections
    for qid, section in sections.items():
        expected = CHECKPOINT if "quiz checkpoint" in section.lower() else SELF_CHECK
        assert Q.BANK[qid].kind == expected, f"{qid} is shown under {section!r}"


def test_seed_questions_are_in_the_overview():
    texts = [Q.BANK[i].text for i in Q.ids_for("00_overview")]
    assert "What is the primary addition of Mask R-CNN over Faster R-CNN?" in texts
    assert "What format should your custom dataset annotations be in for Mask R-CNN training?" in texts


def test_grade_by_index_and_by_text():
    q = Q.BANK["overview-maskrcnn-addition"]
    ok, text = Q.grade(q.id, q.correct)
    assert ok and "Correct!" in text and q.explanation in text
    ok, text = Q.grade(q.id, q.choices[0])
    assert ok is False and "Not quite" in text
    with pytest.raises(ValueError):
        Q.grade(q.id, 17)
    with pytest.raises(ValueError):
        Q.grade(q.id, True)
    with pytest.raises(KeyError, match="no quiz 'nope'"):
        Q.grade("nope", 0)


def test_wrong_answers_never_name_the_right_one(self_check):
    """Every wrong choice of every question, checkpoint or self-check (at the first miss): not right, look again,
    no key."""
    for q in [q for q in Q.BANK.values() if not q.numeric]:
        for i in range(len(q.choices)):
            ok, text = Q.grade(q.id, i)
            if i == q.correct:
                assert ok is True and "Correct!" in text and q.explanation in text
                continue
            assert ok is False and "Not quite" in text and "look" in text, (q.id, text)
            assert not _names_the_key(q, text), (q.id, i, text)
            if q.kind == CHECKPOINT:
                assert text.startswith(f"Recorded: ({i}) {q.choices[i]}.")
                assert q.misconceptions[i][1:] not in text  # a checkpoint's feedback stays as it was
            else:
                assert "try again" in text and q.misconceptions[i][1:] in text


def test_headless_fallback_prints_question_and_answer_call(capsys):
    """Headless (stored outputs): the bank's order, each choice after its bank number."""
    q = Q.BANK["overview-output-masks"]
    text = repr(Q.quiz(q.id))
    assert text.splitlines()[1:5] == [f"  ({i}) {c}" for i, c in enumerate(q.choices)]
    assert "(1) A (N, 1, H, W) float tensor" in text
    assert text.endswith('answer("overview-output-masks", <the number in brackets>) — a checkpoint: your first '
                         'answer is the one recorded')
    assert Q.answer("overview-output-masks", 1) is True
    assert "Correct!" in capsys.readouterr().out


def test_answer_records_a_checkpoints_first_answer_only(capsys):
    """Wrong first, then right: the first answer is the recorded one, and nothing printed names the key."""
    q = Q.BANK["overview-annotation-format"]
    assert Q.answer(q.id, _wrong(q)) is False
    first = capsys.readouterr().out
    assert first.startswith(f"Recorded: ({_wrong(q)})") and "Not quite" in first and not _names_the_key(q, first)
    assert Q.answer(q.id, q.correct) is False  # the first answer's verdict
    later = capsys.readouterr().out
    assert later.startswith(f"Your first answer stands: ({_wrong(q)}) {q.choices[_wrong(q)]}")
    assert "Correct" not in later and not _names_the_key(q, later)
    assert Q.answer(q.id, q.choices[q.correct]) is False and "first answer stands" in capsys.readouterr().out
    assert Q.FIRST_ANSWERS == {q.id: _wrong(q)}
    assert progress.load()["00_overview"][f"quiz:{q.id}"]["passed"] is False
    with pytest.raises(ValueError):  # a bad choice is refused, not recorded
        Q.answer("overview-weights-api", 9)
    assert "overview-weights-api" not in Q.FIRST_ANSWERS


def test_answer_lets_a_self_check_be_retried(self_check, capsys):
    q = self_check
    assert Q.answer(q.id, _wrong(q)) is False
    out = capsys.readouterr().out
    assert "Not quite" in out and "try again" in out and not _names_the_key(q, out)
    assert Q.answer(q.id, q.correct) is True
    out = capsys.readouterr().out
    assert out.startswith("Correct!") and q.explanation in out
    assert q.id not in Q.FIRST_ANSWERS
    assert progress.load()["00_overview"][f"quiz:{q.id}"]["passed"] is True
    assert "a self-check: try as often as you like" in repr(Q.quiz(q.id))


def test_answer_without_the_key_says_what_is_recorded(keyless, capsys):
    """The student edition's checkpoint: no verdict, the recorded choice, the instructor grades it."""
    q = keyless
    assert Q.answer(q.id, 2) is None
    assert capsys.readouterr().out.strip() == f"Recorded: (2) {q.choices[2]} — your instructor grades checkpoint quizzes."
    assert Q.answer(q.id, 1) is None
    assert "Your first answer stands: (2)" in capsys.readouterr().out
    assert Q.FIRST_ANSWERS[q.id] == 2
    assert progress.load()["00_overview"][f"quiz:{q.id}"]["passed"] is True  # answered: done with it


def test_widget_records_a_checkpoints_first_checked_choice():
    """Wrong first, then right: the record keeps the first; the widget locks; the feedback never names the key."""
    w = Q.QuizWidget("overview-annotation-format")
    q = w.question
    w.button.click()
    assert "Pick an answer first" in w.feedback.value and w.record()["choice"] is None
    assert not w.radio.disabled and not w.button.disabled
    w.radio.value = _wrong(q)
    w.button.click()
    feedback = w.feedback.value
    assert "Not quite" in feedback and f"Recorded: ({_wrong(q)})" in feedback and not _names_the_key(q, feedback)
    assert w.record() == {"id": q.id, "choice": _wrong(q)}
    assert w.radio.disabled and w.button.disabled
    w.radio.value = q.correct  # in code, past the disabled buttons
    w.button.click()
    assert w.record() == {"id": q.id, "choice": _wrong(q)} and w.radio.value == _wrong(q)
    assert w.feedback.value == feedback
    again = Q.QuizWidget(q.id)  # the same quiz shown again in this kernel: the first answer, locked
    assert again.record() == {"id": q.id, "choice": _wrong(q)} and again.radio.disabled and again.button.disabled
    assert again.feedback.value == feedback
    assert progress.load()["00_overview"][f"quiz:{q.id}"]["passed"] is False


def test_widget_and_answer_share_the_first_answer(capsys):
    q = Q.BANK["overview-maskrcnn-addition"]
    Q.answer(q.id, q.correct)
    w = Q.QuizWidget(q.id)
    assert w.record()["choice"] == q.correct and w.radio.disabled and "Correct!" in w.feedback.value
    w2 = Q.QuizWidget("overview-output-masks")
    w2.radio.value = 0
    w2.button.click()
    assert Q.answer("overview-output-masks", 1) is False and "first answer stands: (0)" in capsys.readouterr().out


def test_widget_lets_a_self_check_be_retried(self_check):
    q = self_check
    w = Q.QuizWidget(q.id)
    w.radio.value = _wrong(q)
    w.button.click()
    assert "try again" in w.feedback.value and not _names_the_key(q, w.feedback.value)
    assert not w.radio.disabled and not w.button.disabled
    w.radio.value = q.correct
    w.button.click()
    assert "Correct!" in w.feedback.value and w.record() == {"id": q.id, "choice": q.correct}


def test_widget_without_the_key_records_and_says_the_instructor_grades(keyless):
    q = keyless
    w = Q.QuizWidget(q.id)
    w.radio.value = 3
    w.button.click()
    assert "Recorded: (3)" in w.feedback.value and "your instructor grades checkpoint quizzes" in w.feedback.value
    assert "Correct" not in w.feedback.value and "Not quite" not in w.feedback.value
    assert w.record() == {"id": q.id, "choice": 3} and w.button.disabled
    w.radio.value = 1
    w.button.click()
    assert w.record() == {"id": q.id, "choice": 3}


def test_widget_shows_the_text_form_without_a_front_end():
    w = Q.QuizWidget("overview-annotation-format")
    bundle = w._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data
    assert data["text/plain"].startswith("Quiz overview-annotation-format")


def _wrong_two(q):
    """Two different wrong choices of ``q``."""
    return [i for i in range(len(q.choices)) if i != q.correct][:2]


def test_a_self_checks_first_miss_shows_the_misconception_the_second_the_explanation(self_check, capsys):
    q = self_check
    first, second = _wrong_two(q)
    assert Q.answer(q.id, first) is False
    out = capsys.readouterr().out
    assert out.startswith("Not quite: this choice ") and q.misconceptions[first][1:] in out
    assert q.explanation not in out and not _names_the_key(q, out)
    assert "the explanation comes after another miss, or on request" in out and f'explain("{q.id}")' in out
    assert Q.answer(q.id, first) is False  # the same wrong choice again is a second miss
    out = capsys.readouterr().out
    assert q.misconceptions[first][1:] in out and f"Explanation: {q.explanation}" in out
    assert Q.answer(q.id, q.choices[second]) is False and q.explanation in capsys.readouterr().out
    assert Q.WRONG_TRIES == {q.id: 3}
    assert Q.answer(q.id, q.correct) is True and capsys.readouterr().out == f"Correct! {q.explanation}\n"


def test_explain_shows_a_self_checks_explanation_and_keeps_a_checkpoints(self_check, capsys):
    assert Q.explain(self_check.id) is None
    assert capsys.readouterr().out == f"Quiz {self_check.id}: {self_check.explanation}\n"
    checkpoint = Q.BANK["overview-output-masks"]
    Q.explain(checkpoint.id)
    out = capsys.readouterr().out
    assert "is a checkpoint" in out and not _names_the_key(checkpoint, out)
    with pytest.raises(KeyError):
        Q.explain("nope")


def test_widget_self_check_has_a_show_explanation_button_and_shares_the_tries(self_check):
    q = self_check
    first, second = _wrong_two(q)
    w = Q.QuizWidget(q.id)
    assert w.explain_button is not None and w.explain_button.description == "Show explanation"
    w.radio.value = first
    w.button.click()
    assert html.unescape(q.misconceptions[first][1:]) in html.unescape(w.feedback.value)
    assert html.escape(q.explanation) not in w.feedback.value
    w.explain_button.click()  # on request
    assert f"Explanation: {html.escape(q.explanation)}" in w.feedback.value
    assert Q.WRONG_TRIES == {q.id: 1} and w.record() == {"id": q.id, "choice": first}
    Q.answer(q.id, second)  # answer() and the widget count the same tries: a second miss
    w.radio.value = second
    w.button.click()
    assert html.escape(q.explanation) in w.feedback.value and Q.WRONG_TRIES == {q.id: 3}
    checkpoint = Q.QuizWidget("overview-output-masks")
    assert checkpoint.explain_button is None
    assert not any(getattr(c, "description", "") == "Show explanation" for c in checkpoint.box.children)


def test_headless_keeps_the_bank_order_and_writes_no_seed():
    for qid, q in Q.BANK.items():
        assert Q.choice_order(qid) == list(range(len(q.choices)))
    assert not Q.order_seed_file().exists()


def _choice_ids():
    return [qid for qid, q in Q.BANK.items() if not q.numeric]


def test_choice_order_is_a_stable_per_learner_shuffle(shuffled, tmp_path, monkeypatch):
    orders = {qid: Q.choice_order(qid) for qid in _choice_ids()}
    assert all(sorted(order) == list(range(len(Q.BANK[qid].choices))) for qid, order in orders.items())
    assert sum(order != sorted(order) for order in orders.values()) > len(orders) // 2  # shuffled, most of them
    seed_file = progress.progress_file().parent / Q.ORDER_SEED_FILE
    assert seed_file == Q.order_seed_file() and seed_file.is_file()
    seed = seed_file.read_text().strip()
    assert len(seed) == 32 and int(seed, 16) >= 0 and Q.learner_seed() == seed
    assert {qid: Q.choice_order(qid) for qid in orders} == orders  # the same on every call
    monkeypatch.setattr(Q, "_SEEDS", {})  # a new session (kernel) of the same learner: read from the file
    assert {qid: Q.choice_order(qid) for qid in orders} == orders and seed_file.read_text().strip() == seed
    monkeypatch.setenv("COURSE_PROGRESS_FILE", str(tmp_path / "other learner" / "progress.json"))
    other = {qid: Q.choice_order(qid) for qid in orders}
    assert Q.learner_seed() != seed and other != orders  # another learner, another order


def test_a_damaged_seed_is_replaced_a_present_one_kept_and_a_read_only_home_still_works(shuffled, tmp_path,
                                                                                      monkeypatch):
    seed_file = Q.order_seed_file()
    seed_file.parent.mkdir(parents=True, exist_ok=True)
    seed_file.write_text("not a seed\n")
    seed = Q.learner_seed()
    assert len(seed) == 32 and seed_file.read_text().strip() == seed
    assert Q._create_seed(seed_file) == seed  # another kernel got there first: its value stands
    assert seed_file.read_text().strip() == seed and [p.name for p in seed_file.parent.iterdir()] == [seed_file.name]
    blocked = tmp_path / "a file"
    blocked.write_text("")
    monkeypatch.setenv("COURSE_PROGRESS_FILE", str(blocked / "progress.json"))  # its folder cannot be made
    assert Q.learner_seed() == Q._PROCESS_SEED and Q.choice_order("fpn-lateral") == Q.choice_order("fpn-lateral")


def _a_shuffled_question():
    """A checkpoint whose right choice is shown at another position than its bank index (with this seed)."""
    for qid in _choice_ids():
        q, order = Q.BANK[qid], Q.choice_order(qid)
        if order.index(q.correct) != q.correct:
            return q, order
    raise AssertionError("no question is shown in another order")


def test_text_form_shows_the_learners_order_with_the_bank_numbers(shuffled, capsys):
    q, order = _a_shuffled_question()
    lines = repr(Q.quiz(q.id)).splitlines()
    assert lines[0] == f"Quiz {q.id}: {q.text}"
    assert lines[1:1 + len(order)] == [f"  ({i}) {q.choices[i]}" for i in order]
    assert "<the number in brackets>" in lines[-1]
    shown = lines[1 + order.index(q.correct)]  # the line a learner reads the right choice on
    number = int(shown.split(")")[0].strip(" ("))
    assert number == q.correct and Q.answer(q.id, number) is True and "Correct!" in capsys.readouterr().out
    assert Q.FIRST_ANSWERS == {q.id: q.correct}


def test_widget_shows_the_learners_order_and_records_bank_indices(shuffled):
    q, order = _a_shuffled_question()
    w = Q.QuizWidget(q.id)
    assert list(w.radio.options) == [(q.choices[i], i) for i in order]
    assert w.radio.index is None and w.record()["choice"] is None
    w.radio.index = order.index(q.correct)  # a click on the button where the right choice is shown
    w.button.click()
    assert w.record() == {"id": q.id, "choice": q.correct} and Q.FIRST_ANSWERS == {q.id: q.correct}
    assert "Correct!" in w.feedback.value and w.radio.disabled
    again = Q.QuizWidget(q.id)  # locked on the first answer, shown at its own place
    assert again.radio.value == q.correct and again.radio.index == order.index(q.correct)
    data = w._repr_mimebundle_()
    data = data[0] if isinstance(data, tuple) else data
    assert data["text/plain"] == Q.question_text(q.id) and f"  ({order[0]}) {q.choices[order[0]]}" in data["text/plain"]


def test_a_numeric_checkpoint_takes_a_number_and_keeps_the_first(capsys):
    q = Q.BANK[NUMERIC_ID]
    text = repr(Q.quiz(q.id))
    assert text == f'Quiz {q.id}: {q.text}\nAnswer with: answer("{q.id}", <a number>) — a checkpoint: your first ' \
                   "answer is the one recorded"
    assert Q.answer(q.id, 700) is False
    out = capsys.readouterr().out
    assert out.startswith("Recorded: 700. Not quite") and not _names_the_key(q, out) and "768" not in out
    assert Q.answer(q.id, 768) is False and capsys.readouterr().out.startswith("Your first answer stands: 700 ")
    assert Q.FIRST_ANSWERS == {q.id: 700}
    assert progress.load()["02_anchors_rpn"][f"quiz:{q.id}"]["passed"] is False


def test_a_numeric_answer_within_the_tolerance_is_right(capsys, monkeypatch):
    q = dataclasses.replace(Q.BANK[NUMERIC_ID], answer=0.66, tolerance=0.005)
    monkeypatch.setitem(Q.BANK, q.id, q)
    assert "(answers within 0.005 of the value count)" in Q.question_text(q.id)
    assert Q.grade(q.id, 0.665)[0] is True and Q.grade(q.id, 0.655)[0] is True and Q.grade(q.id, 0.67)[0] is False
    assert Q.answer(q.id, 0.664) is True and capsys.readouterr().out.startswith("Recorded: 0.664. Correct!")
    exact = Q.BANK["heads-candidates"]
    assert Q.answer(exact.id, 300.0) is True and capsys.readouterr().out.startswith("Recorded: 300. Correct!")


@pytest.mark.parametrize("bad", ["768", True, float("nan"), float("inf"), None, [768]])
def test_a_numeric_answer_must_be_a_number(bad):
    with pytest.raises(ValueError, match="is answered with a number"):
        Q.answer(NUMERIC_ID, bad)
    assert NUMERIC_ID not in Q.FIRST_ANSWERS


def test_a_choice_answer_must_be_a_bank_index_or_a_choice_text():
    for bad in (4, -1, True, 1.0, "a list of polygons", None):
        with pytest.raises(ValueError):
            Q.answer("overview-output-masks", bad)
    assert Q.FIRST_ANSWERS == {}


def test_numeric_widget_reads_a_typed_number_and_locks():
    q = Q.BANK[NUMERIC_ID]
    w = Q.QuizWidget(q.id)
    assert w.radio is None and w.entry is not None and w.explain_button is None
    for typed in ("", "abc", "nan", "1e999", "16,368"):
        w.entry.value = typed
        w.button.click()
        assert "Type a number first" in w.feedback.value and w.record()["choice"] is None
    w.entry.value = " 768 "
    w.button.click()
    assert w.record() == {"id": q.id, "choice": 768} and "Recorded: 768. Correct!" in w.feedback.value
    assert w.entry.disabled and w.button.disabled
    w.entry.value = "1"
    w.button.click()
    assert w.record() == {"id": q.id, "choice": 768} and w.entry.value == "768"
    again = Q.QuizWidget(q.id)
    assert again.record() == {"id": q.id, "choice": 768} and again.entry.disabled


def test_parse_number():
    assert [Q.parse_number(t) for t in ("768", " -3 ", "0.66", "7.5e2", "1_000")] == [768, -3, 0.66, 750.0, 1000]
    assert all(Q.parse_number(t) is None for t in ("", "abc", "nan", "inf", "-inf", "1e999", "16,368", "0,66"))


def test_a_numeric_self_check_retries_and_explains_after_a_second_miss(numeric_self_check, capsys):
    q = numeric_self_check
    assert Q.answer(q.id, 767) is False
    out = capsys.readouterr().out
    assert out.startswith("Not quite. Have another look") and q.explanation not in out
    w = Q.QuizWidget(q.id)
    w.entry.value = "769"
    w.button.click()
    assert html.escape(q.explanation) in w.feedback.value and not w.button.disabled
    w.entry.value = "768"
    w.button.click()
    assert "Correct!" in w.feedback.value and w.record() == {"id": q.id, "choice": 768}


def test_a_numeric_checkpoint_without_the_key_records_the_number(monkeypatch, capsys):
    q = dataclasses.replace(Q.BANK[NUMERIC_ID], answer=None, explanation=None)
    monkeypatch.setitem(Q.BANK, q.id, q)
    assert Q.answer(q.id, 768) is None
    assert capsys.readouterr().out.strip() == "Recorded: 768 — your instructor grades checkpoint quizzes."


@pytest.mark.kernel
def test_widget_in_a_real_kernel(monkeypatch):
    """Drive the widget inside an IPython kernel: a wrong choice, Check, then the right one: the first stands."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv("COURSE_HEADLESS", raising=False)
    q = Q.BANK["overview-maskrcnn-addition"]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from course_lib.course.quiz import quiz, BANK\n"
        "w = quiz('overview-maskrcnn-addition')\n"
        "print(type(w).__name__)\n"
        f"w.radio.value = {_wrong(q)}\n"
        "w.button.click()\n"
        "print(w.feedback.value)\n"
        "w.radio.value = BANK['overview-maskrcnn-addition'].correct\n"
        "w.button.click()\n"
        "print(w.feedback.value)\n"
        "print(w.record()['choice'], w.button.disabled)"), nbformat.v4.new_code_cell("w")]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    out = nb.cells[0].outputs[0]["text"].splitlines()
    assert out[0] == "QuizWidget"
    assert "Not quite" in out[1] and out[2] == out[1] and not _names_the_key(q, out[1])
    assert out[3] == f"{_wrong(q)} True"
    shown = nb.cells[1].outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in shown


def test_every_quiz_id_used_in_a_notebook_exists():
    used = set()
    for nb_path in sorted((ROOT / "solutions").glob("*.ipynb")):
        for cell in json.loads(nb_path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            src = "".join(cell["source"])
            ids = re.findall(r"""\b(?:quiz|answer)\(\s*["']([^"']+)["']""", src)
            used.update(ids)
            for qid in ids:
                assert qid in Q.BANK, f"{nb_path.name} uses unknown quiz id {qid!r}"
                assert Q.BANK[qid].notebook == nb_path.stem, f"{qid} belongs to {Q.BANK[qid].notebook}"
    assert used, "no notebook uses a quiz"


def test_bank_files_reject_duplicates_and_bad_answers(tmp_path):
    q = {"id": "x", "text": "Why?", "choices": ["a", "b", "c"], "correct": 1, "explanation": "Because."}
    (tmp_path / "a.json").write_text(json.dumps({"notebook": "99_x", "questions": [q]}))
    assert load_questions(tmp_path)["x"].notebook == "99_x"
    (tmp_path / "b.json").write_text(json.dumps({"notebook": "99_x", "questions": [q]}))
    with pytest.raises(ValueError, match="b.json, quiz 'x': duplicate"):
        load_questions(tmp_path)
    (tmp_path / "b.json").write_text(json.dumps({"notebook": "99_x", "questions": [{**q, "id": "y", "correct": 5}]}))
    with pytest.raises(ValueError, match="correct index 5"):
        load_questions(tmp_path)


def test_bank_lists_exactly_the_checkers_each_notebook_defines():
    import course_lib.course.checkers  # noqa: F401  (registers every checker)
    from course_lib.course.checkers.core import registry

    bank = {nb: sorted(e.name for e in exercises) for nb, exercises in load_exercises().items()}
    assert bank == {nb: sorted(names) for nb, names in registry.items()}


def test_bank_reads_points_with_default_one(tmp_path):
    q = {"id": "x", "text": "Why?", "choices": ["a", "b"], "correct": 0, "explanation": "."}
    (tmp_path / "a.json").write_text(json.dumps({"notebook": "99_x", "questions": [q, {**q, "id": "y", "points": 3}],
                                                 "exercises": [{"name": "check_a"}, {"name": "check_b", "points": 2}]}))
    assert [load_questions(tmp_path)[i].points for i in "xy"] == [1, 3]
    assert [e.points for e in load_exercises(tmp_path)["99_x"]] == [1, 2]


def _records(nb) -> list[tuple[int, dict]]:
    """(cell index, record) for every quiz record in a notebook's outputs, in order."""
    return [(i, o["data"][Q.RECORD_MIME]) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.outputs if Q.RECORD_MIME in o.get("data", {})]


@pytest.mark.kernel
def test_widget_records_the_first_checked_choice_in_the_cell_outputs(monkeypatch):
    """Check's callback updates the record displayed with the quiz, in the cell that showed it; the grader reads it.

    A checkpoint: wrong first, then right, then the quiz shown again: the saved notebook carries the first choice
    only. nbclient applies update_display_data to earlier cells as JupyterLab does (``tests/course/test_browser.py``
    clicks the real widget)."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv("COURSE_HEADLESS", raising=False)
    q = Q.BANK["overview-maskrcnn-addition"]
    wrong = _wrong(q)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from course_lib.course.quiz import quiz\nw = quiz('overview-maskrcnn-addition')\nw"),
                nbformat.v4.new_code_cell("quiz('overview-annotation-format')"),
                nbformat.v4.new_code_cell(f"w.button.click()\nw.radio.value = {wrong}\nw.button.click()\n"
                                          f"w.radio.value = {q.correct}\nw.button.click()\nw.radio.value = {q.correct}"),
                nbformat.v4.new_code_cell("quiz('overview-maskrcnn-addition')")]  # shown again: still the first
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    nbformat.validate(nb)
    outputs = nb.cells[0].outputs
    assert "application/vnd.jupyter.widget-view+json" in outputs[0]["data"]
    saved = nbformat.reads(nbformat.writes(nb), as_version=4)
    assert _records(saved) == [(0, {"id": q.id, "choice": wrong}),
                               (1, {"id": "overview-annotation-format", "choice": None}),
                               (3, {"id": q.id, "choice": wrong})]
    # The record says what the learner chose and nothing more: not the answer, not the verdict.
    text = json.dumps([o for c in nb.cells for o in c.outputs if Q.RECORD_MIME in o.get("data", {})])
    assert "correct" not in text.lower() and q.choices[q.correct] not in text and q.explanation not in text


@pytest.mark.kernel
def test_answer_in_a_kernel_displays_the_first_answer_as_a_record(monkeypatch):
    """Without widgets, ``answer()`` leaves the kernel's first answer in the outputs: editing the call later and
    running it again still saves the first choice."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("COURSE_HEADLESS", "1")
    q = Q.BANK["overview-output-masks"]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from course_lib.course.quiz import answer"),
                nbformat.v4.new_code_cell(f"answer('{q.id}', {_wrong(q)})"),
                nbformat.v4.new_code_cell(f"answer('{q.id}', {q.correct})"),
                nbformat.v4.new_code_cell(f"answer('{NUMERIC_ID}', 767.5)\nanswer('{NUMERIC_ID}', 768)")]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    assert _records(nb) == [(1, {"id": q.id, "choice": _wrong(q)}), (2, {"id": q.id, "choice": _wrong(q)}),
                            (3, {"id": NUMERIC_ID, "choice": 767.5}), (3, {"id": NUMERIC_ID, "choice": 767.5})]
    printed = [o["text"] for c in nb.cells[1:3] for o in c.outputs if o["output_type"] == "stream"]
    assert printed[0].startswith(f"Recorded: ({_wrong(q)})") and "first answer stands" in printed[1]
    assert not any(_names_the_key(q, t) for t in printed)


@pytest.mark.kernel
def test_headless_quiz_shows_text_and_no_record(monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("COURSE_HEADLESS", "1")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from course_lib.course.quiz import quiz\nquiz('overview-maskrcnn-addition')")]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    (out,) = nb.cells[0].outputs
    assert out["output_type"] == "execute_result" and set(out["data"]) == {"text/plain"}
    assert out["data"]["text/plain"].startswith("Quiz overview-maskrcnn-addition")


def test_widget_controls_have_names_a_screen_reader_reads(self_check):
    """The question is a heading; choices are radios named by their text; the number box has a label; Check says
    which quiz it checks; feedback comes in an alert, in words as well as colour."""
    import ipywidgets as W

    w = Q.QuizWidget("overview-annotation-format")
    q = w.question
    heading = w.box.children[0]
    assert isinstance(heading, W.HTML) and heading.value.startswith('<div role="heading" aria-level="3">')
    assert html.escape(q.text) in heading.value
    assert [label for label, _ in w.radio.options] == [q.choices[i] for i in Q.choice_order(q.id)]
    assert w.button.description == "Check" and w.button.tooltip == f"Check your answer to quiz {q.id}"
    w.button.click()
    assert w.feedback.value.startswith('<div role="alert"') and "Pick an answer first." in w.feedback.value
    w.radio.value = q.correct
    w.button.click()
    assert w.feedback.value.startswith('<div role="alert" style="color:#006400">Recorded:')
    numeric = Q.QuizWidget(NUMERIC_ID)
    assert numeric.entry.description == "Your answer:" and numeric.entry.style.description_width == "initial"
    lesson = Q.QuizWidget(self_check.id)
    assert lesson.explain_button.tooltip == f"Show the explanation of quiz {self_check.id}"
    lesson.explain_button.click()
    assert lesson.feedback.value.startswith('<div role="alert" style="color:#333">Explanation: ')
