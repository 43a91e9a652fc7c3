"""Exercise verdicts from the sandboxed probe: honest work earns full marks, every class of shortcut earns nothing.

Each case is a notebook's code cells (as a student could write them) graded on notebook 02's ``check_box_iou``
(or ``check_nms``) by the real probe in a real sandbox. The routes come in classes: hand in or call the
course's or torchvision's implementation (any way of reaching it: import, file, loaded library, renamed
code), return something that is not plain data, forge the probe's messages, read secrets, end or stall the
probe. None can reach a reference output: those exist only in the grader.
"""

import dataclasses

import pytest
import torch

from course_lib.course import checkers
from course_lib.course.checkers.core import Case
from course_lib.course.grading.exercises import Outcome, grade_exercises, verdict
from course_lib.course.grading.isolation import Limits, engine_problem
from course_lib.utils.paths import REPO_ROOT

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(engine_problem() is not None, reason=f"no isolation engine: {engine_problem()}")]

IOU = checkers.check_box_iou
HONEST_IOU = """
import torch
def box_iou(boxes1, boxes2):
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2 - inter)
"""
CHECK = "box_iou = check_box_iou(box_iou)"


def grade(tmp_path, *cells, expected=((IOU, 1.0),), seed=11, timeout=60, limits=Limits()):  # noqa: B008
    nb_cells = [{"cell_type": "code", "source": c} for c in cells]
    work = tmp_path / f"probe{len(list(tmp_path.iterdir()))}"
    work.mkdir()
    rows, sources = grade_exercises(nb_cells, list(expected), work, seed, True, timeout, limits)
    return rows


def test_honest_work_earns_full_marks_with_the_standard_library(tmp_path):
    rows = grade(tmp_path, "import collections, dataclasses, itertools, logging, torch", """
Pair = collections.namedtuple("Pair", "i j")

@dataclasses.dataclass
class Area:
    boxes: torch.Tensor
    def value(self):
        return (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])

def box_iou(boxes1, boxes2):
    logging.warning("computing %d x %d IoUs", len(boxes1), len(boxes2))
    out = torch.zeros(len(boxes1), len(boxes2))
    for p in itertools.starmap(Pair, itertools.product(range(len(boxes1)), range(len(boxes2)))):
        a, b = boxes1[p.i], boxes2[p.j]
        w = (torch.min(a[2], b[2]) - torch.max(a[0], b[0])).clamp(min=0)
        h = (torch.min(a[3], b[3]) - torch.max(a[1], b[1])).clamp(min=0)
        inter = w * h
        out[p.i, p.j] = inter / (Area(a[None]).value()[0] + Area(b[None]).value()[0] - inter)
    return out
""", CHECK)
    assert rows[0]["status"] == "pass" and rows[0]["points"] == 1.0, rows


def test_a_learners_earlier_failing_function_is_replaced_by_the_courses_as_in_the_notebook(tmp_path):
    wrong_iou = "import torch\ndef box_iou(a, b):\n    return torch.zeros(len(a), len(b))\n" + CHECK
    nms = """
def nms(boxes, scores, iou_threshold):
    order = scores.argsort(descending=True)
    keep = []
    while order.numel():
        i = order[0]
        keep.append(int(i))
        order = order[1:][box_iou(boxes[i][None], boxes[order[1:]])[0] <= iou_threshold]
    return torch.tensor(keep, dtype=torch.int64)
nms = check_nms(nms)
"""
    rows = grade(tmp_path, wrong_iou, nms, expected=[(IOU, 1.0), (checkers.check_nms, 1.0)])
    assert [r["status"] for r in rows] == ["fail", "pass"], rows


