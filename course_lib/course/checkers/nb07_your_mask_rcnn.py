"""Checkers for 07_your_mask_rcnn's exercises.

* ``check_roi_align_batch``: RoIAlign of a (K, 5) tensor of RoIs over a batch of feature maps, one box at a time
  with notebook 03's one-box function, against ``course_lib.ops.roi_align.roi_align`` (= torchvision's).
* ``check_mask_rcnn_forward``: the model's forward assembled from its stages (transform, backbone, RPN, RoI heads,
  postprocess), in training and evaluation mode, against ``detection.mask_rcnn.forward_from_stages``; the model's
  own ``forward`` is refused while it runs (``nb07_models``).
* ``check_train_step``: one SGD step (losses, zeroed gradients, backward, step), against
  ``training.engine.train_step``: the losses it returns and how far the weights moved over two steps.

The notebook checks the last two on the course's model (its own classes, the course checkpoint); the grader on a
small torchvision Mask R-CNN built in its sandbox (``grading_cases``).
"""

from __future__ import annotations

import torch

from course_lib.course.checkers.core import Case, checker
from course_lib.course.checkers.nb07_models import forward_output, training_run
from course_lib.detection.mask_rcnn import forward_from_stages, load_course_mask_rcnn
from course_lib.ops.roi_align import roi_align, roi_align_one_box
from course_lib.training.engine import train_step

__all__ = ["check_mask_rcnn_forward", "check_roi_align_batch", "check_train_step"]

NOTEBOOK = "07_your_mask_rcnn"


def _rois(g: torch.Generator, batch: list[int], size: tuple[int, int], lo: float = 4.0, hi: float = 60.0):
    """(K, 5) RoIs ``(batch_index, x1, y1, x2, y2)`` in image pixels of an image ``size`` = (H, W)."""
    n = len(batch)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([size[1] * 0.7, size[0] * 0.7])
    wh = lo + torch.rand(n, 2, generator=g) * (hi - lo)
    return torch.cat([torch.tensor(batch, dtype=torch.float32)[:, None], xy, xy + wh], dim=1)


def _cases() -> list[Case]:
    g = torch.Generator().manual_seed(70)
    one = torch.randn(1, 4, 20, 24, generator=g)
    two = torch.randn(2, 3, 16, 16, generator=g)
    outside = torch.tensor([[0.0, -10.0, -6.0, 30.0, 20.0], [0.0, 60.0, 50.0, 120.0, 95.0]])
    return [Case("one image, 3 RoIs, 7x7, stride 4", (one, _rois(g, [0, 0, 0], (80, 96)), (7, 7), 0.25, 2)),
            Case("two images: the batch index picks the feature map",
                 (two, _rois(g, [1, 0, 1], (64, 64)), (7, 7), 0.25, 2),
                 hint="Column 0 of a RoI row is the index of its image in the batch: pool input[int(r[0])], not "
                      "input[0], and the box is r[1:]."),
            Case("output_size as an int (5 means 5x5)", (one, _rois(g, [0, 0], (80, 96)), 5, 0.25, 2),
                 hint="output_size may be an int n: it means (n, n); turn it into a pair before anything else."),
            Case("a 3x6 output, adaptive sampling (-1)", (two, _rois(g, [0, 1], (64, 64)), (3, 6), 0.25, -1)),
            Case("RoIs partly outside the map", (one, outside, (7, 7), 0.25, 2)),
            Case("no RoIs: (0, 5) gives (0, C, 7, 7)", (two, torch.zeros(0, 5), (7, 7), 0.25, 2),
                 hint="torch.stack of an empty list fails: with no RoIs return input.new_zeros((0, C, out_h, out_w)).")]


def _hidden_cases(seed: int) -> list[Case]:
    """Never shown in the notebook: three maps and unsorted batch indices, a random output size and stride,
    float64 features, a 1x1 output, and no RoIs with an int output size."""
    g = torch.Generator().manual_seed(seed)
    h, w = (int(v) for v in torch.randint(6, 20, (2,), generator=g))
    three = torch.randn(3, 5, h, w, generator=g)
    batch = [int(v) for v in torch.randint(0, 3, (6,), generator=g)]
    out = tuple(int(v) for v in torch.randint(1, 9, (2,), generator=g))
    stride = 2 ** int(torch.randint(1, 4, (1,), generator=g))
    size = (h * stride, w * stride)
    return [Case(f"three maps, RoIs of images {batch}", (three, _rois(g, batch, size, 2, 40), (7, 7), 1 / stride, 2)),
            Case(f"a {out[0]}x{out[1]} output, stride {stride}, adaptive sampling",
                 (three, _rois(g, [2, 0, 1], size, 2, 40), out, 1 / stride, -1)),
            Case("float64 features", (three.double(), _rois(g, [1, 2], size, 2, 40).double(), (4, 4), 1 / stride, 2)),
            Case("a 1x1 output", (three, _rois(g, [0, 2, 1], size, 2, 40), (1, 1), 1 / stride, 0)),
            Case("no RoIs, output_size an int", (three, torch.zeros(0, 5), 3, 1 / stride, 2))]


