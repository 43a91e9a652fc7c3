"""The course's bank: every notebook's quiz questions and graded exercises, read from
``course_lib/course/quiz_bank/<notebook>.json`` (instructors edit these files, no Python needed).

One file per notebook::

    {"notebook": "02_anchors_rpn",
     "exercises": [{"name": "check_box_iou", "points": 1}, ...],
     "questions": [{"id": ..., "text": ..., "choices": [...], "correct": 1, "explanation": ...,
                    "points": 1}, ...]}

``points`` defaults to 1. Reading the bank imports only the standard library, so the progress line at
the top of each notebook costs nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

BANK_DIR = Path(__file__).parent / "quiz_bank"


@dataclass(frozen=True)
class Question:
    id: str
    notebook: str
    text: str
    choices: tuple[str, ...]
    correct: int  # index into choices
    explanation: str
    points: float = 1


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
    """Every question of every notebook, by id (ids are unique across the bank)."""
    bank: dict[str, Question] = {}
    for path, data in _read(folder):
        for q in data["questions"]:
            where = f"{path.name}, quiz {q.get('id')!r}"
            if q["id"] in bank:
                raise ValueError(f"{where}: duplicate quiz id")
            if not 0 <= q["correct"] < len(q["choices"]):
                raise ValueError(f"{where}: correct index {q['correct']} outside {len(q['choices'])} choices")
            bank[q["id"]] = Question(q["id"], data["notebook"], q["text"], tuple(q["choices"]), q["correct"],
                                     q["explanation"], q.get("points", 1))
    return bank


def load_exercises(folder: Path = BANK_DIR) -> dict[str, list[Exercise]]:
    """The graded exercises of each notebook, in bank order: ``{"02_anchors_rpn": [Exercise, ...]}``."""
    return {data["notebook"]: [Exercise(e["name"], data["notebook"], e.get("points", 1))
                               for e in data.get("exercises", [])]
            for _, data in _read(folder)}


def notebooks(folder: Path = BANK_DIR) -> list[str]:
    """The notebooks that have a bank file, e.g. ``["00_overview", ...]``."""
    return [data["notebook"] for _, data in _read(folder)]
