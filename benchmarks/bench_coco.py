"""Benchmark course_lib.data: building a COCO file from 1000 shapes images, and reading it back.

Run: ``python benchmarks/bench_coco.py [--images 1000] [--workers 2]``. The shapes images are
generated once under ``data/generated/shapes_bench_coco`` (not timed); then it times, printing
wall and CPU seconds (on a busy machine the CPU time is what the work costs alone),

- ``build_coco_dataset`` from the instance-id PNGs + sidecars, RLE and polygon (target: <= 30 s),
- ``validate_coco`` on the result (images decoded),
- ``CocoInstanceDataset.__getitem__`` per image, plain and with a ``transforms.v2`` augmentation
  (flip, small affine with scale jitter, sanitise, ToDtype),
- images/s through a ``DataLoader`` with 2 workers and the same augmentation.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torchvision.transforms import v2

from course_lib.data.coco_build import build_coco_dataset
from course_lib.data.coco_dataset import CocoInstanceDataset, collate_fn
from course_lib.data.coco_validate import validate_coco
from course_lib.data.shapes import CLASSES, shapes_split


def augmentation() -> v2.Compose:
    return v2.Compose([
        v2.RandomHorizontalFlip(0.5),
        v2.RandomAffine(degrees=5, translate=(0.05, 0.05), scale=(0.9, 1.1)),
        v2.SanitizeBoundingBoxes(),
        v2.ToDtype(torch.float32, scale=True),
    ])


def timed(fn, *args, **kwargs) -> tuple[float, float, object]:
    """(wall seconds, this process's CPU seconds, result). On a busy machine the CPU time is what the
    call would take alone; the wall time is what it took here."""
    # Not torch.utils.benchmark.Timer: one call read on two clocks at once (a Timer has one), and builds run once.
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, time.process_time() - c0, out


def per_item_ms(dataset, n: int) -> tuple[float, float]:
    dataset[0]  # warm-up (lazy imports, first allocation)
    wall, cpu, _ = timed(lambda: [dataset[i % len(dataset)] for i in range(n)])
    return 1000 * wall / n, 1000 * cpu / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--getitem", type=int, default=200, help="images timed for __getitem__")
    args = parser.parse_args()

    ann_file = shapes_split("bench_coco", num_images=args.images, seed=10, progress=False)
    root = ann_file.parent
    print(f"data: {args.images} shapes images in {root}")

    with tempfile.TemporaryDirectory() as tmp:
        cpu = {}
        for encoding in ("rle", "polygon"):
            out = Path(tmp) / f"{encoding}.json"
            wall, cpu[encoding], _ = timed(build_coco_dataset, root / "images", root / "masks", out,
                                           list(CLASSES), encoding=encoding)
            print(f"build_coco_dataset, {encoding:7s}: {wall:6.2f} s wall, {cpu[encoding]:6.2f} s CPU "
                  f"({1000 * cpu[encoding] / args.images:.2f} ms CPU/image; target <= 30 s)")
        print(f"  polygon / rle build CPU time: {cpu['polygon'] / cpu['rle']:.2f}x")
        wall, cpu_s, report = timed(validate_coco, Path(tmp) / "rle.json", root / "images")
        print(f"validate_coco (images decoded): {wall:6.2f} s wall, {cpu_s:6.2f} s CPU -> "
              f"{report.summary.split(': ', 1)[1]}")

    # One thread, as in DataLoader workers: per-image tensors are small, and on a busy machine idle
    # OpenMP threads spin and slow everything down (2 threads measured ~15x slower here under load).
    torch.set_num_threads(1)
    plain = CocoInstanceDataset(root / "images", ann_file)
    augmented = CocoInstanceDataset(root / "images", ann_file, transforms=augmentation())
    plain_wall, plain_cpu = per_item_ms(plain, args.getitem)
    aug_wall, aug_cpu = per_item_ms(augmented, args.getitem)
    print(f"__getitem__ (main process, 1 torch thread), ms/image wall (CPU): "
          f"plain {plain_wall:.2f} ({plain_cpu:.2f}), augmented {aug_wall:.2f} ({aug_cpu:.2f}); "
          f"augmented / plain CPU {aug_cpu / plain_cpu:.2f}x")

    loader = torch.utils.data.DataLoader(augmented, batch_size=8, shuffle=True, num_workers=args.workers,
                                         collate_fn=collate_fn, generator=torch.Generator().manual_seed(0))
    wall, _, n = timed(lambda: sum(len(images) for images, _ in loader))
    print(f"DataLoader, {args.workers} workers, augmented, batch 8: {n / wall:.0f} images/s wall "
          f"({n} images in {wall:.2f} s, worker start-up included)")


if __name__ == "__main__":
    main()
