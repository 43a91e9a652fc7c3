"""The learner's workspace: their own copy of the notebooks, which no command overwrites.

``./course lab`` opens the workspace (``workspace/`` at the repository's root, ignored by git; ``COURSE_WORKSPACE``
moves it), creating it on first run. Each time, ``sync`` brings the course's changes in the way JupyterHub
courses distribute updates (nbgitpuller's rule: the learner's edits win):

* a notebook the workspace lacks is copied in;
* for a notebook the learner has, the cells are merged by their cell id against the course's version the copy
  was last synced from (kept in ``.course/base/``): a cell the learner did not edit takes the course's new
  version; a cell the learner edited stays theirs; where both changed, theirs stays, the course's new notebook
  is written beside as ``NN_name.course-update.ipynb`` and the report names the cells; cells the learner added
  stay where they were, new course cells appear in the course's place. Before a merged notebook replaces the
  learner's file, their file is kept under ``.course/backups/``.

``./course reset NN`` gives a fresh copy of notebook NN and keeps the old one as ``NN_name.<date-time>.ipynb``.
The repository's ``notebooks/`` stays what ``./course build`` generates (headless runs and tests use it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from course_lib.course.saved import WORKSPACE_ENV
from course_lib.utils.errors import CommandError
from course_lib.utils.files import write_atomic
from course_lib.utils.paths import REPO_ROOT

STATE = ".course"  # the workspace's own records: base/ (last synced course versions), backups/


def workspace_dir() -> Path:
    """Where the learner's notebooks live: ``COURSE_WORKSPACE``, else ``workspace/`` beside ``notebooks/``."""
    return Path(os.environ.get(WORKSPACE_ENV) or REPO_ROOT / "workspace").expanduser().resolve()


def course_notebooks_dir() -> Path:
    return REPO_ROOT / "notebooks"


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # course changes merged in
    conflicts: dict[str, list[int]] = field(default_factory=dict)  # notebook -> cells both changed (kept theirs)

    def lines(self) -> list[str]:
        out = [f"new notebook in your workspace: {name}" for name in self.added]
        out += [f"course update merged into {name} (your edits kept)" for name in self.updated]
        out += [f"{name}: cells {', '.join(map(str, cells))} changed in the course and in your copy; yours are kept, "
                f"the course's version is in {Path(name).stem}.course-update.ipynb" for name, cells in self.conflicts.items()]
        return out


def _read(path: Path):
    import nbformat

    return nbformat.read(path, as_version=4)


def _write(nb, path: Path) -> None:
    import nbformat

    write_atomic(path, lambda f: f.write(nbformat.writes(nb)), mode="w")


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def merge_cells(base, local, remote) -> tuple[object, list[int]]:
    """Three-way merge of notebooks by cell id; the learner's edits win. Returns (merged, indices in the merged
    notebook of the cells both sides changed)."""
    import copy

    base_cells = {c.get("id"): c for c in base.cells}
    local_cells = {c.get("id"): c for c in local.cells}
    remote_ids = {c.get("id") for c in remote.cells}
    merged = copy.deepcopy(remote)
    cells, conflicts = [], []
    for cell in remote.cells:
        cid = cell.get("id")
        if cid in local_cells and cid in base_cells:
            mine, old = local_cells[cid], base_cells[cid]
            edited = _source(mine) != _source(old) or mine.get("cell_type") != old.get("cell_type")
            course_changed = _source(cell) != _source(old)
            if edited and course_changed:
                conflicts.append(len(cells))
            cells.append(copy.deepcopy(mine if edited or not course_changed else cell))
        elif cid in base_cells:  # the learner deleted it
            if _source(cell) != _source(base_cells[cid]):
                conflicts.append(len(cells))
                cells.append(copy.deepcopy(cell))  # the course changed it since: bring it back, say so
        else:
            cells.append(copy.deepcopy(cell))  # new in the course
    # Cells only the learner has: their own additions, and course cells the course removed that they edited.
    placed = {c.get("id") for c in cells}
    for i, cell in enumerate(local.cells):
        cid = cell.get("id")
        if cid in placed:
            continue
        removed_untouched = cid in base_cells and cid not in remote_ids and _source(cell) == _source(base_cells[cid])
        if removed_untouched:
            continue
        anchor = next((j for j in range(i - 1, -1, -1) if local.cells[j].get("id") in placed), None)
        at = 0 if anchor is None else 1 + next(k for k, c in enumerate(cells) if c.get("id") == local.cells[anchor].get("id"))
        cells.insert(at, copy.deepcopy(cell))
        conflicts = [k + 1 if k >= at else k for k in conflicts]
        placed.add(cid)
    merged.cells = cells
    merged.metadata = copy.deepcopy(local.metadata)
    return merged, conflicts


