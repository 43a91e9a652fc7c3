"""Grading throughput: N copies of the solved notebook 02's exercises graded with ``--jobs 2`` against ``--jobs 1``.

    python benchmarks/bench_grading.py              # 20 copies (a few minutes on 2 cores)
    python benchmarks/bench_grading.py --copies 2   # a quick run

Each copy is a student folder holding the solution's exercise cells (the parts ``course grade`` checks);
both runs use the same seed, and their gradebooks are checked equal first. Prints the seconds per notebook
of each run and the throughput ratio, measured in this one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_lib.course import grade  # noqa: E402
from course_lib.utils.paths import REPO_ROOT  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--copies", type=int, default=20)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    source = nbformat.read(REPO_ROOT / "solutions" / "02_anchors_rpn.ipynb", as_version=4)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import torch")] + [
        nbformat.v4.new_code_cell(c.source) for c in source.cells
        if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for i in range(args.copies):
            (tmp / "submissions" / f"student{i:03d}").mkdir(parents=True)
            paths.append(tmp / "submissions" / f"student{i:03d}" / "02_anchors_rpn.ipynb")
            nbformat.write(nb, paths[-1])
        seconds = {}
        for jobs in (1, args.jobs):
            t0 = time.perf_counter()  # not a Timer: one grading run of minutes, whose reports are checked too
            reports = grade.grade_many(paths, jobs=jobs, seed=1)
            seconds[jobs] = time.perf_counter() - t0
            if any(r["error"] or r["score"] != r["out_of"] - len(r["quizzes"]) for r in reports):
                print(f"--jobs {jobs}: a copy of the solution did not earn full marks", file=sys.stderr)
                return 1
            csv = grade.csv_rows(reports)
            if jobs == 1:
                serial = csv
            elif csv != serial:
                print("the parallel gradebook differs from the serial one", file=sys.stderr)
                return 1
    for jobs, s in seconds.items():
        print(f"--jobs {jobs}: {s:7.1f} s for {args.copies} notebooks, {s / args.copies:5.2f} s per notebook")
    print(f"throughput ratio --jobs {args.jobs} / --jobs 1: {seconds[1] / seconds[args.jobs]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
