"""What 07's assembly exercises are checked on: Mask R-CNNs and batches made from a seed, and adapters that run a
learner's function on them and return plain data (numbers and tensors) to compare.

Self-contained (torch and torchvision only): the grader sends this file into the sandbox where a student's
``mask_rcnn_forward`` or ``train_step`` runs (``Checker.prelude``); the notebook's checkers use it too, with the
course's own model. Both sides run on one thread, so the reference and an answer that does the same computation
give the same bits.
"""

import contextlib

import torch
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone


def small_maskrcnn(num_classes: int = 4) -> MaskRCNN:
    """torchvision's classes, random weights, 128-pixel inputs: small enough for a few training steps on a CPU."""
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5)
    return MaskRCNN(backbone, num_classes, min_size=128, max_size=128, rpn_pre_nms_top_n_train=300,
                    rpn_post_nms_top_n_train=150, rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=100,
                    rpn_batch_size_per_image=64, box_batch_size_per_image=32, box_detections_per_img=20)


# Models the grader builds inside its sandbox, by name (the notebook also passes builders themselves).
BUILDERS = {"small_maskrcnn": small_maskrcnn}


def batch(seed: int, sizes=((96, 160), (150, 120))) -> tuple[list[torch.Tensor], list[dict]]:
    """Images of ``sizes`` (H, W) (noise with brighter rectangles) and their targets: one to three rectangles
    each, labels 1-3, boxes and masks. Sizes other than the model's 128 make the transform resize both ways."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for h, w in sizes:
        image = torch.rand(3, h, w, generator=g) * 0.3
        n = int(torch.randint(1, 4, (1,), generator=g))
        boxes, masks = [], torch.zeros(n, h, w, dtype=torch.uint8)
        for i in range(n):
            bw, bh = (int(v) for v in torch.randint(16, min(h, w) // 2, (2,), generator=g))
            x, y = int(torch.randint(0, w - bw, (1,), generator=g)), int(torch.randint(0, h - bh, (1,), generator=g))
            image[:, y:y + bh, x:x + bw] += 0.5 + 0.2 * torch.rand(3, 1, 1, generator=g)
            masks[i, y:y + bh, x:x + bw] = 1
            boxes.append([x, y, x + bw, y + bh])
        images.append(image.clamp(0, 1))
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                        "labels": torch.randint(1, 4, (n,), generator=g), "masks": masks})
    return images, targets


def _refuse(*args, **kwargs):
    raise RuntimeError("model(images) runs the whole forward in one call: the exercise is to call its stages "
                       "(model.transform, model.backbone, model.rpn, model.roi_heads) yourself")


@contextlib.contextmanager
def whole_forward_refused(model):
    """While inside, ``model(...)`` and its classes' ``forward`` (``GeneralizedRCNN.forward`` called by hand too)
    raise: only the stages may be called. Restored on the way out."""
    patched = [(cls, cls.__dict__["forward"]) for cls in type(model).__mro__
               if "forward" in cls.__dict__ and cls is not torch.nn.Module]
    try:
        for cls, _ in patched:
            cls.forward = _refuse
        yield model
    finally:
        for cls, forward in patched:
            cls.forward = forward


def _model(builder):
    build = BUILDERS[builder] if isinstance(builder, str) else builder
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build()


def forward_output(fn, builder, seed: int, train: bool, sizes=((96, 160), (150, 120))):
    """``fn(model, images, targets)`` on a fresh model from ``builder`` (a callable or a name in ``BUILDERS``) whose
    own ``forward`` is refused, in training (``targets`` given; the loss dict as floats) or evaluation mode
    (``targets`` None; per image: boxes, labels, scores and each mask's sum, its area in pixels)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _model(builder)
        model.train(train)
        images, targets = batch(seed, sizes)
        torch.manual_seed(seed)  # the samplers' draws, the same for the reference and the answer
        with torch.set_grad_enabled(train), whole_forward_refused(model):
            out = fn(model, images, targets if train else None)
    finally:
        torch.set_num_threads(threads)
    if train:
        if not isinstance(out, dict):
            return f"a dict of losses ({type(out).__name__} returned)"
        return {k: float(v.detach()) if torch.is_tensor(v) else v for k, v in out.items()}
    if not isinstance(out, (list, tuple)):
        return f"a list with one dict per image ({type(out).__name__} returned)"
    return [{k: (v.detach().flatten(1).sum(1) if k == "masks" else v.detach()) for k, v in d.items()}
            if isinstance(d, dict) else d for d in out]


def training_run(fn, builder, seed: int, what: str = "both", steps: int = 2, lr: float = 0.01):
    """``steps`` calls of ``fn(model, images, targets, optimizer)`` (SGD with momentum) on a fresh model in training
    mode; ``what``: "returned" (what each call returned), "moved" (how far the weights moved: the relative norm of
    the change) or "both", as plain data."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _model(builder)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        before = torch.cat([p.detach().flatten() for p in params]).clone()
        optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)
        torch.manual_seed(seed)
        returned = [fn(model, *batch(seed + i), optimizer) for i in range(steps)]
        after = torch.cat([p.detach().flatten() for p in params])
    finally:
        torch.set_num_threads(threads)
    moved = float((after - before).norm() / before.norm())
    result = {"returned": returned, "weights moved (relative)": moved}
    return result if what == "both" else result["returned" if what == "returned" else "weights moved (relative)"]
