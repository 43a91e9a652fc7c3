"""Quiz answers a submitted notebook carries, graded against the instructor's bank (read before any student code).

Only checkpoint questions count, and for each the FIRST answer. Answers come from the notebook file itself:
``answer("id", response)`` calls in its code cells and the records the quiz widget leaves in the quiz cell's
outputs (``course_lib.course.quiz.RECORD_MIME``). Nothing the notebook computes when it runs plays a part.

A response means what it means to ``answer()`` (``course_lib.course.bank.read_response``): for a choice question
the BANK's index of the choice (whatever order the learner's screen showed) or the choice's exact text; for a
numeric question a number, right within the question's tolerance. Anything else (an index outside the choices, a
bool, a float for a choice, a string or a non-finite number for a numeric question) is a wrong answer.
"""

from __future__ import annotations

import ast
import math

from course_lib.course.bank import CHECKPOINT, Question, is_right, read_response
from course_lib.course.quiz import RECORD_MIME as QUIZ_MIME
from course_lib.utils.errors import CommandError


def _literal(node: ast.expr):
    """The value of a literal argument: a str, int, float or bool constant, or a signed number (``-3``, ``+0.5``);
    None for anything else (a name, an expression), which the grader cannot know without running the code."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, (int, float))
            and not isinstance(node.operand.value, bool)):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    return None


def _answer_args(node: ast.Call) -> tuple[str, int | float | str] | None:
    """``(quiz id, response)`` of an ``answer(qid, choice)`` call with literal arguments, given by position or by
    name; None for any other call."""
    if not (isinstance(node.func, ast.Name) and node.func.id == "answer"):
        return None
    if any(k.arg is None for k in node.keywords):  # answer(**kwargs): unknown without running it
        return None
    named = {k.arg: k.value for k in node.keywords}
    args = list(node.args)
    for name in ("qid", "choice")[len(args):]:
        if name in named:
            args.append(named.pop(name))
    if len(args) != 2 or named:
        return None
    qid, response = _literal(args[0]), _literal(args[1])
    return (qid, response) if isinstance(qid, str) and response is not None else None


def quiz_answers(nb) -> dict[str, int | float | str]:
    """The FIRST answer a notebook carries for each quiz: a widget record (which holds the kernel's first checked
    choice) wins; else the first ``answer("id", response)`` call with literal arguments, in source order."""
    calls: dict[str, int | float | str] = {}
    records: dict[str, int | float | str] = {}
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
            args = _answer_args(node)
            if args is not None:
                calls.setdefault(*args)
        for out in cell.get("outputs", []):
            record = out.get("data", {}).get(QUIZ_MIME) if isinstance(out, dict) else None
            if isinstance(record, dict) and isinstance(record.get("id"), str) \
                    and isinstance(record.get("choice"), (int, float, str)):
                records.setdefault(record["id"], record["choice"])
    return {**calls, **records}


def _shown(given) -> int | float | str:
    """The answer as the gradebook shows it: a finite number as it is, anything else as (at most 80 chars of)
    text."""
    if isinstance(given, (int, float)) and not isinstance(given, bool) and math.isfinite(given):
        return given
    return str(given)[:80]


def grade_quizzes(notebook: str, nb, questions: dict[str, Question]) -> list[dict]:
    """One row per checkpoint question of ``notebook`` in ``questions`` (the instructor's bank, read beforehand).
    Self-check questions are practice: they get no row and no points."""
    answers = quiz_answers(nb)
    rows = []
    for q in (q for q in questions.values() if q.notebook == notebook and q.kind == CHECKPOINT):
        if not q.has_key:
            raise CommandError(f"quiz {q.id!r} has no answer key here: this is a student edition (course handout); "
                               "grade with the instructor's copy of the course")
        given = answers.get(q.id)
        if given is None:
            status = "unanswered"
        else:
            try:
                status = "right" if is_right(q, read_response(q, given)) else "wrong"
            except ValueError:  # not an answer to this question (out of range, wrong type): wrong, not an error
                status = "wrong"
        rows.append({"id": q.id, "status": status, "choice": None if given is None else _shown(given),
                     "out_of": float(q.points), "points": float(q.points) if status == "right" else 0.0})
    return rows
