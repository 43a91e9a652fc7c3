"""A short check that training on a device computes what the CPU computes (used for the Apple GPU, MPS).

``get_device`` picks the Apple GPU only where this check passes: a tiny Mask R-CNN built like the course model
(a one-block-per-stage ResNet with an FPN, torchvision's ``MaskRCNN`` heads, ``MultiScaleRoIAlign``, ``nms``)
trains for ``STEPS`` SGD steps on two synthetic images on the CPU, and each step is repeated on the device from
the CPU's weights at that step. Every step's gradients must be finite and agree with the CPU's: the relative error
of all gradients together, ``||g_device - g_cpu|| / ||g_cpu||``, must stay under ``TOLERANCE`` (0.05).

Why 5 %: two CPU runs from the same weights (one thread, two threads) differ by about 1e-6, and an anchor or
proposal that flips across an IoU threshold moves the gradients by about 1/2000 (one of ~2000 RoIs). The faults
this check is for are far larger: before torchvision 0.29, MPS ``roi_align`` backward over-counted gradients by a
factor that grows with the number of RoIs (about 100x at 512), and some Macs hit Metal "Internal Error"s in
``MultiScaleRoIAlign``. A backward that over-counts by only 10 % is already off by 0.07 here
(``tests/utils/test_mps_check.py`` simulates it on the CPU).

Sampling draws no random numbers here: the samplers' batch sizes exceed the candidates, so every anchor and every
proposal is used, and the RPN keeps all proposals (NMS threshold 1.0), so both devices see the same RoIs.

Run as ``python -m course_lib.utils.mps_check [--device mps]``: it prints one JSON line ``{"ok", "detail",
"error"}`` (``course_lib.utils.device`` runs it in a subprocess, so a crash on the device cannot take the
caller down). Uses torch and torchvision only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import OrderedDict

import torch

STEPS = 3
TOLERANCE = 0.05  # largest relative error of the gradients, all parameters together
IMAGE_SIZE = 64
ALL = 100_000  # sampler batch size above any number of candidates: every anchor and proposal is sampled


def _stage(cin: int, cout: int, stride: int) -> torch.nn.Module:
    from torch import nn
    from torchvision.models.resnet import BasicBlock

    down = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                                                  nn.BatchNorm2d(cout))
    return nn.Sequential(BasicBlock(cin, cout, stride, down))


def tiny_model() -> torch.nn.Module:
    """A random Mask R-CNN shaped like the course model (a ResNet with one BasicBlock per stage, C2-C5 at strides
    4-32, an FPN, torchvision's ``MaskRCNN`` heads), narrower (16-128 channels), in torchvision's classes, set up
    so that training draws no random samples."""
    from collections import OrderedDict as Named

    from torch import nn
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    c, widths = 32, [16, 32, 64, 128]
    body = nn.Sequential(Named([
        ("stem", nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                               nn.MaxPool2d(3, 2, 1))),
        ("layer1", _stage(16, widths[0], 1)), ("layer2", _stage(widths[0], widths[1], 2)),
        ("layer3", _stage(widths[1], widths[2], 2)), ("layer4", _stage(widths[2], widths[3], 2))]))
    backbone = BackboneWithFPN(body, return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
                               in_channels_list=widths, out_channels=c, extra_blocks=LastLevelMaxPool())
    anchors = AnchorGenerator(sizes=((8,), (16,), (32,), (64,), (128,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5)
    return MaskRCNN(backbone, num_classes=None, min_size=IMAGE_SIZE, max_size=IMAGE_SIZE,
                    rpn_anchor_generator=anchors, rpn_pre_nms_top_n_train=ALL, rpn_post_nms_top_n_train=ALL,
                    rpn_nms_thresh=1.0, rpn_batch_size_per_image=ALL, box_batch_size_per_image=ALL,
                    box_head=TwoMLPHead(c * 7 * 7, 128), box_predictor=FastRCNNPredictor(128, 3),
                    mask_head=MaskRCNNHeads(c, [c, c], 1), mask_predictor=MaskRCNNPredictor(c, c, 3))


def tiny_batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two 128x128 images with a few filled rectangles each (boxes, labels 1-2, masks), the same every time."""
    g = torch.Generator().manual_seed(0)
    images, targets = [], []
    for objects in (3, 2):
        image = torch.rand(3, IMAGE_SIZE, IMAGE_SIZE, generator=g) * 0.3
        boxes, masks = [], []
        for _ in range(objects):
            x0, y0 = (int(v) for v in torch.randint(0, IMAGE_SIZE - 24, (2,), generator=g))
            w, h = (int(v) for v in torch.randint(8, 24, (2,), generator=g))
            mask = torch.zeros(IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
            mask[y0:y0 + h, x0:x0 + w] = 1
            image[:, y0:y0 + h, x0:x0 + w] = torch.rand(3, 1, 1, generator=g)
            boxes.append([x0, y0, x0 + w, y0 + h])
            masks.append(mask)
        images.append(image)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                        "labels": torch.randint(1, 3, (objects,), generator=g), "masks": torch.stack(masks)})
    return images, targets


