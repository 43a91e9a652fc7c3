"""What the grader writes: the report on the terminal, each student's feedback, the gradebook CSV, merged CSVs.

Every text that came from a submission (an exception's message, a quiz choice, a student's folder name) is
passed through ``clean`` first: control characters (escape sequences, carriage returns, newlines) become
spaces and long texts are cut, so a submission cannot forge lines in the grader's terminal, the CSV or the
feedback. CSV cells that a spreadsheet would read as a formula get a leading apostrophe.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from course_lib.utils.errors import CommandError

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: object, limit: int = 300) -> str:
    """``text`` as one printable line of at most ``limit`` characters."""
    line = " ".join(_CONTROL.sub(" ", str(text)).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _points(x: float) -> str:
    return f"{x:g}"


def format_grade_report(report: dict) -> str:
    lines = [f"Grading {clean(report['notebook'])} ({report['seconds']} s)"]
    for e in report["exercises"]:
        groups = ", ".join(f"{g} {'passed' if ok else 'failed'}" for g, ok in e.get("groups", {}).items())
        lines.append(f"  {e['status']:14s} {e['checker']:34s} {_points(e['points'])}/{_points(e['out_of'])}"
                     + (f"  ({groups})" if groups and e["status"] == "partial" else ""))
        if e["status"] != "pass" and e["message"]:
            lines.append(f"                 {clean(e['message'])}")
        if e.get("review"):
            lines.append(f"                 {clean(e['review'])}")
    for q in report["quizzes"]:
        lines.append(f"  quiz {q['status']:9s} {clean(q['id'], 60):34s} {_points(q['points'])}/{_points(q['out_of'])}")
    if report["error"]:
        lines.append(f"  the run stopped: {clean(report['error'])}")
    ex, qz = report["exercises"], report["quizzes"]
    lines.append(f"Score: {_points(report['score'])}/{_points(report['out_of'])} "
                 f"(exercises {_points(sum(e['points'] for e in ex))}/{_points(sum(e['out_of'] for e in ex))}, "
                 f"quizzes {_points(sum(q['points'] for q in qz))}/{_points(sum(q['out_of'] for q in qz))})")
    return "\n".join(lines)


def feedback_markdown(report: dict) -> str:
    """The feedback file for one student: what passed, what failed with the checker's message and the hint."""
    lines = [f"# {report['course_notebook']}: {clean(report['student'], 80)}", "",
             f"Score: {_points(report['score'])}/{_points(report['out_of'])}", ""]
    if report["error"]:
        lines += [f"The run stopped: {clean(report['error'])}", ""]
    lines.append("## Exercises")
    for e in report["exercises"]:
        lines.append(f"- `{e['checker']}`: {e['status']}, {_points(e['points'])}/{_points(e['out_of'])}")
        if e["message"] and e["status"] != "pass":
            lines.append(f"  - {clean(e['message'])}")
        if e.get("hint"):
            lines.append(f"  - {clean(e['hint'], 600)}")
        if e.get("review"):
            lines.append(f"  - {clean(e['review'])} (a person will look at it; points are not changed by it)")
    lines += ["", "## Quizzes"]
    lines += [f"- `{clean(q['id'], 60)}`: {q['status']}, {_points(q['points'])}/{_points(q['out_of'])}"
              for q in report["quizzes"]]
    return "\n".join(lines) + "\n"


def _cell(value: str) -> str:
    value = clean(value)
    return "'" + value if value[:1] in ("=", "+", "-", "@") and not re.fullmatch(r"-?[\d.]+", value) else value


def csv_rows(reports: list[dict]) -> tuple[list[str], list[dict]]:
    columns = ["student", "notebook", "score", "out_of", "error", "review"]
    rows = []
    for r in sorted(reports, key=lambda r: (r["student"], r["course_notebook"])):
        reviews = [f"{e['checker']}: {e['review']}" for e in r["exercises"] if e.get("review")]
        row = {"student": _cell(r["student"]), "notebook": r["course_notebook"], "score": _points(r["score"]),
               "out_of": _points(r["out_of"]), "error": _cell(r["error"] or ""), "review": _cell("; ".join(reviews))}
        for e in r["exercises"]:
            row[e["checker"]] = _points(e["points"])
        for q in r["quizzes"]:
            row[f"quiz:{q['id']}"] = _points(q["points"])
        columns += [k for k in row if k not in columns]
        rows.append(row)
    return columns, rows


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    from course_lib.utils.files import write_atomic

    def write(f):
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    write_atomic(path, write, mode="w")


def merge_csv(paths: list[Path], out: Path) -> int:
    """Join the gradebooks of a job array (one CSV per job) into one; returns the number of rows."""
    columns: list[str] = []
    rows: list[dict] = []
    for p in paths:
        if not p.is_file():
            raise CommandError(f"{p}: no such gradebook")
        with open(p, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "student" not in reader.fieldnames:
                raise CommandError(f"{p}: not a gradebook written by `course grade --csv` (no student column)")
            columns += [c for c in reader.fieldnames if c not in columns]
            rows += list(reader)
    rows.sort(key=lambda r: (r["student"], r.get("notebook", "")))
    write_csv(out, columns, rows)
    return len(rows)


def feedback_name(report: dict, several_notebooks: bool) -> str:
    stem = f"{report['student']}_{report['course_notebook']}" if several_notebooks else report["student"]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip(".")[:120] + ".md"
