"""Grading students' notebooks: verdicts the notebook cannot forge, quiz answers, points, a whole class at once.
For instructors.

    python -m course_lib grade alice/02_anchors_rpn.ipynb                     # a report and a score
    python -m course_lib grade submissions/*/02_anchors_rpn.ipynb --jobs 4 --csv gradebook.csv
    python -m course_lib grade --merge part1.csv part2.csv --csv gradebook.csv  # job-array pieces -> one

How a notebook is graded:

* It runs on a copy in a temporary folder, in a fresh kernel (``course_lib.course.sandbox``) with a
  wall-clock limit, a memory limit and no network; the grader's own environment is untouched.
* Then the grader asks that kernel for one thing per exercise: the outputs of the learner's function
  (the one handed to ``check_x``) on the checker's cases and on hidden cases drawn from a seed chosen for
  this run. The outputs come back in a file read with ``torch.load(weights_only=True)`` and are compared
  with the reference *in the grader's process*. What the notebook prints, patches or writes (checker
  messages, ``compare``, the progress file) plays no part.
* While the learner's function runs, a profiling tripwire watches for the functions the exercise asks
  the learner to write (the course's reference, ``course_lib``'s and torchvision's op of the same job,
  the checker's ``forbidden`` list): calling one earns nothing. The learner's own functions stay allowed.
* Each exercise has two case groups, ``notebook`` and ``hidden``; passing one of two earns half its points.
* Quiz answers are read from the notebook itself: ``answer("id", choice)`` calls in its code cells and
  the choices recorded by the quiz widgets; they are graded here against the bank.
* Points come from the bank (``course_lib/course/quiz_bank``, default 1 each).
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import re
import secrets
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from course_lib.course.quiz import RECORD_MIME as QUIZ_MIME  # the quiz widget's record of a choice
from course_lib.utils.errors import CommandError

GROUPS = ("notebook", "hidden")
DEFAULT_MEMORY_GB = 8.0  # importing torch alone reserves about 3.5 GB of address space

# Sent to the student's kernel once the notebook has run: compute the submitted function's outputs on the
# cases, with the tripwire on, and save them. It only reports outputs; the verdict is made outside.
KERNEL_CHECK = r'''
def __course_grade(spec):
    import importlib, sys, threading, torch
    driver = sys._getframe().f_code  # the grader's own calls (sys.setprofile(None) below) are no tampering
    spec_forbidden = {tuple(k) for k in spec["forbidden"]}
    ops = set(spec["ops"])
    fired = []
    library = tuple(spec["library_dirs"])
    stdlib = tuple({sys.prefix, sys.base_prefix, "<frozen"} - set(library))

    def from_student(frame):
        # The nearest caller outside the standard library: the student's code, or a library's?
        while frame is not None and frame.f_code.co_filename.startswith(stdlib):
            frame = frame.f_back
        return frame is not None and not frame.f_code.co_filename.startswith(library)
    tamper = {sys.setprofile, sys.settrace, sys.getprofile, sys._getframe, threading.setprofile}
    try:
        import gc, _thread, os
        tamper |= {gc.get_referrers, gc.get_objects, _thread.start_new_thread, os.fork}
    except Exception:
        pass

    def hook(frame, event, arg):
        if event == "call":
            code = frame.f_code
            key = (code.co_filename, code.co_firstlineno, code.co_name)
            if key in spec_forbidden:
                fired.append(spec["names"].get("|".join(map(str, key)), code.co_name))
            elif ops and code.co_name == "__call__" and code.co_filename.endswith(("torch/_ops.py",)):
                op = getattr(frame.f_locals.get("self"), "_qualified_op_name", None)
                if op in ops:
                    fired.append("torch.ops." + op.replace("::", "."))
        elif event == "c_call" and arg in tamper and frame.f_code is not driver and from_student(frame):
            fired.append("tamper:" + getattr(arg, "__name__", "?"))

    def plain(x, depth=0):
        if torch.is_tensor(x):
            return x.detach().cpu().clone()
        if isinstance(x, (bool, int, float, str, type(None))):
            return x
        if isinstance(x, dict) and depth < 8:
            return {plain(k, depth + 1): plain(v, depth + 1) for k, v in x.items()}
        if isinstance(x, (list, tuple)) and depth < 8:
            return type(x)(plain(v, depth + 1) for v in x) if type(x) in (list, tuple) else [plain(v) for v in x]
        return {"__course_unsupported__": type(x).__name__}

    check = getattr(importlib.import_module("course_lib.course.checkers"), spec["checker"])
    fn = getattr(check, "submitted", None)
    results = []
    if fn is not None:
        adapt = getattr(check, "adapt", None)
        call = adapt(fn) if adapt is not None else fn
        cases = [("notebook", c) for c in check.cases()]
        if spec["seed"] is not None and getattr(check, "hidden_cases", None) is not None:
            cases += [("hidden", c) for c in check.hidden_cases(spec["seed"])]
        sys.setprofile(hook)
        threading.setprofile(hook)
        try:
            for group, case in cases:
                args = tuple(a.clone() if torch.is_tensor(a) else a for a in case.args)
                try:
                    results.append(("ok", plain(call(*args, **case.kwargs))))
                except NotImplementedError:
                    results.append(("not yet", None))
                    break
                except BaseException as exc:
                    results.append(("raised", f"{type(exc).__name__}: {exc}"[:300]))
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
    torch.save({"submitted": fn is not None, "results": results, "fired": sorted(set(fired))}, spec["out"])
'''


# ---------------------------------------------------------------------------------------------- the bank

def notebook_name(path: Path) -> str:
    """The course notebook a file is a copy of, from its name (``alice/02_anchors_rpn.ipynb`` -> ``02_anchors_rpn``)."""
    from course_lib.course import bank
    from course_lib.course.checkers.core import registry

    known = set(bank.notebooks()) | set(registry)
    stem = path.stem
    for name in sorted(known, key=len, reverse=True):
        if stem == name or stem.startswith(name + "_") or stem.startswith(name + "-"):
            return name
    raise CommandError(f"{path}: not a course notebook name (expected one of {', '.join(sorted(known))}, "
                       "e.g. submissions/alice/02_anchors_rpn.ipynb)")


def expected_checkers(notebook: str) -> list[tuple[str, float]]:
    """``[(checker name, points)]`` for a notebook: the bank's exercises, else the registered checkers at 1."""
    from course_lib.course import bank
    from course_lib.course.checkers.core import registry

    exercises = bank.load_exercises().get(notebook)
    if exercises:
        return [(e.name, float(e.points)) for e in exercises]
    return [(n, 1.0) for n in registry.get(notebook, [])]


