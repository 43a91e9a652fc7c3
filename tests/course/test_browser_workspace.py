"""`./course lab` as a learner starts it: the workspace is created, JupyterLab opens there, an exercise solved in
the browser is saved in the workspace, and a course update afterwards keeps the learner's edit.

The server is the real command (`python -m course_lib lab`, which ends by exec'ing `jupyter lab` in the
workspace); the browser helpers are test_browser.py's.
"""

from __future__ import annotations

import os
import sys
import time

import pytest
from test_browser import ARTIFACTS, _requirements, page, serve, wait_for_kernel, write_lab_settings  # noqa: F401

from course_lib.utils.paths import REPO_ROOT

pytestmark = pytest.mark.browser

SOLVED = '''from course_lib import check_filter_detections


def filter_detections(output, score_threshold):
    keep = output["scores"] >= score_threshold
    return {key: value[keep] for key, value in output.items()}


filter_detections = check_filter_detections(filter_detections)
'''


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """``python -m course_lib lab`` on a workspace that does not exist yet; yields a ``Lab`` whose root is it."""
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("learner")
    workspace = home / "my course"  # a space in the path, as learners' folders have
    write_lab_settings(home / ".settings")
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_HEADLESS", "MPLBACKEND", "COURSE_RUNS_DIR")}
    env.update(COURSE_WORKSPACE=str(workspace), JUPYTERLAB_SETTINGS_DIR=str(home / ".settings"),
               COURSE_PROGRESS_FILE=str(home / "progress.json"), COURSE_RUNS_DIR=str(home / "runs"))
    yield from serve([sys.executable, "-m", "course_lib", "lab"], env=env, cwd=REPO_ROOT, log_path=home / "lab.log",
                     root=workspace)


def test_course_lab_opens_the_workspace_saves_a_solved_exercise_and_keeps_the_edit(page, lab):  # noqa: F811
    from course_lib.course.workspace import sync

    workspace = lab.root
    course_copy = (REPO_ROOT / "notebooks" / "00_overview.ipynb").read_bytes()
    assert sorted(p.name for p in workspace.glob("*.ipynb")) == sorted(
        p.name for p in (REPO_ROOT / "notebooks").glob("*.ipynb")), "the workspace holds every notebook"

    name = "00_overview.ipynb"
    page.goto(f"{lab.base}/lab/workspaces/ws/tree/{name}?token={lab.token}&reset")
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    wait_for_kernel(page, name)
    # The file browser shows the workspace: its notebooks, not the repository's folders.
    listing = page.locator(".jp-DirListing-itemName").all_inner_texts()
    assert name in listing and "course_lib" not in listing, listing

    # The learner writes the exercise in a new cell at the end and runs it.
    page.locator(".jp-Notebook .jp-Cell").last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # a new code cell below, in command mode
    page.keyboard.press("Enter")  # edit it
    page.keyboard.insert_text(SOLVED)
    page.keyboard.press("Shift+Enter")
    page.wait_for_selector("text=PASS check_filter_detections", timeout=120_000)
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")

    saved = workspace / "saved" / "00_overview.py"
    deadline = time.time() + 30
    while not (saved.exists() and "filter_detections" in (workspace / name).read_text()):
        if time.time() > deadline:
            page.screenshot(path=str(ARTIFACTS / "browser_workspace_not_saved.png"), full_page=True)
            raise AssertionError(f"no saved function or saved notebook in {workspace}")
        page.wait_for_timeout(500)
    assert "score_threshold" in saved.read_text()
    page.screenshot(path=str(ARTIFACTS / "browser_workspace.png"))

    # The repository's copy is untouched, and a course update (sync, as `./course lab` runs it) keeps the edit.
    assert (REPO_ROOT / "notebooks" / name).read_bytes() == course_copy
    report = sync(workspace)
    assert SOLVED.splitlines()[3] in (workspace / name).read_text().replace('\\"', '"'), report
