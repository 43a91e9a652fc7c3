"""``CocoFormatError``: a COCO file or a mask folder that the course cannot use. Taught in: 05_coco_dataset
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class CocoFormatError(ValueError):
    """Bad COCO input; ``problems`` lists every problem found, one per line of the message."""

    def __init__(self, headline: str, problems: Sequence[Any]):
        self.problems = list(problems)
        text = headline + "".join(f"\n  - {p}" for p in self.problems)
        # Non-UTF-8 file names reach here as lone surrogates: show them as escapes, printable anywhere.
        super().__init__(text.encode("utf-8", "backslashreplace").decode("utf-8"))
