"""The checker machinery: run a learner's function and the reference on named cases, and say how they differ.

A checker runs ``fn`` on several named cases and prints one of:

* ``PASS check_x: all 4 cases agree with the reference``
* ``FAIL check_x, case 'empty input': shape (0, 4) expected, got (4,). Hint 1/3: ...`` (then the next step
  of the hint at each further failure, or with ``hint("check_x")``)
* ``NOT YET check_x: the exercise is not implemented yet ...`` (the stub raised ``NotImplementedError``)

It returns the function the notebook should go on with: the learner's when it passes, else the
reference, so that every later cell still runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from course_lib.course.progress import record

# Checker names per notebook, for the progress summary: {"00_overview": ["check_filter_detections", ...]}.
registry: dict[str, list[str]] = {}


@dataclass
class Case:
    name: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    hint: str = ""  # shown first when this case fails: what this case tests and the usual mistake


@dataclass
class CheckResult:
    name: str
    status: str  # "pass", "fail" or "not yet"
    message: str

    def __bool__(self) -> bool:
        return self.status == "pass"


def _tensor_difference(got: torch.Tensor, expected: torch.Tensor, atol: float, path: str) -> str | None:
    try:
        torch.testing.assert_close(got.detach().cpu(), expected.detach().cpu(), atol=atol, rtol=0,
                                   equal_nan=True, check_device=False)
        return None
    except AssertionError:
        pass
    g, e = got.detach().cpu().double(), expected.detach().cpu().double()
    diff = (g - e).abs().nan_to_num(math.inf)
    diff[g.isnan() != e.isnan()] = math.inf
    idx = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
    return (f"{path}: values differ; largest difference {diff.max().item():.3g} at index {idx} "
            f"(expected {e[idx].item():.6g}, got {g[idx].item():.6g})")


def compare(got: Any, expected: Any, atol: float = 1e-5, path: str = "result") -> str | None:
    """``None`` when ``got`` matches ``expected``; otherwise a sentence saying where and how it differs.

    Tensors are compared with ``torch.testing.assert_close`` (absolute tolerance ``atol``); the sentence
    names the worst index with the expected and the learner's value there.
    """
    if torch.is_tensor(expected):
        if not torch.is_tensor(got):
            return f"{path}: a tensor was expected, got {type(got).__name__}"
        if tuple(got.shape) != tuple(expected.shape):
            return f"{path}: shape {tuple(expected.shape)} expected, got {tuple(got.shape)}"
        if got.dtype != expected.dtype:
            return f"{path}: dtype {expected.dtype} expected, got {got.dtype}"
        if got.numel() == 0:
            return None
        return _tensor_difference(got, expected, atol, path)
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"{path}: a dict was expected, got {type(got).__name__}"
        if set(got) != set(expected):
            return f"{path}: keys {sorted(expected)} expected, got {sorted(got)}"
        for k in expected:
            if (msg := compare(got[k], expected[k], atol, f"{path}[{k!r}]")) is not None:
                return msg
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            return f"{path}: a sequence of length {len(expected)} expected, got {got!r:.80}"
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            if (msg := compare(g, e, atol, f"{path}[{i}]")) is not None:
                return msg
        return None
    if isinstance(expected, float):
        ok = isinstance(got, (int, float)) and math.isclose(got, expected, abs_tol=atol)
        return None if ok else f"{path}: {expected:.6g} expected, got {got!r}"
    return None if got == expected else f"{path}: {expected!r} expected, got {got!r}"


# Per checker, in this session: the case that failed last, and how many of the general steps it has seen.
_hints_shown: dict[str, int] = {}
_last_case: dict[str, str] = {}
_hint_steps: dict[str, list[str]] = {}


def hint_steps(hint: str | list[str] | tuple[str, ...]) -> list[str]:
    """A checker's ``hint`` as a list of steps: a str is one step, empty steps are dropped."""
    return [hint] if isinstance(hint, str) and hint else [h for h in hint if h] if not isinstance(hint, str) else []


def _label(step: str, number: int, total: int) -> str:
    step = step[len("Hint: "):] if step.startswith("Hint: ") else step
    return f"Hint: {step}" if total == 1 else f"Hint {number}/{total}: {step}"


def next_hint(name: str, hint: str | list[str] | tuple[str, ...] = (), case: Case | None = None) -> str:
    """The hint for checker ``name``'s failure on ``case``: that case's own hint the first time it fails, then the
    general steps, one more each time the SAME case fails again; another case failing starts over. Without a case
    (``hint(name)``) the next general step. "" when there is none."""
    steps = hint_steps(hint) or _hint_steps.get(name, [])
    if case is not None and _last_case.get(name) != case.name:
        _last_case[name] = case.name
        _hints_shown[name] = 0
        if case.hint:
            return f"Hint for this case: {case.hint}"
    if not steps:
        return f"Hint for this case: {case.hint}" if case is not None and case.hint else ""
    shown = min(_hints_shown.get(name, 0) + 1, len(steps))
    _hints_shown[name] = shown
    return _label(steps[shown - 1], shown, len(steps))


def hint(name: str) -> str:
    """Print (and return) the next hint step of checker ``name``, e.g. ``hint("check_box_iou")``."""
    name = name if name.startswith("check_") else f"check_{name}"
    if name not in _hint_steps:
        raise KeyError(f"no checker {name!r} with hints; known: {', '.join(sorted(_hint_steps))}")
    text = next_hint(name)
    print(text)
    return text


