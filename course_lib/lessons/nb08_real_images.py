"""Notebook 08's figures and counts: what the nuclei image holds, the split, the comparison of two runs.
Taught in: 08_real_images
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib.training.error_analysis import greedy_match, mask_iou

# Nuclei only in train (blue), only in val (orange), across the line (reddish purple): course palette colours
# that stay apart for every colour vision.
TRAIN, VAL, CROSSING = "#0072b2", "#e69f00", "#cc79a7"
TILE_COLOUR = "#f0e442"  # yellow, the training tile's dashed outline


def touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs ``(a, b)``, ``a < b``, of instances whose pixels touch (4-neighbours: left-right or up-down)."""
    pairs = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        touch = (a != b) & (a > 0) & (b > 0)
        pairs |= {(int(min(x, y)), int(max(x, y))) for x, y in zip(a[touch], b[touch], strict=True)}
    return pairs


def nuclei_statistics(labels: np.ndarray) -> dict:
    """Counts a shapes image never has: how many instances, their sizes, how many touch one another or the border."""
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    pairs = touching_pairs(labels)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return {"instances": len(ids), "area_min": int(areas.min()), "area_median": float(np.median(areas)),
            "area_max": int(areas.max()), "touching_pairs": len(pairs),
            "touching_instances": len({i for p in pairs for i in p}),
            "on_border": int(np.count_nonzero(border > 0)), "foreground": float(np.mean(labels > 0))}


def plot_split(rgb: np.ndarray, labels: np.ndarray, val_x0: int, tile: int = 128, train_stride: int = 64):
    """The whole image with every nucleus coloured by split, the split line, the tile grid and one
    overlapping training tile. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle
    from torchvision.utils import draw_segmentation_masks

    left, right = set(np.unique(labels[:, :val_x0])) - {0}, set(np.unique(labels[:, val_x0:])) - {0}
    groups = [(TRAIN, left - right), (VAL, right - left), (CROSSING, left & right)]
    canvas = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    for col, ids in groups:
        if ids:
            mask = torch.from_numpy(np.isin(labels, sorted(ids)))[None]
            canvas = draw_segmentation_masks(canvas, mask, alpha=0.45, colors=col)
    h, w = labels.shape
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
    axes[0].imshow(rgb)
    axes[0].set_title("the image (stretched to 8 bits)", fontsize=10)
    ax = axes[1]
    ax.imshow(canvas.permute(1, 2, 0).numpy())
    for v in range(tile, max(h, w), tile):
        ax.axhline(v - 0.5, color="white", lw=0.6, alpha=0.6)
        if v != val_x0:
            ax.axvline(v - 0.5, color="white", lw=0.6, alpha=0.6)
    ax.axvline(val_x0 - 0.5, color="white", lw=2.5)
    ax.add_patch(Rectangle((train_stride - 0.5, train_stride - 0.5), tile, tile, fill=False, ec=TILE_COLOUR,
                           lw=2, ls="--"))
    ax.set_title(f"train x < {val_x0} | val x >= {val_x0}; {tile}-px tiles", fontsize=10)
    handles = [Patch(color=TRAIN, label=f"train only ({len(groups[0][1])})"),
               Patch(color=VAL, label=f"val only ({len(groups[1][1])})"),
               Patch(color=CROSSING, label=f"across the line ({len(groups[2][1])}): val only"),
               Patch(fill=False, ec=TILE_COLOUR, ls="--", label=f"a training tile (stride {train_stride})")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    for a in axes:
        a.axis("off")
    fig.tight_layout()
    from course_lib.lessons.draw import with_alt

    return with_alt(fig, f"Left: the {w} by {h} pixel microscopy image, bright nuclei on a dark ground. Right: the "
                         f"same image with every nucleus coloured by split: {len(groups[0][1])} only left of the "
                         f"line at x = {val_x0} (training, blue), {len(groups[1][1])} only right of it "
                         f"(validation, orange) and {len(groups[2][1])} across the line (kept for validation, "
                         f"purple); a thick white line marks the split, thin lines the {tile}-pixel tiles, and a "
                         f"dashed yellow square one training tile at stride {train_stride}, overlapping its "
                         "neighbours.")


def comparison_table(reports: dict[str, dict], seconds: dict[str, float] | None = None) -> str:
    """``{run name: evaluate() report}`` -> a small text table of segm and bbox AP / AP50 / AP75."""
    cols = [(t, n) for t in ("segm", "bbox") for n in ("AP", "AP50", "AP75")]
    width = max(len(name) for name in reports) + 2
    head = " " * width + " ".join(f"{t + ' ' + n:>10s}" for t, n in cols)
    head += "  train s" if seconds else ""
    lines = [head]
    for name, rep in reports.items():
        row = f"{name:{width}s}" + " ".join(f"{rep[t][n]:10.3f}" for t, n in cols)
        lines.append(row + (f"  {seconds[name]:7.0f}" if seconds else ""))
    return "\n".join(lines)


def interval_table(intervals: dict[str, dict], stats: tuple[str, ...] = ("AP50", "AP75", "AP")) -> str:
    """``{run name: bootstrap_ap(...)}`` -> each run's figures with their bootstrap intervals, as text.

    With exactly two runs, a last row holds their paired difference (first - second, on the same draws:
    ``ap_difference``), and says for each figure whether its interval leaves out 0.
    """
    from course_lib.training.evaluation import ap_difference

    if not intervals:
        raise ValueError("interval_table: no runs to show")
    names = list(intervals)
    first = intervals[names[0]][stats[0]]
    width = max(len(n) for n in [*names, "difference"]) + 2
    head = (f"{first.iou_type}, {first.confidence:.0%} bootstrap intervals over {len(first.img_ids)} images "
            f"({len(first.samples)} draws)")
    lines = [head, " " * width + "".join(f"{s:24s}" for s in stats)]
    for name in names:
        lines.append(f"{name:{width}s}" + "".join(f"{str(intervals[name][s]):24s}" for s in stats))
    if len(names) == 2:
        diffs = [ap_difference(intervals[names[0]][s], intervals[names[1]][s]) for s in stats]
        lines.append(f"{'difference':{width}s}" + "".join(f"{str(d):24s}" for d in diffs))
        verdicts = [f"{s} {'beyond' if d.low > 0 or d.high < 0 else 'within'}" for s, d in zip(stats, diffs,
                                                                                              strict=True)]
        lines.append(f"({names[0]} - {names[1]}; gap beyond the resampling noise or within it: "
                     + ", ".join(verdicts) + ")")
    return "\n".join(line.rstrip() for line in lines)


def matched_nuclei(output: dict, labels: np.ndarray, score_threshold: float = 0.5, iou_threshold: float = 0.5) -> int:
    """How many nuclei of the instance-id image ``labels`` (H, W) a detection with ``score >= score_threshold`` in
    ``output`` (masks (N, 1, H, W), probabilities or bool, in the same pixels) matches with mask IoU >=
    ``iou_threshold``, one detection per nucleus, best score first (COCO's greedy matching)."""
    keep = output["scores"] >= score_threshold
    order = torch.argsort(output["scores"][keep], descending=True)
    masks = output["masks"][keep][order][:, 0]
    predicted = masks if masks.dtype == torch.bool else masks > 0.5
    ids = [int(k) for k in np.unique(labels) if k != 0]
    truth = torch.stack([torch.from_numpy(labels == k) for k in ids])
    if len(predicted) == 0:
        return 0
    return int((greedy_match(mask_iou(predicted, truth), iou_threshold) >= 0).sum())
