"""Benchmark: CPU latency of the exported (TorchScript) course model against the eager model.

Both run the same shapes images (``course_lib.training.export.check_images`` plus more of the same
kind), one image per call, in interleaved rounds (which one goes first alternates), so that a busy
machine slows both alike (``torch.utils.benchmark.Timer`` through ``benchmarks/_timing.py``, ``Compare``'s table
at the end). The outputs are checked equal first. Prints the median milliseconds per
image of each and the ratio exported / eager (below 1: the export is faster).

Run:  python benchmarks/bench_export.py [--model data/course_maskrcnn.pt] [--repeats 7] [--images 8] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch
from _timing import compare, interleaved

from course_lib.data.shapes import render_sample
from course_lib.training.export import check_images, compare_outputs, script_model
from course_lib.training.model_file import load_model_file
from course_lib.utils.paths import CHECKPOINT


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(CHECKPOINT))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, _, _ = load_model_file(args.model)
    scripted = script_model(model)
    assert compare_outputs(model, scripted, check_images(0)) == [], "outputs differ"
    images = [torch.from_numpy(render_sample(7, i).image).permute(2, 0, 1).float() / 255 for i in range(args.images)]
    runners = {"eager": lambda x: model([x]), "torchscript": lambda x: scripted([x])}
    with torch.no_grad():
        for run in runners.values():  # warm-up (TorchScript optimises on its first calls)
            for x in images[:3]:
                run(x)
        measured = interleaved({name: (lambda run=run: [run(x) for x in images]) for name, run in runners.items()},
                               args.repeats, "wall", label="course model, CPU", sub_label=f"{len(images)} images")
    med = {k: m.median / len(images) * 1000 for k, m in measured.items()}
    print(f"CPU, {args.threads} thread(s), {len(images)} images x {args.repeats} rounds; outputs equal")
    for k, v in med.items():
        print(f"  {k:12s} {v:7.2f} ms/image (median)")
    print(f"  ratio torchscript / eager: {med['torchscript'] / med['eager']:.2f}")
    compare(measured.values())


if __name__ == "__main__":
    main()
