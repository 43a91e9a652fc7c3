"""``course grade``: grade students' notebooks, each isolated, and write the gradebook last.

    ./course grade alice/02_anchors_rpn.ipynb                                  # a report and a score
    ./course grade submissions/*/02_anchors_rpn.ipynb --jobs 2 --csv gradebook.csv
    ./course grade --new-seed-file secret.seed                                 # once, for a job array
    ./course grade "$f" --seed-file secret.seed --csv parts/$i.csv             # each job: the same hidden cases
    ./course grade --merge parts/*.csv --csv gradebook.csv                     # job-array pieces -> one
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from pathlib import Path

from course_lib.course.grading.grader import DEFAULT_MEMORY_GB, GradeOptions, grade_many
from course_lib.course.grading.report import (
    csv_rows,
    feedback_markdown,
    feedback_name,
    format_grade_report,
    merge_csv,
    write_csv,
)
from course_lib.utils.errors import CommandError


def read_seed(path: Path) -> int:
    """The hidden-case seed kept in ``path`` (a file only the instructor can read)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path}: cannot read the seed file ({type(exc).__name__}); make one with "
                           "`course grade --new-seed-file FILE`") from None
    if not text.isdigit():
        raise CommandError(f"{path}: a seed file holds one whole number (made by `course grade --new-seed-file`)")
    return int(text)


def new_seed_file(path: Path) -> None:
    if path.exists():
        raise CommandError(f"{path}: exists already; a new seed would change the hidden cases of graded work")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{secrets.randbelow(2**31)}\n")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="course grade", description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="*", type=Path)
    p.add_argument("--timeout", type=float, default=600, help="seconds for the whole notebook (default 600)")
    p.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (default 1)")
    p.add_argument("--csv", type=Path, help="write a gradebook (one row per student) and feedback/<student>.md")
    p.add_argument("--json", type=Path, help="also write the report(s) as JSON here")
    p.add_argument("--seed-file", type=Path, help="file holding the hidden cases' seed (default: a new secret "
                                                  "seed per run); keep it where students cannot read it")
    p.add_argument("--new-seed-file", type=Path, metavar="FILE", help="write a new secret seed into FILE and stop")
    p.add_argument("--memory-gb", type=float, default=DEFAULT_MEMORY_GB,
                   help=f"memory of each notebook's whole process tree in GiB (default {DEFAULT_MEMORY_GB:g})")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run without isolation: ONLY for notebooks you trust (checking your own work)")
    p.add_argument("--merge", nargs="+", type=Path, metavar="CSV",
                   help="merge gradebooks (e.g. one per job of a job array) into --csv instead of grading")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.new_seed_file:
        new_seed_file(args.new_seed_file)
        print(f"wrote a new seed into {args.new_seed_file} (readable by you only); pass it as --seed-file")
        return 0
    if args.merge:
        if not args.csv:
            raise CommandError("--merge needs --csv OUT, the gradebook to write")
        n = merge_csv(args.merge, args.csv)
        print(f"merged {len(args.merge)} gradebooks ({n} rows) into {args.csv}")
        return 0
    if not args.notebooks:
        raise CommandError("no notebook to grade (e.g. course grade submissions/*/02_anchors_rpn.ipynb)")
    if args.jobs < 1:
        raise CommandError(f"--jobs must be at least 1, got {args.jobs}")
    for out in (args.csv, args.json):
        if out is not None and out.resolve() in {p.resolve() for p in args.notebooks}:
            raise CommandError(f"{out}: is one of the notebooks to grade; choose another output file")
    seed = read_seed(args.seed_file) if args.seed_file else None
    options = GradeOptions(timeout=args.timeout, memory_gb=args.memory_gb, sandboxed=not args.no_sandbox)
    if args.no_sandbox:
        print("grading WITHOUT isolation (--no-sandbox): the notebooks run as you, with your files")
    reports = grade_many(args.notebooks, jobs=args.jobs, seed=seed, options=options)
    # Every sandbox is gone: now write.
    for report in reports:
        print(format_grade_report(report))
    if args.csv:
        columns, rows = csv_rows(reports)
        write_csv(args.csv, columns, rows)
        folder = args.csv.resolve().parent / "feedback"
        folder.mkdir(exist_ok=True)
        several = len({r["course_notebook"] for r in reports}) > 1
        for r in reports:
            (folder / feedback_name(r, several)).write_text(feedback_markdown(r), encoding="utf-8")
        print(f"wrote {args.csv} ({len(rows)} rows) and {len(reports)} feedback file(s) in {folder}")
    if args.json:
        public = [{k: v for k, v in r.items() if k != "sources"} for r in reports]
        args.json.write_text(json.dumps(public if len(public) > 1 else public[0], indent=2))
        print(f"wrote {args.json}")
    return 0
