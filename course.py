"""The course's entry point on every system, Windows included: ``python course.py <command>`` (``py course.py ...``
on Windows). ``./course`` (bash) runs this file; both do the same.

Creates ``.venv/`` beside this file if it is missing, installs the course into it (again only when pyproject.toml
changes: its SHA-256 is kept in ``.venv/.course-installed``), then runs ``python -m course_lib <command>`` with the
venv's Python. ``python course.py --help`` lists the commands (one table, ``course_lib/course/cli.py``);
``python course.py python ...`` runs the venv's Python itself.

``COURSE_TORCH=cpu`` (when ``.venv`` is created) installs PyTorch's CPU-only wheels, a fraction of the size of the
CUDA build that pip picks on Linux. On Linux as root, ``test`` and ``grade`` also install Debian's bubblewrap
(and chromium for ``test``) where they are missing.

Standard library only (it runs before anything is installed), and it parses on Python 3.6 and newer, so that an
older Python is told what is needed instead of failing on syntax.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

MIN_PYTHON = (3, 10)
ROOT = Path(__file__).resolve().parent
VENV = ".venv"
MARKER = "course-installed"  # .venv/.course-installed: the SHA-256 of pyproject.toml the venv was installed from
CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # PyTorch's CPU-only wheels
TORCH_CHOICES = ("", "default", "cpu")


def say(line, file=None):
    print(f"course: {line}", file=file or sys.stdout, flush=True)


def venv_python(root, os_name=os.name):
    """The venv's interpreter: ``.venv/Scripts/python.exe`` on Windows, ``.venv/bin/python`` elsewhere."""
    venv = Path(root) / VENV
    return venv / "Scripts" / "python.exe" if os_name == "nt" else venv / "bin" / "python"


