"""``course test``: lint, then the test suite, on every core.

    ./course test                  the whole suite (what CI runs): library tests, every notebook under nbval
                                   (solutions/ with their checked outputs, notebooks/ as a smoke run of the stubs)
    ./course test --quick          the library without kernels, training, notebooks or the browser (a few minutes)
    ./course test --cpu-variants   the checked notebook cells and the equality tests under each CPU kernel family
                                   this machine can run (default, AVX2 ATen kernels, AVX2 ATen and oneDNN kernels)

Other options go to pytest, e.g. ``./course test tests/ops -x`` or ``./course test --quick -k roi_align``. Tiers
are pytest markers (``kernel``, ``training``, ``notebooks``, ``browser``, ``equality``; see pyproject.toml).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from course_lib.utils.paths import REPO_ROOT

NBVAL = ["--nbval-lax", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", "--nbval-cell-timeout", "600"]
QUICK = "not kernel and not training and not notebooks and not browser"
# A checked number that sits on a rounding edge prints differently under other kernels: try them all.
CPU_VARIANTS = {
    "default kernels": {},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
MAX_WORKERS = 4  # each worker may hold a notebook kernel of 1-2 GB


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def parallel_args(env: dict) -> list[str]:
    """pytest-xdist: one worker per core (at most MAX_WORKERS), each with its share of the cores as threads, so
    that torch's OpenMP threads do not fight over cores. Notebook kernels inherit the thread count."""
    n = min(cores(), MAX_WORKERS)
    if n < 2:
        return []
    env["OMP_NUM_THREADS"] = str(max(1, cores() // n))
    return ["-n", str(n), "--dist", "loadscope"]


def lint() -> int:
    ruff = shutil.which("ruff", path=os.path.dirname(sys.executable)) or shutil.which("ruff")
    if ruff is None:
        print("course test: ruff is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 1
    print("course test: ruff check", flush=True)
    return subprocess.call([ruff, "check", "--quiet", "."], cwd=REPO_ROOT)


def pytest(args: list[str], env: dict) -> int:
    return subprocess.call([sys.executable, "-m", "pytest", *args], cwd=REPO_ROOT, env=env)


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    quick, variants = "--quick" in argv, "--cpu-variants" in argv
    argv = [a for a in argv if a not in ("--quick", "--cpu-variants")]
    if quick and variants:
        print("course test: --quick and --cpu-variants are separate runs; choose one", file=sys.stderr)
        return 2
    # Paths to test (``tests/ops``, ``solutions/02_anchors_rpn.ipynb``, ``tests/x.py::test_y``); an option's value
    # such as ``-k roi_align`` is not one.
    targets = [a for a in argv if not a.startswith("-") and (REPO_ROOT / a.split("::")[0]).exists()]
    status = lint()
    if status:
        print("course test: ruff found problems (above); `ruff check --fix .` fixes the simple ones",
              file=sys.stderr)
        return status
    with tempfile.TemporaryDirectory(prefix="course-test-") as tmp:
        # Quizzes and checkers record progress: the tests keep away from the learner's file in $HOME.
        env = {**os.environ, "COURSE_HEADLESS": "1", "MPLBACKEND": "Agg",
               "COURSE_PROGRESS_FILE": os.path.join(tmp, "progress.json")}
        common = [*parallel_args(env), *NBVAL]
        if quick:
            return pytest([*(targets or ["tests"]), "-m", QUICK, *common, "--durations=10", *argv], env)
        if variants:
            return run_variants(targets, argv, common, env)
        return pytest([*(targets or ["tests", "solutions", "notebooks"]), *common, "--durations=25", *argv], env)


def run_variants(targets: list[str], argv: list[str], common: list[str], env: dict) -> int:
    """The checked cells of solutions/ and the tests marked ``equality``, once per kernel family."""
    failed = []
    for name, extra in CPU_VARIANTS.items():
        print(f"\ncourse test --cpu-variants: {name}", flush=True)
        args = [*(targets or ["tests", "solutions"]), "-m", "equality or notebooks", *common, *argv]
        if pytest(args, {**env, **extra}):
            failed.append(name)
    print(f"\ncourse test --cpu-variants: {len(CPU_VARIANTS) - len(failed)} of {len(CPU_VARIANTS)} kernel "
          f"families passed" + (f"; failed under: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
