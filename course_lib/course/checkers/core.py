"""The checker machinery: run a learner's function and the reference on named cases, and say how they differ.

A checker runs ``fn`` on several named cases and prints one of:

* ``PASS check_x: all 4 cases agree with the reference``
* ``FAIL check_x, case 'empty input': shape (0, 4) expected, got (4,). Hint: ...``
* ``NOT YET check_x: the exercise is not implemented yet ...`` (the stub raised ``NotImplementedError``)

It returns the function the notebook should go on with: the learner's when it passes, else the
reference, so that every later cell still runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from course_lib.course.progress import record

# Checker names per notebook, for the progress summary: {"00_overview": ["check_filter_detections", ...]}.
registry: dict[str, list[str]] = {}


@dataclass
class Case:
    name: str
    args: tuple
    kwargs: dict = field(default_factory=dict)


@dataclass
class CheckResult:
    name: str
    status: str  # "pass", "fail" or "not yet"
    message: str

    def __bool__(self) -> bool:
        return self.status == "pass"


def compare(got: Any, expected: Any, atol: float = 1e-5, path: str = "result") -> str | None:
    """``None`` when ``got`` matches ``expected``; otherwise a sentence saying where and how it differs."""
    if torch.is_tensor(expected):
        if not torch.is_tensor(got):
            return f"{path}: a tensor was expected, got {type(got).__name__}"
        if tuple(got.shape) != tuple(expected.shape):
            return f"{path}: shape {tuple(expected.shape)} expected, got {tuple(got.shape)}"
        if got.dtype != expected.dtype:
            return f"{path}: dtype {expected.dtype} expected, got {got.dtype}"
        if got.numel() == 0:
            return None
        g, e = got.detach().cpu().double(), expected.detach().cpu().double()
        if not torch.allclose(g, e, atol=atol, rtol=0, equal_nan=True):
            diff = (g - e).abs().nan_to_num(math.inf)
            idx = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
            return (f"{path}: values differ; largest difference {diff.max().item():.3g} at index {idx} "
                    f"(expected {e[idx].item():.6g}, got {g[idx].item():.6g})")
        return None
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
        for i, (g, e) in enumerate(zip(got, expected)):
            if (msg := compare(g, e, atol, f"{path}[{i}]")) is not None:
                return msg
        return None
    if isinstance(expected, float):
        ok = isinstance(got, (int, float)) and math.isclose(got, expected, abs_tol=atol)
        return None if ok else f"{path}: {expected:.6g} expected, got {got!r}"
    return None if got == expected else f"{path}: {expected!r} expected, got {got!r}"


def run_checks(name: str, fn: Callable, reference: Callable, cases: list[Case], hint: str = "",
               notebook: str | None = None, atol: float = 1e-5, verbose: bool = True) -> CheckResult:
    """Run ``fn`` and ``reference`` on every case; report the first failure (or pass / not yet)."""
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
                                               f"{type(exc).__name__}: {exc}. {hint}".rstrip())
            break
        if (msg := compare(got, expected, atol)) is not None:
            result = CheckResult(name, "fail", f"FAIL {name}, case {case.name!r}: {msg}. {hint}".rstrip())
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


def checker(name: str, reference: Callable, make_cases: Callable[[], list[Case]], hint: str = "",
            notebook: str | None = None, atol: float = 1e-5) -> Callable[[Callable], Callable]:
    """Build a ``check_<name>(fn)`` that returns ``fn`` if it passes, else ``reference``."""

    if notebook is not None:
        registry.setdefault(notebook, []).append(name)

    def check(fn: Callable) -> Callable:
        result = run_checks(name, fn, reference, make_cases(), hint, notebook, atol)
        return fn if result else reference

    check.__name__ = name
    check.__doc__ = f"Check a learner's ``{reference.__name__}`` against the reference; return the one to use."
    check.reference = reference
    check.cases = make_cases
    return check
