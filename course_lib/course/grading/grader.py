"""Grading a class: read everything first, run each notebook isolated, make verdicts elsewhere, write last.

For each submission, in this order:

1. Before any student code runs: the bank (questions, points), the checkers and their cases, and every
   submission are read (``submission.read_submission``: no links, no special files, real notebooks); one that
   cannot be read gets its row with the reason and the class goes on.
2. The notebook runs on a copy, in a sandbox (``isolation.Sandbox``: own namespaces, read-only course and
   system, limits on the whole tree), with a wall-clock limit. Its outcome is only the report's ``error``
   (did it run, where did it stop): nothing it prints, writes or patches reaches a verdict.
3. A fresh probe in a second sandbox runs the submitted functions on the checkers' cases and on hidden
   cases from the grader's secret seed; the grader compares (``exercises``). Quiz answers are read from the
   submitted file (``quizzes``). Code close to the course's reference or a classmate's is flagged for review
   (``similarity``), never marked down.
4. After every sandbox is gone, the caller writes the reports, the gradebook and the feedback (``report``).

``--no-sandbox`` runs the same steps without isolation: only for notebooks one trusts (one's own).
"""

from __future__ import annotations

import inspect
import os
import secrets
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from course_lib.course.grading.isolation import Limits, Sandbox, engine_problem
from course_lib.course.grading.submission import Submission, SubmissionError, read_submission
from course_lib.utils.errors import CommandError

DEFAULT_MEMORY_GB = 8.0  # importing torch alone reserves about 3.5 GB of address space
MAX_OUTPUT_BYTES = 8 * 2**20  # of a notebook's outputs kept while it runs


@dataclass(frozen=True)
class GradeOptions:
    timeout: float = 600  # seconds for the whole notebook
    probe_timeout: float = 300  # seconds for all of a notebook's exercises in the probe
    memory_gb: float = DEFAULT_MEMORY_GB
    sandboxed: bool = True
    hidden: bool = True
    threads: int = 1  # torch threads of each sandbox

    def limits(self) -> Limits:
        return Limits(memory_bytes=int(self.memory_gb * 2**30)) if self.memory_gb else Limits(memory_bytes=2**40)


def notebook_name(path: Path, known: set[str]) -> str:
    """The course notebook a file is a copy of, from its name (``alice/02_anchors_rpn.ipynb`` -> ``02_anchors_rpn``)."""
    stem = path.stem
    for name in sorted(known, key=len, reverse=True):
        if stem == name or stem.startswith(name + "_") or stem.startswith(name + "-"):
            return name
    raise SubmissionError(f"{path}: not a course notebook name (expected one of {', '.join(sorted(known))}, "
                          "e.g. submissions/alice/02_anchors_rpn.ipynb)")


@dataclass
class Course:
    """What the grader reads of the course before any submission runs (plain data: it goes to the workers)."""

    questions: dict
    exercises: dict  # notebook -> [(checker name, points)]

    @classmethod
    def read(cls) -> Course:
        from course_lib.course.bank import load_exercises, load_questions
        from course_lib.course.checkers.core import registry

        bank = load_exercises()
        exercises = {notebook: [(e.name, float(e.points)) for e in bank.get(notebook, [])]
                     or [(n, 1.0) for n in registry.get(notebook, [])] for notebook in set(bank) | set(registry)}
        course = cls(load_questions(), exercises)
        for notebook in exercises:
            course.checkers(notebook)  # every checker resolves (and its module is imported) now
        return course

    def checkers(self, notebook: str) -> list:
        """``[(Checker, points)]`` of a notebook, in the bank's order."""
        from course_lib.course import checkers

        return [(getattr(checkers, name), points) for name, points in self.exercises.get(notebook, [])]


def _error_report(path: Path, notebook: str, reason: str) -> dict:
    return {"notebook": str(path), "course_notebook": notebook, "student": Path(path).absolute().parent.name,
            "seconds": 0.0, "error": reason, "exercises": [], "quizzes": [], "score": 0.0, "out_of": 0.0}


def _run_notebook(sub: Submission, work: Path, options: GradeOptions):
    """Run the submitted notebook on a copy (isolated unless told otherwise); its ``Run``."""
    import copy as copy_module

    import nbformat

    from course_lib.course.sandbox import execute_notebook
    from course_lib.utils.paths import DATA_DIR

    work.mkdir()
    copy = work / sub.path.name
    nbformat.write(sub.nb, copy)
    if sub.data_dir is not None:
        shutil.copytree(sub.data_dir, work / "data", symlinks=True)  # checked before: no links inside
    # The course's data folder by name: inside the sandbox the checkout's other files (pyproject.toml, by which
    # utils/paths recognises a checkout) are not there.
    env = {"COURSE_DATA_DIR": str(Path(DATA_DIR).resolve()),
           "COURSE_RUNS_DIR": str(work / "runs"), "COURSE_PROGRESS_FILE": str(work / "progress.json"),
           "OMP_NUM_THREADS": str(options.threads), "MKL_NUM_THREADS": str(options.threads)}
    nb = copy_module.deepcopy(sub.nb)  # the run writes outputs into it; the submission stays as read
    if not options.sandboxed:
        return execute_notebook(nb, work, timeout=options.timeout, env=env, max_output_bytes=MAX_OUTPUT_BYTES)
    course = Path(__file__).resolve().parents[2]
    readonly = [p for p in (course, Path(DATA_DIR).resolve()) if p.is_dir()]
    with Sandbox(work, limits=options.limits(), readonly=readonly) as sandbox:
        run = execute_notebook(nb, work, timeout=options.timeout, env=env, isolation=sandbox,
                               max_output_bytes=MAX_OUTPUT_BYTES)
        if sandbox.stopped_for and run.error:
            run.error = f"stopped at the {sandbox.stopped_for} limit ({run.error})"
    return run