def _forbidden_keys(check) -> tuple[list, list[str], dict[str, str]]:
    """The code identities (file, first line, name) of the functions the answer must not call."""
    import importlib
    import inspect

    keys, ops, names = [], [], {}

    def add(obj, label):
        obj = inspect.unwrap(getattr(obj, "__func__", obj))
        code = getattr(obj, "__code__", None)
        if code is None and callable(obj) and callable(type(obj)):
            code = getattr(type(obj).__call__, "__code__", None)
        if code is not None:
            key = (code.co_filename, code.co_firstlineno, code.co_name)
            keys.append(key)
            names["|".join(map(str, key))] = label

    add(check.reference, f"{check.__name__}.reference")
    for dotted in getattr(check, "forbidden", ()):
        if dotted.startswith("torch.ops."):
            ops.append(dotted[len("torch.ops."):].replace(".", "::", 1))
            continue
        parts = dotted.split(".")
        obj = None
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            for attr in parts[i:]:
                obj = getattr(obj, attr)
            break
        if obj is None:
            raise ValueError(f"{check.__name__}: forbidden name {dotted!r} does not resolve")
        add(obj, dotted)
    return keys, ops, names


# ------------------------------------------------------------------------------------------------ quizzes

def quiz_answers(nb) -> dict[str, int | str]:
    """The quiz answers a notebook carries: ``answer("id", choice)`` calls in its code and widget records."""
    found: dict[str, int | str] = {}
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(cell.get("source", ""))
        except SyntaxError:
            tree = None
        for node in ast.walk(tree) if tree is not None else ():
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "answer"
                    and len(node.args) == 2 and all(isinstance(a, ast.Constant) for a in node.args)
                    and isinstance(node.args[0].value, str) and isinstance(node.args[1].value, (int, str))):
                found[node.args[0].value] = node.args[1].value
        for out in cell.get("outputs", []):
            record = out.get("data", {}).get(QUIZ_MIME)
            if isinstance(record, dict) and isinstance(record.get("id"), str) \
                    and isinstance(record.get("choice"), (int, str)):
                found[record["id"]] = record["choice"]
    return found


