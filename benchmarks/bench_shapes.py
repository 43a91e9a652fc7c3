"""How long generating the shapes data takes (the foundation issue asks: 1000 images of 128x128 in under
a minute on CPU). Prints images per second; run as `python benchmarks/bench_shapes.py [N]`."""

import sys
import tempfile
import time
from pathlib import Path

from course_lib.data.shapes import make_shapes_dataset


def main(n: int = 1000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()  # not a Timer: one generation run into a fresh folder, measured once
        ann = make_shapes_dataset(Path(tmp) / "bench", n, seed=0, progress=False)
        seconds = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in ann.parent.rglob("*") if p.is_file()) / 2**20
    print(f"shapes: {n} images of 128x128 (PNGs, instance masks, sidecars, COCO JSON) in {seconds:.1f} s "
          f"= {n / seconds:.0f} images/s, {size_mb:.1f} MB on disk")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