def grade_submission(sub: Submission, course: Course, seed: int | None, options: GradeOptions) -> dict:
    """Run and grade one submission that was read already; returns its report."""
    from course_lib.course.grading.exercises import grade_exercises
    from course_lib.course.grading.quizzes import grade_quizzes

    expected = course.checkers(sub.notebook)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        run = _run_notebook(sub, Path(tmp) / "run", options)
        probe_work = Path(tmp) / "probe"
        probe_work.mkdir()
        rows, sources = grade_exercises(sub.nb.cells, expected, probe_work, seed if options.hidden else None,
                                        options.sandboxed, options.probe_timeout, options.limits(), options.threads,
                                        stopped_at=run.stopped_at)
    quizzes = grade_quizzes(sub.notebook, sub.nb, course.questions)
    score = sum(e["points"] for e in rows) + sum(q["points"] for q in quizzes)
    out_of = sum(e["out_of"] for e in rows) + sum(q["out_of"] for q in quizzes)
    return {"notebook": str(sub.path), "course_notebook": sub.notebook, "student": sub.student,
            "seconds": round(time.perf_counter() - started, 1), "error": run.error, "exercises": rows,
            "quizzes": quizzes, "score": round(score, 3), "out_of": round(out_of, 3), "sources": sources}


def _grade_job(job: tuple) -> dict:
    sub, course, seed, options = job
    try:
        return grade_submission(sub, course, seed, options)
    except Exception as exc:  # the grader itself must still give this student a row
        return _error_report(sub.path, sub.notebook, f"could not grade: {type(exc).__name__}: {exc}")


def _worker_context():
    """Workers forked from a server that imported the grader and the checkers once (not once per worker)."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")  # Windows and macOS have no fork server
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["course_lib.course.grading.grader", "course_lib.course.grading.exercises",
                                    "course_lib.course.checkers"])
    return context


def read_all(paths: list[Path], course: Course) -> tuple[list[Submission], list[dict]]:
    """Read every submission before any runs: (the readable ones, a report row for each refused one)."""
    subs, refused = [], []
    known = set(course.exercises) | {q.notebook for q in course.questions.values()}
    for p in paths:
        name = "?"
        try:
            name = notebook_name(Path(p), known)
            subs.append(read_submission(Path(p), name))
        except SubmissionError as exc:
            refused.append(_error_report(Path(p), name, f"not graded: {exc}"))
    return subs, refused


def grade_many(paths: list[Path], jobs: int = 1, seed: int | None = None,
               options: GradeOptions = GradeOptions()) -> list[dict]:  # noqa: B008 - frozen dataclass
    """Grade several notebooks, ``jobs`` at a time, each in its own sandboxes; reports in input order."""
    if options.sandboxed and (problem := engine_problem()):
        raise CommandError(f"cannot isolate student notebooks: {problem}")
    course = Course.read()
    subs, refused = read_all(paths, course)
    if subs and options.sandboxed:
        from course_lib.data.notebook_data import write_notebook_data

        write_notebook_data()  # the sandboxes see the data folder read-only
    seed = secrets.randbelow(2**31) if seed is None else seed  # one set of hidden cases for the class
    threads = max(1, (os.cpu_count() or 1) // max(1, min(jobs, len(subs) or 1)))
    options = GradeOptions(**{**options.__dict__, "threads": threads})
    work = [(s, course, seed, options) for s in subs]
    if jobs <= 1 or len(subs) <= 1:
        reports = [_grade_job(w) for w in work]
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=_worker_context()) as pool:
            reports = list(pool.map(_grade_job, work))
    flag_similar(reports, course)
    by_path = {r["notebook"]: r for r in reports + refused}
    return [by_path[str(Path(p))] for p in paths]


def flag_similar(reports: list[dict], course: Course) -> None:
    """Add a ``review`` note to exercises whose code is close to the course's reference or a classmate's."""
    from course_lib.course.grading.similarity import find_flags, review_note

    for notebook in {r["course_notebook"] for r in reports}:
        group = [r for r in reports if r["course_notebook"] == notebook]
        references = {}
        for check, _ in course.checkers(notebook):
            try:
                references[check.name] = inspect.getsource(check.reference)
            except (OSError, TypeError):
                pass
        names = [r["student"] for r in group]
        keys = [n if names.count(n) == 1 else r["notebook"] for n, r in zip(names, group, strict=True)]
        flags = find_flags({k: r.get("sources", {}) for k, r in zip(keys, group, strict=True)}, references)
        for key, r in zip(keys, group, strict=True):
            for e in r["exercises"]:
                e["review"] = review_note(flags, key, e["checker"])


def grade(path: Path, seed: int | None = None, options: GradeOptions = GradeOptions()) -> dict:  # noqa: B008
    """Grade one notebook (isolated unless ``options`` say otherwise); its report."""
    return grade_many([Path(path)], seed=seed, options=options)[0]
