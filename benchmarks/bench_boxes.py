"""Benchmark: course_lib.ops.boxes.nms and box_iou against torchvision.ops on CPU.

NMS inputs (1000, 2000, 5000 boxes, realistic overlaps), two kinds:

- "proposals": boxes jittered around 40 objects in an 800x800 image (what an RPN produces),
- "uniform": centres uniform over 800x800, sides 16-256 pixels,

each at IoU thresholds 0.5 and 0.7. Every case first checks that the kept indices are exactly
torchvision's. box_iou: N x N boxes, and 20 gt boxes x 20000 anchors (RPN matching).

Prints time ratios course / torchvision (< 1: the course version is faster), measured in the
same run with interleaved repeats (``torch.utils.benchmark.Timer``, ``benchmarks/_timing.py``), median of
each, and ``torch.utils.benchmark.Compare``'s table at the end. torchvision's CPU NMS is single-threaded, so
torch runs with 1 thread by default (``--threads 0`` keeps torch's default). Times are CPU time
of this process by default, which other programs running on the machine do not distort;
``--clock wall`` measures wall-clock time instead.

Run:  python benchmarks/bench_boxes.py [--repeats 7] [--threads 1] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse

import torch
import torchvision
from _timing import compare, interleaved

from course_lib.ops.boxes import box_iou, nms

CLOCK = "cpu"  # set by --clock
MEASUREMENTS = []  # every case's two Measurements, for the Compare table


def uniform_boxes(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ctr = torch.rand(n, 2, generator=g) * 800
    wh = torch.rand(n, 2, generator=g) * 240 + 16
    return torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1), torch.rand(n, generator=g)


def proposal_boxes(n: int, seed: int = 0, objects: int = 40):
    g = torch.Generator().manual_seed(seed)
    ctr, wh = torch.rand(objects, 2, generator=g) * 800, torch.rand(objects, 2, generator=g) * 200 + 20
    i = torch.randint(0, objects, (n,), generator=g)
    c = ctr[i] + torch.randn(n, 2, generator=g) * wh[i] * 0.2
    s = wh[i] * torch.exp(torch.randn(n, 2, generator=g) * 0.2)
    return torch.cat([c - s / 2, c + s / 2], dim=1), torch.rand(n, generator=g)


def ratio(ours, theirs, repeats: int, label: str, case: str) -> tuple[float, float, float]:
    """Interleaved timings; returns (median ours s, median theirs s, ratio of medians)."""
    m = interleaved({"torchvision": theirs, "course": ours}, repeats, CLOCK, label=label, sub_label=case)
    MEASUREMENTS.extend(m.values())
    mo, mt = m["course"].median, m["torchvision"].median
    return mo, mt, mo / mt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 0 = torch's default")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    global CLOCK
    CLOCK = args.clock
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, CPU, "
          f"{torch.get_num_threads()} thread(s), {args.clock} time, median of {args.repeats}")

    print("\nnms                         kept    course    torchvision   ratio")
    worst_5000 = 0.0
    for kind, make in (("proposals", proposal_boxes), ("uniform", uniform_boxes)):
        for n in (1000, 2000, 5000):
            boxes, scores = make(n)
            for thr in (0.5, 0.7):
                keep = torchvision.ops.nms(boxes, scores, thr)
                assert torch.equal(nms(boxes, scores, thr), keep), "nms differs from torchvision"
                mo, mt, r = ratio(lambda boxes=boxes, scores=scores, thr=thr: nms(boxes, scores, thr),
                                  lambda boxes=boxes, scores=scores, thr=thr: torchvision.ops.nms(boxes, scores, thr),
                                  args.repeats, "nms", f"{kind} n={n} iou>{thr}")
                if n == 5000:
                    worst_5000 = max(worst_5000, r)
                print(f"  {kind:9s} n={n:4d} iou>{thr}  {len(keep):5d}  {mo * 1e3:7.1f} ms "
                      f"{mt * 1e3:8.1f} ms   {r:5.2f}")
    print(f"  worst nms ratio at 5000 boxes: {worst_5000:.2f} (target <= 3)")

    print("\nbox_iou                              course    torchvision   ratio")
    cases = [("1000 x 1000", uniform_boxes(1000)[0], uniform_boxes(1000, 1)[0]),
             ("2000 x 2000", uniform_boxes(2000)[0], uniform_boxes(2000, 1)[0]),
             ("20 gt x 20000 anchors", uniform_boxes(20)[0], uniform_boxes(20000, 1)[0])]
    for name, b1, b2 in cases:
        torch.testing.assert_close(box_iou(b1, b2), torchvision.ops.box_iou(b1, b2))
        mo, mt, r = ratio(lambda b1=b1, b2=b2: box_iou(b1, b2),
                          lambda b1=b1, b2=b2: torchvision.ops.box_iou(b1, b2), args.repeats, "box_iou", name)
        print(f"  {name:24s}  {mo * 1e3:8.1f} ms {mt * 1e3:8.1f} ms   {r:5.2f}")
    compare(MEASUREMENTS, f"\ntorch.utils.benchmark.Compare ({args.clock} time, medians):")


if __name__ == "__main__":
    main()
