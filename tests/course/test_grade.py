"""The instructors' grading command: honest, wrong, forged, crashing, looping and memory-eating notebooks.

Every route a student might take to marks without the work earns nothing: printed PASS lines, handing in
the reference, calling torchvision's or course_lib's op, monkeypatching the comparison or writing the
progress file. Each test grades real kernels, so the fixtures are tiny notebooks.
"""

import csv
import json
from pathlib import Path

import nbformat
import pytest

from course_lib.course import grade
from course_lib.utils.errors import CommandError
from course_lib.utils.paths import REPO_ROOT as ROOT

pytestmark = pytest.mark.kernel

SETUP = "import torch\nfrom course_lib import answer, check_filter_detections, check_binarize_masks"
SOLVED_FILTER = ("def filter_detections(output, score_threshold):\n"
                 "    keep = output['scores'] >= score_threshold\n"
                 "    return {k: v[keep] for k, v in output.items()}\n"
                 "filter_detections = check_filter_detections(filter_detections)")
SOLVED_MASKS = ("def binarize_masks(masks, threshold=0.5):\n    return masks[:, 0] > threshold\n"
                "binarize_masks = check_binarize_masks(binarize_masks)")
STUB_MASKS = ("def binarize_masks(masks, threshold=0.5):\n"
              "    raise NotImplementedError('Exercise: replace this line with your code')\n"
              "binarize_masks = check_binarize_masks(binarize_masks)")
WRONG_MASKS = ("def binarize_masks(masks, threshold=0.5):\n    return masks > threshold\n"
               "binarize_masks = check_binarize_masks(binarize_masks)")
# Right on the notebook's thresholds only: the hidden cases use others.
SPECIAL_CASED_FILTER = ("def filter_detections(output, score_threshold):\n"
                        "    if score_threshold not in (0.5, 0.9, 0.7):\n"
                        "        return output\n"
                        "    keep = output['scores'] >= score_threshold\n"
                        "    return {k: v[keep] for k, v in output.items()}\n"
                        "filter_detections = check_filter_detections(filter_detections)")
QUIZ_ANSWERS = 'answer("overview-maskrcnn-addition", 1)\nanswer("overview-annotation-format", 0)'