def checksum(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def torch_requirements(pyproject_text):
    """pyproject.toml's torch and torchvision requirements (``torch>=2.3,<2.15``), for the CPU wheels' install."""
    reqs = re.findall(r'"((?:torch|torchvision)\s*[<>=!~][^"]*)"', pyproject_text)
    if sorted(re.match(r"[a-z]+", r).group(0) for r in reqs) != ["torch", "torchvision"]:
        raise SystemExit("course: pyproject.toml names no torch and torchvision requirement")
    return reqs


def install_commands(python, root, torch_choice=""):
    """The pip commands that install the course into the venv whose interpreter is ``python``."""
    python = str(python)
    commands = [[python, "-m", "pip", "install", "--upgrade", "pip"]]
    if torch_choice == "cpu":
        text = (Path(root) / "pyproject.toml").read_text(encoding="utf-8")
        commands.append([python, "-m", "pip", "install", *torch_requirements(text), "--index-url", CPU_INDEX])
    commands.append([python, "-m", "pip", "install", "-e", ".[test]"])
    return commands


def ensure_venv(root=ROOT, run=subprocess.call, environ=os.environ, os_name=os.name):
    """Create and install ``.venv`` where needed; return its interpreter. ``run(cmd, **kw)`` returns an exit status."""
    root = Path(root)
    python = venv_python(root, os_name)
    torch_choice = environ.get("COURSE_TORCH", "").strip().lower()
    if torch_choice not in TORCH_CHOICES:
        raise SystemExit(f"course: COURSE_TORCH must be 'cpu' (PyTorch's CPU-only wheels) or unset, "
                         f"got {torch_choice!r}")
    if not python.exists():
        say(f"creating {VENV} with Python {'.'.join(map(str, sys.version_info[:3]))}")
        if run([sys.executable, "-m", "venv", str(root / VENV)], cwd=str(root)) != 0:
            shutil.rmtree(str(root / VENV), ignore_errors=True)  # half made (no pip): the next run starts over
            raise SystemExit(f"course: could not create {VENV} (on Debian and Ubuntu: apt-get install python3-venv)")
    marker = root / VENV / f".{MARKER}"
    want = checksum(root / "pyproject.toml")
    have = marker.read_text(encoding="utf-8").strip() if marker.is_file() else ""
    if want != have:
        log = root / VENV / "install.log"
        shown_log = Path(VENV, "install.log").as_posix()
        cpu = ", PyTorch's CPU-only wheels" if torch_choice == "cpu" else ""
        say(f"installing the course and its dependencies into {VENV}{cpu} (first time: a few minutes; "
            f"log: {shown_log})")
        with open(log, "w", encoding="utf-8") as out:
            status = 0
            for cmd in install_commands(python, root, torch_choice):
                out.write("$ " + " ".join(cmd) + "\n")
                out.flush()
                status = run(cmd, cwd=str(root), stdout=out, stderr=subprocess.STDOUT)
                if status != 0:
                    break
        if status != 0:
            lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
            print("\n".join(lines[-25:]), flush=True)
            say(f"the install failed; the whole log is in {shown_log}", file=sys.stderr)
            raise SystemExit(1)
        marker.write_text(want + "\n", encoding="utf-8")
        say("installed")
    return python


def ensure_debian_packages(command, run=subprocess.call, platform=sys.platform, euid=None, which=shutil.which):
    """Debian packages the course uses where they exist: bubblewrap isolates students' notebooks in ``course
    grade`` (without it grading refuses untrusted work); chromium drives tests/course/test_browser.py (skipped
    without it). Installed where we may (Linux, root, apt-get), else one line says what to do. Linux only."""
    if not platform.startswith("linux"):
        return
    missing = [] if which("bwrap") else ["bubblewrap"]
    if command == "test" and not which("chromium"):
        missing.append("chromium")
    if not missing:
        return
    names = " ".join(missing)
    euid = os.geteuid() if euid is None else euid
    if euid == 0 and which("apt-get"):
        say(f"installing Debian's {names}")
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if run(["apt-get", "update", "-qq"], **quiet) != 0 or \
                run(["apt-get", "install", "-y", "-qq", *missing], env=env, **quiet) != 0:
            say(f"could not install {names}; grading needs --no-sandbox without bubblewrap, the browser test is "
                "skipped without chromium")
    else:
        say(f"{names} not found and not root: sudo apt-get install {names} (grading isolates notebooks with "
            "bubblewrap; the browser test uses chromium)")


def command_line(python, args, environ=os.environ, os_name=os.name):
    """What runs: ``(argv, env)``. ``python ...`` runs the venv's Python; anything else ``python -m course_lib``
    (``lab`` when no command is given). On Windows, Python's UTF-8 mode is on (unless set otherwise), so that the
    course's messages print whatever the console's code page, and its kernels inherit it."""
    env = dict(environ)
    if os_name == "nt":
        env.setdefault("PYTHONUTF8", "1")
    if args[:1] == ["python"]:
        return [str(python), *args[1:]], env
    env["COURSE_PROG"] = environ.get("COURSE_PROG") or "python course.py"
    return [str(python), "-m", "course_lib", *(args or ["lab"])], env


def replace_process(argv, env, os_name=os.name):
    """Run ``argv`` in place of this process (POSIX ``exec``); on Windows, as a child whose exit status is ours."""
    if os_name != "nt":
        os.execve(argv[0], argv, env)
    child = subprocess.Popen(argv, env=env)
    while True:
        try:
            raise SystemExit(child.wait())
        except KeyboardInterrupt:  # the console sends Ctrl-C to the child too: wait for it to finish
            continue


def main(args=None):
    args = list(sys.argv[1:] if args is None else args)
    if sys.version_info[:2] < MIN_PYTHON:
        need = ".".join(map(str, MIN_PYTHON))
        raise SystemExit(f"course: Python {need} or newer is needed, this is {sys.version.split()[0]} "
                         f"({sys.executable}); run this file with a newer one")
    os.chdir(ROOT)
    python = ensure_venv()
    if args[:1] in (["test"], ["grade"]):
        ensure_debian_packages(args[0])
    replace_process(*command_line(python, args))


if __name__ == "__main__":
    main()
