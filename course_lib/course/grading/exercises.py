"""Exercise verdicts: the submitted functions run in a fresh, sandboxed interpreter (the probe); the grader compares.

For one notebook, ``grade_exercises`` starts one probe (``probe.py``) in a sandbox of its own, never the one the
notebook ran in: the course's package is not there, torchvision is hidden unless a checker allows it, and the
hidden-case seed never leaves the grader. For each exercise, in the bank's order, it sends the code that
defines the submitted function (``submission.exercise_source``), then every case, and compares what comes back
with the reference's output, computed here. Helpers an exercise may use (``Checker.given``), and earlier
exercises of the notebook whose answer did not pass, are served by the grader on request: the course's version.
``verdict`` (pure) turns the outcomes into the report's row.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from course_lib.course.checkers.core import Checker, compare, hint_steps
from course_lib.course.grading import probe as protocol
from course_lib.course.grading.isolation import Limits, Sandbox, site_packages
from course_lib.course.grading.submission import exercise_source

MAX_GIVEN_CALLS = 20000


class ProbeFailed(Exception):
    """The probe stopped answering (it died, ran past its time, or sent something unreadable)."""


@dataclass
class Outcome:
    group: str  # "notebook" or "hidden"
    case: str
    status: str  # "ok", "raised", "not yet", "lost"
    value: object = None  # the answer's output (plain data) or the error text
    expected: object = None
    hint: str = ""  # the case's own hint, if it has one


@dataclass
class ProbeSession:
    """One probe process: in a sandbox, or (``--no-sandbox``) as a plain child process."""

    work: Path
    sandboxed: bool
    allow: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    threads: int = 1
    given: dict = field(default_factory=dict)  # name -> the course's function, for the current exercise
    sandbox: Sandbox | None = None
    process: subprocess.Popen | None = None
    calls: int = 0

    def start(self, deadline: float) -> None:
        script = self.work / "probe.py"
        shutil.copy(Path(protocol.__file__), script)
        command = [sys.executable, "-I", str(script)]
        env = {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        if self.sandboxed:
            hidden = [] if "torchvision" in self.allow else [site_packages() / "torchvision"]
            course = Path(__file__).resolve().parents[2]
            if course.parent == site_packages():  # installed as a wheel: hide it as well
                hidden.append(course)
            self.sandbox = Sandbox(self.work, limits=self.limits, hidden=hidden, env=env).__enter__()
            self.process = self.sandbox.start(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        else:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL, cwd=self.work,
                                            env={**os.environ, **env}, start_new_session=True)
        reply = self._receive(deadline)
        if reply.get("op") != "ready":
            raise ProbeFailed("the probe did not start")

    def _receive(self, deadline: float):
        stream = self.process.stdout
        header = self._read(stream, protocol.HEADER.size, deadline)
        (size,) = protocol.HEADER.unpack(header)
        if size > protocol.MAX_MESSAGE:
            raise ProbeFailed(f"it sent {size} bytes at once, over the limit")
        try:
            return protocol.decode(self._read(stream, size, deadline))
        except Exception as exc:
            raise ProbeFailed(f"it sent something that is not plain data ({type(exc).__name__})") from None

    def _read(self, stream, n: int, deadline: float) -> bytes:
        chunks, left = [], n
        fd = stream.fileno()
        while left:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise ProbeFailed("it ran past the time limit")
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise ProbeFailed(self._why_gone())
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _why_gone(self) -> str:
        if self.sandbox is not None and self.sandbox.stopped_for:
            return f"it went over the {self.sandbox.stopped_for} limit and was stopped"
        code = self.process.poll()
        return "it ended early" + (f" (exit status {code})" if code not in (None, 0) else "") + \
            " (a crash, os._exit, or over the memory limit)"

    def request(self, message: dict, deadline: float) -> dict:
        """Send ``message``; serve the probe's requests for givens until its reply comes."""
        try:
            self.process.stdin.write(protocol.encode(message))
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise ProbeFailed(self._why_gone()) from None
        while True:
            reply = self._receive(deadline)
            if not isinstance(reply, dict):
                raise ProbeFailed("it sent something that is not a message")
            if reply.get("op") != "given":
                return reply
            self.calls += 1
            if self.calls > MAX_GIVEN_CALLS:
                raise ProbeFailed(f"it called the course's helpers more than {MAX_GIVEN_CALLS} times")
            answer = self._serve_given(reply)
            try:
                self.process.stdin.write(protocol.encode(answer))
                self.process.stdin.flush()
            except (BrokenPipeError, OSError):
                raise ProbeFailed(self._why_gone()) from None

    def _serve_given(self, message: dict) -> dict:
        function = self.given.get(message.get("name"))
        if function is None:
            return {"status": "raised", "error": f"no helper {message.get('name')!r}"}
        args, kwargs = message.get("args"), message.get("kwargs")
        if type(args) is not list or type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
            return {"status": "raised", "error": "malformed call"}
        try:
            value = function(*protocol.from_plain(args), **protocol.from_plain(kwargs))
        except Exception as exc:
            return {"status": "raised", "error": protocol.describe(exc)}
        return {"status": "ok", "value": protocol.to_plain(value)}

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.stdin.write(protocol.encode({"op": "exit"}))
                self.process.stdin.close()
                self.process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.sandbox is not None:
            self.sandbox.kill()
        elif self.process is not None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout) if self.process is not None else ():
            try:
                stream.close()
            except OSError:
                pass


