"""Runs course notebooks headless and prints each one's time and pass/fail.

    python -m course_lib run                     # every notebook in notebooks/ (stubs and all)
    python -m course_lib run solutions 00        # the solutions whose name starts with 00
    python -m course_lib run solutions --write   # execute solutions/ in place, storing outputs

Each notebook runs top to bottom in a fresh kernel, in its own folder, with ``COURSE_HEADLESS=1``.
Without ``--write`` the files on disk are left untouched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from course_lib.utils.paths import REPO_ROOT

# Time budgets in seconds per notebook, headless on an idle 2-core machine: about twice what they took there (06 and
# 08: 50-100 s each on a 2-core AMD EPYC VM). On a machine shared with other jobs 06 took 610 s and 08 255 s.
BUDGETS = {"00": 60, "01": 60, "02": 90, "03": 60, "04": 90, "05": 60, "06": 240, "07": 120, "08": 240}


def execute(path: Path, write: bool = False, timeout: int = 1800) -> tuple[bool, float, str]:
    """Run one notebook; return ``(ok, seconds, error summary)``. The kernel gets ``COURSE_HEADLESS=1``
    through its own environment (``course_lib.course.sandbox``, shared with ``course grade``)."""
    import nbformat

    from course_lib.course.sandbox import execute_notebook

    nb = nbformat.read(path, as_version=4)
    run = execute_notebook(nb, path.parent, timeout=timeout)
    ok = run.error is None
    if write and ok:
        nbformat.write(nb, path)
    return ok, run.seconds, run.error or ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="course run", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", nargs="?", default="notebooks", help="notebooks (default), solutions, or one .ipynb")
    p.add_argument("only", nargs="*", help="name prefixes, e.g. 00 02")
    p.add_argument("--write", action="store_true", help="store the outputs in the files (for solutions/)")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_absolute() and not folder.exists():
        folder = REPO_ROOT / folder
    if folder.is_file():
        paths = [folder]
    else:
        paths = [q for q in sorted(folder.glob("*.ipynb")) if not args.only or q.name.startswith(tuple(args.only))]
    if not paths:
        print(f"no notebooks matched in {folder}")
        return 1
    print(f"running {len(paths)} notebook(s) from {folder} headless")
    failures, total = 0, 0.0
    for path in paths:
        ok, seconds, error = execute(path, write=args.write)
        total += seconds
        budget = BUDGETS.get(path.name[:2])
        over = budget is not None and seconds > budget
        verdict = "PASS" if ok else "FAIL"
        note = f"  (over the {budget} s CPU budget)" if over else (f"  (budget {budget} s)" if budget else "")
        print(f"{verdict}  {path.stem:24s} {seconds:7.1f} s{note}", flush=True)
        if not ok:
            failures += 1
            print(f"      {error}")
    print(f"{len(paths) - failures} passed, {failures} failed in {total:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
