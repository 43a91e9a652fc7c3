"""The learner's workspace: created once, course updates merged cell by cell with the learner's edits kept."""

import nbformat
import pytest

from course_lib.course import workspace as ws
from course_lib.utils.errors import CommandError


def course_notebook(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) if kind == "code" else nbformat.v4.new_markdown_cell(src)
                for kind, src in cells]
    for i, (cell, (kind, _)) in enumerate(zip(nb.cells, cells, strict=True)):
        cell["id"] = f"c{i:02d}-{kind}"
    nbformat.write(nb, path)
    return nb


def sources(path):
    return [c.source for c in nbformat.read(path, as_version=4).cells]


def test_first_sync_copies_then_an_update_keeps_the_learners_edits_and_adds_what_is_new(tmp_path):
    course, mine = tmp_path / "notebooks", tmp_path / "workspace"
    course.mkdir()
    original = course_notebook(course / "02_anchors_rpn.ipynb", [
        ("markdown", "# Anchors"), ("code", "import torch"), ("code", "def box_iou(a, b):\n    raise NotImplementedError"),
        ("markdown", "A typo here."), ("code", "print('end')")])
    report = ws.sync(mine, course)
    assert report.added == ["02_anchors_rpn.ipynb"] and sources(mine / "02_anchors_rpn.ipynb")[2].endswith("Error")
    # The learner answers the exercise, edits the last cell, adds a cell of their own.
    nb = nbformat.read(mine / "02_anchors_rpn.ipynb", as_version=4)
    nb.cells[2].source = "def box_iou(a, b):\n    return my_answer(a, b)"
    nb.cells[4].source = "print('my end')"
    own = nbformat.v4.new_code_cell("my_notes = 'kept'")
    nb.cells.insert(3, own)
    nbformat.write(nb, mine / "02_anchors_rpn.ipynb")
    assert ws.sync(mine, course).lines() == []  # nothing changed in the course
    # A course update: the typo fixed, the last cell changed too (a conflict), a new cell, a new notebook.
    updated = original
    updated.cells[3].source = "The typo, fixed."
    updated.cells[4].source = "print('the course end')"
    new_cell = nbformat.v4.new_code_cell("print('new in the course')")
    new_cell["id"] = "c99-new"
    updated.cells.insert(2, new_cell)
    nbformat.write(updated, course / "02_anchors_rpn.ipynb")
    course_notebook(course / "03_roi_align.ipynb", [("markdown", "# RoIAlign")])
    report = ws.sync(mine, course)
    assert report.added == ["03_roi_align.ipynb"] and report.updated == ["02_anchors_rpn.ipynb"]
    merged = sources(mine / "02_anchors_rpn.ipynb")
    assert merged == ["# Anchors", "import torch", "print('new in the course')",
                      "def box_iou(a, b):\n    return my_answer(a, b)", "my_notes = 'kept'", "The typo, fixed.",
                      "print('my end')"]
    assert report.conflicts == {"02_anchors_rpn.ipynb": [6]}
    assert "cells 6 changed in the course and in your copy" in report.lines()[-1]
    assert sources(mine / "02_anchors_rpn.course-update.ipynb")[-1] == "print('the course end')"
    backups = list((mine / ".course" / "backups").glob("02_anchors_rpn.*.ipynb"))
    assert len(backups) == 1 and "my_notes = 'kept'" in sources(backups[0])


def test_reset_gives_a_fresh_copy_and_keeps_the_old_one(tmp_path):
    course, mine = tmp_path / "notebooks", tmp_path / "workspace"
    course.mkdir()
    course_notebook(course / "02_anchors_rpn.ipynb", [("code", "x = 1")])
    ws.sync(mine, course)
    nb = nbformat.read(mine / "02_anchors_rpn.ipynb", as_version=4)
    nb.cells[0].source = "x = 'mine'"
    nbformat.write(nb, mine / "02_anchors_rpn.ipynb")
    fresh, kept = ws.reset("02", mine, course)
    assert sources(fresh) == ["x = 1"] and sources(kept) == ["x = 'mine'"] and kept.name.startswith("02_anchors_rpn.")
    with pytest.raises(CommandError, match="no course notebook '9'"):
        ws.reset("9", mine, course)


def test_the_workspace_is_outside_git_and_movable(monkeypatch, tmp_path):
    from course_lib.utils.paths import REPO_ROOT

    assert "/workspace/" in (REPO_ROOT / ".gitignore").read_text().split()
    monkeypatch.setenv(ws.WORKSPACE_ENV, str(tmp_path / "elsewhere"))
    assert ws.workspace_dir() == tmp_path / "elsewhere"