def prelude_source(check: Checker) -> str | None:
    if check.prelude is None:
        return None
    import importlib

    return Path(importlib.import_module(check.prelude).__file__).read_text(encoding="utf-8")


def grading_cases(check: Checker, seed: int | None) -> list[tuple[str, object]]:
    cases = [("notebook", c) for c in (check.grading_cases or check.make_cases)()]
    if seed is not None and check.hidden_cases is not None:
        cases += [("hidden", c) for c in check.hidden_cases(seed)]
    return cases


def run_exercise(session: ProbeSession, check: Checker, source, lent: dict, seed: int | None,
                 deadline: float) -> tuple[str | None, list[Outcome]]:
    """(why it could not be defined or None, the outcome of every case)."""
    session.given = {**check.given, **lent}
    reply = session.request({"op": "define", "parts": [list(p) for p in source.without(lent)], "function": source.function,
                             "givens": sorted(session.given), "prelude": prelude_source(check),
                             "adapter": check.adapter.__name__ if check.adapter else None}, deadline)
    if reply.get("status") != "ok":
        return f"defining it raised {reply.get('error', '?')}", []
    reference = check.adapted(check.reference)
    outcomes = []
    for group, case in grading_cases(check, seed):
        expected = reference(*case.args, **case.kwargs)
        message = {"op": "call", "args": protocol.to_plain(list(case.args)),
                   "kwargs": protocol.to_plain(dict(case.kwargs))}
        reply = session.request(message, deadline)
        status = reply.get("status") if reply.get("status") in ("ok", "raised", "not yet") else "lost"
        value = reply.get("value") if status == "ok" else reply.get("error")
        outcomes.append(Outcome(group, case.name, status, protocol.from_plain(value), expected, case.hint))
        if status == "not yet":
            break
    return None, outcomes


def verdict(check: Checker, points: float, outcomes: list[Outcome], problem: str | None = None) -> dict:
    """The report's row for one exercise (pure: the outcomes are already in)."""
    steps = hint_steps(check.hint)
    row = {"checker": check.name, "out_of": points, "points": 0.0, "groups": {}, "message": "", "hint": ""}
    if problem is not None:
        row.update(status="fail", message=problem)
        return row
    if any(o.status == "not yet" for o in outcomes):
        row.update(status="not attempted", message="the exercise is not implemented yet")
        return row
    groups: dict[str, bool] = {}
    for o in outcomes:
        ok = groups.setdefault(o.group, True)
        if o.status == "raised":
            msg = f"raised {o.value}"
        elif o.status != "ok":
            msg = "no output came back for this case"
        else:
            msg = compare(o.value, o.expected, check.atol)
        if msg is not None:
            groups[o.group] = False
            if ok and not row["message"]:
                label = f"case {o.case!r}" if o.group == "notebook" else "a hidden case"
                row["message"] = f"{label}: {msg}"
                row["hint"] = o.hint or (steps[0] if steps else "")  # the case's own hint first
    passed = [g for g in groups if groups[g]]
    row["groups"] = groups
    row["points"] = round(points * len(passed) / len(groups), 3) if groups else 0.0
    row["status"] = "pass" if groups and len(passed) == len(groups) else "partial" if passed else "fail"
    return row


