"""Notebook 07's helpers: where each part of the course-built Mask R-CNN comes from, one image traced through
every stage with its shapes, detections compared with torchvision's, and the two models trained side by side.
Taught in: 07_your_mask_rcnn
"""

from __future__ import annotations

import contextlib
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from course_lib.data.shapes import shapes_sample  # noqa: F401 (lesson.shapes_sample in the notebook)
from course_lib.detection.mask_rcnn import PLUGGABLE, STAGE_FUNCTIONS, MaskRCNN, wrapped_stage_functions
from course_lib.lessons.draw import PALETTE, colour, draw_instances, plot_boxes, with_alt
from course_lib.training.engine import train_steps  # noqa: F401 (lesson.train_steps in the notebook)

# The model's parts (attribute paths) and the notebook that opens each one up.
PARTS = [("transform", "00"), ("backbone.body", "01"), ("backbone.fpn", "01"), ("rpn.anchor_generator", "02"),
         ("rpn.head", "02"), ("rpn", "02"), ("roi_heads.box_roi_pool", "03"), ("roi_heads.box_head", "04"),
         ("roi_heads.box_predictor", "04"), ("roi_heads", "04"), ("roi_heads.mask_roi_pool", "03"),
         ("roi_heads.mask_head", "04"), ("roi_heads.mask_predictor", "04")]


def _where(obj) -> str:
    """``course_lib.detection.rpn`` -> ``course_lib/detection/rpn.py``; torchvision's likewise."""
    module = type(obj).__module__ if isinstance(obj, nn.Module) else obj.__module__
    if module.split(".")[0] in ("course_lib", "torchvision"):
        return module.replace(".", "/") + ".py"
    return "your notebook" if module == "__main__" else module


PARTS_HEADER = ("part", "class", "course-built model", "torchvision's MaskRCNN", "notebook")


def parts_table(model: nn.Module, tv_model: nn.Module) -> list[tuple[str, str, str, str, str]]:
    """One row per part (``PARTS_HEADER``): attribute, class name, the file of its class in ``model`` and in
    torchvision's ``tv_model`` (the class names are the same), notebook."""
    rows = []
    for path, notebook in PARTS:
        part, twin = model.get_submodule(path), tv_model.get_submodule(path)
        rows.append((path, type(part).__name__, _where(part), _where(twin), notebook))
    return rows


def plugged_functions(model: MaskRCNN) -> list[tuple[str, str, str]]:
    """The functions the model's stages call: (name, where it is defined, the stages that call it)."""
    rows = []
    for name, paths in PLUGGABLE.items():
        fns = {getattr(model.get_submodule(p), name) for p in paths}
        where = ", ".join(sorted(f"{fn.__name__} ({_where(fn)})" for fn in fns))
        rows.append((name, where, ", ".join(p or "model" for p in paths)))
    return rows


def format_table(rows: list[tuple], header: tuple[str, ...]) -> str:
    """Rows of strings as an aligned plain-text table (printable in a checked cell)."""
    rows = [tuple(str(v) for v in r) for r in [header, *rows]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ tracing

@dataclass
class Trace:
    """What ``trace`` recorded: ``rows`` (stage, tensor, shape, meaning) and the tensors behind them."""

    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    values: dict[str, object] = field(default_factory=dict)

    def add(self, stage: str, name: str, x, meaning: str, key: str | None = None) -> None:
        self.rows.append((stage, name, _shape(x), meaning))
        if key is not None:
            self.values[key] = x

    def table(self) -> str:
        return format_table(self.rows, ("stage", "tensor", "shape", "what it is"))


def _shape(x) -> str:
    if isinstance(x, Tensor):
        return str(tuple(x.shape))
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], Tensor):
        return " ".join(str(tuple(v.shape)) for v in x) if len(x) <= 2 else f"{len(x)} x {tuple(x[0].shape)}..."
    return str(x)


#: The stage modules ``trace`` records with forward hooks (its functions: ``mask_rcnn.STAGE_FUNCTIONS``).
TRACED_MODULES = ("transform", "backbone", "rpn.head", "rpn.anchor_generator", "roi_heads.box_roi_pool",
                  "roi_heads.box_head", "roi_heads.box_predictor", "roi_heads.mask_roi_pool", "roi_heads.mask_head",
                  "roi_heads.mask_predictor")


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Every module in eval mode inside the block; each one's own mode back afterwards, even after an error."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model.eval()
    finally:
        for module, mode in modes:
            module.training = mode


