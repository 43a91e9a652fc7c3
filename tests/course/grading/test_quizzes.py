"""Quiz grading from the notebook file: choice questions against the BANK's index (or a choice's exact text),
numeric ones within their tolerance, the first answer only, and every malformed or hostile answer graded wrong
(never right, never a crash). No kernel: the grader only reads the file."""

import json
import math

import nbformat
import pytest

from course_lib.course.bank import load_questions
from course_lib.course.grading.quizzes import QUIZ_MIME, grade_quizzes, quiz_answers
from course_lib.utils.errors import CommandError

CHOICES = ["a wrong idea", "another wrong idea", "the right idea", "a third wrong idea"]
MISCONCEPTIONS = ["Thinks a.", "Thinks b.", "", "Thinks d."]
QUESTIONS = [
    {"id": "c1", "text": "Which?", "choices": CHOICES, "correct": 2, "misconceptions": MISCONCEPTIONS,
     "explanation": "Because c.", "points": 2},
    {"id": "c2", "text": "Which?", "choices": CHOICES, "correct": 0, "explanation": "Because a."},
    {"id": "n1", "text": "How many?", "answer": 768, "tolerance": 0, "explanation": "16 x 16 x 3."},
    {"id": "n2", "text": "Which AP?", "answer": 0.66, "tolerance": 0.005, "explanation": "Read it."},
    {"id": "n3", "text": "Which dx?", "answer": -2.5, "explanation": "A shift to the left."},
    {"id": "s1", "kind": "self-check", "text": "Which?", "choices": CHOICES, "correct": 2,
     "explanation": "Practice."},
]


@pytest.fixture
def bank(tmp_path):
    (tmp_path / "99_x.json").write_text(json.dumps({"notebook": "99_x", "questions": QUESTIONS}))
    (tmp_path / "98_y.json").write_text(json.dumps({"notebook": "98_y", "questions": [{**QUESTIONS[0], "id": "y"}]}))
    return load_questions(tmp_path)


def _nb(*cells):
    """A notebook of code cells, each ``source`` or ``(source, [record, ...])`` with quiz records as outputs."""
    nb = nbformat.v4.new_notebook()
    for cell in cells:
        source, records = cell if isinstance(cell, tuple) else (cell, [])
        outputs = [nbformat.v4.new_output("display_data", data={QUIZ_MIME: r}) for r in records]
        nb.cells.append(nbformat.v4.new_code_cell(source, outputs=outputs))
    return nb


def _status(bank, nb) -> dict[str, str]:
    return {row["id"]: row["status"] for row in grade_quizzes("99_x", nb, bank)}


def test_rows_cover_the_notebooks_checkpoints_only_with_points(bank):
    rows = grade_quizzes("99_x", _nb('answer("c1", 2)\nanswer("n1", 768)\nanswer("s1", 2)\nanswer("y", 2)'), bank)
    assert [r["id"] for r in rows] == ["c1", "c2", "n1", "n2", "n3"]  # no self-check, no other notebook
    by_id = {r["id"]: r for r in rows}
    assert by_id["c1"] == {"id": "c1", "status": "right", "choice": 2, "out_of": 2.0, "points": 2.0}
    assert by_id["n1"] == {"id": "n1", "status": "right", "choice": 768, "out_of": 1.0, "points": 1.0}
    assert by_id["c2"] == {"id": "c2", "status": "unanswered", "choice": None, "out_of": 1.0, "points": 0.0}


@pytest.mark.parametrize("qid, given, status", [
    ("c1", 2, "right"), ("c1", "the right idea", "right"), ("c1", 1, "wrong"), ("c1", "a wrong idea", "wrong"),
    ("c1", 7, "wrong"), ("c1", -1, "wrong"), ("c1", 4, "wrong"), ("c1", True, "wrong"), ("c1", 2.0, "wrong"),
    ("c1", "The right idea", "wrong"), ("c1", "2", "wrong"), ("c1", 10**30, "wrong"),
    ("c2", False, "wrong"),  # False == 0 == the key, but a bool is no index
    ("n1", 768, "right"), ("n1", 768.0, "right"), ("n1", 767, "wrong"), ("n1", 768.5, "wrong"),
    ("n1", "768", "wrong"), ("n1", True, "wrong"), ("n1", math.nan, "wrong"), ("n1", math.inf, "wrong"),
    ("n2", 0.664, "right"), ("n2", 0.665, "right"), ("n2", 0.655, "right"), ("n2", 0.6651, "wrong"),
    ("n3", -2.5, "right"), ("n3", 2.5, "wrong"),
])
def test_a_widget_record_is_graded_against_the_bank(bank, qid, given, status):
    """Whatever order the learner's screen showed, the record holds the bank's index (or the number typed)."""
    nb = _nb((f'quiz("{qid}")', [{"id": qid, "choice": given}]))
    got = quiz_answers(nb)[qid]
    assert got == given or (got != got and given != given)  # NaN is not equal to itself
    assert _status(bank, nb)[qid] == status