def grade_quizzes(notebook: str, nb) -> list[dict]:
    from course_lib.course.bank import load_questions

    answers = quiz_answers(nb)
    rows = []
    for q in (q for q in load_questions().values() if q.notebook == notebook):
        choice = answers.get(q.id)
        index = q.choices.index(choice) if isinstance(choice, str) and choice in q.choices else choice
        if choice is None:
            status = "unanswered"
        else:
            status = "right" if isinstance(index, int) and not isinstance(index, bool) and index == q.correct \
                else "wrong"
        rows.append({"id": q.id, "status": status, "choice": choice, "out_of": float(q.points),
                     "points": float(q.points) if status == "right" else 0.0})
    return rows


# ---------------------------------------------------------------------------------------------- exercises

def _verdict(check, data: dict, seed: int | None, points: float, notebook_error: str | None) -> dict:
    """Compare the kernel's outputs with the reference, computed here; the exercise's report row."""
    from course_lib.course.checkers.core import compare, hint_steps

    name = check.__name__
    first_hint = hint_steps(getattr(check, "hint", ""))
    hint_text = first_hint[0] if first_hint else ""
    row = {"checker": name, "out_of": points, "points": 0.0, "groups": {}, "message": "", "hint": ""}
    if not data.get("submitted"):
        row.update(status="not run" if notebook_error else "not attempted",
                   message="the notebook stopped before this exercise" if notebook_error
                   else "the notebook never handed a function to " + name)
        return row
    fired = [f for f in data["fired"] if not f.startswith("tamper:")]
    if fired:
        row.update(status="forbidden", message=f"calls {fired[0]}, the op this exercise asks you to write: no credit")
        return row
    if data["fired"]:
        row.update(status="forbidden", message=f"interferes with the grader ({data['fired'][0][7:]}): no credit")
        return row
    cases = [("notebook", c) for c in check.cases()]
    if seed is not None and getattr(check, "hidden_cases", None) is not None:
        cases += [("hidden", c) for c in check.hidden_cases(seed)]
    results = data["results"]
    if any(status == "not yet" for status, _ in results):
        row.update(status="not attempted", message="the exercise is not implemented yet")
        return row
    adapt = getattr(check, "adapt", None)
    reference = adapt(check.reference) if adapt is not None else check.reference
    groups: dict[str, bool] = {}
    for i, (group, case) in enumerate(cases):
        ok = groups.setdefault(group, True)
        if i >= len(results):
            msg = "no output came back for this case"
        elif results[i][0] == "raised":
            msg = f"raised {results[i][1]}"
        else:
            expected = reference(*case.args, **case.kwargs)
            msg = compare(results[i][1], expected, getattr(check, "atol", 1e-5))
        if msg is not None:
            groups[group] = False
            if ok and not row["message"]:
                label = f"case {case.name!r}" if group == "notebook" else "a hidden case"
                row["message"] = f"{label}: {msg}"
                row["hint"] = hint_text
    passed = [g for g in groups if groups[g]]
    row["groups"] = groups
    row["points"] = round(points * len(passed) / len(groups), 3) if groups else 0.0
    row["status"] = "pass" if len(passed) == len(groups) else "partial" if passed else "fail"
    return row


