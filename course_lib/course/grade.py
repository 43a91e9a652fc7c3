"""Grading a student's notebook: run it offline with a time limit, collect every checker's verdict.
For instructors.

    python -m course_lib grade alice/02_anchors_rpn.ipynb               # a report and a score
    python -m course_lib grade alice/02_anchors_rpn.ipynb --json out.json --timeout 300

The notebook runs in a fresh kernel in a temporary copy (the student's file is never changed), with
``COURSE_HEADLESS=1``, no network use by the course, and a wall-clock limit for the whole run. Each
exercise the notebook's checkers cover is reported as ``pass``, ``fail`` (with the checker's message),
``not attempted`` (the stub is still there) or ``not run`` (the notebook stopped before reaching it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

VERDICT = re.compile(r"^(PASS|FAIL|NOT YET) (check_\w+)\b[,:]?\s*(.*)$")


STATUS = {"PASS": "pass", "FAIL": "fail", "NOT YET": "not attempted"}


def expected_checkers(notebook_name: str) -> list[str]:
    """The checkers the course defines for a notebook (by its ``NN_name`` stem)."""
    from course_lib.course.checkers.core import registry

    return list(registry.get(notebook_name, []))


def _outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
    return "".join(parts)


def grade(path: str | Path, timeout: float = 600, cell_timeout: float | None = None) -> dict:
    """Execute ``path`` and return the report dict (see ``format_grade_report``)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import (
        CellExecutionError,
        CellTimeoutError,
        DeadKernelError,
    )

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    stem = re.sub(r"^(\d\d_[a-z_]+?)(_.*)?$", r"\1", path.stem)
    expected = expected_checkers(path.stem) or expected_checkers(stem)
    error, t0 = None, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / path.name
        shutil.copy(path, work)
        env_backup = dict(os.environ)
        os.environ.update(COURSE_HEADLESS="1", MPLBACKEND="Agg",
                          COURSE_PROGRESS_FILE=str(Path(tmp) / "progress.json"))
        try:
            # The whole run gets `timeout` seconds: each cell's limit is what is left of it.
            client = NotebookClient(nb, timeout=int(cell_timeout or timeout), kernel_name="python3",
                                    resources={"metadata": {"path": str(path.parent.resolve())}})
            deadline = t0 + timeout
            with client.setup_kernel():
                for index, cell in enumerate(nb.cells):
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        error = f"time limit of {timeout:.0f} s reached before cell {index}"
                        break
                    client.timeout = max(1, int(min(left, cell_timeout or left)))
                    try:
                        client.execute_cell(cell, index)
                    except CellTimeoutError:
                        error = f"cell {index} ran past the time limit ({timeout:.0f} s for the notebook)"
                        break
                    except CellExecutionError as exc:
                        error = f"cell {index} raised: {str(exc).strip().splitlines()[-1][:300]}"
                        break
                    except DeadKernelError as exc:
                        error = f"the kernel died in cell {index}: {exc}"
                        break
        finally:
            os.environ.clear()
            os.environ.update(env_backup)
    seconds = time.perf_counter() - t0
    found: dict[str, dict] = {}
    for line in _outputs_text(nb).splitlines():
        m = VERDICT.match(line.strip())
        if m:
            found[m.group(2)] = {"status": STATUS[m.group(1)], "message": line.strip()}
    names = expected + [n for n in found if n not in expected]
    exercises = [{"checker": n, **found.get(n, {"status": "not run",
                                                 "message": "the notebook stopped before this exercise"})}
                 for n in names]
    passed = sum(e["status"] == "pass" for e in exercises)
    return {"notebook": str(path), "seconds": round(seconds, 1), "error": error, "exercises": exercises,
            "score": passed, "out_of": len(exercises)}


def format_grade_report(report: dict) -> str:
    lines = [f"Grading {report['notebook']} ({report['seconds']} s)"]
    for e in report["exercises"]:
        lines.append(f"  {e['status']:14s} {e['checker']}")
        if e["status"] == "fail":
            lines.append(f"                 {e['message']}")
    if report["error"]:
        lines.append(f"  the run stopped: {report['error']}")
    lines.append(f"Score: {report['score']}/{report['out_of']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="course grade", description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="+", type=Path)
    p.add_argument("--timeout", type=float, default=600, help="seconds for the whole notebook (default 600)")
    p.add_argument("--json", type=Path, help="also write the report(s) as JSON here, for a gradebook")
    args = p.parse_args(argv)
    reports = []
    for path in args.notebooks:
        if not path.is_file():
            print(f"{path}: no such notebook")
            return 2
        report = grade(path, timeout=args.timeout)
        reports.append(report)
        print(format_grade_report(report))
    if args.json:
        args.json.write_text(json.dumps(reports if len(reports) > 1 else reports[0], indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
