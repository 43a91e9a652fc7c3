"""Reading submissions first, and finding a submitted function with what it uses, from the notebook's cells."""

import nbformat
import pytest

from course_lib.course.grading.submission import (
    SubmissionError,
    exercise_source,
    global_reads,
    read_notebook,
    read_submission,
)
from course_lib.utils.paths import REPO_ROOT


def cells(*sources):
    return [nbformat.v4.new_code_cell(s) for s in sources]


def test_the_function_its_helpers_imports_and_constants_in_notebook_order_nothing_else():
    found = exercise_source(cells(
        "import torch\nimport math as m\nfrom course_lib import box_iou, answer",
        "SCALE = 2.0\nmodel = load_everything()  # not used by the answer: never sent",
        "@staticmethod\ndef unused():\n    return 0",
        "def area(b):\n    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) * SCALE",
        "%timeit 1\ndef nms(boxes, scores, t):\n    keep = area(boxes) > m.pi\n    return box_iou(boxes, boxes)[keep]\n"
        "nms = check_nms(nms)",
        "def nms(boxes, scores, t):\n    return 'defined after the check: not the one handed in'"), "check_nms")
    texts = [text for text, _ in found.parts]
    assert found.function == "nms" and found.call_cell == 4
    assert texts[0].startswith("import math") and "from course_lib import box_iou" in texts[1]
    assert texts[2] == "SCALE = 2.0" and texts[3].startswith("def area") and texts[4].startswith("def nms")
    assert [required for _, required in found.parts] == [False, False, False, False, True]
    assert "load_everything" not in found.source and "unused" not in found.source
    assert "not the one handed in" not in found.source


def test_an_earlier_exercise_is_reported_so_the_grader_can_lend_the_courses_version():
    found = exercise_source(cells(
        "def box_iou(a, b):\n    return a\nbox_iou = check_box_iou(box_iou)",
        "def nms(boxes, scores, t):\n    return box_iou(boxes, boxes)\nnms = check_nms(nms)"), "check_nms")
    assert found.exercises_used == {"box_iou": "check_box_iou"}
    assert [t for t, _ in found.without(["box_iou"])] == [found.parts[-1][0]]


def test_decorators_stay_with_their_definition_and_locals_are_not_globals():
    found = exercise_source(cells(
        "import dataclasses\n@dataclasses.dataclass\nclass P:\n    x: int",
        "keep = 'a global that the function shadows'",
        "def f(n):\n    keep = [P(i) for i in range(n)]\n    return keep\nf = check_f(f)"), "check_f")
    assert found.parts[1][0].startswith("@dataclasses.dataclass\nclass P")
    assert "shadows" not in found.source
    assert global_reads("def f(n):\n    keep = n\n    return keep + len(G)") == {"G"}


def test_what_cannot_be_found_is_none_or_empty():
    assert exercise_source(cells("x = 1"), "check_nms") is None
    handed_in = exercise_source(cells("from course_lib import nms\nnms = check_nms(nms)"), "check_nms")
    assert handed_in.parts == [] and handed_in.function == "nms"
    lambda_ = exercise_source(cells("nms = check_nms(lambda b, s, t: b)"), "check_nms")
    assert lambda_ is None
    broken = exercise_source(cells("def nms(:", "def nms(b, s, t):\n    return b\nnms = check_nms(nms)"), "check_nms")
    assert broken.parts[-1][0].startswith("def nms(b, s, t)")


def test_refused_submissions_name_the_file_and_the_reason(tmp_path):
    with pytest.raises(SubmissionError, match="no such notebook"):
        read_notebook(tmp_path / "missing.ipynb")
    (tmp_path / "bad.ipynb").write_text("{")
    with pytest.raises(SubmissionError, match=r"bad.ipynb: not a Jupyter notebook"):
        read_notebook(tmp_path / "bad.ipynb")
    (tmp_path / "link.ipynb").symlink_to(REPO_ROOT / "solutions" / "00_overview.ipynb")
    with pytest.raises(SubmissionError, match="symbolic link"):
        read_notebook(tmp_path / "link.ipynb")
    (tmp_path / "folder.ipynb").mkdir()
    with pytest.raises(SubmissionError, match="a folder"):
        read_notebook(tmp_path / "folder.ipynb")
    student = tmp_path / "alice"
    (student / "data" / "sub").mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), student / "00_overview.ipynb")
    (student / "data" / "sub" / "ok.txt").write_text("fine")
    sub = read_submission(student / "00_overview.ipynb", "00_overview")
    assert sub.student == "alice" and sub.data_dir == student / "data"
    (student / "data" / "sub" / "fifo").unlink(missing_ok=True)
    import os

    os.mkfifo(student / "data" / "sub" / "fifo")
    with pytest.raises(SubmissionError, match="not a regular file"):
        read_submission(student / "00_overview.ipynb", "00_overview")