def grade(path: str | Path, timeout: float = 600, seed: int | None = None,
          memory_gb: float | None = DEFAULT_MEMORY_GB, hidden: bool = True) -> dict:
    """Run ``path`` in the sandbox and grade it; returns the report dict (see ``format_grade_report``)."""
    import nbformat
    import torch

    from course_lib.course import checkers
    from course_lib.course.sandbox import execute_notebook

    path = Path(path)
    nb = _read_notebook(path)
    notebook = notebook_name(path)
    seed = (secrets.randbelow(2**31) if seed is None else seed) if hidden else None
    expected = expected_checkers(notebook)
    outputs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        tmp = Path(tmp)
        work = tmp / "work"
        work.mkdir()
        shutil.copy(path, work / path.name)
        for sibling in ("data",):  # nothing else of the student's folder is visible
            if (path.parent / sibling).is_dir():
                shutil.copytree(path.parent / sibling, work / sibling, symlinks=False)
        nb_run = nbformat.read(work / path.name, as_version=4)

        def checks(run):
            for name, _ in expected:
                check = getattr(checkers, name)
                keys, ops, names = _forbidden_keys(check)
                out = tmp / f"{name}.pt"
                spec = {"checker": name, "seed": seed, "forbidden": keys, "ops": ops, "names": names,
                        "out": str(out), "library_dirs": [str(Path(torch.__file__).resolve().parents[1]),
                                                          str(Path(checkers.__file__).resolve().parents[2])]}
                error = run.execute_code(KERNEL_CHECK + f"\n__course_grade(__import__('json').loads("
                                         f"{json.dumps(spec)!r}))\ndel __course_grade\n", limit=timeout)
                if error is None and out.exists():
                    try:
                        outputs[name] = torch.load(out, weights_only=True)
                    except Exception as exc:
                        outputs[name] = {"error": f"its outputs could not be read back ({type(exc).__name__})"}
                else:
                    outputs[name] = {"error": f"the check did not finish: {error or 'no outputs'}"}

        run = execute_notebook(nb_run, work, timeout=timeout, sandbox=True,
                               memory_bytes=int(memory_gb * 2**30) if memory_gb else None,
                               env={"COURSE_PROGRESS_FILE": str(tmp / "progress.json")}, after=checks)
    exercises = []
    for name, points in expected:
        data = outputs.get(name)
        if data is None:
            data = {"submitted": False}
        if "error" in data:
            exercises.append({"checker": name, "status": "fail", "points": 0.0, "out_of": points, "groups": {},
                              "message": data["error"], "hint": ""})
            continue
        exercises.append(_verdict(getattr(checkers, name), data, seed, points, run.error))
    quizzes = grade_quizzes(notebook, nb)
    score = sum(e["points"] for e in exercises) + sum(q["points"] for q in quizzes)
    out_of = sum(e["out_of"] for e in exercises) + sum(q["out_of"] for q in quizzes)
    return {"notebook": str(path), "course_notebook": notebook, "student": path.resolve().parent.name,
            "seconds": round(run.seconds, 1), "error": run.error, "seed": seed, "exercises": exercises,
            "quizzes": quizzes, "score": round(score, 3), "out_of": round(out_of, 3)}


def _read_notebook(path: Path):
    import nbformat

    if not path.is_file():
        raise CommandError(f"{path}: no such notebook")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # not JSON, or JSON that is not a notebook
        raise CommandError(f"{path}: not a Jupyter notebook ({type(exc).__name__})") from None


def _points(x: float) -> str:
    return f"{x:g}"


def format_grade_report(report: dict) -> str:
    lines = [f"Grading {report['notebook']} ({report['seconds']} s)"]
    for e in report["exercises"]:
        groups = ", ".join(f"{g} {'passed' if ok else 'failed'}" for g, ok in e.get("groups", {}).items())
        lines.append(f"  {e['status']:14s} {e['checker']:34s} {_points(e['points'])}/{_points(e['out_of'])}"
                     + (f"  ({groups})" if groups and e["status"] == "partial" else ""))
        if e["status"] not in ("pass",) and e["message"]:
            lines.append(f"                 {e['message']}")
    for q in report["quizzes"]:
        lines.append(f"  quiz {q['status']:9s} {q['id']:34s} {_points(q['points'])}/{_points(q['out_of'])}")
    if report["error"]:
        lines.append(f"  the run stopped: {report['error']}")
    ex = report["exercises"]
    qz = report["quizzes"]
    lines.append(f"Score: {_points(report['score'])}/{_points(report['out_of'])} "
                 f"(exercises {_points(sum(e['points'] for e in ex))}/{_points(sum(e['out_of'] for e in ex))}, "
                 f"quizzes {_points(sum(q['points'] for q in qz))}/{_points(sum(q['out_of'] for q in qz))})")
    return "\n".join(lines)


