"""Headless detection and progress bars. Used in: every notebook.

``COURSE_HEADLESS=1`` (set by the headless runner and the test suite) means nobody is watching:
quizzes print text instead of widgets and progress bars stay quiet, so stored outputs are stable.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm


def headless() -> bool:
    return os.environ.get("COURSE_HEADLESS", "") not in ("", "0")


def progress_bar(iterable=None, *, desc: str | None = None, total: int | None = None, enabled: bool = True,
                 **kwargs):
    """``tqdm.auto`` (a widget bar in Jupyter, text in a terminal), silent when headless or not ``enabled``."""
    return tqdm(iterable, desc=desc, total=total, disable=(not enabled) or headless(), leave=False, **kwargs)
