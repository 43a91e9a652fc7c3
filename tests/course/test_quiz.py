import json
import re

import pytest

from course_lib.course import quiz as Q
from course_lib.course.bank import load_exercises, load_questions
from course_lib.utils.paths import REPO_ROOT as ROOT


def test_bank_is_well_formed():
    assert len(Q.BANK) >= 4
    for q in Q.BANK.values():
        assert len(q.choices) >= 3 and len(set(q.choices)) == len(q.choices)
        assert 0 <= q.correct < len(q.choices)
        assert len(q.explanation) > 40 and q.text.endswith("?")


def test_seed_questions_are_in_the_overview():
    texts = [Q.BANK[i].text for i in Q.ids_for("00_overview")]
    assert "What is the primary addition of Mask R-CNN over Faster R-CNN?" in texts
    assert "What format should your custom dataset annotations be in for Mask R-CNN training?" in texts


def test_grade_by_index_and_by_text():
    q = Q.BANK["overview-maskrcnn-addition"]
    ok, text = Q.grade(q.id, q.correct)
    assert ok and text.startswith("Correct!") and q.explanation in text
    ok, text = Q.grade(q.id, q.choices[0])
    assert not ok and text.startswith("Not quite") and q.choices[q.correct] in text
    with pytest.raises(ValueError):
        Q.grade(q.id, 17)
    with pytest.raises(KeyError, match="no quiz 'nope'"):
        Q.grade("nope", 0)


def test_headless_fallback_prints_question_and_answer_call(capsys):
    shown = Q.quiz("overview-output-masks")
    text = repr(shown)
    assert "(1) A (N, 1, H, W) float tensor" in text
    assert 'answer("overview-output-masks", <number>)' in text
    assert Q.answer("overview-output-masks", 1) is True
    assert "Correct!" in capsys.readouterr().out


def test_widget_check_button_gives_feedback():
    w = Q.QuizWidget("overview-annotation-format")
    w.button.click()
    assert "Pick an answer first" in w.feedback.value
    w.radio.index = 0
    w.button.click()
    assert "Not quite" in w.feedback.value
    w.radio.value = w.question.choices[w.question.correct]
    w.button.click()
    assert "Correct!" in w.feedback.value
    bundle = w._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data
    assert data["text/plain"].startswith("Quiz overview-annotation-format")


@pytest.mark.kernel
def test_widget_in_a_real_kernel(monkeypatch):
    """Drive the widget inside an IPython kernel: choose, click Check, read the feedback."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv("COURSE_HEADLESS", raising=False)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from course_lib.course.quiz import quiz, BANK\n"
        "w = quiz('overview-maskrcnn-addition')\n"
        "print(type(w).__name__)\n"
        "w.radio.index = BANK['overview-maskrcnn-addition'].correct\n"
        "w.button.click()\n"
        "print(w.feedback.value)\n"
        "w.radio.index = 0\n"
        "w.button.click()\n"
        "print(w.feedback.value)"), nbformat.v4.new_code_cell("w")]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    out = nb.cells[0].outputs[0]["text"].splitlines()
    assert out[0] == "QuizWidget"
    assert "Correct!" in out[1] and "Not quite" in out[2]
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


@pytest.mark.kernel
def test_widget_records_the_checked_choice_in_the_cell_outputs(monkeypatch):
    """Check's callback updates the record displayed with the quiz, in the cell that showed it; the grader reads it.

    nbclient applies update_display_data to earlier cells as JupyterLab does (``tests/course/test_browser.py``
    clicks the real widget)."""
    import nbformat
    from nbclient import NotebookClient

    from course_lib.course import grade

    monkeypatch.delenv("COURSE_HEADLESS", raising=False)
    q = Q.BANK["overview-maskrcnn-addition"]
    wrong = (q.correct + 1) % len(q.choices)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from course_lib.course.quiz import quiz\nw = quiz('overview-maskrcnn-addition')\nw"),
                nbformat.v4.new_code_cell("quiz('overview-annotation-format')"),
                nbformat.v4.new_code_cell(f"w.button.click()\nw.radio.index = {wrong}\nw.button.click()\n"
                                          f"w.radio.index = {q.correct}\nw.button.click()\nw.radio.index = {wrong}")]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    nbformat.validate(nb)
    outputs = nb.cells[0].outputs
    assert "application/vnd.jupyter.widget-view+json" in outputs[0]["data"]
    assert [o["data"] for o in outputs[1:]] == [{Q.RECORD_MIME: {"id": q.id, "choice": q.correct}}]
    assert nb.cells[1].outputs[1]["data"] == {Q.RECORD_MIME: {"id": "overview-annotation-format", "choice": None}}
    saved = nbformat.reads(nbformat.writes(nb), as_version=4)
    assert grade.quiz_answers(saved) == {q.id: q.correct}  # the last choice checked; never-checked: unanswered
    rows = {r["id"]: r["status"] for r in grade.grade_quizzes("00_overview", saved)}
    assert rows[q.id] == "right" and rows["overview-annotation-format"] == "unanswered"
    # The record says what the learner chose and nothing more: not the answer, not the verdict.
    text = json.dumps([o for c in nb.cells for o in c.outputs if Q.RECORD_MIME in o.get("data", {})])
    assert "correct" not in text.lower() and q.choices[q.correct] not in text and q.explanation not in text


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