def feedback_markdown(report: dict) -> str:
    """The feedback file for one student: what passed, what failed with the checker's message and the hint."""
    lines = [f"# {report['course_notebook']}: {report['student']}", "",
             f"Score: {_points(report['score'])}/{_points(report['out_of'])}", ""]
    if report["error"]:
        lines += [f"The run stopped: {report['error']}", ""]
    lines.append("## Exercises")
    for e in report["exercises"]:
        lines.append(f"- `{e['checker']}`: {e['status']}, {_points(e['points'])}/{_points(e['out_of'])}")
        if e["message"] and e["status"] != "pass":
            lines.append(f"  - {e['message']}")
        if e.get("hint"):
            lines.append(f"  - {e['hint']}")
    lines += ["", "## Quizzes"]
    lines += [f"- `{q['id']}`: {q['status']}, {_points(q['points'])}/{_points(q['out_of'])}"
              for q in report["quizzes"]]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- a gradebook

def csv_rows(reports: list[dict]) -> tuple[list[str], list[dict]]:
    columns = ["student", "notebook", "score", "out_of", "error"]
    rows = []
    for r in sorted(reports, key=lambda r: (r["student"], r["course_notebook"])):
        row = {"student": r["student"], "notebook": r["course_notebook"], "score": _points(r["score"]),
               "out_of": _points(r["out_of"]), "error": r["error"] or ""}
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


def _grade_one(args: tuple) -> dict:
    path, timeout, seed, memory_gb = args
    try:
        return grade(path, timeout=timeout, seed=seed, memory_gb=memory_gb)
    except CommandError:
        raise
    except Exception as exc:  # the grader itself must still give this student a row
        return {"notebook": str(path), "course_notebook": notebook_name(Path(path)),
                "student": Path(path).resolve().parent.name, "seconds": 0.0, "seed": seed,
                "error": f"could not grade: {type(exc).__name__}: {exc}"[:300], "exercises": [], "quizzes": [],
                "score": 0, "out_of": 0}


def grade_many(paths: list[Path], jobs: int = 1, timeout: float = 600, seed: int | None = None,
               memory_gb: float | None = DEFAULT_MEMORY_GB) -> list[dict]:
    """Grade several notebooks, ``jobs`` at a time (one worker process and one kernel each), in input order."""
    for p in paths:  # fail before any kernel starts
        _read_notebook(p)
        notebook_name(p)
    seed = secrets.randbelow(2**31) if seed is None else seed  # one set of hidden cases for the class
    work = [(p, timeout, seed, memory_gb) for p in paths]
    if jobs <= 1 or len(paths) == 1:
        return [_grade_one(w) for w in work]
    import multiprocessing

    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_grade_one, work))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="course grade", description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="*", type=Path)
    p.add_argument("--timeout", type=float, default=600, help="seconds for the whole notebook (default 600)")
    p.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (default 1)")
    p.add_argument("--csv", type=Path, help="write a gradebook (one row per student) and feedback/<student>.md")
    p.add_argument("--json", type=Path, help="also write the report(s) as JSON here")
    p.add_argument("--seed", type=int, help="seed of the hidden cases (default: a new one per run)")
    p.add_argument("--memory-gb", type=float, default=DEFAULT_MEMORY_GB,
                   help=f"address-space limit of each kernel in GiB (default {DEFAULT_MEMORY_GB:g}; 0: none)")
    p.add_argument("--merge", nargs="+", type=Path, metavar="CSV",
                   help="merge gradebooks (e.g. one per job of a job array) into --csv instead of grading")
    args = p.parse_args(argv)
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
    reports = grade_many(args.notebooks, jobs=args.jobs, timeout=args.timeout, seed=args.seed,
                         memory_gb=args.memory_gb or None)
    for report in reports:
        print(format_grade_report(report))
    if args.csv:
        columns, rows = csv_rows(reports)
        write_csv(args.csv, columns, rows)
        folder = args.csv.resolve().parent / "feedback"
        folder.mkdir(exist_ok=True)
        for r in reports:
            stem = r["student"] if len({x["course_notebook"] for x in reports}) == 1 \
                else f"{r['student']}_{r['course_notebook']}"
            (folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', stem)}.md").write_text(feedback_markdown(r))
        print(f"wrote {args.csv} ({len(rows)} rows) and {len(reports)} feedback file(s) in {folder}")
    if args.json:
        args.json.write_text(json.dumps(reports if len(reports) > 1 else reports[0], indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
