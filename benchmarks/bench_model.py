"""Benchmark: the course-built Mask R-CNN (``course_lib.detection.mask_rcnn``) against torchvision's, same weights.

Measured in one run, printed as ratios course / torchvision (< 1 means the course model is faster):

1. eval forward of the course model on a batch of 8 val images (128 px)            target <= 1.0
2. eval forward of torchvision's R50-FPN on one 800x1000 image (random weights,
   ``box_predictor.cls_score.weight`` x10 so that there are detections)             target <= 1.0
3. one training step (forward + backward) of the course model, 4 images + targets   target <= 1.2
4. the loss curves of both models trained from the course checkpoint under one seed (SGD lr 0.01,
   momentum 0.9, batch 2, the same batches): the first iteration whose total losses differ by more than
   1e-4 relative, the max and mean relative difference, and the difference of their 10-iteration moving
   averages. (The course's RoIAlign rounds differently from torchvision's kernel, ~1e-7; some iteration's
   sampling decision eventually flips and the curves part there.)

The outputs are checked equal first (detections, losses). Timings interleave the two models (which goes first
alternates) and report medians, so that load from other programs hits both alike (``torch.utils.benchmark.Timer``
through ``benchmarks/_timing.py``; ``Compare``'s table of parts 1-3 at the end). When a ratio misses its
target, a per-stage breakdown (transform, backbone, rpn, roi_heads, rest = postprocess) and the top cProfile
entries of both models are printed.

On a shared machine use ``--threads 1 --clock cpu``: with 2 OpenMP threads and the second core busy, every
parallel torch op waits for a scheduler time slice (~16 ms measured for a 1M-element add), which slows the
course's many tensor ops far more than torchvision's single-threaded nms / roi_align kernels.

Run:  python benchmarks/bench_model.py [--repeats 5] [--r50-repeats 3] [--iterations 100] [--skip-curve]
                                       [--skip-r50] [--threads 0] [--clock wall|cpu] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch
from _timing import CLOCKS, compare, interleaved
from torchvision.models.detection import maskrcnn_resnet50_fpn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_lib.data import shapes as data_shapes  # noqa: E402
from course_lib.detection.course_model import load_course_model  # noqa: E402
from course_lib.detection.mask_rcnn import from_torchvision  # noqa: E402
from course_lib.training.engine import train_steps  # noqa: E402

CLOCK_NAME = "wall"  # set by --clock
CLOCK = time.perf_counter  # the same clock, for the stage breakdown's hooks and the loss curve's seconds
MEASUREMENTS = []  # parts 1-3, for the Compare table
STAGES = ("transform", "backbone", "rpn", "roi_heads")


def shapes_sample(index: int, seed: int = 1):
    """One shapes image and its target; seed 1 renders the val split's images, seed 0 the train split's."""
    return data_shapes.shapes_sample(seed, index)


def r50_pair():
    torch.manual_seed(0)
    tv = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=5)
    with torch.no_grad():  # random weights score every class about equally: spread the scores
        tv.roi_heads.box_predictor.cls_score.weight.mul_(10)
    return tv.eval(), from_torchvision(tv).eval()


# ------------------------------------------------------------------------------------------- timing

class StageTimer:
    """Time spent in each stage module's forward (pre/post forward hooks), summed over calls.

    Read with the plain clock, not a ``Timer``: a stage's time is a slice of one forward call.
    """

    def __init__(self, model):
        self.totals = dict.fromkeys(STAGES, 0.0)
        self._start, self._handles = {}, []
        for name in STAGES:
            module = getattr(model, name)
            self._handles.append(module.register_forward_pre_hook(lambda m, a, n=name: self._begin(n)))
            self._handles.append(module.register_forward_hook(lambda m, a, o, n=name: self._end(n)))

    def _begin(self, name):
        self._start[name] = CLOCK()

    def _end(self, name):
        self.totals[name] += CLOCK() - self._start.pop(name)

    def remove(self):
        for h in self._handles:
            h.remove()


def timed(fn) -> float:
    """One call's total, read with the stage hooks' clock (the breakdown); speed itself is ``compare_times``'."""
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def compare_times(runs: dict, repeats: int, label: str) -> dict:
    """``runs``: name -> zero-argument callable. ``Timer`` measurements of interleaved repeats (alternating order,
    a warm-up call each round)."""
    measured = interleaved(runs, repeats, CLOCK_NAME, label="course / torchvision", sub_label=label)
    MEASUREMENTS.extend(measured.values())
    return measured