# The stage functions the trace records: the model's, and the box pooler's level assignment (which FPN level
# each proposal is pooled from).
TRACED_FUNCTIONS = (*STAGE_FUNCTIONS, "roi_heads.box_roi_pool.assign_fpn_levels")


def record_forward(model: MaskRCNN, image: Tensor) -> tuple[dict, dict[str, object]]:
    """``model([image])`` once, in eval mode, recording what every stage returns: forward hooks on
    ``TRACED_MODULES``, recording wrappers around ``STAGE_FUNCTIONS`` (whatever is plugged in there). Returns the
    model's output for the image and ``{path: what that stage returned}``. Hooks and wrappers are removed and
    every module's train/eval mode restored afterwards, even after an error."""
    seen: dict[str, object] = {}

    def hook(path):
        return lambda module, args, output: seen.setdefault(path, output)

    def wrap(path, fn):
        def recorded(*args, **kwargs):
            result = fn(*args, **kwargs)
            seen.setdefault(path, result)
            return result
        return recorded

    handles = []
    try:
        for path in TRACED_MODULES:
            handles.append(model.get_submodule(path).register_forward_hook(hook(path)))
        with _eval_mode(model), torch.no_grad(), wrapped_stage_functions(model, wrap, TRACED_FUNCTIONS):
            output = model([image])[0]
    finally:
        for handle in handles:
            handle.remove()
    return output, seen


def trace(model: MaskRCNN, image: Tensor) -> Trace:
    """Run the course-built ``model`` (eval mode) on one (3, H, W) image and tabulate every intermediate tensor,
    as recorded while ``model([image])`` runs (``record_forward``). ``trace(...).values["output"]`` is what that
    call returned."""
    rpn, heads = model.rpn, model.roi_heads
    with _eval_mode(model):  # the settings the eval forward used
        output, seen = record_forward(model, image)
        pre_nms_top_n, post_nms_top_n = rpn.pre_nms_top_n(), rpn.post_nms_top_n()
    t = Trace()
    t.add("input", "image", image, "RGB, values in [0, 1]", "image")

    images, _ = seen["transform"]
    size = images.image_sizes[0]
    t.add("transform", "images.tensors", images.tensors, f"resized to {size[0]}x{size[1]}, normalised, batched")

    features = seen["backbone"]
    for i, (name, f) in enumerate(features.items()):
        level = i + 2
        t.add("backbone + FPN" if i == 0 else "", f"features['{name}']", f,
              f"P{level}: stride {images.tensors.shape[-1] // f.shape[-1]}, one vector per cell")

    objectness, deltas = seen["rpn.head"]
    a = objectness[0].shape[1]
    t.add("rpn.head", "objectness[0]", objectness[0], f"P2: {a} logits per cell, object or not")
    t.add("", "pred_bbox_deltas[0]", deltas[0], f"P2: 4 box deltas for each of the {a} anchors of a cell")
    anchors = seen["rpn.anchor_generator"][0]
    t.add("rpn.anchor_generator", "anchors", anchors, f"{a} per cell of every level, in image pixels", "anchors")
    t.values["anchors_per_level"] = [o[0].numel() for o in objectness]
    t.values["feature_sizes"] = [tuple(f.shape[-2:]) for f in features.values()]
    t.add("decode_boxes", "decoded anchors", seen["rpn.decode_boxes"], "every anchor moved by its deltas")
    boxes, scores = seen["rpn.filter_proposals"]
    t.add("filter_proposals", "proposals", boxes[0],
          f"top {pre_nms_top_n} per level, clip, NMS {rpn.nms_thresh}, best {post_nms_top_n}",
          "proposals")
    t.values["proposal_scores"] = scores[0]

    levels = seen["roi_heads.box_roi_pool.assign_fpn_levels"]
    pool = heads.box_roi_pool
    k_min = 2  # P2 is the pooler's finest map
    counts = ", ".join(f"P{k_min + i} {int((levels == i).sum())}" for i in range(len(pool.featmap_names)))
    t.add("box_roi_pool.assign_fpn_levels", "levels", levels,
          f"each proposal's level (canonical scale {pool.canonical_scale}): {counts}")
    t.values["proposal_levels"] = levels + k_min
    t.add("roi_heads.box_roi_pool", "box_features", seen["roi_heads.box_roi_pool"],
          "RoIAlign: a 7x7 patch per proposal, from its level")
    t.add("roi_heads.box_head", "box_vectors", seen["roi_heads.box_head"], "flatten, fc6 + ReLU, fc7 + ReLU")
    class_logits, box_regression = seen["roi_heads.box_predictor"]
    t.add("roi_heads.box_predictor", "class_logits", class_logits, "one logit per class, background = 0")
    t.add("", "box_regression", box_regression, "4 deltas per class")
    det_boxes, _, det_labels = seen["roi_heads.postprocess_detections"]
    t.add("postprocess_detections", "boxes", det_boxes[0],
          f"decode, score > {heads.score_thresh}, NMS {heads.nms_thresh} per class")
    t.add("", "labels, scores", det_labels[0], "class and probability of each detection")

    t.add("roi_heads.mask_roi_pool", "mask_features", seen["roi_heads.mask_roi_pool"],
          "RoIAlign: a 14x14 patch per detection")
    t.add("roi_heads.mask_head", "mask_head(...)", seen["roi_heads.mask_head"], "four 3x3 convs + ReLU, size kept")
    t.add("roi_heads.mask_predictor", "mask_logits", seen["roi_heads.mask_predictor"],
          "2x up-convolution, one 28x28 map per class")
    t.add("maskrcnn_inference", "mask_probs", seen["roi_heads.maskrcnn_inference"][0],
          "sigmoid of the predicted class's map")
    t.add("postprocess (paste)", "masks", seen["paste_masks"], "boxes back to the input's pixels, masks pasted")
    t.values["output"] = output
    return t


