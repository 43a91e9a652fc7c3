"""The sandbox (bubblewrap): what code inside can see, change, reach and use, tried from inside.

Each test starts a real sandbox and runs a small Python program in it that tries one class of escape; the
program prints what it managed, and the test checks both that output and the host's side.
"""

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from course_lib.course.grading import isolation
from course_lib.course.grading.isolation import Limits, Sandbox, engine_problem, site_packages, tree_usage

pytestmark = pytest.mark.skipif(engine_problem() is not None, reason=f"no isolation engine: {engine_problem()}")

ROOT = Path(__file__).resolve().parents[3]


def run_inside(tmp_path, code: str, limits: Limits = Limits(), timeout: float = 60, **options) -> tuple[int, str]:  # noqa: B008
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "attempt.py").write_text(textwrap.dedent(code))
    with Sandbox(work, limits=limits, **options) as sandbox:
        process = sandbox.start([sys.executable, "attempt.py"])
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        sandbox.kill()
        return code, sandbox.log.text()


def test_the_engine_works_here():
    assert engine_problem() is None


def test_files_outside_are_invisible_and_the_course_and_venv_read_only(tmp_path):
    secret = tmp_path / "classmate" / "02_anchors_rpn.ipynb"
    secret.parent.mkdir()
    secret.write_text("her work")
    course_file = ROOT / "course_lib" / "course" / "quiz_bank" / "00_overview.json"
    before = course_file.read_bytes()
    code, log = run_inside(tmp_path, f"""
        import os, pathlib
        for path in [{str(secret)!r}, "/root/.ssh/id_rsa", "/etc/shadow", {str(ROOT / 'solutions')!r}]:
            print("read", path, os.path.exists(path))
        for path in [{str(course_file)!r}, {str(site_packages() / 'planted.pth')!r}, "/usr/lib/planted", "/planted"]:
            try:
                open(path, "a").write("x")
                print("WROTE", path)
            except OSError as exc:
                print("refused", path, type(exc).__name__)
        pathlib.Path("mine.txt").write_text("ok")
        print("work writable", pathlib.Path("mine.txt").read_text())
    """, readonly=[ROOT / "course_lib"])
    assert code == 0, log
    assert "WROTE" not in log and log.count("refused") == 4
    assert all(line.endswith("False") for line in log.splitlines() if line.startswith("read")), log
    assert "work writable ok" in log
    assert course_file.read_bytes() == before and not (site_packages() / "planted.pth").exists()