@pytest.mark.parametrize("record", [{"id": "c1", "choice": None}, {"id": "c1", "choice": [2]},
                                    {"id": "c1", "choice": {"index": 2}}, {"id": 1, "choice": 2}, {"choice": 2},
                                    "c1", [{"id": "c1", "choice": 2}]])
def test_an_empty_or_malformed_record_is_no_answer(bank, record):
    assert _status(bank, _nb(('quiz("c1")', [record])))["c1"] == "unanswered"


@pytest.mark.parametrize("source, status", [
    ('answer("c1", 2)', "right"), ("answer('c1', 'the right idea')", "right"), ('answer("c1", 3)', "wrong"),
    ('answer("c1", choice=2)', "right"), ('answer(qid="c1", choice=2)', "right"), ('answer("c1", 9)', "wrong"),
    ('answer("c1", True)', "wrong"), ('answer("c1", 2.0)', "wrong"), ('answer("c1", -2)', "wrong"),
    ('answer("n1", 768)', "right"), ('answer("n1", +768)', "right"), ('answer("n1", 768.0)', "right"),
    ('answer("n1", "768")', "wrong"), ('answer("n3", -2.5)', "right"), ('answer("n3", 2.5)', "wrong"),
    ('answer("n2", 0.66)', "right"), ('answer("n2", 0.67)', "wrong"),
    # Not literal, or not answer()'s signature: the grader cannot know the value without running it
    ('answer("n1", 700 + 68)', "unanswered"), ('x = 768\nanswer("n1", x)', "unanswered"),
    ('answer("c1", 2, 3)', "unanswered"), ('answer("c1", 2, extra=1)', "unanswered"),
    ('answer(**{"qid": "c1", "choice": 2})', "unanswered"), ('answer("c1")', "unanswered"),
    ('quiz.answer("c1", 2)', "unanswered"), ('answer(None, 2)', "unanswered"), ('answer("c1", None)', "unanswered"),
])
def test_an_answer_call_is_read_from_the_source(bank, source, status):
    qid = next((q for q in ("n1", "n2", "n3") if f'"{q}"' in source), "c1")
    assert _status(bank, _nb(source))[qid] == status


def test_the_first_answer_counts_and_a_record_wins_over_calls(bank):
    nb = _nb('answer("n1", 700)\nanswer("n1", 768)', 'answer("c1", 1)',
             ('quiz("c1")', [{"id": "c1", "choice": 2}]), ('quiz("c1")', [{"id": "c1", "choice": 1}]))
    assert quiz_answers(nb) == {"n1": 700, "c1": 2}
    assert _status(bank, nb) == {"c1": "right", "c2": "unanswered", "n1": "wrong", "n2": "unanswered",
                                 "n3": "unanswered"}
    # A call in a cell that does not parse is skipped; the next cell's counts.
    assert _status(bank, _nb('answer("n1", 768) (', 'answer("n1", 767)'))["n1"] == "wrong"


def test_the_gradebook_shows_what_was_given_and_truncates_text(bank):
    nb = _nb(('quiz("c1")', [{"id": "c1", "choice": "x" * 500}]), ('quiz("n1")', [{"id": "n1", "choice": math.nan}]),
             ('quiz("n2")', [{"id": "n2", "choice": 0.661}]), ('quiz("n3")', [{"id": "n3", "choice": True}]))
    rows = {r["id"]: r for r in grade_quizzes("99_x", nb, bank)}
    assert rows["c1"]["choice"] == "x" * 80 and rows["c1"]["status"] == "wrong"
    assert rows["n1"]["choice"] == "nan" and rows["n2"]["choice"] == 0.661 and rows["n3"]["choice"] == "True"
    json.dumps(rows, allow_nan=False)  # the report stays valid JSON


def test_a_student_editions_bank_is_refused(tmp_path):
    keyless = [{"id": "c1", "text": "Which?", "choices": CHOICES},
               {"id": "n1", "text": "How many?", "tolerance": 0}]
    for question in keyless:
        (tmp_path / "99_x.json").write_text(json.dumps({"notebook": "99_x", "handout": True,
                                                        "questions": [question]}))
        with pytest.raises(CommandError, match=f"quiz '{question['id']}' has no answer key here"):
            grade_quizzes("99_x", _nb(f'answer("{question["id"]}", 1)'), load_questions(tmp_path))


def test_the_course_bank_grades_choices_by_bank_index_and_numbers_by_value():
    bank = load_questions()
    nb = _nb('answer("rpn-anchors-p4", 768)\nanswer("rpn-sampled-positives", 256)\n'
             'answer("rpn-anchor-count", "16368")',
             ('quiz("rpn-neutral")', [{"id": "rpn-neutral", "choice": bank["rpn-neutral"].correct}]))
    rows = {r["id"]: r["status"] for r in grade_quizzes("02_anchors_rpn", nb, bank)}
    assert rows == {"rpn-anchor-count": "right", "rpn-neutral": "right", "rpn-box-coding": "unanswered",
                    "rpn-nms-threshold": "unanswered", "rpn-anchors-p4": "right", "rpn-sampled-positives": "wrong"}
