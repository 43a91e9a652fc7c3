"""The course in a real browser: JupyterLab on a loopback port, driven by Playwright in Debian's Chromium.

Needs `/usr/bin/chromium` (Debian's package; `./course test` installs it with apt-get where it can) and the
`playwright` Python package (no browser download: Playwright drives the system Chromium through
`executable_path`). Where either is missing the tests are skipped with the reason. Screenshots go to
`artifacts/`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pytest

from course_lib.utils.paths import REPO_ROOT as ROOT

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def _requirements() -> str | None:
    if not Path(CHROMIUM).exists():
        return "Debian's chromium is not installed (apt-get install chromium): browser tests skipped"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]'): browser tests skipped"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab(NamedTuple):
    base: str  # http://127.0.0.1:<port>
    token: str
    root: Path  # the server's folder: the notebooks as JupyterLab saves them


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server over a temporary copy of the student notebooks; yields a ``Lab``."""
    reason = _requirements()
    if reason:
        print(reason)
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("lab")
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy(nb, work / nb.name)
    write_lab_settings(work / ".settings")
    # As a learner sees it: widgets on, and the inline figure backend (no MPLBACKEND=Agg from the tests).
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_HEADLESS", "MPLBACKEND")}
    env.update(JUPYTERLAB_SETTINGS_DIR=str(work / ".settings"), COURSE_PROGRESS_FILE=str(work / "progress.json"))
    lab_args = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={work}",
                *(["--allow-root"] if os.geteuid() == 0 else [])]
    yield from serve(lab_args, env=env, cwd=work, log_path=work / "lab.log", root=work)


LAB_OPTIONS = ["--no-browser", "--ip=127.0.0.1", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]


def serve(argv: list[str], *, env: dict, cwd: Path, log_path: Path, root: Path):
    """Run ``argv`` (a command that starts JupyterLab) with ``LAB_OPTIONS``, a free port and a token; yield a ``Lab``
    once the server answers, stop it afterwards (a generator for fixtures: ``yield from serve(...)``)."""
    port, token = _free_port(), secrets.token_hex(16)
    log = open(log_path, "w")
    proc = subprocess.Popen([*argv, *LAB_OPTIONS, f"--port={port}", f"--IdentityProvider.token={token}"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError as exc:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"JupyterLab did not start: {log_path.read_text()[-2000:]}") from exc
            time.sleep(0.5)
    try:
        yield Lab(base, token, root)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def page(lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


IDLE = ".jp-Notebook-ExecutionIndicator[data-status='idle']"


def write_lab_settings(folder: Path) -> None:
    """JupyterLab settings for the tests (``JUPYTERLAB_SETTINGS_DIR=folder``): render every cell (JupyterLab 4
    otherwise renders only what is on screen), start the notebook's own kernel without the "Select Kernel" dialog,
    and no news toast over the page."""
    settings = folder / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none", "autoStartDefaultKernel": True}))
    (settings / "apputils-extension").mkdir()
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def wait_for_kernel(page, name: str) -> None:
    """Until the notebook's kernel is idle and no dialog is open. Should JupyterLab still ask which kernel to start
    (the dialog can come up after the indicator already says idle), take the proposed one: the venv's Python 3."""
    deadline = time.time() + 120
    settled = 0
    while settled < 3:  # idle and dialog-free on three checks in a row, half a second apart
        dialog = page.locator(".jp-Dialog:has-text('Select Kernel')")
        if dialog.count():
            dialog.locator("button:has-text('Select')").click()
        ready = page.locator(f"{IDLE} >> visible=true").count() and not page.locator(".jp-Dialog").count()
        settled = settled + 1 if ready else 0
        if time.time() > deadline:
            page.screenshot(path=str(ARTIFACTS / f"browser_{Path(name).stem}_no_kernel.png"), full_page=True)
            raise AssertionError(f"the kernel for {name} did not start")
        page.wait_for_timeout(500)


def open_and_run_all(page, lab, name: str, timeout_s: int = 600) -> None:
    base, token = lab.base, lab.token
    # A fresh workspace per test, so that notebooks opened by an earlier test are not restored.
    page.goto(f"{base}/lab/workspaces/{Path(name).stem}/tree/{name}?token={token}&reset")
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    wait_for_kernel(page, name)
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")
    # Done when every code cell shows an execution count ([12]:), none [*]: or [ ]:.
    start = time.time()
    idle_since = start  # when the page last showed no cell running or queued ([*]:)
    while time.time() < start + timeout_s:
        prompts = [p.strip() for p in page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()]
        if prompts and all(re.fullmatch(r"\[\d+\]:?", p) for p in prompts):
            return
        if any("*" in p for p in prompts):
            idle_since = time.time()
        elif time.time() - idle_since > 60:
            break  # nothing running or queued for a minute: Run All did not take, or the kernel was replaced
        page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / f"browser_{Path(name).stem}_timeout.png"), full_page=True)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").all_inner_texts()
    raise AssertionError(f"{name} did not finish running after {time.time() - start:.0f} s; prompts {prompts}; "
                         f"errors: {[e[-500:] for e in errors]}")


