import dataclasses
import json
import re

import pytest

from course_lib.course import progress
from course_lib.course import quiz as Q
from course_lib.course.bank import CHECKPOINT, KINDS, SELF_CHECK, load_exercises, load_questions
from course_lib.utils.paths import REPO_ROOT as ROOT


@pytest.fixture(autouse=True)
def fresh_kernel_state():
    """``FIRST_ANSWERS`` lives as long as the kernel (here: the test process); every test starts without it."""
    Q.FIRST_ANSWERS.clear()
    yield
    Q.FIRST_ANSWERS.clear()


@pytest.fixture
def self_check(monkeypatch):
    """A self-check question in the bank (the course's own quizzes are all checkpoints today)."""
    q = dataclasses.replace(Q.BANK["overview-output-masks"], id="test-self-check", kind=SELF_CHECK)
    monkeypatch.setitem(Q.BANK, q.id, q)
    return q


@pytest.fixture
def keyless(monkeypatch):
    """A checkpoint as the student edition has it: no ``correct``, no ``explanation``."""
    q = dataclasses.replace(Q.BANK["overview-weights-api"], correct=None, explanation=None)
    monkeypatch.setitem(Q.BANK, q.id, q)
    return q


def _wrong(q):
    return (q.correct + 1) % len(q.choices)


def _names_the_key(q, text: str) -> bool:
    return q.choices[q.correct] in text or f"({q.correct})" in text or q.explanation in text


def test_bank_is_well_formed():
    assert len(Q.BANK) >= 4
    for q in Q.BANK.values():
        assert len(q.choices) >= 3 and len(set(q.choices)) == len(q.choices)
        assert q.kind in KINDS
        assert q.correct is not None and 0 <= q.correct < len(q.choices)  # the instructor's bank has every key
        assert len(q.explanation) > 40 and q.text.endswith("?")


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
    """Every wrong choice of every question, checkpoint or self-check: not right, look again, no key."""
    for q in [*Q.BANK.values()]:
        for i in range(len(q.choices)):
            ok, text = Q.grade(q.id, i)
            if i == q.correct:
                assert ok is True and "Correct!" in text and q.explanation in text
                continue
            assert ok is False and "Not quite" in text and "look" in text, (q.id, text)
            assert not _names_the_key(q, text), (q.id, i, text)
            if q.kind == CHECKPOINT:
                assert text.startswith(f"Recorded: ({i}) {q.choices[i]}.")
            else:
                assert "try again" in text


def test_headless_fallback_prints_question_and_answer_call(capsys):
    shown = Q.quiz("overview-output-masks")
    text = repr(shown)
    assert "(1) A (N, 1, H, W) float tensor" in text
    assert 'answer("overview-output-masks", <number>) — a checkpoint: your first answer is the one recorded' in text
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
    w.radio.index = _wrong(q)
    w.button.click()
    feedback = w.feedback.value
    assert "Not quite" in feedback and f"Recorded: ({_wrong(q)})" in feedback and not _names_the_key(q, feedback)
    assert w.record() == {"id": q.id, "choice": _wrong(q)}
    assert w.radio.disabled and w.button.disabled
    w.radio.value = q.choices[q.correct]  # in code, past the disabled buttons
    w.button.click()
    assert w.record() == {"id": q.id, "choice": _wrong(q)} and w.radio.index == _wrong(q)
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
    w2.radio.index = 0
    w2.button.click()
    assert Q.answer("overview-output-masks", 1) is False and "first answer stands: (0)" in capsys.readouterr().out


def test_widget_lets_a_self_check_be_retried(self_check):
    q = self_check
    w = Q.QuizWidget(q.id)
    w.radio.index = _wrong(q)
    w.button.click()
    assert "try again" in w.feedback.value and not _names_the_key(q, w.feedback.value)
    assert not w.radio.disabled and not w.button.disabled
    w.radio.index = q.correct
    w.button.click()
    assert "Correct!" in w.feedback.value and w.record() == {"id": q.id, "choice": q.correct}


def test_widget_without_the_key_records_and_says_the_instructor_grades(keyless):
    q = keyless
    w = Q.QuizWidget(q.id)
    w.radio.index = 3
    w.button.click()
    assert "Recorded: (3)" in w.feedback.value and "your instructor grades checkpoint quizzes" in w.feedback.value
    assert "Correct" not in w.feedback.value and "Not quite" not in w.feedback.value
    assert w.record() == {"id": q.id, "choice": 3} and w.button.disabled
    w.radio.index = 1
    w.button.click()
    assert w.record() == {"id": q.id, "choice": 3}


def test_widget_shows_the_text_form_without_a_front_end():
    w = Q.QuizWidget("overview-annotation-format")
    bundle = w._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data
    assert data["text/plain"].startswith("Quiz overview-annotation-format")


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
        f"w.radio.index = {_wrong(q)}\n"
        "w.button.click()\n"
        "print(w.feedback.value)\n"
        "w.radio.index = BANK['overview-maskrcnn-addition'].correct\n"
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
                nbformat.v4.new_code_cell(f"w.button.click()\nw.radio.index = {wrong}\nw.button.click()\n"
                                          f"w.radio.index = {q.correct}\nw.button.click()\nw.radio.index = {q.correct}"),
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
                nbformat.v4.new_code_cell(f"answer('{q.id}', {q.correct})")]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    assert _records(nb) == [(1, {"id": q.id, "choice": _wrong(q)}), (2, {"id": q.id, "choice": _wrong(q)})]
    printed = [o["text"] for c in nb.cells[1:] for o in c.outputs if o["output_type"] == "stream"]
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
