"""Quiz answers a submitted notebook carries, graded against the instructor's bank (read before any student code).

Only checkpoint questions count, and for each the FIRST answer. Answers come from the notebook file itself: ``answer("id", choice)`` calls in its code cells and the records
the quiz widget leaves in the quiz cell's outputs (``course_lib.course.quiz.RECORD_MIME``). Nothing the notebook
computes when it runs plays a part.
"""

from __future__ import annotations

import ast

from course_lib.course.bank import CHECKPOINT, Question
from course_lib.course.quiz import RECORD_MIME as QUIZ_MIME
from course_lib.utils.errors import CommandError


def quiz_answers(nb) -> dict[str, int | str]:
    """The FIRST answer a notebook carries for each quiz: a widget record (which holds the kernel's first checked
    choice) wins; else the first ``answer("id", choice)`` call in source order."""
    calls: dict[str, int | str] = {}
    records: dict[str, int | str] = {}
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(cell.get("source", ""))
        except SyntaxError:
            tree = None
        nodes = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)) if tree is not None else (),
                       key=lambda n: (n.lineno, n.col_offset))
        for node in nodes:
            if (isinstance(node.func, ast.Name) and node.func.id == "answer"
                    and len(node.args) == 2 and all(isinstance(a, ast.Constant) for a in node.args)
                    and isinstance(node.args[0].value, str) and isinstance(node.args[1].value, (int, str))):
                calls.setdefault(node.args[0].value, node.args[1].value)
        for out in cell.get("outputs", []):
            record = out.get("data", {}).get(QUIZ_MIME) if isinstance(out, dict) else None
            if isinstance(record, dict) and isinstance(record.get("id"), str) \
                    and isinstance(record.get("choice"), (int, str)):
                records.setdefault(record["id"], record["choice"])
    return {**calls, **records}


def grade_quizzes(notebook: str, nb, questions: dict[str, Question]) -> list[dict]:
    """One row per checkpoint question of ``notebook`` in ``questions`` (the instructor's bank, read beforehand).
    Self-check questions are practice: they get no row and no points."""
    answers = quiz_answers(nb)
    rows = []
    for q in (q for q in questions.values() if q.notebook == notebook and q.kind == CHECKPOINT):
        if q.correct is None:
            raise CommandError(f"quiz {q.id!r} has no answer key here: this is a student edition (course handout); "
                               "grade with the instructor's copy of the course")
        choice = answers.get(q.id)
        index = q.choices.index(choice) if isinstance(choice, str) and choice in q.choices else choice
        if choice is None:
            status = "unanswered"
        else:
            status = "right" if isinstance(index, int) and not isinstance(index, bool) and index == q.correct \
                else "wrong"
        rows.append({"id": q.id, "status": status, "choice": choice if isinstance(choice, int) else str(choice)[:80],
                     "out_of": float(q.points), "points": float(q.points) if status == "right" else 0.0})
    return rows
