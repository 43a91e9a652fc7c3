"""The course's bank: every notebook's quiz questions and graded exercises, read from
``course_lib/course/quiz_bank/<notebook>.json`` (instructors edit these files, no Python needed).

One file per notebook::

    {"notebook": "02_anchors_rpn",
     "exercises": [{"name": "check_box_iou", "points": 1}, ...],
     "questions": [{"id": ..., "kind": "checkpoint", "text": ..., "choices": [...], "correct": 1,
                    "misconceptions": ["...", "", "...", "..."], "explanation": ..., "points": 1},
                   {"id": ..., "kind": "checkpoint", "text": ..., "answer": 768, "tolerance": 0,
                    "explanation": ...}, ...]}

``points`` defaults to 1. ``kind`` (default ``"checkpoint"``) is what the question is for:

* ``"checkpoint"``: a question of a notebook's quiz checkpoint, graded by the instructor. The learner's first
  checked answer is the one recorded.
* ``"self-check"``: a question inside a lesson, for the learner alone: instant feedback, as many tries as
  wanted, never graded.

A question has one of two forms:

* **choices**: ``choices`` (at least two, all different) and ``correct``, the index of the right one. The bank's
  indices are what answers, records and the grader use, whatever order a learner's screen shows the choices in.
  ``misconceptions`` (optional for the loader, present for every question of the course) holds one sentence per
  choice: for each wrong choice the mistaken idea it reflects (shown after a wrong self-check answer), ``""`` for
  the right one.
* **numeric**: no ``choices``; ``answer`` (a number) and ``tolerance`` (absolute, default 0): a response ``x`` is
  right when ``|x - answer| <= tolerance``.

Every question of the instructor's bank has its key (``KEY_FIELDS``: ``correct`` or ``answer``, ``explanation``,
``misconceptions``). The student edition (``./course handout``) marks its bank files ``"handout": true`` and
leaves the key out of checkpoint questions; only there may a question lack it, and never a self-check (its
feedback needs the key). A handout's checkpoint that still holds any part of its key is refused: the position of
the empty misconception names the right choice as surely as ``correct`` does.

Reading the bank imports only the standard library, so the progress line at the top of each notebook costs
nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

BANK_DIR = Path(__file__).parent / "quiz_bank"

CHECKPOINT = "checkpoint"  # graded by the instructor; the first checked answer is recorded
SELF_CHECK = "self-check"  # instant feedback, retries allowed, not graded
KINDS = (CHECKPOINT, SELF_CHECK)

# The fields of a question that give its answer away: the student edition's checkpoints hold none of them.
KEY_FIELDS = ("correct", "answer", "explanation", "misconceptions")


@dataclass(frozen=True)
class Question:
    id: str
    notebook: str
    text: str
    choices: tuple[str, ...]  # empty for a numeric question
    correct: int | None  # index into choices; None for a numeric question and in a handout's checkpoint question
    explanation: str | None  # None only in a handout's checkpoint question
    points: float = 1
    kind: str = CHECKPOINT  # one of KINDS
    misconceptions: tuple[str, ...] | None = None  # one per choice, "" for the right one; None if not given
    answer: int | float | None = None  # a numeric question's key; None for choices and in a handout's checkpoint
    tolerance: float = 0.0  # a numeric question's absolute tolerance

    @property
    def numeric(self) -> bool:
        """True for a question answered with a number (it has no choices)."""
        return not self.choices

    @property
    def has_key(self) -> bool:
        """False only for a handout's checkpoint question, which leaves its key with the instructor."""
        return (self.answer if self.numeric else self.correct) is not None


@dataclass(frozen=True)
class Exercise:
    name: str  # the checker's name, e.g. "check_box_iou"
    notebook: str
    points: float = 1


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def read_response(q: Question, response) -> int | float:
    """A learner's response to ``q`` as the bank understands it, or ``ValueError``.

    For a choice question: the bank's index of the choice, given as that index (an int, never a bool) or as the
    choice's exact text. For a numeric question: a finite int or float, never a bool and never a string (a
    string is how a *choice* is named; a number typed into a widget is parsed before it gets here).
    """
    if q.numeric:
        if not _is_number(response):
            raise ValueError(f"quiz {q.id!r} is answered with a number, e.g. answer({q.id!r}, 42); got {response!r}")
        return response
    if isinstance(response, str):
        if response not in q.choices:
            raise ValueError(f"quiz {q.id!r}: {response!r} is not one of the choices {list(q.choices)}")
        return q.choices.index(response)
    if isinstance(response, bool) or not isinstance(response, int) or not 0 <= response < len(q.choices):
        raise ValueError(f"quiz {q.id!r}: choice {response!r} is outside 0..{len(q.choices) - 1}")
    return response


def is_right(q: Question, value: int | float) -> bool:
    """Whether ``value`` (from ``read_response``) answers ``q``; ``q`` must hold its key."""
    if not q.has_key:
        raise ValueError(f"quiz {q.id!r} has no answer key here (a student edition's checkpoint)")
    if q.numeric:
        # A hair of slack for decimal answers: 0.665 - 0.66 is 0.0050000000000000044 in binary floats.
        return abs(value - q.answer) <= q.tolerance + 1e-9 * max(1.0, abs(q.answer))
    return value == q.correct


