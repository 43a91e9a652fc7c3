"""COCO evaluation: bbox and segm AP with pycocotools' ``COCOeval``. Taught in: 06_fine_tuning.
Used from 00_overview on to report the course checkpoint's quality.

``predict`` -> ``to_coco_results`` -> ``coco_eval`` (or all three: ``evaluate``): COCO's AP, AP50, AP75, AP by
object size and AR, for boxes and masks; ``format_report`` prints them as a table. ``bootstrap_ap`` adds an
interval to AP, AP50 or AP75 by resampling the images, ``ap_difference`` one to the gap between two models.
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass, field

import numpy as np
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_convert

from course_lib.data.masks import encode_mask
from course_lib.training.predict import binarize_masks, predict

# The 12 numbers COCOeval.summarize() prints, in its order.
STAT_NAMES = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large"]


def to_coco_results(outputs: dict[int, dict], mask_threshold: float = 0.5) -> list[dict]:
    """Model outputs -> COCO result dicts (xywh ``bbox``, RLE ``segmentation``, ``score``). ``masks`` may be
    probabilities (thresholded at ``mask_threshold``) or already bool; one mask at a time, so that a 12-megapixel
    photo's masks never exist as one float copy."""
    results = []
    for image_id, out in outputs.items():
        boxes = box_convert(out["boxes"], "xyxy", "xywh")  # COCO results use [x, y, width, height]
        masks = out.get("masks")
        for i in range(len(boxes)):
            r = {"image_id": image_id, "category_id": int(out["labels"][i]),
                 "bbox": [round(float(v), 3) for v in boxes[i]], "score": float(out["scores"][i])}
            if masks is not None:
                r["segmentation"] = encode_mask(binarize_masks(masks[i:i + 1], mask_threshold)[0].numpy())
            results.append(r)
    return results


def coco_eval(coco_gt, results: list[dict], iou_type: str, verbose: bool = False,
              img_ids: list[int] | None = None) -> COCOeval:
    """Run ``COCOeval`` for ``iou_type`` ('bbox' or 'segm') and return it (``.stats`` filled).

    ``img_ids`` limits the evaluation to those images (default: every image of ``coco_gt``).
    """
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_dt = coco_gt.loadRes(results) if results else None
        if coco_dt is None:  # no detections at all: every AP is 0
            ev = COCOeval(coco_gt, iouType=iou_type)
            ev.stats = np.zeros(12)
            return ev
        ev = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        if img_ids is not None:
            ev.params.imgIds = sorted(int(i) for i in img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def evaluate(model, dataset, device, batch_size: int = 8, progress: bool = True,
             iou_types: tuple[str, ...] = ("bbox", "segm"), verbose: bool = False) -> dict:
    """COCO AP of ``model`` on a ``CocoInstanceDataset`` (or a ``Subset`` of one: only its images count).

    Returns ``{"bbox": {"AP": ..., "AP50": ..., ...}, "segm": {...}, "evals": {iou_type: COCOeval},
    "outputs": {image_id: output}}``; the ``COCOeval`` objects hold precision arrays for PR curves
    (``eval['precision']``, see ``pr_curves``), the outputs are for error analysis and pictures.
    """
    outputs = predict(model, dataset, device, batch_size, progress)
    results = to_coco_results(outputs)
    coco_gt = dataset.coco if hasattr(dataset, "coco") else dataset.dataset.coco
    img_ids = None if hasattr(dataset, "coco") else sorted(outputs)
    report: dict = {"evals": {}, "outputs": outputs}
    for iou_type in iou_types:
        ev = coco_eval(coco_gt, results, iou_type, verbose, img_ids)
        report[iou_type] = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats, strict=True)}
        report["evals"][iou_type] = ev
    return report


def format_report(report: dict, names: tuple[str, ...] = ("AP", "AP50", "AP75", "AP_small", "AP_medium",
                                                          "AP_large")) -> str:
    """The COCO figures of ``evaluate``'s report as a small table, rounded to 3 decimals (-1: no such objects)."""
    lines = ["       " + " ".join(f"{n:>9s}" for n in names)]
    for iou_type in ("bbox", "segm"):
        if iou_type in report:
            lines.append(f"{iou_type:6s} " + " ".join(f"{report[iou_type][n]:9.3f}" for n in names))
    return "\n".join(lines)


# ------------------------------------------------------------------------------ uncertainty: the bootstrap

