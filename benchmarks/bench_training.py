"""Benchmark: the course's training loop against a plain torchvision-reference-style loop, same model and data.

The course loop is ``course_lib.engine.train_one_epoch`` as ``fit`` runs it: non-finite loss check,
gradient clipping (max norm 10), per-iteration loss history, progress bar (silent when headless) and the
data-wait timing. The plain loop is the minimum::

    for images, targets in loader:
        loss = sum(model(images, targets).values())
        optimizer.zero_grad(); loss.backward(); optimizer.step()

Both train the same model (the course checkpoint with new predictors for the new shapes, SGD 0.005 /
0.9 / 0.0005) on the same batches of ``shapes_split("new_train")``, in interleaved chunks of
``--iters`` iterations (which loop goes first alternates), so that a busy machine slows both alike.
Prints images/s per loop by wall clock and by this process's CPU time, the ratio course / plain
(goal >= 0.95), the course loop's median step time, and how much of its time it waited for the
DataLoader (with ``--workers`` worker processes).

Run:  python benchmarks/bench_training.py [--iters 8] [--repeats 5] [--batch-size 4] [--workers 0]
                                          [--threads 0] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("COURSE_HEADLESS", "1")  # no progress bar output in the timings' way

import torch  # noqa: E402

from course_lib.data.coco_dataset import CocoInstanceDataset, collate_fn, get_transform  # noqa: E402
from course_lib.data.shapes import shapes_split  # noqa: E402
from course_lib.detection.course_model import (  # noqa: E402
    get_instance_segmentation_model,
    load_course_model,
)
from course_lib.training.engine import make_sgd, train_one_epoch  # noqa: E402
from course_lib.utils.device import get_device  # noqa: E402


def plain_loop(model, optimizer, loader, device):
    model.train()
    for images, targets in loader:
        images = [img.to(device) for img in images]
        targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=8, help="iterations per timed chunk")
    p.add_argument("--repeats", type=int, default=5, help="timed chunks per loop")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    ann = shapes_split("new_train", progress=False)
    dataset = CocoInstanceDataset(ann.parent / "images", ann, get_transform(train=True))
    n = args.iters * args.batch_size
    subset = torch.utils.data.Subset(dataset, range(min(n, len(dataset))))
    model = get_instance_segmentation_model(4, load_course_model()).to(device)
    optimizer = make_sgd([q for q in model.parameters() if q.requires_grad])

    def loader():
        return torch.utils.data.DataLoader(subset, batch_size=args.batch_size, shuffle=False,
                                           num_workers=args.workers, collate_fn=collate_fn)

    histories = []

    def course():
        histories.append(train_one_epoch(model, optimizer, loader(), device, 0, progress=False))

    def plain():
        plain_loop(model, optimizer, loader(), device)

    loops = {"course": course, "plain": plain}
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in loops}
    for name in loops:  # warm-up (allocator, first-call costs), not timed
        loops[name]()
    histories.clear()
    for r in range(args.repeats):
        for name in (("course", "plain") if r % 2 == 0 else ("plain", "course")):
            # Not torch.utils.benchmark.Timer: each chunk is read on two clocks at once (wall and CPU), a Timer has one.
            w0, c0 = time.perf_counter(), time.process_time()
            loops[name]()
            times[name].append((time.perf_counter() - w0, time.process_time() - c0))
    images = len(subset)
    print(f"device {device}, {torch.get_num_threads()} threads, batch {args.batch_size}, {args.workers} workers, "
          f"{args.repeats} x {args.iters} iterations per loop, interleaved")
    rate = {}
    for name, ts in times.items():
        wall = statistics.median(t[0] for t in ts)
        cpu = statistics.median(t[1] for t in ts)
        rate[name] = (images / wall, images / cpu)
        print(f"{name:6s} loop: {images / wall:6.2f} images/s wall ({wall / args.iters:.3f} s/iteration), "
              f"{images / cpu:6.2f} images/s per CPU second")
    print(f"ratio course / plain: {rate['course'][0] / rate['plain'][0]:.3f} (wall), "
          f"{rate['course'][1] / rate['plain'][1]:.3f} (CPU time); goal >= 0.95")
    steps = [s for h in histories for s in h["time_step"]]
    waits = [s for h in histories for s in h["time_data"]]
    share = sum(waits) / (sum(waits) + sum(steps))
    print(f"course loop: median step {statistics.median(steps):.3f} s, median data wait {statistics.median(waits) * 1000:.1f} ms "
          f"per iteration; data loading takes {share:.1%} of the iteration time "
          f"({'the loop waits for data' if share > 0.1 else 'data loading does not hold the loop up'})")


if __name__ == "__main__":
    main()
