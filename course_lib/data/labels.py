"""Label spellings that mean one category. Taught in: 05_coco_dataset (used by the importers of ``coco build``).

``apple``, ``Apple`` and ``apple `` typed in three annotation files name one class; kept apart they would be
three categories, and the model would learn three classes from one. So labels are compared by
``label_key`` (surrounding spaces removed, case folded) and each group of spellings becomes one category,
named by its most frequent spelling (surrounding spaces removed; a tie goes to the all-lowercase one, then to
the first in sorted order). Every merge is reported in a note naming the files of each spelling.

Spaces inside a label are part of its name: ``red apple`` and ``red  apple`` stay two categories, and a note
names both (rename one if they are one class). Nothing else is merged (``red_apple`` is another name).
"""

from __future__ import annotations

from collections.abc import Sequence

FILES_SHOWN = 3  # files named per spelling in a note


def label_key(name: str) -> str:
    """What two spellings of one label share: the name without surrounding spaces, case folded."""
    return name.strip().casefold()


def _files(files: list[str]) -> str:
    unique = list(dict.fromkeys(files))
    more = len(unique) - FILES_SHOWN
    return ", ".join(unique[:FILES_SHOWN]) + (f" and {more} more" if more > 0 else "")


class LabelSpellings:
    """The labels an importer found, with where each spelling was seen.

    ``add(label, file)`` for every labelled shape; then ``category_of(categories)`` gives
    ``{spelling: category name}`` (a spelling absent from it is unknown: its key matches no given
    category) with the category names, and ``notes`` says what was merged.
    """

    def __init__(self) -> None:
        self.files: dict[str, list[str]] = {}  # spelling -> files it was seen in, one entry per use

    def add(self, label: str, file: str) -> None:
        self.files.setdefault(label, []).append(file)

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for spelling in sorted(self.files):
            groups.setdefault(label_key(spelling), []).append(spelling)
        return groups

    def category_of(self, categories: Sequence[str] | None = None) -> tuple[dict[str, str], list[str]]:
        """``({spelling: category name}, category names in id order)``.

        Without ``categories`` the names are each group's most frequent spelling, sorted; with them, a
        spelling belongs to the given name with its key (``ValueError`` when two given names share one).
        """
        groups = self._groups()
        if categories is None:
            def chosen(spellings):
                stripped = {}
                for s in spellings:
                    stripped[s.strip()] = stripped.get(s.strip(), 0) + len(self.files[s])
                return min(stripped, key=lambda s: (-stripped[s], s != s.casefold(), s))
            names = sorted(chosen(spellings) for spellings in groups.values())
        else:
            names = list(categories)
            keys: dict[str, str] = {}
            for n in names:
                if label_key(n) in keys:
                    raise ValueError(f"categories {keys[label_key(n)]!r} and {n!r} differ only in case or "
                                     "surrounding spaces: labels are matched without them, so they would be one")
                keys[label_key(n)] = n
        by_key = {label_key(n): n for n in names}
        mapping = {s: by_key[k] for k, spellings in groups.items() if k in by_key for s in spellings}
        return mapping, names

    def notes(self, mapping: dict[str, str]) -> list[str]:
        """One line per category reached by another spelling than its name, naming the files of each; one
        per group of categories whose names differ only in inner spaces."""
        merged: dict[str, list[str]] = {}
        for spelling, name in mapping.items():
            merged.setdefault(name, []).append(spelling)
        notes = []
        for name, spellings in sorted(merged.items()):
            if spellings != [name]:
                seen = "; ".join(f"{s!r} in {_files(self.files[s])}" for s in spellings)
                notes.append(f"labels {seen} are one category, {name!r} (case and surrounding spaces are "
                             "ignored)")
        inner: dict[str, list[str]] = {}
        for name in sorted(set(mapping.values())):
            inner.setdefault(" ".join(label_key(name).split()), []).append(name)
        for names in inner.values():
            if len(names) > 1:
                seen = "; ".join(f"{n!r} in {_files([f for s, m in mapping.items() if m == n for f in self.files[s]])}"
                                 for n in names)
                notes.append(f"labels {seen} differ only in the spaces inside them and stay {len(names)} "
                             "categories: rename them if they are one")
        return notes

