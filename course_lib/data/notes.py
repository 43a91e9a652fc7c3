"""What an import did that is not an error but must not go unsaid: printed as ``note:`` or ``warning:``
lines before ``coco build`` reports the file it wrote. Taught in: 05_coco_dataset
"""

from __future__ import annotations

from collections.abc import Sequence

SHOWN = 20  # lines printed per kind; the rest are counted


def print_notes(notes: Sequence[str], kind: str = "note", limit: int = SHOWN) -> None:
    """Print each line as ``<kind>: <text>``, at most ``limit`` of them, then how many more there were."""
    for text in notes[:limit]:
        print(f"{kind}: {text}")
    if len(notes) > limit:
        print(f"{kind}: ... and {len(notes) - limit} more")
