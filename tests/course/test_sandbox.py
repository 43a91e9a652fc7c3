"""course_lib.course.sandbox: running a notebook headless in a fresh kernel of its own."""

import os
import time
from pathlib import Path

import nbformat
import pytest

from course_lib.course.sandbox import execute_notebook

pytestmark = pytest.mark.kernel  # every test starts a Jupyter kernel


def notebook(*cells):
    """Code cells from strings; a cell given as ("md", text) is a markdown cell."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(c[1]) if isinstance(c, tuple) else nbformat.v4.new_code_cell(c)
                for c in cells]
    return nb


def text_of(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def kernel_pid(cell):
    return int(text_of(cell).split("pid=")[1].split()[0])


def running(pid):
    """True while process ``pid`` exists and has not exited (a zombie has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return stat.parent.exists() or not Path("/proc/self").exists()


def assert_gone(pid, wait=5.0):
    end = time.monotonic() + wait
    while running(pid) and time.monotonic() < end:
        time.sleep(0.1)
    assert not running(pid), f"the kernel (pid {pid}) is still running after execute_notebook returned"


def test_clean_notebook_runs_in_its_own_folder_and_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_HEADLESS", raising=False)  # the kernel gets it even when the caller lacks it
    monkeypatch.setenv("COURSE_SANDBOX_TEST_INHERITED", "from-the-caller")
    before = dict(os.environ)
    cwd_before = os.getcwd()
    work = tmp_path / "work"
    work.mkdir()
    nb = notebook(
        ("md", "# not run"),
        "import os; print('pid=%d' % os.getpid())",
        "print('cwd=' + os.getcwd())\nopen('made_here.txt', 'w').write('hi')",
        "for k in ('COURSE_SANDBOX_TEST_EXTRA', 'COURSE_SANDBOX_TEST_INHERITED', 'COURSE_HEADLESS'):\n"
        "    print(k, os.environ.get(k))\n"
        "os.environ['COURSE_SANDBOX_TEST_SET_IN_KERNEL'] = '1'\nx = 6 * 7",
    )
    checks = []

    def after(run):
        checks.append(run.execute_code("assert x == 42", limit=30))
        checks.append(run.execute_code("raise KeyError", limit=30))

    run = execute_notebook(nb, work, timeout=120, env={"COURSE_SANDBOX_TEST_EXTRA": "given"}, after=after)
    assert run.error is None, run.error
    assert run.workdir == work.resolve() and 0 < run.seconds < 120
    # the checks are not stored in the notebook (nbclient would have put them over cell 0)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code", "code"]
    assert nb.cells[0].source == "# not run" and "outputs" not in nb.cells[0]
    assert text_of(nb.cells[2]).strip() == f"cwd={work.resolve()}"
    assert (work / "made_here.txt").read_text() == "hi"
    assert text_of(nb.cells[3]).split("\n")[:3] == [
        "COURSE_SANDBOX_TEST_EXTRA given", "COURSE_SANDBOX_TEST_INHERITED from-the-caller", "COURSE_HEADLESS 1"]
    # the grader's checks run in the same kernel after the notebook; an exception without a value by its name
    assert checks == [None, "the grader's check raised: KeyError"]
    # the caller's process is untouched
    assert dict(os.environ) == before and os.getcwd() == cwd_before
    assert "COURSE_SANDBOX_TEST_EXTRA" not in os.environ and "COURSE_SANDBOX_TEST_SET_IN_KERNEL" not in os.environ
    assert_gone(kernel_pid(nb.cells[1]))


def test_an_exception_is_reported_by_name_and_value_and_stops_the_run(tmp_path):
    nb = notebook(
        ("md", "text"),
        "import os; print('pid=%d' % os.getpid())",
        "raise ValueError('bad value\\n   7')",
        "print('never')",
    )
    ran_after = []
    run = execute_notebook(nb, tmp_path, timeout=120, after=ran_after.append)
    assert run.error == "cell 2 raised: ValueError: bad value 7"  # cells counted with markdown; one line
    assert nb.cells[3].outputs == []  # nothing after the failing cell ran
    assert ran_after == [run]  # the checks still run after a failing cell (the kernel is alive)
    assert_gone(kernel_pid(nb.cells[1]))


def test_an_isolated_kernel_has_no_network_no_host_processes_and_a_capped_output(tmp_path):
    from course_lib.course.grading.isolation import Limits, Sandbox, engine_problem

    if engine_problem():
        pytest.skip(engine_problem())
    work = tmp_path / "work"
    work.mkdir()
    nb = notebook(
        "import os, socket, sys; print(os.getuid(), len([p for p in os.listdir('/proc') if p.isdigit()]) < 20)",
        "os.write(1, b'raw output to the terminal\\n' * 100000)\nprint('y' * 10_000_000)",
        "socket.create_connection(('127.0.0.1', 22), timeout=5)",
    )
    with Sandbox(work, limits=Limits(log_bytes=1000)) as sandbox:
        run = execute_notebook(nb, work, timeout=120, isolation=sandbox, max_output_bytes=100_000)
        log = sandbox.log.text()
    assert nb.cells[0].outputs[0]["text"] == "65534 True\n"
    kept = sum(len(str(o.get("text", ""))) for o in nb.cells[1].outputs)
    assert kept <= 100_000 and len(log) <= 1000, "outputs past the cap are dropped, raw output capped"
    assert run.error == "cell 2 raised: ConnectionRefusedError: [Errno 111] Connection refused"


def test_the_time_limit_for_the_whole_notebook_stops_an_endless_loop(tmp_path):
    nb = notebook(
        "import os; print('pid=%d' % os.getpid())",
        "while True:\n    pass",
        "print('never')",
    )
    after = []
    t0 = time.perf_counter()
    run = execute_notebook(nb, tmp_path, timeout=10, after=after.append)
    assert time.perf_counter() - t0 < 40, "the endless loop was not stopped at the limit"
    # kernel start counts against the limit too; on a slow machine it may leave no time for cell 1
    assert run.error in ("cell 1 ran past the time limit (10 s for the notebook)",
                         "time limit of 10 s reached before cell 1"), run.error
    assert nb.cells[2].outputs == []
    assert after == [run]  # after() still gets its chance (its own calls are bounded by the deadline)
    assert_gone(kernel_pid(nb.cells[0]))