#: The statistics ``bootstrap_ap`` can resample, with their IoU threshold: COCO's AP over IoU 0.50:0.95, and the AP
#: at IoU 0.5 and 0.75 (all object sizes, up to 100 detections per image, as ``COCOeval.summarize`` reports them).
BOOTSTRAP_STATS = {"AP": None, "AP50": 0.5, "AP75": 0.75}


@dataclass(frozen=True)
class APInterval:
    """A COCO AP figure with a bootstrap percentile interval (``bootstrap_ap``, ``ap_difference``).

    ``estimate`` is the figure on the images as they are; ``low``..``high`` holds the middle ``confidence`` of the
    figures in ``samples`` (one per resample of the images). ``draws`` holds each resample's images as positions in
    ``img_ids``; two intervals with equal ``draws`` were computed on the same resamples and can be paired.
    ``undefined`` counts resamples without a ground-truth object, which have no AP and are left out of the interval.
    """

    stat: str
    iou_type: str
    estimate: float
    low: float
    high: float
    confidence: float
    samples: np.ndarray = field(repr=False)
    draws: np.ndarray = field(repr=False)
    img_ids: tuple[int, ...] = field(repr=False)
    undefined: int = 0

    @property
    def width(self) -> float:
        return self.high - self.low

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _check_stats(stats, who: str) -> tuple[str, ...]:
    stats = (stats,) if isinstance(stats, str) else tuple(stats)
    unknown = [s for s in stats if s not in BOOTSTRAP_STATS]
    if unknown or not stats:
        raise ValueError(f"{who}: stats must be some of {list(BOOTSTRAP_STATS)}, got {list(stats)}")
    return stats


def ap_of_draws(evaluated: COCOeval, draws: np.ndarray,
                stats: tuple[str, ...] = ("AP", "AP50", "AP75")) -> dict[str, np.ndarray]:
    """AP figures of an evaluated ``COCOeval`` (``evaluate()`` run) recomputed on resampled sets of its images.

    ``draws``: (R, n) int, each row n positions in ``evaluated.params.imgIds``; a position may repeat. COCO matches
    detections to objects image by image, so a resample's AP is COCOeval's own ``accumulate`` over the per-image
    results of its images, a repeated image counted as often as it was drawn (as if the data set held it twice,
    under two ids). Returns ``{stat: (R,) float64}``, ``nan`` for a resample without ground-truth objects.
    """
    stats = _check_stats(stats, "ap_of_draws")
    if not evaluated.evalImgs:
        raise ValueError("ap_of_draws: run COCOeval.evaluate() first (evalImgs is empty)")
    draws = np.asarray(draws)
    pe = evaluated._paramsEval
    n_images, n_areas = len(pe.imgIds), len(pe.areaRng)
    if draws.ndim != 2 or not np.issubdtype(draws.dtype, np.integer):
        raise ValueError(f"ap_of_draws: draws must be a 2-D integer array (resamples, images), got shape "
                         f"{draws.shape} of {draws.dtype}")
    if draws.size and (draws.min() < 0 or draws.max() >= n_images):
        raise ValueError(f"ap_of_draws: draws hold positions 0..{n_images - 1} of the evaluated images, "
                         f"got {draws.min()}..{draws.max()}")
    all_area = pe.areaRngLbl.index("all")
    n_cats = len(pe.catIds) if pe.useCats else 1
    first = [k * n_areas * n_images + all_area * n_images for k in range(n_cats)]
    per_cat = [evaluated.evalImgs[f:f + n_images] for f in first]  # evalImgs is ordered category, area, image
    params = copy.deepcopy(pe)  # only area "all" and the largest maxDets: what AP, AP50 and AP75 read
    params.areaRng, params.areaRngLbl, params.maxDets = [pe.areaRng[all_area]], ["all"], [pe.maxDets[-1]]
    rows = {s: None if BOOTSTRAP_STATS[s] is None else np.isclose(params.iouThrs, BOOTSTRAP_STATS[s]) for s in stats}
    sub = copy.copy(evaluated)  # shallow: params, _paramsEval, evalImgs and eval are replaced below
    out = {s: np.empty(len(draws)) for s in stats}
    with contextlib.redirect_stdout(io.StringIO()):  # accumulate prints its progress
        for r, row in enumerate(draws):
            params.imgIds = list(range(len(row)))  # a repeated image gets an id of its own
            sub.params, sub._paramsEval = params, params
            sub.evalImgs = [per_cat[k][i] for k in range(n_cats) for i in row]
            sub.accumulate(copy.copy(params))
            precision = sub.eval["precision"][:, :, :, 0, 0]  # (IoU thresholds, recall points, categories)
            for s, iou_rows in rows.items():
                p = precision if iou_rows is None else precision[iou_rows]
                defined = p[p > -1]  # -1: a category without objects in this resample (COCO leaves it out)
                out[s][r] = defined.mean() if defined.size else np.nan
    return out