def lendable(check: Checker, other: Checker | None, passed: dict[str, bool]) -> bool:
    """Whether the grader lends ``other``'s reference to ``check``'s answer: only an exercise graded before it,
    whose answer failed, never ``check`` itself, and never a function ``check`` forbids."""
    if other is None or other.name == check.name or passed.get(other.name, True):
        return False
    reference = other.reference
    dotted = f"{getattr(reference, '__module__', '')}.{getattr(reference, '__qualname__', '')}"
    return dotted not in check.forbidden and reference is not check.reference


def grade_exercises(cells, expected: list[tuple[Checker, float]], work: Path, seed: int | None, sandboxed: bool,
                    timeout: float, limits: Limits, threads: int = 1,
                    stopped_at: int | None = None) -> tuple[list[dict], dict[str, str]]:
    """(one row per exercise, {checker: submitted source}) for a notebook's cells, in ``expected``'s order.
    Exercises handed in at or after cell ``stopped_at`` (where the notebook's run stopped) are "not run"."""
    rows: list[dict] = []
    sources: dict[str, str] = {}
    found = {check.name: exercise_source(cells, check.name) for check, _ in expected}

    def reached(source) -> bool:
        return stopped_at is None or source.call_cell < stopped_at

    to_probe = [(c, p) for c, p in expected if found[c.name] is not None and found[c.name].parts
                and reached(found[c.name])]
    for check, points in expected:
        source = found[check.name]
        if source is not None and not reached(source):
            status, message = "not run", "the notebook stopped before this exercise"
        elif source is None:
            status, message = "not attempted", f"the notebook never hands a function to {check.name}"
        elif not source.parts:
            status, message = "not attempted", (f"the notebook hands {source.function!r} to {check.name} but does "
                                                "not define it with def")
        else:
            continue
        rows.append({"checker": check.name, "status": status, "points": 0.0, "out_of": points, "groups": {},
                     "hint": "", "message": message})
    if not to_probe:
        return _in_order(rows, expected), sources
    allow = tuple(sorted({a for c, _ in to_probe for a in c.allow}))
    deadline = time.monotonic() + timeout
    session = ProbeSession(work, sandboxed, allow=allow, limits=limits, threads=threads)
    passed: dict[str, bool] = {}
    checks = {c.name: c for c, _ in expected}
    try:
        session.start(deadline)
        for check, points in to_probe:
            source = found[check.name]
            sources[check.name] = next(text for text, required in source.parts if required)
            lent = {name: checks[other].reference for name, other in source.exercises_used.items()
                    if lendable(check, checks.get(other), passed)}
            problem, outcomes = run_exercise(session, check, source, lent, seed, deadline)
            row = verdict(check, points, outcomes, problem)
            passed[check.name] = row["status"] == "pass"
            rows.append(row)
    except ProbeFailed as exc:
        done = {r["checker"] for r in rows}
        for check, points in to_probe:
            if check.name not in done:
                rows.append({"checker": check.name, "status": "fail", "points": 0.0, "out_of": points,
                             "groups": {}, "hint": "", "message": f"the check could not finish: {exc}"})
    finally:
        session.close()
    return _in_order(rows, expected), sources


def _in_order(rows: list[dict], expected) -> list[dict]:
    order = {c.name: i for i, (c, _) in enumerate(expected)}
    return sorted(rows, key=lambda r: order[r["checker"]])
