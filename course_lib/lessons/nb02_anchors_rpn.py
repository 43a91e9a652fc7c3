"""Notebook 02's computations and pictures: anchors, matching, sampling, box coding, objectness,
proposals and their recall. Taught in: 02_anchors_rpn
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
import torchvision
from matplotlib.patches import FancyArrowPatch, Rectangle
from torch import Tensor

from course_lib.detection._utils import Matcher, decode_boxes, encode_boxes
from course_lib.detection.rpn import assign_targets_to_anchors, filter_proposals, rpn_head_outputs
from course_lib.lessons.draw import GT, NEG, NEU, POS, add_box, panel_grid, show_image, with_alt
from course_lib.utils.colours import PALETTE
from course_lib.utils.ui import headless

RATIO_COLOURS = PALETTE[1:7]  # one colour per aspect ratio


def anchor_figure(image: Tensor, anchors: list[Tensor], feature_sizes: list[tuple[int, int]],
                  anchors_per_cell: int, sizes: list[int] | None = None, ratios: list[float] | None = None,
                  size: float = 3.0):
    """One panel per level: every anchor centre (dots) and the anchors of the centre cell.
    ``sizes`` (one per level) and ``ratios`` only label the picture."""
    h, w = image.shape[-2:]
    fig, axes = panel_grid(len(anchors), size)
    for k, (ax, a, (gh, gw)) in enumerate(zip(axes.flat, anchors, feature_sizes, strict=True)):
        stride = h // gh
        a = a.view(gh, gw, anchors_per_cell, 4)
        centre = a[gh // 2, gw // 2]
        centres = (a[:, :, 0, :2] + a[:, :, 0, 2:]) / 2
        ax.set_facecolor("#eeeeee")
        show_image(ax, image)
        ax.add_patch(Rectangle((0, 0), w, h, fill=False, ec="black", lw=1))
        ax.plot(centres[..., 0].flatten().numpy(), centres[..., 1].flatten().numpy(), ".", color="white",
                ms=max(1.5, min(5.0, 60 / gw)), mec="black", mew=0.3)
        for r, box in enumerate(centre):
            label = f"ratio {ratios[r % len(ratios)]}" if ratios else None
            add_box(ax, box, RATIO_COLOURS[r % len(RATIO_COLOURS)], lw=1.6, label=label)
        x1, y1 = min(0.0, centre[:, 0].min().item()), min(0.0, centre[:, 1].min().item())
        x2, y2 = max(float(w), centre[:, 2].max().item()), max(float(h), centre[:, 3].max().item())
        pad = 0.04 * max(x2 - x1, y2 - y1)
        ax.set_xlim(x1 - pad, x2 + pad)
        ax.set_ylim(y2 + pad, y1 - pad)
        ax.set_aspect("equal")
        what = f"size {sizes[k]} anchors" if sizes else "anchors"
        ax.set_title(f"P{k + 2}: stride {stride}, {gh}x{gw} centres\n{what} of the centre cell", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if ratios:
        axes.flat[-1].legend(fontsize=7, loc="lower right", framealpha=0.8, title="height/width",
                             title_fontsize=7)
    fig.tight_layout()
    levels = "; ".join(f"P{k + 2}: {gh} by {gw} centres" + (f", size {sizes[k]} anchors" if sizes else "")
                       for k, (gh, gw) in enumerate(feature_sizes))
    return with_alt(fig, f"One panel per pyramid level over the same {h} by {w} image, each with a white dot on "
                         f"every anchor centre and the {anchors_per_cell} anchors of the centre cell drawn as boxes"
                         + (f" (aspect ratios {', '.join(str(r) for r in ratios)})" if ratios else "") + f": {levels}. "
                         "The finest level's anchors are smaller than the shapes and the coarsest level's larger "
                         "than the image; the middle levels fit the objects.")


def iou_figure(pairs: list[tuple[Tensor, Tensor]], ious: list[float], size: float = 2.6):
    """One panel per pair of boxes: both boxes, their overlap filled, and the IoU."""
    fig, axes = panel_grid(len(pairs), size)
    for ax, (a, b), iou in zip(axes.flat, pairs, ious, strict=True):
        add_box(ax, a, PALETTE[3], lw=2)  # blue
        add_box(ax, b, PALETTE[1], lw=2)  # vermillion
        ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
        ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
        if ix2 > ix1 and iy2 > iy1:
            add_box(ax, (ix1, iy1, ix2, iy2), PALETTE[5], fill=True, alpha=0.5, lw=0)  # reddish purple
        both = torch.stack([torch.as_tensor(a), torch.as_tensor(b)]).float()
        lo, hi = both[:, :2].min().item(), both[:, 2:].max().item()
        ax.set_xlim(lo - 3, hi + 3)
        ax.set_ylim(hi + 3, lo - 3)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"IoU = {iou:.2f}", fontsize=10)
    fig.suptitle("IoU = overlap (purple) / union (everything inside either box)", fontsize=10)
    fig.tight_layout()
    return with_alt(fig, "Pairs of boxes, a blue one and a vermillion one, with their overlap filled purple, and "
                         "the IoU of each pair: " + "; ".join(f"{iou:.2f}" for iou in ious) + ". IoU is the "
                         "overlap divided by the area inside either box; it drops fast as one box moves off the "
                         "other, and boxes that do not touch have IoU 0.")


def anchor_label_counts(labels: Tensor, best_iou: Tensor, num_anchors_per_level: list[int],
                        high: float = 0.7) -> str:
    """A table per level: anchors, positives (and how many of them are low-quality matches,
    best IoU < ``high``), neutral and negative anchors."""
    lines = [f"{'level':6s}{'anchors':>9s}{'positive':>10s}{'(low-quality)':>15s}{'neutral':>9s}{'negative':>10s}"]
    totals = [0, 0, 0, 0, 0]
    for k, (lab, iou) in enumerate(zip(labels.split(num_anchors_per_level), best_iou.split(num_anchors_per_level),
                                       strict=True)):
        row = [len(lab), int((lab == 1).sum()), int(((lab == 1) & (iou < high)).sum()), int((lab == -1).sum()),
               int((lab == 0).sum())]
        totals = [t + r for t, r in zip(totals, row, strict=True)]
        lines.append(f"{'P' + str(k + 2):6s}{row[0]:>9d}{row[1]:>10d}{row[2]:>15d}{row[3]:>9d}{row[4]:>10d}")
    lines.append(f"{'all':6s}{totals[0]:>9d}{totals[1]:>10d}{totals[2]:>15d}{totals[3]:>9d}{totals[4]:>10d}")
    return "\n".join(lines)


def anchor_labels_figure(image: Tensor, gt_boxes: Tensor, anchors: Tensor, labels: Tensor, best_iou: Tensor,
                         high: float = 0.7, size: float = 3.6):
    """Left: the positive anchors (solid: IoU >= ``high``; dashed: low-quality matches). Middle: the
    neutral anchors (ignored in training). Right: negative anchor centres, which are everywhere else."""
    fig, axes = panel_grid(3, size)
    h, w = image.shape[-2:]
    pos, neu, neg = labels == 1, labels == -1, labels == 0
    titles = [f"{int(pos.sum())} positive anchors\n(dashed: low-quality match, IoU < {high})",
              f"{int(neu.sum())} neutral anchors\n(IoU in [0.3, 0.7): ignored)",
              f"{int(neg.sum())} negative anchors (centres)\n(IoU < 0.3 with every object)"]
    for ax, title in zip(axes.flat, titles, strict=True):
        show_image(ax, image, grey=True)
        for g in gt_boxes:
            add_box(ax, g, GT, lw=1.0, ls=":")
        ax.set_title(title, fontsize=9)
    for a, iou in zip(anchors[pos], best_iou[pos], strict=True):
        add_box(axes[0, 0], a, POS, lw=2.0, ls="-" if iou >= high else "--")
    for a in anchors[neu]:
        add_box(axes[0, 1], a, NEU, lw=0.8, alpha=0.8)
    c = (anchors[neg, :2] + anchors[neg, 2:]) / 2
    axes[0, 2].plot(c[:, 0].numpy(), c[:, 1].numpy(), ".", color=NEG, ms=1.5, alpha=0.5)
    for ax in axes.flat:
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    n_low = int(((best_iou < high) & pos).sum())
    return with_alt(fig, f"Three copies of the greyed image with the objects' boxes dotted white. Left: the "
                         f"{int(pos.sum())} positive anchors in bluish green, {n_low} of them dashed as low-quality "
                         f"matches (best IoU below {high}). Middle: the {int(neu.sum())} neutral anchors in sky "
                         "blue, clustered around the objects. Right: the centres of the "
                         f"{int(neg.sum())} negative anchors as small vermillion dots, everywhere else.")


def sampling_figure(image: Tensor, gt_boxes: Tensor, anchors: Tensor, labels: Tensor, pos_mask: Tensor,
                    neg_mask: Tensor, size: float = 3.6):
    """Left: the sampled anchors (positive boxes, negative centres). Right: counts before and after."""
    fig, axes = plt.subplots(1, 2, figsize=(2.3 * size, size + 0.3), gridspec_kw={"width_ratios": [1, 1.2]})
    ax = axes[0]
    h, w = image.shape[-2:]
    show_image(ax, image, grey=True)
    for g in gt_boxes:
        add_box(ax, g, GT, lw=1.0, ls=":")
    neg = anchors[neg_mask.bool()]
    c = (neg[:, :2] + neg[:, 2:]) / 2
    ax.plot(c[:, 0].numpy(), c[:, 1].numpy(), "o", color=NEG, ms=3, mec="white", mew=0.4,
            label=f"{len(neg)} negatives (centres)")
    for i, a in enumerate(anchors[pos_mask.bool()]):
        add_box(ax, a, POS, lw=2, label=f"{int(pos_mask.sum())} positives" if i == 0 else None)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="lower right", framealpha=0.85)
    ax.set_title("the anchors one training step uses", fontsize=9)
    ax = axes[1]
    avail = [int((labels == 1).sum()), int((labels == 0).sum()), int((labels == -1).sum())]
    taken = [int(pos_mask.sum()), int(neg_mask.sum()), 0]
    xs = torch.arange(3).float()
    ax.bar((xs - 0.2).numpy(), avail, width=0.4, color="#bbbbbb", label="available")
    ax.bar((xs + 0.2).numpy(), taken, width=0.4, color=[POS, NEG, NEU])
    for x, a, t in zip(xs.tolist(), avail, taken, strict=True):
        ax.text(x - 0.2, a, str(a), ha="center", va="bottom", fontsize=8)
        ax.text(x + 0.2, max(t, 1), str(t), ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(0.8, max(avail) * 3)
    ax.set_xticks(xs.numpy(), ["positive", "negative", "neutral"])
    ax.set_ylabel("anchors (log scale)")
    from matplotlib.patches import Patch

    # One legend entry per colour: the sampled bars take the colour of their kind (no neutral is ever sampled).
    ax.legend(handles=[Patch(color="#bbbbbb", label="available"), Patch(color=POS, label="sampled positives"),
                       Patch(color=NEG, label="sampled negatives")], fontsize=8)
    ax.set_title("available (left bar) vs sampled (right bar)", fontsize=9)
    fig.tight_layout()
    return with_alt(fig, f"Left: the greyed image with the anchors one training step uses: {taken[0]} positive "
                         f"anchors as bluish-green boxes on the objects and {taken[1]} negative anchors as vermillion "
                         "dots spread over the background. Right: a bar chart on a log scale of available versus "
                         f"sampled anchors: positive {avail[0]} available, {taken[0]} sampled; negative {avail[1]} "
                         f"available, {taken[1]} sampled; neutral {avail[2]} available, none sampled.")


def box_coding_figure(anchor: Tensor, gt: Tensor, codes: Tensor, size: float = 4.0):
    """An anchor, a ground-truth box, the shift between their centres and the four numbers that code it."""
    fig, ax = plt.subplots(figsize=(size * 1.7, size))
    a, g = anchor.tolist(), gt.tolist()
    add_box(ax, a, PALETTE[3], lw=2, ls="--", label="anchor (the reference)")
    add_box(ax, g, POS, lw=2, label="ground truth (the target)")
    ac = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2)
    gc = ((g[0] + g[2]) / 2, (g[1] + g[3]) / 2)
    ax.plot(*ac, "o", color=PALETTE[3])
    ax.plot(*gc, "o", color=POS)
    ax.add_patch(FancyArrowPatch(ac, gc, arrowstyle="-|>", mutation_scale=12, color="black"))
    x1, y1 = min(a[0], g[0]), min(a[1], g[1])
    x2, y2 = max(a[2], g[2]), max(a[3], g[3])
    half = max(x2 - x1, y2 - y1) / 2 + 6
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    ax.set_xlim(mx - half, mx + half)
    ax.set_ylim(my + half, my - half)
    ax.set_aspect("equal")
    dx, dy, dw, dh = codes.tolist()
    aw, ah = a[2] - a[0], a[3] - a[1]
    gw, gh = g[2] - g[0], g[3] - g[1]
    text = (f"anchor: centre ({ac[0]:g}, {ac[1]:g}), size {aw:g} x {ah:g}\n"
            f"target: centre ({gc[0]:g}, {gc[1]:g}), size {gw:g} x {gh:g}\n\n"
            f"dx = ({gc[0]:g} - {ac[0]:g}) / {aw:g} = {dx:+.3f}\n"
            f"dy = ({gc[1]:g} - {ac[1]:g}) / {ah:g} = {dy:+.3f}\n"
            f"dw = log({gw:g} / {aw:g}) = {dw:+.3f}\n"
            f"dh = log({gh:g} / {ah:g}) = {dh:+.3f}")
    ax.text(1.04, 0.5, text, transform=ax.transAxes, fontsize=9, family="monospace", va="center")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.set_title("box coding (weights 1, 1, 1, 1, as in the RPN)", fontsize=10)
    fig.tight_layout()
    return with_alt(fig, f"An anchor (dashed blue box, centre ({ac[0]:g}, {ac[1]:g}), {aw:g} by {ah:g} pixels) "
                         f"and its ground-truth box (bluish green, centre ({gc[0]:g}, {gc[1]:g}), {gw:g} by {gh:g}), "
                         f"with an arrow from one centre to the other. Beside it the four codes: dx {dx:+.3f}, "
                         f"dy {dy:+.3f}, dw {dw:+.3f}, dh {dh:+.3f}: the shift in units of the anchor's size and "
                         "the log of the size ratio.")


@dataclass
class RPNOutput:
    """Everything the RPN computes for a batch before it filters: one row per anchor, anchor order.

    ``anchors``, ``deltas`` and ``decoded``: (B, N, 4); ``objectness``: (B, N) logits;
    ``maps``: per level, (B, A, H_l, W_l) objectness probabilities; ``image_sizes``: (h, w) each.
    """

    anchors: Tensor
    deltas: Tensor
    decoded: Tensor
    objectness: Tensor
    maps: list[Tensor]
    num_anchors_per_level: list[int]
    image_sizes: list[tuple[int, int]]


def _head_outputs(model, images: list[Tensor]):
    """The model's transform and backbone, then ``rpn_head_outputs`` with its RPN's head and anchor generator."""
    image_list, _ = model.transform(images)
    features = model.backbone(image_list.tensors)
    return image_list, rpn_head_outputs(head=model.rpn.head, anchor_generator=model.rpn.anchor_generator,
                                        images=image_list, features=features)


def rpn_forward(model, images: list[Tensor]) -> RPNOutput:
    """Run a torchvision detection model's transform, backbone and RPN head (no filtering) on images.

    The same steps as ``RegionProposalNetwork.forward`` up to ``filter_proposals``: objectness and
    deltas for every anchor, and the anchors moved by their deltas (``decoded``). Coordinates are
    those of the transformed images (the same as the inputs for the course model's 128x128 images).
    """
    with torch.no_grad():
        image_list, head = _head_outputs(model, images)
        anchors = torch.stack(head.anchors)
        b = len(images)
        decoded = decode_boxes(head.pred_bbox_deltas, anchors.reshape(-1, 4), (1.0, 1.0, 1.0, 1.0))
    return RPNOutput(anchors, head.pred_bbox_deltas.view(b, -1, 4), decoded.view(b, -1, 4),
                     head.objectness.view(b, -1), [torch.sigmoid(lg) for lg in head.objectness_maps],
                     head.num_anchors_per_level, list(image_list.image_sizes))


def proposals(out: RPNOutput, pre_nms_top_n: int = 500, post_nms_top_n: int = 250, nms_thresh: float = 0.7,
              min_size: float = 1e-3, moved: bool = True, rpn=None) -> tuple[list[Tensor], list[Tensor]]:
    """``filter_proposals`` on an ``RPNOutput``: per image, proposals (K, 4) and scores (K,), best first.

    ``nms_thresh=1.0`` switches NMS off (no IoU is above 1). ``moved=False`` keeps the anchors where they
    are (same objectness, box codes ignored), to see what the box codes add. With ``rpn`` (a
    ``RegionProposalNetwork``, e.g. ``model.rpn``) the same steps run through torchvision's
    ``filter_proposals``, in a new torchvision RPN with ``rpn``'s head and anchors and these settings (``rpn``
    is left as it is): the same boxes, faster on a CPU (C++ NMS).
    """
    boxes = out.decoded if moved else out.anchors
    if rpn is None:
        return filter_proposals(boxes, out.objectness, out.image_sizes, out.num_anchors_per_level,
                                pre_nms_top_n, post_nms_top_n, nms_thresh, 0.0, min_size)
    matcher, sampler = rpn.proposal_matcher, rpn.fg_bg_sampler
    tv_rpn = torchvision.models.detection.rpn.RegionProposalNetwork(
        rpn.anchor_generator, rpn.head, matcher.high_threshold, matcher.low_threshold,
        sampler.batch_size_per_image, sampler.positive_fraction,
        pre_nms_top_n={"training": pre_nms_top_n, "testing": pre_nms_top_n},
        post_nms_top_n={"training": post_nms_top_n, "testing": post_nms_top_n},
        nms_thresh=nms_thresh, score_thresh=0.0)  # no .eval(): it would switch rpn's head too; same top-n both ways
    tv_rpn.min_size = min_size  # a public setting the constructor does not take (1e-3 by default)
    with torch.no_grad():
        return tv_rpn.filter_proposals(boxes, out.objectness, out.image_sizes, out.num_anchors_per_level)


def objectness_figure(image: Tensor, maps: list[Tensor], gt_boxes: Tensor | None = None,
                      anchor_sizes: list[int] | None = None, size: float = 2.5):
    """The image, then per level the RPN's objectness (max over the anchors of a cell), 0 to 1.

    Cell (y, x) of a stride-s map is drawn centred on (x * s, y * s), where its anchors are centred.
    """
    h, w = image.shape[-2:]
    fig, axes = panel_grid(len(maps) + 1, size)
    show_image(axes[0, 0], image)
    axes[0, 0].set_title("image", fontsize=9)
    for k, (ax, m) in enumerate(zip(axes.flat[1:], maps, strict=True)):
        m = (m[0].max(dim=0).values if m.dim() == 4 else m).cpu()  # (B, A, H, W) -> max over anchors
        s = h / m.shape[-2]
        im = ax.imshow(m.numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                       extent=(-s / 2, m.shape[-1] * s - s / 2, m.shape[-2] * s - s / 2, -s / 2))
        if gt_boxes is not None:
            for g in gt_boxes:
                add_box(ax, g, GT, lw=0.8, ls=":")
        ax.set_xlim(-s / 2, w - s / 2)
        ax.set_ylim(h - s / 2, -s / 2)
        name = f"P{k + 2}" + (f", anchors {anchor_sizes[k]} px" if anchor_sizes else "")
        ax.set_title(f"{name}\nmax {m.max().item():.2f}", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.012, pad=0.01)
    peaks = ", ".join(f"P{k + 2} {(m[0].max(dim=0).values if m.dim() == 4 else m).max().item():.2f}"
                      for k, m in enumerate(maps))
    return with_alt(fig, "The image, then one map per pyramid level of the RPN's objectness (the highest of a "
                         "cell's anchors, dark 0 to yellow 1), with the objects' boxes dotted. Highest value per "
                         f"level: {peaks}. Each object lights up the level whose anchors fit its size; the other "
                         "levels stay dark.")


def _draw_proposals(ax, image, boxes, scores, gt_boxes, title):
    h, w = image.shape[-2:]
    show_image(ax, image, grey=True)
    if gt_boxes is not None:
        for g in gt_boxes:
            add_box(ax, g, GT, lw=1.2, ls=":")
    cmap = plt.get_cmap("plasma")
    for b, s in list(zip(boxes.cpu(), scores.cpu(), strict=True))[::-1]:  # best drawn last, on top
        add_box(ax, b, cmap(float(s)), lw=1.2)
    ax.set_xlim(-1, w + 1)
    ax.set_ylim(h + 1, -1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def proposals_figure(image: Tensor, panels: list[tuple[Tensor, Tensor, str]], gt_boxes: Tensor | None = None,
                     size: float = 3.6):
    """One panel per ``(boxes, scores, title)``: proposals coloured by objectness (yellow = high),
    ground truth dotted white."""
    fig, axes = panel_grid(len(panels), size)
    for ax, (boxes, scores, title) in zip(axes.flat, panels, strict=True):
        _draw_proposals(ax, image, boxes, scores, gt_boxes, title)
    sm = plt.cm.ScalarMappable(cmap="plasma", norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, label="objectness")
    return with_alt(fig, "Proposals on the greyed image, coloured by objectness (dark purple low to yellow high), "
                         "ground truth dotted white; one panel each: " + "; ".join(
                             f"{title}: {len(boxes)} boxes" for boxes, _, title in panels) + ". Without NMS the best "
                         "boxes pile up as near-copies on the easiest objects; after NMS they spread over all of "
                         "them.")


def recall_curve(out: RPNOutput, gt_boxes: list[Tensor], counts: list[int], iou_thresholds=(0.5, 0.7),
                 nms_thresh: float = 0.7, pre_nms_top_n: int = 500, moved: bool = True, rpn=None) -> Tensor:
    """Proposal recall over all images of ``out``: ``(len(counts), len(iou_thresholds))``.
    ``moved`` and ``rpn`` as for ``proposals``."""
    from course_lib.detection.rpn import proposal_recall

    boxes, _ = proposals(out, pre_nms_top_n, max(counts), nms_thresh, moved=moved, rpn=rpn)
    return proposal_recall([b.cpu() for b in boxes], [g.float().cpu() for g in gt_boxes], iou_thresholds, counts)


def recall_figure(counts: list[int], curves: dict[str, Tensor], iou_thresholds=(0.5, 0.7), size: float = 3.6):
    """Recall against the number of proposals kept, one panel per IoU threshold, one line per curve."""
    fig, axes = panel_grid(len(iou_thresholds), size * 1.2)
    for t, (ax, thr) in enumerate(zip(axes.flat, iou_thresholds, strict=True)):
        for (label, curve), style in zip(curves.items(), ["o-", "s--", "^:", "d-."], strict=False):
            ax.plot(counts, curve[:, t].numpy(), style, label=label, ms=4)
        ax.set_xscale("log")
        ax.set_xticks(counts, [str(c) for c in counts], fontsize=7)
        ax.minorticks_off()
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.set_xlabel("proposals kept per image (best first)")
        ax.set_ylabel(f"recall at IoU {thr}")
        ax.set_title(f"objects found with IoU >= {thr}", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    best = "; ".join(f"{label}: " + ", ".join(f"{curve[-1, t].item():.2f} at IoU {thr}"
                                              for t, thr in enumerate(iou_thresholds))
                     for label, curve in curves.items())
    return with_alt(fig, f"Line charts of recall (0 to 1) against the number of proposals kept per image, "
                         f"{counts[0]} to {counts[-1]} on a log scale, one panel per IoU threshold "
                         f"({', '.join(str(t) for t in iou_thresholds)}), one line per ranking. Recall at "
                         f"{counts[-1]} proposals: {best}.")


def proposal_explorer(out: RPNOutput, image: Tensor, gt_boxes: Tensor | None = None, nms_thresh: float = 0.7,
                      top_k: int = 20, index: int = 0, rpn=None):
    """Sliders for the NMS IoU threshold and the number of proposals shown; the picture follows.

    In JupyterLab: an ``ipywidgets.interactive`` (returned; the notebook displays it). Headless (or
    without a widget front end): draws once with the given values and returns ``None``. ``rpn`` as for
    ``proposals`` (faster redraws).
    """
    def draw(nms_thresh=nms_thresh, top_k=top_k):
        boxes, scores = proposals(out, nms_thresh=nms_thresh, post_nms_top_n=1000, rpn=rpn)
        boxes, scores = boxes[index], scores[index]
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
        nms_note = "NMS off" if nms_thresh >= 1 else f"NMS at IoU {nms_thresh:.2f}"
        _draw_proposals(ax, image, boxes[:top_k], scores[:top_k], gt_boxes,
                        f"best {min(top_k, len(boxes))} of {len(boxes)} proposals ({nms_note})")
        with_alt(fig, f"The best {min(top_k, len(boxes))} of {len(boxes)} proposals ({nms_note}) on the greyed image, "
                      "coloured by objectness from dark purple (low) to yellow (high), the objects' boxes dotted "
                      "white. A lower NMS threshold leaves fewer, less overlapping boxes.")
        plt.show()
        return len(boxes)

    if headless():
        draw()
        return None
    import ipywidgets as W

    return W.interactive(
        draw,
        nms_thresh=W.FloatSlider(value=nms_thresh, min=0.1, max=1.0, step=0.05, description="NMS IoU",
                                 continuous_update=False),
        top_k=W.IntSlider(value=top_k, min=1, max=100, step=1, description="top k", continuous_update=False))


def rpn_loss_inputs(model, image: Tensor, gt_boxes: Tensor, seed: int = 0) -> dict:
    """The arguments of ``rpn_loss`` for one image, computed as ``RegionProposalNetwork.forward`` does in training.

    Head outputs in anchor order, anchor labels (``assign_targets_to_anchors`` with the RPN's 0.7 / 0.3
    matcher), regression targets (matched boxes encoded relative to their anchors) and the anchors the
    model's sampler draws after ``torch.manual_seed(seed)``. Returns a dict to call ``rpn_loss(**inputs)``.
    """
    with torch.no_grad():
        _, head = _head_outputs(model, [image])
    anchors = head.anchors[0]
    matcher = model.rpn.proposal_matcher
    labels, matched = assign_targets_to_anchors(anchors, gt_boxes.to(anchors),
                                                Matcher(matcher.high_threshold, matcher.low_threshold, True))
    torch.manual_seed(seed)
    pos, neg = model.rpn.fg_bg_sampler([labels])
    return dict(objectness=head.objectness, pred_bbox_deltas=head.pred_bbox_deltas, labels=[labels],
                regression_targets=[encode_boxes(matched, anchors)],
                sampled_pos_inds=torch.where(pos[0])[0], sampled_neg_inds=torch.where(neg[0])[0])


def torchvision_rpn_losses(model, image: Tensor, gt_boxes: Tensor, seed: int = 0) -> dict[str, float]:
    """torchvision's own RPN losses on one image: ``model.rpn`` in training mode after ``torch.manual_seed(seed)``."""
    was_training = model.rpn.training
    with torch.no_grad():
        image_list, targets = model.transform([image], [{"boxes": gt_boxes.to(image.device)}])
        features = model.backbone(image_list.tensors)
        model.rpn.train()
        try:
            torch.manual_seed(seed)
            _, losses = model.rpn(image_list, features, targets)
        finally:
            model.rpn.train(was_training)
    return {k: float(v) for k, v in losses.items()}