def test_no_network_not_even_the_hosts_loopback_and_no_environment(tmp_path, monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    monkeypatch.setenv("INSTRUCTOR_TOKEN", "s3cret-token")
    code, log = run_inside(tmp_path, f"""
        import os, socket, _socket, subprocess
        for family, address in [(socket.AF_INET, ("127.0.0.1", {port})), (socket.AF_INET, ("1.1.1.1", 53))]:
            try:
                s = _socket.socket(family, socket.SOCK_STREAM); s.settimeout(2); s.connect(address)
                print("CONNECTED", address)
            except OSError as exc:
                print("refused", address, type(exc).__name__)
        child = subprocess.run(["env", "-i", "{sys.executable}", "-c",
                                "import socket; s = socket.socket(); s.settimeout(2); s.connect(('127.0.0.1', {port}))"],
                               capture_output=True, text=True)
        print("child", child.returncode)
        print("token" in str(os.environ).lower(), os.environ.get("INSTRUCTOR_TOKEN"))
    """)
    server.close()
    assert code == 0, log
    assert "CONNECTED" not in log and log.count("refused") == 2 and "child 1" in log
    assert "False None" in log and not accepted


def test_processes_of_the_host_are_invisible_and_nothing_survives(tmp_path):
    marker = f"course-survivor-{os.getpid()}"
    code, log = run_inside(tmp_path, f"""
        import os, signal, subprocess
        print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit())[:5])
        try:
            os.kill({os.getpid()}, signal.SIGKILL)
            print("KILLED THE GRADER")
        except OSError as exc:
            print("kill refused", type(exc).__name__)
        subprocess.Popen(["setsid", "sh", "-c", "exec -a {marker} sleep 600"], start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            os.execvp("sh", ["sh", "-c", "exec -a {marker} sleep 600"])
        import time; time.sleep(0.5)
        print("started")
    """)
    assert code == 0 and "started" in log and "KILLED" not in log, log
    time.sleep(0.5)
    survivors = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert survivors == [], f"still running after the sandbox ended: {survivors}"


@pytest.fixture(params=["control group", "watchdog"])
def tree_limits(request, monkeypatch):
    """Both ways the whole tree is limited: a control group where one can be made (root here), else the watchdog."""
    if request.param == "watchdog":
        monkeypatch.setattr(isolation, "_cgroup_dirs", lambda limits: [])
    elif os.getuid() != 0:
        pytest.skip("only root makes control groups here")
    return request.param


def test_a_fork_bomb_is_stopped_at_the_task_limit_and_leaves_nothing(tmp_path, tree_limits):
    code, log = run_inside(tmp_path, """
        import os, time
        n = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(30); os._exit(0)
                n += 1
        except OSError as exc:
            print("stopped after", n, type(exc).__name__)
    """, limits=Limits(tasks=64), timeout=60)
    if tree_limits == "control group" or os.getuid() != 0:  # pids.max, or RLIMIT_NPROC for a user
        n = int(log.split("stopped after")[1].split()[0]) if "stopped after" in log else None
        assert n is not None and n < 64, log
    else:  # as root no RLIMIT_NPROC holds: the watchdog kills the whole tree
        assert code not in (0, None) and "stopped after" not in log, log


def test_a_memory_eater_is_stopped_and_the_grader_is_not_grown(tmp_path, tree_limits):
    code, log = run_inside(tmp_path, """
        import subprocess, sys
        # Two children each under a per-process limit, together over the tree's limit.
        eat = "b = bytearray(700 * 2**20); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(3)"
        kids = [subprocess.Popen([sys.executable, "-c", eat]) for _ in range(2)]
        b = bytearray(300 * 2**20); b[::4096] = b"x" * len(b[::4096])
        print("exit codes", [k.wait() for k in kids])
    """, limits=Limits(memory_bytes=1200 * 2**20), timeout=60)
    # The control group kills one child; the watchdog kills the whole tree.
    assert "exit codes [0, -9]" in log or "exit codes [-9, 0]" in log or code not in (0, None), (code, log)


def test_an_output_flood_keeps_only_the_tail(tmp_path):
    code, log = run_inside(tmp_path, """
        import sys
        for i in range(300):
            sys.stdout.write("\\x1b[2J Score: 100/100 " + "x" * 1_000_000 + "\\n")
        print("the end")
    """, limits=Limits(log_bytes=4096), timeout=120)
    assert code == 0 and len(log) <= 4096 and log.rstrip().endswith("the end")


def test_a_hidden_package_can_be_neither_imported_nor_read(tmp_path):
    torchvision = site_packages() / "torchvision"
    code, log = run_inside(tmp_path, f"""
        import os
        try:
            import torchvision.ops
            print("IMPORTED")
        except ImportError as exc:
            print("import refused:", exc)
        print("files", sorted(os.listdir({str(torchvision)!r})))
        import torch
        print("op", hasattr(torch.ops.torchvision, "nms") if hasattr(torch.ops, "torchvision") else False)
    """, hidden=[torchvision])
    assert code == 0, log
    assert "IMPORTED" not in log and "import refused: torchvision is not available here" in log
    assert "files ['__init__.py']" in log


def test_tree_usage_counts_a_process_and_its_children():
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                              "p = subprocess.Popen(['sleep', '30']); time.sleep(30)"])
    try:
        time.sleep(1.0)
        rss, tasks = tree_usage(child.pid)
        assert rss > 5 * 2**20 and tasks >= 2
    finally:
        child.kill()
        child.wait()
    assert tree_usage(child.pid) == (None, 0)