def test_overview_runs_in_jupyterlab_and_the_quiz_answers(page, lab):
    # A copy of its own: its kernel (where a checkpoint's first answer locks) is not the next test's.
    shutil.copy(lab.root / "00_overview.ipynb", lab.root / "00_overview_first_try.ipynb")
    open_and_run_all(page, lab, "00_overview_first_try.ipynb")
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t.split("\n")[0]]
    assert not tracebacks, tracebacks
    assert page.locator("text=NOT YET check_filter_detections").count() == 1  # stubs: the checker says so
    quiz = page.locator(".widget-vbox:has(.widget-radio-box)").first
    quiz.scroll_into_view_if_needed()
    assert "What is the primary addition of Mask R-CNN" in quiz.inner_text()
    quiz.locator("label:has-text('A deeper backbone network')").click()
    quiz.locator("button:has-text('Check')").click()
    page.wait_for_function("el => el.innerText.includes('Not quite')", arg=quiz.element_handle())
    feedback = quiz.inner_text()
    assert "A branch that predicts a binary mask" not in feedback.split("Not quite")[1], "the key is not named"
    # A checkpoint records the first answer: the choices and the button are locked now.
    assert all(r.is_disabled() for r in quiz.locator("input[type=radio]").all())
    assert quiz.locator("button:has-text('Check')").is_disabled()
    quiz.screenshot(path=str(ARTIFACTS / "browser_00_quiz.png"))
    page.screenshot(path=str(ARTIFACTS / "browser_00_page.png"))


def _quiz_records(path: Path) -> dict[str, dict]:
    from course_lib.course.quiz import RECORD_MIME

    cells = json.loads(path.read_text())["cells"]
    return {o["data"][RECORD_MIME]["id"]: o["data"][RECORD_MIME] for c in cells for o in c.get("outputs", [])
            if RECORD_MIME in o.get("data", {})}


def test_widget_answers_reach_the_grade_through_the_saved_notebook(page, lab, tmp_path):
    """Click quiz answers, save with Ctrl+S, grade the saved file: right, wrong and unanswered as clicked."""
    from course_lib.course.grading.grader import GradeOptions, grade
    from course_lib.course.quiz import BANK

    name = "00_overview.ipynb"
    open_and_run_all(page, lab, name)

    def answer_by_clicking(question: str, choice: str, check: bool = True) -> None:
        quiz = page.locator(f".widget-vbox:has(.widget-radio-box):has-text('{question}')")
        quiz.scroll_into_view_if_needed()
        quiz.locator(f"label:has-text('{choice}')").click()
        if check:
            quiz.locator("button:has-text('Check')").click()
            page.wait_for_function("el => /Correct!|Not quite/.test(el.innerText)", arg=quiz.element_handle())

    answer_by_clicking("What is the primary addition of Mask R-CNN", "A branch that predicts a binary mask")
    answer_by_clicking("What format should your custom dataset", "One text label per image")  # wrong
    answer_by_clicking("In eval mode, what does torchvision", "A list of polygons", check=False)  # chosen, never checked
    page.locator(".jp-MarkdownCell").first.click()  # out of the widgets: the notebook takes the shortcut
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    saved = lab.root / name
    deadline = time.time() + 30
    while _quiz_records(saved).get("overview-annotation-format", {}).get("choice") is None:
        if time.time() > deadline:
            page.screenshot(path=str(ARTIFACTS / "browser_00_not_saved.png"), full_page=True)
            raise AssertionError(f"the saved notebook carries no checked quiz answers: {_quiz_records(saved)}")
        page.wait_for_timeout(500)
    records = _quiz_records(saved)
    assert records == {"overview-maskrcnn-addition": {"id": "overview-maskrcnn-addition", "choice": 1},
                       "overview-annotation-format": {"id": "overview-annotation-format", "choice": 0},
                       "overview-output-masks": {"id": "overview-output-masks", "choice": None},
                       "overview-weights-api": {"id": "overview-weights-api", "choice": None}}
    assert BANK["overview-maskrcnn-addition"].correct == 1 and BANK["overview-annotation-format"].correct != 0

    submitted = tmp_path / "learner" / name  # as an instructor collects it
    submitted.parent.mkdir()
    shutil.copy(saved, submitted)
    report = grade(submitted, seed=1, options=GradeOptions(timeout=300))
    quizzes = {q["id"]: q["status"] for q in report["quizzes"]}
    assert quizzes == {"overview-maskrcnn-addition": "right", "overview-annotation-format": "wrong",
                       "overview-output-masks": "unanswered", "overview-weights-api": "unanswered"}
    assert sum(q["points"] for q in report["quizzes"]) == 1
    assert {e["status"] for e in report["exercises"]} == {"not attempted"}  # the stubs, untouched


def test_nms_slider_redraws_the_proposals(page, lab):
    """Notebook 02's interactive control: moving the NMS slider changes the figure."""
    open_and_run_all(page, lab, "02_anchors_rpn.ipynb", timeout_s=600)
    control = page.locator(".widget-interact").first
    control.scroll_into_view_if_needed()
    control.locator("img").first.wait_for()
    before = control.locator("img").first.get_attribute("src")
    readout = control.locator(".widget-readout").first
    assert readout.inner_text().strip() == "0.70"
    handle = control.locator(".widget-slider .noUi-handle").first
    handle.focus()
    for _ in range(6):  # lower the NMS threshold by 0.3: fewer, less overlapping proposals
        page.keyboard.press("ArrowLeft")
    deadline = time.time() + 60
    while time.time() < deadline:
        imgs = control.locator("img")
        if imgs.count() and imgs.first.get_attribute("src") not in (None, before):
            break
        page.wait_for_timeout(500)
    else:
        raise AssertionError("the figure did not change after moving the NMS slider")
    assert readout.inner_text().strip() == "0.40"
    control.screenshot(path=str(ARTIFACTS / "browser_02_nms_slider.png"))