def sync(workspace: Path | None = None, source: Path | None = None) -> SyncReport:
    """Bring new and changed course notebooks into the workspace without losing a learner's edit."""
    workspace = workspace or workspace_dir()
    source = source or course_notebooks_dir()
    base_dir = workspace / STATE / "base"
    base_dir.mkdir(parents=True, exist_ok=True)
    report = SyncReport()
    for course_path in sorted(source.glob("[0-9][0-9]_*.ipynb")):
        name = course_path.name
        mine, base = workspace / name, base_dir / name
        remote = _read(course_path)
        if not mine.exists():
            shutil.copyfile(course_path, mine)
            shutil.copyfile(course_path, base)
            report.added.append(name)
            continue
        if not base.exists():  # a copy made before the workspace kept records: take it as the base
            shutil.copyfile(mine, base)
        previous = _read(base)
        if [(_source(c), c.get("id")) for c in previous.cells] == [(_source(c), c.get("id")) for c in remote.cells]:
            continue  # the course did not change this notebook
        local = _read(mine)
        merged, conflicts = merge_cells(previous, local, remote)
        backups = workspace / STATE / "backups"
        backups.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mine, backups / f"{course_path.stem}.{time.strftime('%Y%m%d-%H%M%S')}.ipynb")
        _write(merged, mine)
        shutil.copyfile(course_path, base)
        report.updated.append(name)
        if conflicts:
            shutil.copyfile(course_path, workspace / f"{course_path.stem}.course-update.ipynb")
            report.conflicts[name] = conflicts
    return report


def open_workspace() -> Path:
    """Create or update the workspace; print what changed; return its folder."""
    workspace = workspace_dir()
    first = not workspace.exists()
    workspace.mkdir(parents=True, exist_ok=True)
    report = sync(workspace)
    if first:
        print(f"course: your workspace is {workspace}: your own copy of the notebooks (no command overwrites it)")
    for line in report.lines() if not first else []:
        print(f"course: {line}")
    return workspace


def reset(number: str, workspace: Path | None = None, source: Path | None = None) -> tuple[Path, Path | None]:
    """A fresh copy of notebook ``number`` (e.g. ``"02"``); the old one is kept under a dated name."""
    workspace = workspace or workspace_dir()
    source = source or course_notebooks_dir()
    matches = sorted(source.glob(f"{number}_*.ipynb")) if number.isdigit() and len(number) == 2 else []
    if not matches:
        known = ", ".join(p.name[:2] for p in sorted(source.glob("[0-9][0-9]_*.ipynb")))
        raise CommandError(f"no course notebook {number!r} (known: {known})")
    course_path = matches[0]
    mine = workspace / course_path.name
    kept = None
    if mine.exists():
        kept = workspace / f"{course_path.stem}.{time.strftime('%Y%m%d-%H%M%S')}.ipynb"
        if kept.exists():
            raise CommandError(f"{kept} exists already; try again in a second")
        mine.rename(kept)
    workspace.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(course_path, mine)
    (workspace / STATE / "base").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(course_path, workspace / STATE / "base" / course_path.name)
    return mine, kept


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="course reset", description="A fresh copy of one notebook in your workspace; "
                                "your old copy is kept under a dated name.")
    p.add_argument("number", help="the notebook's number, e.g. 02")
    args = p.parse_args(argv)
    mine, kept = reset(args.number)
    print(f"fresh copy: {mine}" + (f"; your previous copy is kept as {kept.name}" if kept else ""))
    return 0