SHORTCUTS = {
    "handing in the course's function": "from course_lib import box_iou\n" + CHECK,
    "wrapping the course's function": "from course_lib.ops.boxes import box_iou as theirs\n"
                                      "def box_iou(a, b):\n    return theirs(a, b)\n" + CHECK,
    "calling torchvision's op": "import torchvision\ndef box_iou(a, b):\n"
                                "    return torchvision.ops.box_iou(a, b)\n" + CHECK,
    "torchvision's op through torch.ops after loading its library": """
import glob, sys, torch
def box_iou(a, b):
    for lib in [f for d in sys.path for f in glob.glob(d + "/torchvision/_C*.so")]:
        torch.ops.load_library(lib)
    return torch.ops.torchvision.box_iou(a, b)
""" + CHECK,
    "executing the course's source under another file name": f"""
def box_iou(a, b):
    namespace = {{}}
    exec(compile(open({str(REPO_ROOT / 'course_lib' / 'ops' / 'boxes.py')!r}).read(), "mine.py", "exec"), namespace)
    return namespace["box_iou"](a, b)
""" + CHECK,
    "loading a copy with spec_from_file_location": f"""
import importlib.util
def box_iou(a, b):
    spec = importlib.util.spec_from_file_location("copy", {str(REPO_ROOT / 'course_lib' / 'ops' / 'boxes.py')!r})
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    return module.box_iou(a, b)
""" + CHECK,
    "a renamed code object of the reference": """
import types
from course_lib.ops.boxes import box_iou as reference
box_iou = types.FunctionType(reference.__code__.replace(co_name="mine"), reference.__globals__)
""" + CHECK,
    "patching the grader's comparison from a default argument": """
def box_iou(a, b, _=__import__("course_lib.course.checkers.core", fromlist=["x"]).__setattr__("compare", lambda *x, **k: None)):
    return a
""" + CHECK,
    "a tensor subclass that claims equality": """
import torch
class Agree(torch.Tensor):
    def __eq__(self, other): return True
def box_iou(a, b):
    return torch.zeros(len(a), len(b)).as_subclass(Agree)
""" + CHECK,
    "a float subclass": "class F(float):\n    def __eq__(self, o): return True\n"
                        "def box_iou(a, b):\n    return F(0.5)\n" + CHECK,
    "forging the probe's reply on its channel, then leaving": """
import io, os, struct, torch
def box_iou(a, b):
    buffer = io.BytesIO(); torch.save({"status": "ok", "value": torch.ones(len(a), len(b))}, buffer)
    for fd in range(3, 12):
        try:
            os.write(fd, struct.pack(">Q", len(buffer.getvalue())) + buffer.getvalue())
        except OSError:
            pass
    os._exit(0)
""" + CHECK,
    "hunting the reference's outputs in memory": """
import gc, torch
def box_iou(a, b):
    for obj in gc.get_objects():
        if torch.is_tensor(obj) and obj.shape == (len(a), len(b)) and obj is not a and obj is not b:
            return obj.clone()
    return torch.zeros(len(a), len(b))
""" + CHECK,
    "reading the seed and the grader's secrets": """
import os, torch
def box_iou(a, b):
    seen = str(dict(os.environ)) + open("/proc/1/cmdline").read()
    return torch.full((len(a), len(b)), float(len(seen) % 7))
""" + CHECK,
    "ending the probe": "import os\ndef box_iou(a, b):\n    os._exit(0)\n" + CHECK,
    "killing everything it can see": "import os, signal\ndef box_iou(a, b):\n"
                                     "    [os.kill(int(p), signal.SIGKILL) for p in os.listdir('/proc') "
                                     "if p.isdigit() and int(p) != os.getpid()]\n    return a\n" + CHECK,
    "a helper handed to this exercise's own checker, to be lent its reference": """
def helper(a, b):
    return a
helper = check_box_iou(helper)
def box_iou(a, b):
    return helper(a, b)
""" + CHECK,
    "the stub": "def box_iou(a, b):\n    raise NotImplementedError('Exercise')\n" + CHECK,
}


@pytest.mark.parametrize("route", list(SHORTCUTS))
def test_every_shortcut_earns_nothing(tmp_path, route):
    rows = grade(tmp_path, SHORTCUTS[route])
    assert rows[0]["points"] == 0.0 and rows[0]["status"] in ("fail", "not attempted"), rows


def test_an_endless_loop_and_a_huge_answer_each_get_their_reason(tmp_path):
    loop = grade(tmp_path, "def box_iou(a, b):\n    while True:\n        pass\n" + CHECK, timeout=8)
    assert loop[0]["points"] == 0 and "time limit" in loop[0]["message"], loop
    huge = grade(tmp_path, "import torch\ndef box_iou(a, b):\n    return torch.zeros(2**31)\n" + CHECK,
                 limits=Limits(memory_bytes=6 * 2**30))
    assert huge[0]["points"] == 0 and huge[0]["message"], huge


def test_only_earlier_failed_exercises_are_lent_and_never_a_forbidden_function():
    from course_lib.course.grading.exercises import lendable

    nms, iou = checkers.check_nms, checkers.check_box_iou
    assert lendable(nms, iou, {"check_box_iou": False})
    assert not lendable(nms, iou, {"check_box_iou": True}) and not lendable(nms, iou, {})
    assert not lendable(iou, iou, {"check_box_iou": False})
    reference = f"{iou.reference.__module__}.{iou.reference.__qualname__}"
    forbids_it = dataclasses.replace(nms, notebook=None, forbidden=(reference,))
    assert not lendable(forbids_it, iou, {"check_box_iou": False})