def training_gradients(device: torch.device | str, steps: int = STEPS, states: list[dict] | None = None,
                       ) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """``steps`` SGD steps of ``tiny_model()`` (seed 0) on ``tiny_batch()`` on ``device``.

    Returns each step's gradients (name -> CPU float32 tensor) and the weights (state dict, on the CPU) that step
    started from. Given ``states`` (another run's), step ``i`` starts from ``states[i]`` instead, so that two
    devices' gradients are compared at the same weights every step (else rounding differences grow step by step).
    """
    torch.manual_seed(0)
    model = tiny_model().to(device).train()
    images, targets = tiny_batch()
    images = [im.to(device) for im in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    grads, started = [], []
    for step in range(steps):
        if states is not None:
            model.load_state_dict(states[step])
        started.append({k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        optimizer.zero_grad()
        sum(model(images, targets).values()).backward()
        grads.append(OrderedDict((name, p.grad.detach().to("cpu", torch.float32).clone())
                                 for name, p in model.named_parameters() if p.grad is not None))
        optimizer.step()
    return grads, started


def compare_gradients(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor],
                      tolerance: float = TOLERANCE) -> tuple[bool, float, str]:
    """Whether ``other``'s gradients agree with ``reference``'s (the CPU's): the same parameters, all finite,
    and ``||other - reference|| / ||reference||`` over all of them at most ``tolerance``.

    Returns ``(ok, relative error, one line saying why)``; the error is ``inf`` where the two cannot be compared.
    """
    if set(reference) != set(other):
        missing, extra = sorted(set(reference) - set(other)), sorted(set(other) - set(reference))
        return False, math.inf, f"different parameters have gradients (missing {missing[:3]}, extra {extra[:3]})"
    for name in reference:
        if reference[name].shape != other[name].shape:
            return False, math.inf, f"{name}: gradient of shape {tuple(other[name].shape)}, " \
                                    f"expected {tuple(reference[name].shape)}"
    bad = [name for name, g in other.items() if not torch.isfinite(g).all()]
    if bad:
        return False, math.inf, f"non-finite gradients in {len(bad)} parameter(s), e.g. {bad[0]}"
    if any(not torch.isfinite(g).all() for g in reference.values()):
        return False, math.inf, "the reference's own gradients are not finite"
    diff = math.sqrt(sum(float((other[n].double() - g.double()).square().sum()) for n, g in reference.items()))
    norm = math.sqrt(sum(float(g.double().square().sum()) for g in reference.values()))
    error = diff / norm if norm > 0 else (0.0 if diff == 0 else math.inf)
    worst = max(reference, key=lambda n: float((other[n].double() - reference[n].double()).norm()))
    line = f"gradients within {error:.1e} of the CPU's (tolerance {tolerance:g}; largest difference in {worst})"
    if error <= tolerance:
        return True, error, line
    return False, error, line.replace("within", "off by")


def check(device: torch.device | str = "mps", steps: int = STEPS, tolerance: float = TOLERANCE) -> dict:
    """Train on ``device`` and on the CPU; ``{"ok", "detail", "error"}`` (the worst step's relative error)."""
    on_cpu, states = training_gradients("cpu", steps)
    try:
        on_device, _ = training_gradients(device, steps, states)
    except Exception as exc:  # an op missing on the device, a Metal error raised as a RuntimeError, ...
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return {"ok": False, "detail": f"training on {device} failed: {type(exc).__name__}: {first}",
                "error": math.inf}
    worst_error, worst_line = -1.0, ""
    for step, (ref, got) in enumerate(zip(on_cpu, on_device, strict=True), 1):
        ok, error, line = compare_gradients(ref, got, tolerance)
        if not ok:
            return {"ok": False, "detail": f"step {step}: {line}", "error": error}
        if error > worst_error:
            worst_error, worst_line = error, line
    return {"ok": True, "detail": f"{steps} training steps: {worst_line}", "error": worst_error}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m course_lib.utils.mps_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="mps")
    p.add_argument("--steps", type=int, default=STEPS)
    args = p.parse_args(argv)
    result = check(args.device, args.steps)
    print(json.dumps({**result, "error": result["error"] if math.isfinite(result["error"]) else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
