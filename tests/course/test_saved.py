"""Saved functions: a passing exercise is kept in the workspace with what it uses; a failing one never replaces it."""

import importlib.util
import json
import sys

import pytest

from course_lib.course import saved
from course_lib.course.checkers import check_box_iou, check_nms

ANSWERS = '''
import torch
import torch.nn.functional as F


def area(b):
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def box_iou(boxes1, boxes2):
    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area(boxes1)[:, None] + area(boxes2) - inter)


def wrong_box_iou(boxes1, boxes2):
    return torch.zeros(len(boxes1), len(boxes2))
'''


@pytest.fixture
def answers(tmp_path, monkeypatch):
    path = tmp_path / "learner_cells.py"
    path.write_text(ANSWERS)
    spec = importlib.util.spec_from_file_location("learner_cells", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "learner_cells", module)
    spec.loader.exec_module(module)
    monkeypatch.setenv(saved.WORKSPACE_ENV, str(tmp_path / "workspace"))
    return module


def test_a_passing_function_is_saved_with_its_helpers_and_imports(answers, capsys):
    assert check_box_iou(answers.box_iou) is answers.box_iou
    out = capsys.readouterr().out
    assert "Saved box_iou in saved/02_anchors_rpn.py" in out
    text = (saved.saved_dir() / "02_anchors_rpn.py").read_text()
    assert "import torch\n" in text and "def area(b)" in text and "def box_iou(boxes1, boxes2)" in text
    assert text.index("def area") < text.index("def box_iou") and "F" not in text.split("def area")[0].split()
    index = json.loads((saved.saved_dir() / "index.json").read_text())
    assert index["02_anchors_rpn"]["check_box_iou"]["names"] == ["area", "box_iou"]
    namespace = {}
    exec(compile(text, "saved", "exec"), namespace)  # the saved module runs on its own
    assert namespace["box_iou"](*check_box_iou.cases()[0].args).shape == (3, 5)
    assert "saved from 02_anchors_rpn: box_iou" in saved.summary_lines()[0]


def test_a_later_failing_version_does_not_replace_the_passing_one(answers, capsys):
    check_box_iou(answers.box_iou)
    before = (saved.saved_dir() / "02_anchors_rpn.py").read_text()
    check_box_iou(answers.wrong_box_iou)
    assert "Your passing box_iou from" in capsys.readouterr().out
    assert (saved.saved_dir() / "02_anchors_rpn.py").read_text() == before


def test_outside_a_workspace_nothing_is_saved(monkeypatch, capsys, answers):
    monkeypatch.delenv(saved.WORKSPACE_ENV)
    check_box_iou(answers.box_iou)
    assert "Saved" not in capsys.readouterr().out and saved.read_index() == {}
    check_nms(lambda boxes, scores, t: boxes)  # a lambda with no source kept is refused politely


@pytest.mark.kernel
def test_functions_written_in_notebook_cells_are_saved_from_a_kernel(tmp_path):
    import nbformat

    from course_lib.course.sandbox import execute_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in (
        "import torch\nfrom course_lib import check_box_iou",
        ANSWERS.split("def box_iou")[0].split("import torch.nn.functional as F")[1],
        "def box_iou" + ANSWERS.split("def box_iou")[1].split("def wrong_box_iou")[0]
        + "box_iou = check_box_iou(box_iou)")]
    run = execute_notebook(nb, tmp_path, timeout=120, env={saved.WORKSPACE_ENV: str(tmp_path / "ws")})
    assert run.error is None, run.error
    text = (tmp_path / "ws" / "saved" / "02_anchors_rpn.py").read_text()
    assert "def area(b)" in text and "def box_iou" in text and "import torch" in text


def test_your_parts_plug_into_the_course_model_and_a_wrong_one_is_named_by_its_stage(answers, tmp_path, monkeypatch):
    from course_lib import plug_in
    from course_lib.course.checkers import check_roi_align_one_box
    from course_lib.detection.mask_rcnn import load_course_mask_rcnn
    from course_lib.lessons import nb07_your_mask_rcnn as lesson

    monkeypatch.setenv("COURSE_PROGRESS_FILE", str(tmp_path / "progress.json"))
    check_box_iou(answers.box_iou)
    (tmp_path / "one_box.py").write_text(
        "from course_lib.ops.roi_align import roi_align_one_box as course_one_box\n\n\n"
        "def roi_align_one_box(feature, box, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):\n"
        "    return course_one_box(feature, box, output_size, spatial_scale, sampling_ratio, aligned)\n")
    spec = importlib.util.spec_from_file_location("one_box_cells", tmp_path / "one_box.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "one_box_cells", module)
    spec.loader.exec_module(module)
    check_roi_align_one_box(module.roi_align_one_box)
    from course_lib.course.parts import your_parts

    functions, rows = your_parts()
    assert set(functions) == {"box_iou", "roi_align"}
    whose = {part: (who, why) for part, who, why in rows}
    assert whose["box_iou"][0] == "yours" and whose["nms"] == ("the course's", "check_nms (02_anchors_rpn): not done yet")
    reference = load_course_mask_rcnn().eval()
    yours = plug_in(load_course_mask_rcnn().eval(), **functions)
    image = lesson.shapes_sample(seed=1, index=7)[0]
    assert lesson.first_parting(reference, yours, image) is None
    import torch

    plug_in(yours, nms=lambda boxes, scores, t: torch.argsort(scores, descending=True))  # a wrong NMS: keeps all
    stage, how = lesson.first_parting(reference, yours, image)
    assert stage == "rpn.filter_proposals", (stage, how)


@pytest.mark.kernel
def test_a_learner_who_did_02_sees_their_functions_in_07s_model(tmp_path, monkeypatch):
    """Notebook 02 run from a workspace saves its five exercises; 07's parts then come from them and agree."""
    import nbformat

    from course_lib import plug_in
    from course_lib.course.parts import your_parts
    from course_lib.course.sandbox import execute_notebook
    from course_lib.detection.mask_rcnn import load_course_mask_rcnn
    from course_lib.lessons import nb07_your_mask_rcnn as lesson
    from course_lib.utils.paths import REPO_ROOT

    nb = nbformat.read(REPO_ROOT / "solutions" / "02_anchors_rpn.ipynb", as_version=4)
    workspace = tmp_path / "workspace"
    env = {saved.WORKSPACE_ENV: str(workspace), "COURSE_PROGRESS_FILE": str(tmp_path / "progress.json")}
    run = execute_notebook(nb, tmp_path, timeout=300, env=env)
    assert run.error is None, run.error
    monkeypatch.setenv(saved.WORKSPACE_ENV, str(workspace))
    monkeypatch.setenv("COURSE_PROGRESS_FILE", str(tmp_path / "progress.json"))
    functions, rows = your_parts()
    assert {"box_iou", "nms", "encode_boxes", "decode_boxes", "rpn_loss"} <= set(functions)
    whose = {part: who for part, who, _ in rows}
    assert whose["nms"] == "yours" and whose["roi_align"] == "the course's"
    image = lesson.shapes_sample(seed=1, index=7)[0]
    assert lesson.first_parting(load_course_mask_rcnn().eval(), plug_in(load_course_mask_rcnn().eval(), **functions),
                                image) is None