def bootstrap_ap(coco_gt, results: list[dict], iou_type: str = "segm", stats=("AP", "AP50", "AP75"),
                 n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                 img_ids: list[int] | None = None) -> dict[str, APInterval]:
    """COCO AP, AP50 and AP75 (or the ``stats`` asked for), each with a bootstrap percentile interval over images.

    The images (``img_ids``, default every image of ``coco_gt``) are drawn ``n_resamples`` times with replacement,
    as many as there are, from a generator seeded with ``seed``; the figures are recomputed on each draw
    (``ap_of_draws``), and an interval is the middle ``confidence`` of a figure's values. It says how far the
    figure would move on another validation set of as many images like these; it knows nothing of what else varies
    (the training run's seed, the CPU). With few images it is a rough guide, and it tends to be too narrow.
    The same ``seed`` and images give the same draws, so two models' figures can be compared pairwise
    (``ap_difference``). Returns ``{stat: APInterval}``.
    """
    stats = _check_stats(stats, "bootstrap_ap")
    if n_resamples < 1:
        raise ValueError(f"bootstrap_ap: n_resamples must be at least 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"bootstrap_ap: confidence must be between 0 and 1, got {confidence}")
    ids = sorted(int(i) for i in (coco_gt.getImgIds() if img_ids is None else img_ids))
    if not ids:
        raise ValueError("bootstrap_ap: no images to resample")
    unknown = sorted(set(ids) - set(coco_gt.getImgIds()))
    if unknown:
        raise ValueError(f"bootstrap_ap: image ids {unknown[:5]} are not in the ground truth")
    if len(set(ids)) != len(ids):
        raise ValueError("bootstrap_ap: img_ids holds an id twice")
    draws = np.random.default_rng(seed).integers(0, len(ids), size=(n_resamples, len(ids)))
    if results:
        ev = coco_eval(coco_gt, results, iou_type, img_ids=ids)
        samples = ap_of_draws(ev, draws, stats)
        estimates = {s: v[0] for s, v in ap_of_draws(ev, np.arange(len(ids))[None], stats).items()}
    else:  # no detections at all: AP is 0 wherever there is an object to find
        has_objects = np.array([bool(coco_gt.getAnnIds(imgIds=[i], iscrowd=False)) for i in ids])
        zero = np.where(has_objects[draws].any(1), 0.0, np.nan)
        samples = {s: zero for s in stats}
        estimates = {s: 0.0 if has_objects.any() else np.nan for s in stats}
    return {s: _interval(s, iou_type, float(estimates[s]), samples[s], confidence, draws, tuple(ids)) for s in stats}


def _interval(stat, iou_type, estimate, samples, confidence, draws, ids) -> APInterval:
    defined = samples[~np.isnan(samples)]
    if not defined.size:
        raise ValueError(f"bootstrap_ap: no resample holds a ground-truth object, so {stat} is undefined")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(defined, [tail, 100 - tail])
    return APInterval(stat, iou_type, float(estimate), float(low), float(high), confidence, samples, draws, ids,
                      int(len(samples) - len(defined)))


def ap_difference(a: APInterval, b: APInterval) -> APInterval:
    """``a - b`` with a paired bootstrap interval: the difference on each resample both were computed on.

    Both must come from ``bootstrap_ap`` with the same images, seed and number of resamples (equal ``draws``), and
    be the same figure. An interval without 0 says the gap is larger than redrawing the images moves it.
    """
    if a.img_ids != b.img_ids or not np.array_equal(a.draws, b.draws):
        raise ValueError("ap_difference: the two figures were computed on different resamples; call bootstrap_ap "
                         "with the same images, seed and n_resamples for both")
    if a.stat != b.stat or a.iou_type != b.iou_type:
        raise ValueError(f"ap_difference: cannot subtract {b.iou_type} {b.stat} from {a.iou_type} {a.stat}")
    return _interval(a.stat, a.iou_type, a.estimate - b.estimate, a.samples - b.samples, a.confidence, a.draws,
                     a.img_ids)
