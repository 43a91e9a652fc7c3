"""`./course lab` as a learner starts it: the workspace is created, JupyterLab opens there, an exercise solved in
the browser is saved in the workspace, and a course update afterwards keeps the learner's edit.

The server is the real command (`python -m course_lib lab`, which ends by exec'ing `jupyter lab` in the
workspace); the browser helpers are test_browser.py's.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request

import pytest
from test_browser import ARTIFACTS, IDLE, Lab, _free_port, _requirements, page  # noqa: F401 (the page fixture)

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
    settings = home / ".settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none", "autoStartDefaultKernel": True}))
    (settings / "apputils-extension").mkdir()
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_HEADLESS", "MPLBACKEND", "COURSE_RUNS_DIR")}
    env.update(COURSE_WORKSPACE=str(workspace), JUPYTERLAB_SETTINGS_DIR=str(home / ".settings"),
               COURSE_PROGRESS_FILE=str(home / "progress.json"), COURSE_RUNS_DIR=str(home / "runs"))
    log = open(home / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "course_lib", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError as exc:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"course lab did not start: {(home / 'lab.log').read_text()[-2000:]}") from exc
            time.sleep(0.5)
    try:
        yield Lab(base, token, workspace)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_for_kernel(tab, name: str) -> None:
    deadline = time.time() + 120
    settled = 0
    while settled < 3:
        dialog = tab.locator(".jp-Dialog:has-text('Select Kernel')")
        if dialog.count():
            dialog.locator("button:has-text('Select')").click()
        ready = tab.locator(f"{IDLE} >> visible=true").count() and not tab.locator(".jp-Dialog").count()
        settled = settled + 1 if ready else 0
        if time.time() > deadline:
            tab.screenshot(path=str(ARTIFACTS / f"browser_workspace_{name}_no_kernel.png"), full_page=True)
            raise AssertionError(f"the kernel for {name} did not start")
        tab.wait_for_timeout(500)


def test_course_lab_opens_the_workspace_saves_a_solved_exercise_and_keeps_the_edit(page, lab):  # noqa: F811
    from course_lib.course.workspace import sync

    workspace = lab.root
    course_copy = (REPO_ROOT / "notebooks" / "00_overview.ipynb").read_bytes()
    assert sorted(p.name for p in workspace.glob("*.ipynb")) == sorted(
        p.name for p in (REPO_ROOT / "notebooks").glob("*.ipynb")), "the workspace holds every notebook"

    name = "00_overview.ipynb"
    page.goto(f"{lab.base}/lab/workspaces/ws/tree/{name}?token={lab.token}&reset")
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    _wait_for_kernel(page, "00")
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
