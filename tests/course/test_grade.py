"""The instructors' grading command on solved, half-solved, failing, raising and endless notebooks."""

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from course_lib.course import grade
from course_lib.utils.paths import REPO_ROOT as ROOT

SETUP = "from course_lib import check_filter_detections, check_binarize_masks"
SOLVED_FILTER = ("def filter_detections(output, score_threshold):\n"
                 "    keep = output['scores'] >= score_threshold\n"
                 "    return {k: v[keep] for k, v in output.items()}\n"
                 "filter_detections = check_filter_detections(filter_detections)")
STUB_MASKS = ("def binarize_masks(masks, threshold=0.5):\n"
              "    raise NotImplementedError('Exercise: replace this line with your code')\n"
              "binarize_masks = check_binarize_masks(binarize_masks)")
WRONG_MASKS = ("def binarize_masks(masks, threshold=0.5):\n    return masks > threshold\n"
               "binarize_masks = check_binarize_masks(binarize_masks)")


def notebook(tmp_path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / "00_overview.ipynb"
    nbformat.write(nb, path)
    return path


def statuses(report):
    return {e["checker"]: e["status"] for e in report["exercises"]}


def test_half_solved_notebook(tmp_path, capsys):
    path = notebook(tmp_path, SETUP, SOLVED_FILTER, STUB_MASKS)
    before = path.read_text()
    out_json = tmp_path / "report.json"
    assert grade.main([str(path), "--json", str(out_json), "--timeout", "120"]) == 0
    report = json.loads(out_json.read_text())
    assert statuses(report) == {"check_filter_detections": "pass", "check_binarize_masks": "not attempted"}
    assert (report["score"], report["out_of"]) == (1, 2) and report["error"] is None
    assert "Score: 1/2" in capsys.readouterr().out
    assert path.read_text() == before, "the student's file is not modified"


def test_wrong_answer_reports_the_checker_message(tmp_path):
    report = grade.grade(notebook(tmp_path, SETUP, SOLVED_FILTER, WRONG_MASKS), timeout=120)
    e = {x["checker"]: x for x in report["exercises"]}["check_binarize_masks"]
    assert e["status"] == "fail" and "case 'typical soft masks'" in e["message"] and "shape" in e["message"]
    assert "FAIL check_binarize_masks" in grade.format_grade_report(report)


def test_notebook_that_raises_reports_where_and_what_was_not_run(tmp_path):
    report = grade.grade(notebook(tmp_path, SETUP, SOLVED_FILTER, "1 / 0", STUB_MASKS), timeout=120)
    assert "cell 2 raised" in report["error"] and "ZeroDivisionError" in report["error"]
    assert statuses(report) == {"check_filter_detections": "pass", "check_binarize_masks": "not run"}


def test_notebook_that_loops_forever_is_stopped_at_the_time_limit(tmp_path):
    report = grade.grade(notebook(tmp_path, SETUP, "while True:\n    pass", SOLVED_FILTER), timeout=15)
    assert "time limit" in report["error"] and report["seconds"] < 60
    assert report["score"] == 0 and set(statuses(report).values()) == {"not run"}


@pytest.mark.skipif(not (ROOT / "solutions" / "00_overview.ipynb").exists(), reason="no solution notebook")
def test_fully_solved_course_notebook_scores_full_marks(tmp_path):
    path = tmp_path / "00_overview.ipynb"
    shutil.copy(ROOT / "solutions" / "00_overview.ipynb", path)
    report = grade.grade(path, timeout=300)
    assert report["error"] is None and report["score"] == report["out_of"] == 2