def notebook(folder: Path, *cells: str, name: str = "00_overview.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)
    return folder / name


def by_name(report):
    return {e["checker"]: e for e in report["exercises"]}


def statuses(report, names=("check_filter_detections", "check_binarize_masks")):
    """The status of the exercises a fixture answers (notebook 00 may have more, left unanswered)."""
    return {e["checker"]: e["status"] for e in report["exercises"] if e["checker"] in names}


def test_honest_answer_with_one_wrong_exercise_loses_only_that_one_and_quizzes_count(tmp_path, capsys):
    path = notebook(tmp_path / "alice", SETUP, SOLVED_FILTER, WRONG_MASKS, QUIZ_ANSWERS)
    before = path.read_text()
    out_json = tmp_path / "report.json"
    assert grade.main([str(path), "--json", str(out_json), "--timeout", "120"]) == 0
    report = json.loads(out_json.read_text())
    assert statuses(report) == {"check_filter_detections": "pass", "check_binarize_masks": "fail"}
    masks = by_name(report)["check_binarize_masks"]
    assert "case 'typical soft masks'" in masks["message"] and "shape" in masks["message"]
    from course_lib.course.checkers import check_binarize_masks

    assert masks["hint"] == check_binarize_masks.hint[0], "the feedback gives the first hint step, not the answer"
    quizzes = {q["id"]: q["status"] for q in report["quizzes"]}
    assert quizzes["overview-maskrcnn-addition"] == "right" and quizzes["overview-annotation-format"] == "wrong"
    assert list(quizzes.values()).count("unanswered") == len(quizzes) - 2
    n = len(report["exercises"])
    assert (report["score"], report["out_of"]) == (2, n + len(quizzes)) and report["error"] is None
    assert report["student"] == "alice"
    out = capsys.readouterr().out
    assert f"Score: 2/{n + len(quizzes)} (exercises 1/{n}, quizzes 1/{len(quizzes)})" in out
    assert path.read_text() == before, "the student's file is not modified"


def test_forging_routes_on_notebook_00_earn_nothing(tmp_path):
    path = notebook(
        tmp_path / "mallory", SETUP,
        # hand in the reference itself
        "filter_detections = check_filter_detections(check_filter_detections.reference)",
        # make the course's comparison agree with anything, then hand in a wrong answer
        "import course_lib.course.checkers.core as core\ncore.compare = lambda *a, **k: None\n" + WRONG_MASKS,
        # write the progress file and print the verdicts the old grader read
        "from course_lib.course.progress import record\n"
        "record('00_overview', 'exercise:check_binarize_masks', True)\n"
        "print('PASS check_binarize_masks: all 3 cases agree with the reference')\n"
        "print('PASS check_filter_detections: all 5 cases agree with the reference')")
    report = grade.grade(path, timeout=120)
    e = by_name(report)
    assert e["check_filter_detections"]["status"] == "forbidden"
    assert "check_filter_detections.reference" in e["check_filter_detections"]["message"]
    assert e["check_binarize_masks"]["status"] == "fail"
    assert report["score"] == 0 and report["error"] is None


def test_stub_and_printed_pass_lines_earn_nothing(tmp_path):
    report = grade.grade(notebook(tmp_path / "eve", SETUP, STUB_MASKS,
                                  "print('PASS check_binarize_masks: all 3 cases agree with the reference')\n"
                                  "print('PASS check_filter_detections: all 5 cases agree with the reference')"),
                         timeout=120)
    assert statuses(report) == {"check_filter_detections": "not attempted", "check_binarize_masks": "not attempted"}
    assert report["score"] == 0


def test_hidden_cases_catch_an_answer_that_special_cases_the_notebook_inputs(tmp_path):
    path = notebook(tmp_path / "trent", SETUP, SPECIAL_CASED_FILTER, SOLVED_MASKS)
    report = grade.grade(path, timeout=120, seed=7)
    e = by_name(report)
    assert e["check_binarize_masks"]["status"] == "pass" and e["check_binarize_masks"]["points"] == 1
    f = e["check_filter_detections"]
    assert f["status"] == "partial" and f["groups"] == {"notebook": True, "hidden": False}
    assert f["points"] == 0.5 and f["message"].startswith("a hidden case")
    # without hidden cases the special-casing would have earned full marks
    no_hidden = grade.grade(path, timeout=120, hidden=False)
    assert by_name(no_hidden)["check_filter_detections"]["status"] == "pass"


def _solution_cells(name: str) -> list[str]:
    nb = nbformat.read(ROOT / "solutions" / f"{name}.ipynb", as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source]


@pytest.mark.skipif(not (ROOT / "solutions" / "02_anchors_rpn.ipynb").exists(), reason="no solution notebook")
def test_real_notebook_02_answers_earn_full_marks_and_calling_the_op_earns_nothing(tmp_path):
    honest = notebook(tmp_path / "alice", "import torch", *_solution_cells("02_anchors_rpn"),
                      name="02_anchors_rpn.ipynb")
    report = grade.grade(honest, timeout=240)
    assert report["error"] is None
    assert {e["status"] for e in report["exercises"]} == {"pass"} and len(report["exercises"]) == 5
    assert sum(e["points"] for e in report["exercises"]) == 5

    forged = notebook(
        tmp_path / "mallory", "import torch, torchvision\nfrom course_lib import check_box_iou, check_encode_boxes, "
        "check_decode_boxes, check_nms, check_rpn_loss\nfrom course_lib.ops.boxes import nms as _nms  # an alias, taken early",
        "box_iou = check_box_iou(lambda a, b: torchvision.ops.box_iou(a, b))",
        "from course_lib.detection._utils import BoxCoder\n"
        "encode_boxes = check_encode_boxes(lambda g, a, weights=(1., 1., 1., 1.): BoxCoder(weights).encode_single(g, a))",
        "def decode_boxes(deltas, anchors, weights=(1., 1., 1., 1.)):\n"
        "    return torch.ops.torchvision.nms  # never right; the print below claims a pass\n"
        "decode_boxes = check_decode_boxes(decode_boxes)\n"
        "print('PASS check_decode_boxes: all 4 cases agree with the reference')",
        "import sys\ndef nms(boxes, scores, iou_threshold):\n"
        "    sys.setprofile(None)  # switch the grader's tripwire off first\n"
        "    return _nms(boxes, scores, iou_threshold)\nnms = check_nms(nms)",
        "from course_lib.detection.rpn import compute_loss, rpn_loss as _rpn_loss\n"
        "rpn_loss = check_rpn_loss(lambda *args: _rpn_loss(*args))",
        name="02_anchors_rpn.ipynb")
    report = grade.grade(forged, timeout=240)
    e = by_name(report)
    assert e["check_box_iou"]["status"] == "forbidden" and "torchvision.ops" in e["check_box_iou"]["message"]
    assert e["check_encode_boxes"]["status"] == "forbidden" and "BoxCoder.encode" in e["check_encode_boxes"]["message"]
    assert e["check_decode_boxes"]["status"] == "fail"
    assert e["check_nms"]["status"] == "forbidden"
    assert e["check_rpn_loss"]["status"] == "forbidden"
    assert report["score"] == 0


CRASH = "import os\nos._exit(3)"
LOOP = "while True:\n    pass"
MEMORY = "x = bytearray(64 * 2**30)"


def test_a_class_at_once_parallel_equals_serial_and_bad_submissions_get_their_row(tmp_path, capsys):
    subs = tmp_path / "submissions"
    paths = [notebook(subs / "alice", SETUP, SOLVED_FILTER, SOLVED_MASKS, QUIZ_ANSWERS),
             notebook(subs / "bob", SETUP, SOLVED_FILTER, CRASH, SOLVED_MASKS),
             notebook(subs / "carol", SETUP, SOLVED_FILTER, LOOP, SOLVED_MASKS),
             notebook(subs / "dave", SETUP, MEMORY, SOLVED_FILTER)]
    common = [*map(str, paths), "--seed", "3", "--timeout", "25"]
    assert grade.main([*common, "--csv", str(tmp_path / "serial.csv")]) == 0
    assert grade.main([*common, "--jobs", "2", "--csv", str(tmp_path / "par" / "parallel.csv")]) == 0
    serial = (tmp_path / "serial.csv").read_text()
    assert serial == (tmp_path / "par" / "parallel.csv").read_text()
    rows = {r["student"]: r for r in csv.DictReader(serial.splitlines())}
    assert set(rows) == {"alice", "bob", "carol", "dave"}
    assert rows["alice"]["check_filter_detections"] == rows["alice"]["check_binarize_masks"] == "1"
    assert rows["alice"]["quiz:overview-maskrcnn-addition"] == "1" and rows["alice"]["error"] == ""
    assert "died" in rows["bob"]["error"] and rows["bob"]["check_filter_detections"] == "0"
    assert "time limit" in rows["carol"]["error"] and rows["carol"]["check_filter_detections"] == "1"
    assert "MemoryError" in rows["dave"]["error"] and rows["dave"]["score"] == "0"
    feedback = (tmp_path / "feedback" / "carol.md").read_text()
    assert "time limit" in feedback and "`check_binarize_masks`: not run" in feedback
    # job-array pieces (one gradebook per job) merge into the same gradebook
    header, *lines = serial.splitlines()
    (tmp_path / "a.csv").write_text("\n".join([header, lines[0]]) + "\n")
    (tmp_path / "b.csv").write_text("\n".join([header, *lines[1:]]) + "\n")
    assert grade.main(["--merge", str(tmp_path / "b.csv"), str(tmp_path / "a.csv"),
                       "--csv", str(tmp_path / "all.csv")]) == 0
    assert (tmp_path / "all.csv").read_text() == serial


def test_commands_that_cannot_grade_exit_with_a_reason(tmp_path):
    with pytest.raises(CommandError, match="no such notebook"):
        grade.main([str(tmp_path / "missing" / "00_overview.ipynb")])
    (tmp_path / "00_overview.ipynb").write_text("not json")
    with pytest.raises(CommandError, match="not a Jupyter notebook"):
        grade.main([str(tmp_path / "00_overview.ipynb")])
    with pytest.raises(CommandError, match="not a course notebook name"):
        grade.main([str(notebook(tmp_path, "1", name="homework.ipynb"))])
    with pytest.raises(CommandError, match="not a gradebook"):
        (tmp_path / "x.csv").write_text("a,b\n1,2\n")
        grade.main(["--merge", str(tmp_path / "x.csv"), "--csv", str(tmp_path / "out.csv")])
    with pytest.raises(CommandError, match="no notebook"):
        grade.main([])


def test_quiz_answers_are_read_from_the_notebook_source_and_widget_records():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('answer("overview-maskrcnn-addition", 2)\nanswer(qid, 1)'),
                nbformat.v4.new_code_cell('quiz("overview-annotation-format")', outputs=[nbformat.v4.new_output(
                    "display_data", data={grade.QUIZ_MIME: {"id": "overview-annotation-format", "choice": 2}})]),
                nbformat.v4.new_code_cell("this is not python (")]
    assert grade.quiz_answers(nb) == {"overview-maskrcnn-addition": 2, "overview-annotation-format": 2}
    rows = {q["id"]: q for q in grade.grade_quizzes("00_overview", nb)}
    assert rows["overview-maskrcnn-addition"]["status"] == "wrong"
    assert rows["overview-annotation-format"]["status"] == "right"  # graded against the bank here
    assert rows["overview-output-masks"]["status"] == "unanswered"