def _read(folder: Path) -> list[tuple[Path, dict]]:
    files = []
    for path in sorted(folder.glob("*.json")):
        try:
            files.append((path, json.loads(path.read_text(encoding="utf-8"))))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
    return files


def _question(q: dict, notebook: str, where: str, handout: bool) -> Question:
    """One question of a bank file, checked (``ValueError`` naming ``where`` for anything wrong)."""
    kind = q.get("kind", CHECKPOINT)
    if kind not in KINDS:
        raise ValueError(f"{where}: kind {kind!r} is not one of {', '.join(map(repr, KINDS))}")
    numeric = "choices" not in q
    key = "answer" if numeric else "correct"
    if numeric:
        wrong = [k for k in ("correct", "misconceptions") if k in q]
        if wrong:
            raise ValueError(f"{where}: a numeric question (no 'choices') has no {' or '.join(map(repr, wrong))}; "
                             "its key is 'answer' and 'tolerance'")
        choices: tuple[str, ...] = ()
    else:
        if "answer" in q or "tolerance" in q:
            raise ValueError(f"{where}: a question with 'choices' is answered by 'correct', not 'answer'/'tolerance'")
        raw = q["choices"]
        if (not isinstance(raw, list) or len(raw) < 2 or not all(isinstance(c, str) and c for c in raw)
                or len(set(raw)) != len(raw)):
            raise ValueError(f"{where}: 'choices' must be a list of at least two different, non-empty texts")
        choices = tuple(raw)
    value, explanation = q.get(key), q.get("explanation")
    if value is None or explanation is None:
        missing = " and ".join(repr(k) for k in (key, "explanation") if q.get(k) is None)
        if kind == SELF_CHECK:
            raise ValueError(f"{where}: a self-check question lacks {missing}: its instant feedback "
                             "needs the key (only checkpoint keys stay with the instructor)")
        if not handout:
            raise ValueError(f"{where}: lacks {missing} (only a handout's checkpoint questions leave "
                             "the key out)")
    if numeric:
        if value is not None and not _is_number(value):
            raise ValueError(f"{where}: answer {value!r} is not a finite number")
        tolerance = q.get("tolerance", 0)
        if not _is_number(tolerance) or tolerance < 0:
            raise ValueError(f"{where}: tolerance {tolerance!r} is not a number >= 0")
    elif value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                or not 0 <= value < len(choices)):
        raise ValueError(f"{where}: correct index {value!r} outside {len(choices)} choices")
    misconceptions = q.get("misconceptions")
    if misconceptions is not None:
        if not isinstance(misconceptions, list) or len(misconceptions) != len(choices) \
                or not all(isinstance(m, str) for m in misconceptions):
            raise ValueError(f"{where}: 'misconceptions' must list one text per choice ({len(choices)})")
        if value is not None:
            bad = [i for i, m in enumerate(misconceptions) if (i == value) != (not m.strip())]
            if bad:
                raise ValueError(f"{where}: 'misconceptions' needs a sentence for every wrong choice and \"\" for "
                                 f"the right one (check choice {bad[0]})")
    if handout and kind == CHECKPOINT:
        held = [k for k in KEY_FIELDS if k in q]
        if held:
            raise ValueError(f"{where}: a handout's checkpoint question still holds {', '.join(map(repr, held))}; "
                             f"the student edition must leave out {', '.join(KEY_FIELDS)}")
    return Question(q["id"], notebook, q["text"], choices, None if numeric else value, explanation,
                    q.get("points", 1), kind, None if misconceptions is None else tuple(misconceptions),
                    value if numeric else None, float(q.get("tolerance", 0)) if numeric else 0.0)


def load_questions(folder: Path = BANK_DIR) -> dict[str, Question]:
    """Every question of every notebook, by id (ids are unique across the bank).

    Raises ``ValueError`` naming the file and the quiz for a duplicate id, an unknown ``kind``, malformed choices
    or misconceptions, a missing or out-of-range key (a key may be missing only from a checkpoint question of a
    handout's bank file), or a handout's checkpoint that still holds part of its key.
    """
    bank: dict[str, Question] = {}
    for path, data in _read(folder):
        handout = data.get("handout") is True
        for q in data["questions"]:
            where = f"{path.name}, quiz {q.get('id')!r}"
            if q["id"] in bank:
                raise ValueError(f"{where}: duplicate quiz id")
            bank[q["id"]] = _question(q, data["notebook"], where, handout)
    return bank


def load_exercises(folder: Path = BANK_DIR) -> dict[str, list[Exercise]]:
    """The graded exercises of each notebook, in bank order: ``{"02_anchors_rpn": [Exercise, ...]}``."""
    return {data["notebook"]: [Exercise(e["name"], data["notebook"], e.get("points", 1))
                               for e in data.get("exercises", [])]
            for _, data in _read(folder)}


def notebooks(folder: Path = BANK_DIR) -> list[str]:
    """The notebooks that have a bank file, e.g. ``["00_overview", ...]``."""
    return [data["notebook"] for _, data in _read(folder)]