def run_checks(name: str, fn: Callable, reference: Callable, cases: list[Case], hint: str | list[str] = "",
               notebook: str | None = None, atol: float = 1e-5, verbose: bool = True) -> CheckResult:
    """Run ``fn`` and ``reference`` on every case; report the first failure (or pass / not yet).

    A failure names the case and the difference, then a hint (``next_hint``): the case's own hint when it has
    one, else the next step of ``hint`` (a str or a list of steps) for this case; ``hint(name)`` asks for the
    next step.
    """
    if hint_steps(hint):
        _hint_steps[name] = hint_steps(hint)
    result = None
    for case in cases:
        expected = reference(*case.args, **case.kwargs)
        try:
            got = fn(*_clone(case.args), **case.kwargs)
        except NotImplementedError:
            result = CheckResult(name, "not yet", f"NOT YET {name}: the exercise is not implemented yet; "
                                                  "the notebook goes on with the reference solution.")
            break
        except Exception as exc:  # a learner's bug: say which case and what was raised
            result = CheckResult(name, "fail", f"FAIL {name}, case {case.name!r}: raised "
                                               f"{type(exc).__name__}: {exc}. {next_hint(name, hint, case)}".rstrip())
            break
        if (msg := compare(got, expected, atol)) is not None:
            result = CheckResult(name, "fail", f"FAIL {name}, case {case.name!r}: {msg}. "
                                               f"{next_hint(name, hint, case)}".rstrip())
            break
    else:
        result = CheckResult(name, "pass", f"PASS {name}: all {len(cases)} cases agree with the reference")
    if notebook is not None:
        record(notebook, f"exercise:{name}", result.status == "pass")
    if verbose:
        print(result.message)
    return result


def _clone(args: tuple) -> tuple:
    # A learner's in-place edit must not change the reference's view of the inputs.
    return tuple(a.clone() if torch.is_tensor(a) else a for a in args)


@dataclass(eq=False)
class Checker:
    """One exercise's checker: ``check(fn)`` runs ``fn`` and ``reference`` on the cases, prints PASS, FAIL or
    NOT YET, and returns the function the notebook goes on with (``fn`` when it passes, else ``reference``).

    For the grader (``course grade``): ``hidden_cases(seed)`` gives more cases, never shown in the notebook;
    ``forbidden`` names (dotted paths) what the answer must not call, besides ``reference``: the grader runs
    the answer where none of them can be imported. ``given`` maps the names of course helpers the answer
    may call to the course's functions (the grader serves them from outside the sandbox); ``allow`` names
    packages the grader lets the answer import beyond torch, NumPy, pycocotools and the standard library.
    ``adapter(fn, *args)`` wraps every call when an answer's output is not plain data (a model): it turns it
    into data; it must be defined in a self-contained module (``prelude``, standard library, torch and the
    allowed packages only), which the grader sends into its sandbox. ``grading_cases`` replaces ``cases`` in
    the grader when the notebook's cases hold objects that cannot be sent there.
    """

    name: str
    reference: Callable
    make_cases: Callable[[], list[Case]]
    hint: str | list[str] = ""
    notebook: str | None = None
    atol: float = 1e-5
    hidden_cases: Callable[[int], list[Case]] | None = None
    forbidden: tuple[str, ...] = ()
    given: dict[str, Callable] = field(default_factory=dict)
    allow: tuple[str, ...] = ()
    adapter: Callable | None = None
    prelude: str | None = None  # the module holding ``adapter``, e.g. "course_lib.course.checkers.nb06_heads"
    grading_cases: Callable[[], list[Case]] | None = None
    submitted: Callable | None = None  # the function last handed to the check, in this kernel

    def __post_init__(self) -> None:
        self.__name__ = self.name
        self.__doc__ = f"Check a learner's ``{self.reference.__name__}`` against the reference; return the one to use."
        if self.notebook is not None:
            registry.setdefault(self.notebook, []).append(self.name)

    def cases(self) -> list[Case]:
        return self.make_cases()

    def adapted(self, fn: Callable) -> Callable:
        """``fn`` as the checker calls it (through ``adapter`` when there is one)."""
        if self.adapter is None:
            return fn
        return lambda *args, **kwargs: self.adapter(fn, *args, **kwargs)

    def __call__(self, fn: Callable) -> Callable:
        self.submitted = fn
        result = run_checks(self.name, self.adapted(fn), self.adapted(self.reference), self.cases(), self.hint,
                            self.notebook, self.atol)
        if self.notebook is not None and result.status != "not yet":
            from course_lib.course.saved import kept_note, save_passing

            note = save_passing(self.notebook, self.name, fn) if result else kept_note(self.notebook, self.name)
            if note:
                print(note)
        return fn if result else self.reference


def checker(name: str, reference: Callable, make_cases: Callable[[], list[Case]], hint: str | list[str] = "",
            notebook: str | None = None, atol: float = 1e-5, **options) -> Checker:
    """Build a ``check_<name>(fn)`` (a ``Checker``); ``options`` are its grading fields (``hidden_cases``, ...)."""
    return Checker(name, reference, make_cases, hint=hint, notebook=notebook, atol=atol, **options)
