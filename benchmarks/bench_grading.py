"""Grading cost: isolation against ``--no-sandbox``, and ``--jobs 2`` throughput against ``--jobs 1``.

    python benchmarks/bench_grading.py              # 8 copies (a few minutes on 2 cores)
    python benchmarks/bench_grading.py --copies 2   # a quick run

Each copy is a student folder holding the solved notebook 02's exercise cells (what ``course grade`` checks).
Measured in this one run, with the same seed everywhere (the gradebooks are checked equal first):

1. seconds per notebook graded one at a time, isolated (bubblewrap: the notebook's sandbox and the probe's)
   and with ``--no-sandbox``; the ratio isolated / unisolated                            goal <= 1.3
2. the isolated class with ``--jobs 2`` and ``--jobs 1``: throughput ratio                  goal >= 1.7 on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_lib.course.grading.grader import GradeOptions, grade_many  # noqa: E402
from course_lib.course.grading.report import csv_rows  # noqa: E402
from course_lib.utils.paths import REPO_ROOT  # noqa: E402


def class_of(folder: Path, copies: int) -> list[Path]:
    source = nbformat.read(REPO_ROOT / "solutions" / "02_anchors_rpn.ipynb", as_version=4)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import torch")] + [
        nbformat.v4.new_code_cell(c.source) for c in source.cells
        if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source]
    paths = []
    for i in range(copies):
        (folder / f"student{i:03d}").mkdir(parents=True)
        paths.append(folder / f"student{i:03d}" / "02_anchors_rpn.ipynb")
        nbformat.write(nb, paths[-1])
    return paths


def timed(paths: list[Path], jobs: int, sandboxed: bool) -> tuple[float, list]:
    t0 = time.perf_counter()  # not a Timer: one grading run of minutes, whose reports are checked too
    reports = grade_many(paths, jobs=jobs, seed=1, options=GradeOptions(timeout=300, sandboxed=sandboxed))
    seconds = time.perf_counter() - t0
    wrong = [r["student"] for r in reports if r["error"] or r["score"] != r["out_of"] - len(r["quizzes"])]
    if wrong:
        raise SystemExit(f"jobs {jobs}, sandboxed {sandboxed}: copies of the solution lost points: {wrong}")
    for r in reports:
        for e in r["exercises"]:
            e.pop("review", None)  # flags depend on the class, not on how it was graded
    return seconds, csv_rows(reports)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = class_of(Path(tmp) / "submissions", args.copies)
        plain, plain_csv = timed(paths, 1, sandboxed=False)
        isolated, isolated_csv = timed(paths, 1, sandboxed=True)
        parallel, parallel_csv = timed(paths, args.jobs, sandboxed=True)
    if not plain_csv == isolated_csv == parallel_csv:
        print("the gradebooks differ between the runs", file=sys.stderr)
        return 1
    n = args.copies
    print(f"--no-sandbox, --jobs 1: {plain:7.1f} s for {n} notebooks, {plain / n:5.2f} s per notebook")
    print(f"isolated,     --jobs 1: {isolated:7.1f} s for {n} notebooks, {isolated / n:5.2f} s per notebook")
    print(f"isolated,     --jobs {args.jobs}: {parallel:7.1f} s for {n} notebooks, {parallel / n:5.2f} s per notebook")
    print(f"isolation cost (isolated / --no-sandbox, --jobs 1): {isolated / plain:.2f}x  (goal <= 1.3)")
    print(f"throughput ratio --jobs {args.jobs} / --jobs 1 (isolated): {isolated / parallel:.2f}x  (goal >= 1.7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
