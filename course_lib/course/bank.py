"""The course's bank: every notebook's quiz questions and graded exercises, read from
``course_lib/course/quiz_bank/<notebook>.json`` (instructors edit these files, no Python needed).

One file per notebook::

    {"notebook": "02_anchors_rpn",
     "exercises": [{"name": "check_box_iou", "points": 1}, ...],
     "questions": [{"id": ..., "kind": "checkpoint", "text": ..., "choices": [...], "correct": 1,
                    "explanation": ..., "points": 1}, ...]}

``points`` defaults to 1. ``kind`` (default ``"checkpoint"``) is what the question is for:

* ``"checkpoint"``: a question of a notebook's quiz checkpoint, graded by the instructor. The learner's first
  checked answer is the one recorded.
* ``"self-check"``: a question inside a lesson, for the learner alone: instant feedback, as many tries as
  wanted, never graded.

Every question of the instructor's bank has its key (``correct`` and ``explanation``). The student edition
(``./course handout``) marks its bank files ``"handout": true`` and leaves the key out of checkpoint
questions; only there may a question lack it, and never a self-check (its feedback needs the key).

Reading the bank imports only the standard library, so the progress line at the top of each notebook costs
nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

BANK_DIR = Path(__file__).parent / "quiz_bank"

CHECKPOINT = "checkpoint"  # graded by the instructor; the first checked answer is recorded
SELF_CHECK = "self-check"  # instant feedback, retries allowed, not graded
KINDS = (CHECKPOINT, SELF_CHECK)


@dataclass(frozen=True)
class Question:
    id: str
    notebook: str
    text: str
    choices: tuple[str, ...]
    correct: int | None  # index into choices; None only in a handout's checkpoint question
    explanation: str | None  # None only in a handout's checkpoint question
    points: float = 1
    kind: str = CHECKPOINT  # one of KINDS


@dataclass(frozen=True)
class Exercise:
    name: str  # the checker's name, e.g. "check_box_iou"
    notebook: str
    points: float = 1


def _read(folder: Path) -> list[tuple[Path, dict]]:
    files = []
    for path in sorted(folder.glob("*.json")):
        try:
            files.append((path, json.loads(path.read_text(encoding="utf-8"))))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
    return files


def load_questions(folder: Path = BANK_DIR) -> dict[str, Question]:
    """Every question of every notebook, by id (ids are unique across the bank).

    Raises ``ValueError`` naming the file and the quiz for a duplicate id, an unknown ``kind``, or a missing or
    out-of-range key (a key may be missing only from a checkpoint question of a handout's bank file).
    """
    bank: dict[str, Question] = {}
    for path, data in _read(folder):
        handout = data.get("handout") is True
        for q in data["questions"]:
            where = f"{path.name}, quiz {q.get('id')!r}"
            if q["id"] in bank:
                raise ValueError(f"{where}: duplicate quiz id")
            kind = q.get("kind", CHECKPOINT)
            if kind not in KINDS:
                raise ValueError(f"{where}: kind {kind!r} is not one of {', '.join(map(repr, KINDS))}")
            correct, explanation = q.get("correct"), q.get("explanation")
            if correct is None or explanation is None:
                missing = " and ".join(repr(k) for k in ("correct", "explanation") if q.get(k) is None)
                if kind == SELF_CHECK:
                    raise ValueError(f"{where}: a self-check question lacks {missing}: its instant feedback "
                                     "needs the key (only checkpoint keys stay with the instructor)")
                if not handout:
                    raise ValueError(f"{where}: lacks {missing} (only a handout's checkpoint questions leave "
                                     "the key out)")
            if correct is not None and (isinstance(correct, bool) or not isinstance(correct, int)
                                        or not 0 <= correct < len(q["choices"])):
                raise ValueError(f"{where}: correct index {correct!r} outside {len(q['choices'])} choices")
            bank[q["id"]] = Question(q["id"], data["notebook"], q["text"], tuple(q["choices"]), correct,
                                     explanation, q.get("points", 1), kind)
    return bank


def load_exercises(folder: Path = BANK_DIR) -> dict[str, list[Exercise]]:
    """The graded exercises of each notebook, in bank order: ``{"02_anchors_rpn": [Exercise, ...]}``."""
    return {data["notebook"]: [Exercise(e["name"], data["notebook"], e.get("points", 1))
                               for e in data.get("exercises", [])]
            for _, data in _read(folder)}


def notebooks(folder: Path = BANK_DIR) -> list[str]:
    """The notebooks that have a bank file, e.g. ``["00_overview", ...]``."""
    return [data["notebook"] for _, data in _read(folder)]
