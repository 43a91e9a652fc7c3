"""A learner's progress: which quizzes and exercises each notebook has passed. Used in: every notebook.

Kept between sessions in ``~/.maskrcnn_course/progress.json`` (``COURSE_PROGRESS_FILE`` overrides the
path), never in the repository. Quizzes and checkers record into it; ``show_progress()`` at the top of
each notebook prints the summary in one line per notebook.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from course_lib.course.bank import load_exercises, load_questions, notebooks
from course_lib.utils.files import write_atomic


def progress_file() -> Path:
    return Path(os.environ.get("COURSE_PROGRESS_FILE", Path.home() / ".maskrcnn_course" / "progress.json"))


def load() -> dict:
    """``{notebook: {item: {"passed": bool, "time": str}}}``; an unreadable file counts as empty."""
    path = progress_file()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, OSError):
        return {}


def record(notebook: str, item: str, passed: bool) -> None:
    """Remember the latest result of ``item`` (``quiz:<id>`` or ``exercise:<checker>``) in ``notebook``.

    A pass is never overwritten by a later failure: progress only moves forward.
    """
    data = load()
    entry = data.setdefault(notebook, {}).get(item, {})
    data[notebook][item] = {"passed": bool(passed or entry.get("passed", False)),
                            "time": time.strftime("%Y-%m-%d %H:%M")}
    path = progress_file()
    try:
        write_atomic(path, lambda f: json.dump(data, f, indent=1, sort_keys=True), "w")
    except OSError as exc:  # a read-only home must not break a notebook
        print(f"(progress not saved: {exc})")


def summary() -> str:
    """One line per notebook with what is known there, e.g. ``00_overview: quizzes 3/4, exercises 2/2``."""
    questions, exercises_of = load_questions(), load_exercises()
    data = load()
    lines = []
    for nb in sorted(set(notebooks()) | set(data)):
        done = data.get(nb, {})
        quizzes = [q.id for q in questions.values() if q.notebook == nb]
        exercises = [e.name for e in exercises_of.get(nb, [])]
        q_ok = sum(done.get(f"quiz:{q}", {}).get("passed", False) for q in quizzes)
        e_ok = sum(done.get(f"exercise:{e}", {}).get("passed", False) for e in exercises)
        lines.append(f"{nb}: quizzes {q_ok}/{len(quizzes)}, exercises {e_ok}/{len(exercises)}")
    return "\n".join(lines)


def show_progress() -> None:
    """Print the progress summary (the one-line call at the top of each notebook).

    Headless (stored outputs, CI) it prints one fixed line instead: the path and the counts belong to whoever
    ran the notebook and would differ for every reader.
    """
    from course_lib.utils.ui import headless

    if headless():
        print("Your progress is saved between sessions; run show_progress() in Jupyter to see it.")
        return
    print(f"Your progress ({progress_file()}):\n{summary()}")
    from course_lib.course.saved import saved_dir, summary_lines

    lines = summary_lines()
    if lines:
        print(f"Your saved functions ({saved_dir()}), from which notebook 07 builds your model:")
        print("\n".join(lines))