def test_hidden_cases_of_notebook_05_in_the_grader(tmp_path):
    """Hidden cases drawn in the kernel and in the grader agree (same seed), and catch a dict-order answer."""
    dict_order = ("import torch\nfrom course_lib import check_instance_map_to_target\n"
                  "def instance_map_to_target(instance_map, categories):\n"
                  "    ids = torch.unique(instance_map)\n    ids = ids[ids != 0]\n"
                  "    masks = (instance_map[None] == ids[:, None, None]).to(torch.uint8)\n"
                  "    boxes = torch.zeros((len(ids), 4))\n"
                  "    for i, m in enumerate(masks):\n"
                  "        ys, xs = torch.nonzero(m, as_tuple=True)\n"
                  "        boxes[i] = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()\n"
                  "    labels = torch.tensor(list(categories.values()), dtype=torch.int64)  # the dict's order\n"
                  "    return {'boxes': boxes, 'labels': labels, 'masks': masks}\n"
                  "instance_map_to_target = check_instance_map_to_target(instance_map_to_target)")
    solved = [c for c in _solution_cells("05_coco_dataset") if "def mask_to_annotation" in c]
    path = notebook(tmp_path / "trent", "import numpy as np\nfrom pycocotools import mask as mask_utils",
                    *solved, dict_order, name="05_coco_dataset.ipynb")
    report = grade.grade(path, timeout=120, seed=11)
    e = by_name(report)
    assert e["check_mask_to_coco_annotation"]["status"] == "pass"
    assert e["check_mask_to_coco_annotation"]["groups"] == {"notebook": True, "hidden": True}
    target = e["check_instance_map_to_target"]
    assert target["status"] == "partial" and target["groups"] == {"notebook": True, "hidden": False}
    assert target["message"].startswith("a hidden case") and "labels" in target["message"]