def anchors_at_centre(tr: Trace) -> tuple[Tensor, list[int]]:
    """The anchors of the middle cell of every level: (sum of A per level, 4) boxes and each one's level index."""
    anchors, counts = tr.values["anchors"], tr.values["anchors_per_level"]
    picked, levels, start = [], [], 0
    for lvl, ((h, w), n) in enumerate(zip(tr.values["feature_sizes"], counts, strict=True)):
        a = n // (h * w)
        cell = (h // 2) * w + w // 2
        picked.append(anchors[start + cell * a: start + (cell + 1) * a])
        levels += [lvl] * a
        start += n
    return torch.cat(picked), levels


def trace_figure(tr: Trace, class_names: list[str], n_proposals: int = 20, score_threshold: float = 0.5,
                 size: float = 3.4):
    """Four panels of the traced image: the anchors of one cell per level, the best proposals, the detections
    above ``score_threshold``, and their masks pasted. Returns the figure."""
    import matplotlib.pyplot as plt

    image, out = tr.values["image"], tr.values["output"]
    fig, axes = plt.subplots(1, 4, figsize=(4 * size, size + 0.6))
    anchors, levels = anchors_at_centre(tr)
    level_colours = [PALETTE[i] for i in (1, 4, 2, 3, 5)]  # vermillion, orange, green, blue, purple
    plot_boxes(axes[0], image, anchors, [level_colours[v] for v in levels], lw=1.0,
               title=f"anchors of the middle cell (of {len(tr.values['anchors'])}),\nP2 vermillion to P6 purple")
    axes[0].set_xlim(-100, image.shape[-1] + 100)
    axes[0].set_ylim(image.shape[-2] + 100, -100)
    axes[0].axis("on")
    axes[0].tick_params(labelsize=7)
    props = tr.values["proposals"][:n_proposals]
    plot_boxes(axes[1], image, props, [PALETTE[7]] * len(props), lw=0.9,
               title=f"the {len(props)} best proposals\n(of {len(tr.values['proposals'])})")
    keep = out["scores"] >= score_threshold
    boxes, labels, scores = out["boxes"][keep], out["labels"][keep], out["scores"][keep]
    plot_boxes(axes[2], image, boxes, [colour(v) for v in labels.tolist()],
               texts=[f"{class_names[v]} {s:.2f}" for v, s in zip(labels.tolist(), scores.tolist(), strict=True)],
               title=f"the {int(keep.sum())} detections (of {len(keep)})\nwith score >= {score_threshold}")
    axes[3].imshow(draw_instances(image, boxes, labels, out["masks"][keep][:, 0] > 0.5, class_names,
                                  upscale=3, font_size=16, fill_labels=True).permute(1, 2, 0).numpy())
    axes[3].set_title("their masks, pasted\nand thresholded at 0.5", fontsize=9)
    axes[3].axis("off")
    fig.tight_layout()
    found = ", ".join(f"{class_names[v]} {s:.2f}" for v, s in zip(labels.tolist(), scores.tolist(), strict=True))
    return with_alt(fig, f"Four views of the traced {image.shape[-1]} by {image.shape[-2]} image. 1: the anchors of "
                         f"the middle cell of every level ({len(anchors)} boxes, of {len(tr.values['anchors'])} "
                         "anchors), small for P2 and larger than the image for P6. 2: the best "
                         f"{len(props)} of {len(tr.values['proposals'])} proposals, in yellow, gathered on the "
                         f"objects. 3: the {int(keep.sum())} detections with a score of at least {score_threshold}"
                         + (f": {found}" if found else "") + ". 4: their masks pasted into the image and "
                         "thresholded at 0.5.")


# ------------------------------------------------------------------------------------------ comparing

def detection_differences(a: list[dict], b: list[dict]) -> dict[str, float | bool]:
    """Compare two models' outputs on the same images: whether they have the same number of detections and the
    same labels in the same order, and the largest absolute difference of boxes, scores and masks."""
    same = len(a) == len(b) and all(len(x["labels"]) == len(y["labels"]) and torch.equal(x["labels"], y["labels"])
                                    for x, y in zip(a, b, strict=True))
    diffs = {"same detections": bool(same)}
    for key in ("boxes", "scores", "masks"):
        if not same:
            diffs[key] = float("nan")
            continue
        values = [(x[key] - y[key]).abs().max().item() for x, y in zip(a, b, strict=True) if x[key].numel()]
        diffs[key] = max(values, default=0.0)
    return diffs


def describe_differences(diffs: dict, atol: float = 1e-4) -> str:
    """``detection_differences`` as deterministic lines: the largest difference is only said to be below ``atol``."""
    lines = [f"same detections (count, labels, order): {diffs['same detections']}"]
    for key in ("boxes", "scores", "masks"):
        v = diffs[key]
        lines.append(f"largest difference in {key:6s}: " + (f"< {atol:g}" if v < atol else f"{v:.2g}"))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ training

def shapes_batches(num_batches: int, batch_size: int = 2, seed: int = 0) -> list[tuple[list, list]]:
    """``num_batches`` batches of ``batch_size`` training images (split ``seed``): (images, targets) each."""
    batches = []
    for b in range(num_batches):
        pairs = [shapes_sample(seed, b * batch_size + k) for k in range(batch_size)]
        batches.append(([p[0] for p in pairs], [p[1] for p in pairs]))
    return batches


def first_divergence(a: list[float], b: list[float], rtol: float = 1e-4) -> int | None:
    """The first step (counted from 1) where two loss curves differ by more than ``rtol`` relative; None if never."""
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if abs(x - y) > rtol * max(abs(x), abs(y), 1e-12):
            return i + 1
    return None


def smooth(values, k: int) -> np.ndarray:
    """Running mean over ``k`` steps (the first ``k - 1`` steps dropped)."""
    values = np.asarray(values, dtype=float)
    k = max(1, min(k, len(values)))
    return np.convolve(values, np.ones(k) / k, mode="valid")


def plot_two_curves(curves: dict[str, list[float]], first: int = 20, k: int = 10, size: float = 3.2):
    """Two loss curves: every step of the first ``first`` steps (left, where they coincide and part), and all
    steps smoothed over ``k`` (right). Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    (name_a, a), (name_b, b) = curves.items()
    fig, axes = plt.subplots(1, 2, figsize=(2.6 * size, size))
    n = min(first, len(a))
    x = np.arange(1, n + 1)
    axes[0].plot(x, a[:n], "o-", color=PALETTE[3], lw=1.6, ms=4, label=name_a)
    axes[0].plot(x, b[:n], "x--", color=PALETTE[1], lw=1.2, ms=5, label=name_b)
    split = first_divergence(a, b)
    if split is not None and split <= n:
        axes[0].axvline(split - 0.5, color="#999999", ls=":", lw=1)
        axes[0].text(split - 0.3, axes[0].get_ylim()[0], f" part at step {split}", va="bottom", fontsize=8,
                     color="#555555")
    axes[0].set_title(f"every step, the first {n}", fontsize=9)
    k = max(1, min(k, len(a)))  # a run shorter than the window is averaged over all its steps, as smooth() does
    xs = np.arange(k, len(a) + 1)
    axes[1].plot(xs, smooth(a, k), color=PALETTE[3], lw=1.6, label=name_a)
    axes[1].plot(xs, smooth(b, k), color=PALETTE[1], lw=1.2, ls="--", label=name_b)
    axes[1].set_title(f"all {len(a)} steps, running mean over {k}", fontsize=9)
    for ax in axes:
        ax.set_xlabel("training step", fontsize=8)
        ax.set_ylabel("total loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    parting = (f"the two curves coincide for the first {split - 1} steps and part at step {split}"
               if split is not None else f"the two curves coincide for all {len(a)} steps")
    return with_alt(fig, f"Two line charts of the total training loss of {name_a} (blue, solid, circles) and "
                         f"{name_b} (vermillion, dashed, crosses). Left: every step of the first {n}; {parting}. "
                         f"Right: all {len(a)} steps as a running mean over {k}, where the two lines lie together.")


#: The stages ``record_forward`` records, in the order the eval forward runs them.
STAGE_ORDER = ("transform", "backbone", "rpn.head", "rpn.anchor_generator", "rpn.decode_boxes", "rpn.filter_proposals",
               "roi_heads.box_roi_pool", "roi_heads.box_head", "roi_heads.box_predictor",
               "roi_heads.postprocess_detections", "roi_heads.mask_roi_pool", "roi_heads.mask_head",
               "roi_heads.mask_predictor", "roi_heads.maskrcnn_inference", "paste_masks")


def _difference(a, b, atol: float) -> str | None:
    """How two recorded stage outputs differ (None: equal within ``atol``)."""
    if hasattr(a, "tensors") and hasattr(b, "tensors"):  # an ImageList
        a, b = a.tensors, b.tensors
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        if a.shape != b.shape:
            return f"shape {tuple(a.shape)} vs {tuple(b.shape)}"
        if a.numel() and not torch.allclose(a.float(), b.float(), atol=atol, rtol=0):
            return f"values differ by up to {(a.float() - b.float()).abs().max().item():.3g}"
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"keys {sorted(a)} vs {sorted(b)}"
        return next((f"[{k!r}] {d}" for k in a if (d := _difference(a[k], b[k], atol))), None)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{len(a)} items vs {len(b)}"
        return next((f"[{i}] {d}" for i, (x, y) in enumerate(zip(a, b, strict=True)) if (d := _difference(x, y, atol))),
                    None)
    return None if a == b else f"{a!r:.40} vs {b!r:.40}"


def first_parting(reference: MaskRCNN, yours: MaskRCNN, image: Tensor, atol: float = 1e-4) -> tuple[str, str] | None:
    """The first stage (in ``STAGE_ORDER``) whose output differs between two models on ``image``, and how; None
    when every stage agrees within ``atol``."""
    _, seen_ref = record_forward(reference, image)
    _, seen_yours = record_forward(yours, image)
    for stage in STAGE_ORDER:
        if stage in seen_ref and stage in seen_yours:
            difference = _difference(seen_ref[stage], seen_yours[stage], atol)
            if difference is not None:
                return stage, difference
    return None


@contextlib.contextmanager
def sampled_positives(model: nn.Module):
    """``with sampled_positives(model) as counts:`` each training forward of ``model`` (torchvision's or the
    course's) appends ``{"rpn": n, "roi": m, "rpn drawn": d, "roi drawn": e}``: how many positive anchors the RPN's
    sampler drew and how many positive proposals the RoI heads' sampler drew over the batch, and a fingerprint
    (CRC-32) of exactly which ones each drew, positives and negatives. The samplers are restored on exit."""
    counts: list[dict[str, int]] = []
    owners = {"rpn": model.rpn, "roi": model.roi_heads}
    saved = {key: owner.fg_bg_sampler for key, owner in owners.items()}

    def recording(key, sample):
        def recorded(matched_idxs):
            positive, negative = sample(matched_idxs)
            drawn = torch.cat([torch.cat([torch.where(p)[0], torch.where(n)[0] + len(n)])
                               for p, n in zip(positive, negative, strict=True)])
            entry = {key: int(sum(int(p.sum()) for p in positive)),
                     f"{key} drawn": zlib.crc32(drawn.cpu().numpy().astype(np.int64).tobytes())}
            if key == "rpn":  # the RPN samples first in every training forward
                counts.append(entry)
            else:
                counts[-1].update(entry)
            return positive, negative
        return recorded

    try:
        for key, owner in owners.items():
            owner.fg_bg_sampler = recording(key, saved[key])
        yield counts
    finally:
        for key, owner in owners.items():
            owner.fg_bg_sampler = saved[key]


def first_sampling_difference(a: list[dict[str, int]], b: list[dict[str, int]]) -> int | None:
    """The first step (0-based) where the two runs' samplers drew different anchors or RoIs (another number of
    positives, or the same number of other ones), or None."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