def breakdown(models: dict, run_one, repeats: int, top: int = 12) -> None:
    """Per-stage times (medians of ``repeats`` interleaved runs under stage hooks) and the top cProfile entries
    (one run) of each model."""
    stage_times = {name: {s: [] for s in (*STAGES, "rest", "total")} for name in models}
    timers = {name: StageTimer(model) for name, model in models.items()}
    try:
        for r in range(repeats):
            for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
                timer = timers[name]
                timer.totals = dict.fromkeys(STAGES, 0.0)
                total = timed(lambda name=name: run_one(models[name]))
                for stage in STAGES:
                    stage_times[name][stage].append(timer.totals[stage])
                stage_times[name]["rest"].append(total - sum(timer.totals.values()))
                stage_times[name]["total"].append(total)
    finally:
        for timer in timers.values():
            timer.remove()
    print(f"  per-stage breakdown (seconds, medians of {repeats}; rest = postprocess and glue):")
    print("    " + f"{'model':12s}" + "".join(f"{s:>11s}" for s in (*STAGES, "rest", "total")))
    for name, per_stage in stage_times.items():
        print("    " + f"{name:12s}" + "".join(f"{statistics.median(v):11.3f}" for v in per_stage.values()))
    for name, model in models.items():
        prof = cProfile.Profile()
        prof.enable()
        run_one(model)
        prof.disable()
        print(f"  cProfile of {name}, top {top} by cumulative time within the library/torchvision ops:")
        stats = pstats.Stats(prof)
        rows = []
        for (file, _line, fn), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
            if ("course_lib" in file and "/ops/" in file) or ("torchvision/ops" in file) or "roi_heads" in file \
                    or "rpn" in file or "transform" in file or "poolers" in file:
                rows.append((cumtime, tottime, ncalls, f"{Path(file).parent.name}/{Path(file).name}:{fn}"))
        for cum, tot, n, label in sorted(rows, reverse=True)[:top]:
            print(f"    {cum:8.3f} s cum {tot:8.3f} s own {n:6d} calls  {label}")
        print(f"  cProfile of {name}, top {top // 2} by own time (any function):")
        own = sorted(((v[2], v[1], k) for k, v in stats.stats.items()), reverse=True)[:top // 2]
        for tot, n, (file, _line, fn) in own:
            print(f"    {tot:8.3f} s own {n:6d} calls  {Path(file).name}:{fn}")


def report(label: str, times: dict, target: float) -> bool:
    c, t = times["course"].median, times["torchvision"].median
    ok = c / t <= target
    print(f"{label:44s} course {c * 1e3:9.1f} ms  torchvision {t * 1e3:9.1f} ms  ratio {c / t:.3f}  "
          f"(target <= {target}: {'met' if ok else 'MISSED'})")
    return ok


# ------------------------------------------------------------------------------------------- checks

def detection_differences(a: list[dict], b: list[dict], atol=1e-4, mask_atol=1e-3) -> str:
    """'' when ``b`` has the detections of ``a`` (the tolerances of tests/detection/test_mask_rcnn.py: boxes
    within ``atol`` + 1e-6 relative, scores within ``atol``, masks within ``mask_atol``), else what differs."""
    problems = []
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if len(x["boxes"]) != len(y["boxes"]) or not torch.equal(x["labels"], y["labels"]):
            problems.append(f"image {i}: {len(x['boxes'])} vs {len(y['boxes'])} detections or other labels")
            continue
        for key, tol, rtol in (("boxes", atol, 1e-6), ("scores", atol, 0.0), ("masks", mask_atol, 0.0)):
            diff = (x[key] - y[key]).abs()
            bad = diff > tol + rtol * x[key].abs()
            if bad.any():
                rel = diff[bad] / x[key].abs()[bad]
                problems.append(f"image {i} {key}: {int(bad.sum())}/{bad.numel()} beyond tolerance, max abs "
                                f"{float(diff.max()):.2e}, max rel of those {float(rel.max()):.2e}")
    return "; ".join(problems)


def train_losses(model, images, targets, seed=0) -> dict:
    torch.manual_seed(seed)  # the samplers draw with torch.randperm: same seed, same samples
    return model(images, [dict(t) for t in targets])


# ------------------------------------------------------------------------------------------- parts

def bench_eval_course(repeats: int, profile: bool) -> None:
    tv = load_course_model()
    models = {"course": from_torchvision(tv).eval(), "torchvision": tv.eval()}
    images = [shapes_sample(i, seed=1)[0] for i in range(8)]

    def run_one(model):
        with torch.no_grad():
            return model(images)

    diff = detection_differences(run_one(models["torchvision"]), run_one(models["course"]), mask_atol=1e-4)
    print(f"  (course model: detections {'equal' if not diff else 'DIFFER: ' + diff})")
    label = "eval, course model, 8 val images 128 px"
    times = compare_times({n: (lambda m=m: run_one(m)) for n, m in models.items()}, repeats, label)
    if not report(label, times, 1.0) or profile:
        breakdown(models, run_one, repeats)


def bench_eval_r50(repeats: int, profile: bool) -> None:
    tv, ours = r50_pair()
    models = {"course": ours, "torchvision": tv}
    image = torch.rand(3, 800, 1000, generator=torch.Generator().manual_seed(0))

    def run_one(model):
        with torch.no_grad():
            return model([image])

    expected = run_one(tv)
    diff = detection_differences(expected, run_one(ours))
    print(f"  (R50-FPN: {len(expected[0]['boxes'])} detections, {'equal' if not diff else 'DIFFER: ' + diff})")
    label = "eval, R50-FPN, one 800x1000 image"
    times = compare_times({n: (lambda m=m: run_one(m)) for n, m in models.items()}, repeats, label)
    if not report(label, times, 1.0) or profile:
        breakdown(models, run_one, repeats)


def bench_train_step(repeats: int, profile: bool) -> None:
    tv = load_course_model().train()
    models = {"course": from_torchvision(tv).train(), "torchvision": tv}
    batch = [shapes_sample(i, seed=0) for i in range(4)]
    images, targets = [b[0] for b in batch], [b[1] for b in batch]

    def run_one(model):
        model.zero_grad(set_to_none=True)
        loss = sum(train_losses(model, images, targets).values())
        loss.backward()
        return loss

    a, b = run_one(models["torchvision"]).item(), run_one(models["course"]).item()
    assert abs(a - b) <= 1e-5 * abs(a) + 1e-6, f"training losses differ: {a} vs {b}"
    label = "train step (fwd+bwd), course model, 4 images"
    times = compare_times({n: (lambda m=m: run_one(m)) for n, m in models.items()}, repeats, label)
    if not report(label, times, 1.2) or profile:
        breakdown(models, run_one, repeats)


def bench_loss_curve(iterations: int) -> None:
    """Both models from the course checkpoint, same seed and batches, SGD 0.01 / 0.9, batch 2."""
    batches = []
    for i in range(iterations):
        pairs = [shapes_sample(2 * i + k, seed=0) for k in range(2)]
        batches.append(([p[0] for p in pairs], [p[1] for p in pairs]))
    tv = load_course_model()
    ours = from_torchvision(tv)  # a copy of the same start
    curves, seconds = {}, {}
    for name, model in (("torchvision", tv), ("course", ours)):
        t0 = CLOCK()  # one training run's duration, printed for information (no Timer: it is run once)
        history = train_steps(model, batches, lr=0.01, momentum=0.9, seed=0, desc=name)
        seconds[name] = CLOCK() - t0
        curves[name] = torch.tensor([h["loss"] for h in history], dtype=torch.float64)
    ref, got = curves["torchvision"], curves["course"]
    rel = (got - ref).abs() / ref.abs()
    parted = torch.where(rel > 1e-4)[0]
    first = int(parted[0]) if len(parted) else None
    window = min(10, iterations)
    kernel = torch.full((1, 1, window), 1.0 / window, dtype=torch.float64)
    ma_ref = torch.nn.functional.conv1d(ref[None, None], kernel)[0, 0]
    ma_got = torch.nn.functional.conv1d(got[None, None], kernel)[0, 0]
    ma_rel = (ma_got - ma_ref).abs() / ma_ref.abs()
    print(f"loss curves over {iterations} iterations (SGD lr 0.01 momentum 0.9, batch 2, seed 0; "
          f"{seconds['course']:.1f} s course, {seconds['torchvision']:.1f} s torchvision):")
    print(f"  first iteration with |diff| > 1e-4 relative: {first if first is not None else 'none'} (0-based)")
    if first is not None:  # a jump (a sampling decision flipped) or a slow drift (rounding growing)?
        around = range(max(first - 3, 0), min(first + 6, iterations))
        print("  relative difference around it: " + ", ".join(f"{i}: {float(rel[i]):.1e}" for i in around))
    print(f"  relative difference per iteration: max {rel.max():.2e} (iteration {int(rel.argmax())}), "
          f"mean {rel.mean():.2e}; iterations within 1%: {int((rel <= 0.01).sum())}/{iterations}")
    print(f"  {window}-iteration moving averages: max relative difference {ma_rel.max():.2e}, "
          f"mean {ma_rel.mean():.2e}; last window {ma_ref[-1]:.4f} (torchvision) vs {ma_got[-1]:.4f} (course)")
    print(f"  total loss, first -> last: torchvision {ref[0]:.4f} -> {ref[-1]:.4f}, "
          f"course {got[0]:.4f} -> {got[-1]:.4f}")


def main() -> None:
    global CLOCK, CLOCK_NAME
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of the course-model parts")
    parser.add_argument("--r50-repeats", type=int, default=3, help="timed repeats of the R50-FPN eval")
    parser.add_argument("--iterations", type=int, default=100, help="iterations of the loss-curve comparison")
    parser.add_argument("--skip-curve", action="store_true", help="skip the loss-curve comparison")
    parser.add_argument("--skip-r50", action="store_true", help="skip the R50-FPN eval")
    parser.add_argument("--profile", action="store_true", help="print the breakdown even when a target is met")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall clock, or this process's CPU time (less distorted by other programs)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    CLOCK_NAME, CLOCK = args.clock, CLOCKS[args.clock]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.clock} clock, medians of "
          f"{args.repeats} (R50: {args.r50_repeats}) interleaved repeats; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    bench_eval_course(args.repeats, args.profile)
    if not args.skip_r50:
        bench_eval_r50(args.r50_repeats, args.profile)
    bench_train_step(args.repeats, args.profile)
    compare(MEASUREMENTS)
    if not args.skip_curve:
        bench_loss_curve(args.iterations)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
