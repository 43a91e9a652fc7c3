"""Benchmark: course_lib.roi_align against torchvision.ops.roi_align on CPU.

Configuration (a Mask R-CNN box head on one FPN level): features 2x256x50x50 (stride 4 of a
200x200 image), 512 boxes (256 per image) of 4 to 104 pixels, 7x7 output, sampling_ratio=2,
aligned=True.

Prints the forward ratio and the forward+backward ratio, course / torchvision (< 1 means the
course version is faster), measured in the same run with interleaved repeats and medians
(``torch.utils.benchmark.Timer`` through ``benchmarks/_timing.py``; ``Compare``'s table at the end).
Wall-clock time with torch's default thread count by default (torchvision's CPU kernel is
single-threaded; ``--threads 1`` compares one thread with one thread). ``--clock cpu`` uses
this process's CPU time instead, which other programs on the machine distort less.

Run:  python benchmarks/bench_roi_align.py [--repeats 15] [--threads 0] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse

import torch
import torchvision
from _timing import compare, interleaved

from course_lib.ops.roi_align import roi_align

N, C, H, W = 2, 256, 50, 50
NUM_BOXES = 512
OUTPUT_SIZE = (7, 7)
SPATIAL_SCALE = 0.25  # boxes are in the pixels of a 200x200 image
SAMPLING_RATIO = 2
ALIGNED = True


def make_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(N, C, H, W, generator=g)
    image = H / SPATIAL_SCALE
    xy = torch.rand(NUM_BOXES, 2, generator=g) * image * 0.8
    wh = torch.rand(NUM_BOXES, 2, generator=g) * (image / 2) + 4
    batch = torch.arange(NUM_BOXES).remainder(N).float()[:, None]
    boxes = torch.cat([batch, xy, (xy + wh).clamp(max=image)], dim=1)
    return features, boxes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    features, boxes = make_inputs()
    args_ = (OUTPUT_SIZE, SPATIAL_SCALE, SAMPLING_RATIO, ALIGNED)
    impls = {"course": roi_align, "torchvision": torchvision.ops.roi_align}

    # Same answer first.
    diff = (impls["course"](features, boxes, *args_) - impls["torchvision"](features, boxes, *args_)).abs().max()
    assert diff < 1e-5, f"outputs differ by {diff}"

    x = features.clone().requires_grad_(True)
    grad_out = torch.randn(NUM_BOXES, C, *OUTPUT_SIZE)

    def forward(fn):
        with torch.no_grad():
            fn(features, boxes, *args_)

    def forward_backward(fn):
        x.grad = None
        fn(x, boxes, *args_).backward(grad_out)

    measured = {}  # (name, kind) -> Measurement; the Timer warms each function up, interleaved repeats
    for kind, run in (("fwd", forward), ("fwd+bwd", forward_backward)):
        m = interleaved({name: (lambda fn=fn, run=run: run(fn)) for name, fn in impls.items()}, args.repeats,
                        args.clock, label="roi_align", sub_label=kind)
        measured.update({(name, kind): v for name, v in m.items()})
    med = {key: m.median for key, m in measured.items()}
    print(
        f"roi_align CPU, features {N}x{C}x{H}x{W}, {NUM_BOXES} boxes, output {OUTPUT_SIZE}, "
        f"sampling_ratio={SAMPLING_RATIO}, aligned={ALIGNED}, torch threads={torch.get_num_threads()}, "
        f"{args.clock} clock, {args.repeats} repeats (medians)"
    )
    for kind in ("fwd", "fwd+bwd"):
        c, t = med["course", kind], med["torchvision", kind]
        print(f"{kind:8s} course {c * 1e3:8.1f} ms  torchvision {t * 1e3:8.1f} ms  ratio {c / t:.3f}")
    compare(measured.values())


if __name__ == "__main__":
    main()