def test_verdict_gives_half_for_one_group_and_names_the_first_failing_case():
    t = torch.tensor
    outcomes = [Outcome("notebook", "a", "ok", t([1.0]), t([1.0])),
                Outcome("hidden", "b", "ok", t([2.0]), t([3.0])),
                Outcome("hidden", "c", "raised", "ValueError: no", t([1.0]))]
    row = verdict(IOU, 2.0, outcomes)
    assert row["status"] == "partial" and row["points"] == 1.0
    assert row["message"].startswith("a hidden case: result: values differ") and row["hint"]
    assert verdict(IOU, 1.0, [Outcome("notebook", "a", "not yet")])["status"] == "not attempted"
    lost = verdict(IOU, 1.0, [Outcome("notebook", "a", "lost", None, t([1.0]))])
    assert lost["status"] == "fail" and "no output" in lost["message"]
    assert verdict(IOU, 1.0, [], problem="defining it raised X")["message"] == "defining it raised X"


def test_cases_and_adapters_reach_the_probe_as_plain_data(tmp_path):
    """01 (convolution blocks as data) and 06 (models built inside, with torchvision allowed) grade their solutions."""
    import nbformat

    for name, check in (("01_backbone_fpn", checkers.check_fpn_merge),
                        ("06_fine_tuning", checkers.check_get_instance_segmentation_model)):
        cells = nbformat.read(REPO_ROOT / "solutions" / f"{name}.ipynb", as_version=4).cells
        work = tmp_path / name
        work.mkdir()
        rows, _ = grade_exercises(cells, [(check, 1.0)], work, 3, True, 120, Limits())
        assert rows[0]["status"] == "pass", rows
    assert isinstance(check.grading_cases()[0], Case)


def test_notebook_07s_assembly_exercises_grade_the_solution_and_fail_shortcuts_and_bugs(tmp_path):
    """07's forward from its stages and training step run on a torchvision model built inside the sandbox: the
    solution passes; torchvision's whole forward called by hand, a forward that never scales boxes back, and a step
    that never zeroes the gradients fail. (tests/course/test_checkers_nb07.py tries more mistakes in-process.)"""
    import nbformat

    cells = nbformat.read(REPO_ROOT / "solutions" / "07_your_mask_rcnn.ipynb", as_version=4).cells
    expected = [(checkers.check_mask_rcnn_forward, 1.0), (checkers.check_train_step, 1.0)]
    work = tmp_path / "solution"
    work.mkdir()
    rows, _ = grade_exercises(cells, expected, work, 3, True, 240, Limits())
    assert [r["status"] for r in rows] == ["pass", "pass"], rows

    by_hand = ("from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN\n"
               "def mask_rcnn_forward(model, images, targets=None):\n"
               "    return GeneralizedRCNN.forward(model, images, targets)\n"
               "mask_rcnn_forward = check_mask_rcnn_forward(mask_rcnn_forward)")
    unscaled = """
def mask_rcnn_forward(model, images, targets=None):
    images, targets = model.transform(images, targets)
    features = model.backbone(images.tensors)
    proposals, proposal_losses = model.rpn(images, features, targets)
    detections, detector_losses = model.roi_heads(features, proposals, images.image_sizes, targets)
    if model.training:
        return {**detector_losses, **proposal_losses}
    return model.transform.postprocess(detections, images.image_sizes, images.image_sizes)
mask_rcnn_forward = check_mask_rcnn_forward(mask_rcnn_forward)
"""
    no_zero_grad = """
def train_step(model, images, targets, optimizer):
    losses = model(images, targets)
    loss = sum(losses.values())
    loss.backward()
    optimizer.step()
    return {**{k: v.item() for k, v in losses.items()}, "loss": loss.item()}
train_step = check_train_step(train_step)
"""
    rows = grade(tmp_path, by_hand, no_zero_grad, expected=expected, timeout=240)
    assert [r["points"] for r in rows] == [0.0, 0.0] and rows[0]["status"] == "fail", rows
    assert "moved" in rows[1]["message"], rows
    rows = grade(tmp_path, unscaled, expected=expected[:1], timeout=240)
    assert rows[0]["points"] == 0.0 and "evaluation" in rows[0]["message"], rows
