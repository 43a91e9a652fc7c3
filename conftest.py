"""pytest settings for the whole repository (tests/, solutions/, notebooks/): the tiers and the notebook runs.

Tiers are markers (``pyproject.toml`` lists them): ``notebooks`` is given here to every nbval cell; ``kernel``,
``training``, ``browser`` and ``equality`` are set by the test modules. ``./course test --quick`` deselects the
first four. ``./course test`` runs on pytest-xdist with ``--dist loadscope``: a file is one unit of work, so a
notebook's cells run in order in one kernel and a module's fixtures are built once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
SMOKE_ENV = "COURSE_SMOKE"  # course_lib.utils.budget.SMOKE_ENV (not imported here: that would load torch)
# The longest files go first, so that no worker is left with one of them at the end (longest-first scheduling).
LONG_FIRST = ("solutions/08", "solutions/06", "solutions/07", "tests/course/test_grade.py",
              "tests/course/test_browser.py", "notebooks/06", "notebooks/08", "notebooks/07")


_RUNS = Path(tempfile.gettempdir())  # replaced by this process's own folder in pytest_configure


def pytest_configure(config):
    # What notebooks and commands write goes to a temporary folder, never into the learner's runs/; each notebook
    # folder has its own, so solutions/NN and notebooks/NN can run at the same time on two workers.
    global _RUNS
    _RUNS = Path(tempfile.mkdtemp(prefix="course-test-runs-"))
    os.environ["COURSE_RUNS_DIR"] = str(_RUNS)
    if not hasattr(config, "workerinput") and any(
            Path(a).name in ("solutions", "notebooks") or a.endswith(".ipynb") for a in config.args):
        from course_lib.data.notebook_data import write_notebook_data

        write_notebook_data()


def pytest_unconfigure(config):
    shutil.rmtree(_RUNS, ignore_errors=True)


def _order(item) -> int:
    path = item.path.relative_to(ROOT).as_posix()
    return next((i for i, prefix in enumerate(LONG_FIRST) if path.startswith(prefix)), len(LONG_FIRST))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.notebooks)
    items.sort(key=_order)  # stable: a file's items keep their order


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """nbval starts a notebook's kernel with this process's environment: ``notebooks/`` (the stubs, whose outputs
    nothing compares) runs as a smoke run with small training budgets; ``solutions/`` runs in full."""
    if item.path.suffix != ".ipynb":
        return
    os.environ["COURSE_RUNS_DIR"] = str(_RUNS / item.path.parent.name)
    if item.path.parent == ROOT / "notebooks":
        os.environ[SMOKE_ENV] = "1"
    else:
        os.environ.pop(SMOKE_ENV, None)