check_roi_align_batch = checker(
    "check_roi_align_batch", roi_align, _cases, notebook=NOTEBOOK, hidden_cases=_hidden_cases,
    given={"roi_align_one_box": roi_align_one_box},
    forbidden=("torchvision.ops.roi_align.roi_align", "course_lib.ops.roi_align.roi_align",
               "course_lib.ops.roi_align._roi_align", "course_lib.detection.mask_rcnn.roi_align_from_one_box",
               "course_lib.ops.poolers.multiscale_roi_align", "torch.ops.torchvision.roi_align"),
    hint=["Hint: an int output_size n means (n, n). With no RoIs return input.new_zeros((0, C, out_h, out_w)).",
          "Hint: row r of rois is (batch_index, x1, y1, x2, y2): pool input[int(r[0])] with the box r[1:] by "
          "roi_align_one_box(feature, box, (out_h, out_w), spatial_scale, sampling_ratio), then torch.stack the "
          "K results in the order of the rows."])


# ------------------------------------------------------------------------------------------ the forward, assembled

def _course_model():
    return load_course_mask_rcnn(device="cpu")


_TRAINING_HINT = ("In training the targets travel with the images: model.transform(images, targets) resizes both, "
                  "then model.rpn(images, features, targets) and model.roi_heads(features, proposals, "
                  "images.image_sizes, targets) each return their losses: return the two dicts merged into one.")
_SIZES_HINT = ("The transform resized every image to the model's size: keep the input sizes (img.shape[-2:]) before "
               "it, and end with model.transform.postprocess(detections, images.image_sizes, original_sizes), which "
               "scales the boxes back and pastes the masks at the input's size.")


def _forward_cases(builder) -> list[Case]:
    return [Case("evaluation: two images, 96x160 and 150x120", (builder, 1, False), hint=_SIZES_HINT),
            Case("training: the five losses of a batch", (builder, 2, True), hint=_TRAINING_HINT),
            Case("evaluation: one image of 200x90", (builder, 3, False, ((200, 90),)), hint=_SIZES_HINT)]


def _forward_hidden_cases(seed: int) -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    sizes = tuple(tuple(int(v) for v in torch.randint(64, 220, (2,), generator=g)) for _ in range(3))
    return [Case(f"evaluation: three images {sizes}", ("small_maskrcnn", seed, False, sizes)),
            Case("training, another batch", ("small_maskrcnn", seed + 1, True, sizes[:2]))]


check_mask_rcnn_forward = checker(
    "check_mask_rcnn_forward", forward_from_stages, lambda: _forward_cases(_course_model), notebook=NOTEBOOK,
    atol=1e-5, adapter=forward_output, prelude="course_lib.course.checkers.nb07_models", allow=("torchvision",),
    grading_cases=lambda: _forward_cases("small_maskrcnn"), hidden_cases=_forward_hidden_cases,
    forbidden=("course_lib.detection.mask_rcnn.forward_from_stages",),
    hint=["The stages, in order: model.transform (resize, normalise, batch: an ImageList and the resized targets), "
          "model.backbone(images.tensors) (the FPN's dict of maps), model.rpn(images, features, targets) "
          "(proposals, losses), model.roi_heads(features, proposals, images.image_sizes, targets) (detections, "
          "losses).",
          "Then two endings: in training (model.training) return {**detector_losses, **proposal_losses}; in "
          "evaluation return model.transform.postprocess(detections, images.image_sizes, original_image_sizes)."])


# ------------------------------------------------------------------------------------------ one training step

_ZERO_GRAD_HINT = ("Over two steps the weights moved by another amount than the reference's: PyTorch adds each "
                   "backward's gradients to .grad, so zero them (optimizer.zero_grad()) before loss.backward(), then "
                   "optimizer.step() once.")


def _step_cases(builder) -> list[Case]:
    return [Case("two steps: the losses returned, as floats", (builder, 4, "returned"), hint=(
                "Return what you computed as Python floats ({name: value.item()}), every loss term and 'loss', "
                "their sum, the number backward() started from.")),
            Case("two steps: how far the weights moved", (builder, 5, "moved"), hint=_ZERO_GRAD_HINT)]


check_train_step = checker(
    "check_train_step", train_step, lambda: _step_cases(_course_model), notebook=NOTEBOOK, atol=1e-6,
    adapter=training_run, prelude="course_lib.course.checkers.nb07_models", allow=("torchvision",),
    grading_cases=lambda: _step_cases("small_maskrcnn"),
    hidden_cases=lambda seed: [Case("two steps on another batch", ("small_maskrcnn", seed))],
    forbidden=("course_lib.training.engine.train_step",),
    hint=["In training mode model(images, targets) returns a dict of losses; their sum is the loss to minimise.",
          "The step: optimizer.zero_grad(), loss.backward(), optimizer.step(); return {**losses as floats, "
          "'loss': the sum as a float}."])
