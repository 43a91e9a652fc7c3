"""course.py (and ./course, which runs it): create .venv, install when pyproject.toml changes, run any command.

The steps are tested with a fake runner that records commands (nothing is installed); the real ``./course`` and
``python course.py`` run once each, against a small venv that borrows this one's packages."""

import hashlib
import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("course_entry", ROOT / "course.py")
course = importlib.util.module_from_spec(spec)
spec.loader.exec_module(course)

PYPROJECT = '[project]\ndependencies = [\n    "torch>=2.3,<2.15",\n    "torchvision>=0.18,<0.30",\n]\n'


class Runner:
    """Records each command; ``python -m venv DIR`` makes DIR's interpreter file; fails the commands told to."""

    def __init__(self, fail_on=None, os_name=os.name):
        self.commands, self.fail_on, self.os_name = [], fail_on, os_name

    def __call__(self, cmd, **kwargs):
        self.commands.append([str(c) for c in cmd])
        if "stdout" in kwargs and hasattr(kwargs["stdout"], "write"):
            kwargs["stdout"].write("pip says something\n")
        if self.fail_on and self.fail_on in " ".join(map(str, cmd)):
            return 1
        if cmd[1:3] == ["-m", "venv"]:
            python = course.venv_python(Path(cmd[3]).parent, self.os_name)
            python.parent.mkdir(parents=True)
            python.write_text("")
        return 0


@pytest.fixture
def root(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    return tmp_path


def test_the_venvs_python_is_where_each_system_puts_it(tmp_path):
    assert course.venv_python(tmp_path, "nt") == tmp_path / ".venv" / "Scripts" / "python.exe"
    assert course.venv_python(tmp_path, "posix") == tmp_path / ".venv" / "bin" / "python"


@pytest.mark.parametrize("os_name", ["posix", "nt"])
def test_a_fresh_checkout_gets_a_venv_and_the_course_installed_once(root, capsys, os_name):
    run = Runner(os_name=os_name)
    python = course.ensure_venv(root, run=run, environ={}, os_name=os_name)
    assert python == course.venv_python(root, os_name)
    assert run.commands == [[sys.executable, "-m", "venv", str(root / ".venv")],
                            [str(python), "-m", "pip", "install", "--upgrade", "pip"],
                            [str(python), "-m", "pip", "install", "-e", ".[test]"]]
    marker = root / ".venv" / ".course-installed"
    assert marker.read_text().strip() == hashlib.sha256(PYPROJECT.encode()).hexdigest()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("course: creating .venv with Python 3.")
    assert out[1:] == ["course: installing the course and its dependencies into .venv (first time: a few minutes; "
                       "log: .venv/install.log)", "course: installed"]
    assert "pip says something" in (root / ".venv" / "install.log").read_text()

    again = Runner(os_name=os_name)
    course.ensure_venv(root, run=again, environ={}, os_name=os_name)
    assert again.commands == [] and capsys.readouterr().out == ""


def test_a_changed_pyproject_reinstalls(root):
    course.ensure_venv(root, run=Runner(), environ={})
    (root / "pyproject.toml").write_text(PYPROJECT + "# changed\n")
    run = Runner()
    course.ensure_venv(root, run=run, environ={})
    assert [c[-2:] for c in run.commands] == [["--upgrade", "pip"], ["-e", ".[test]"]]


def test_a_failed_install_shows_the_log_and_is_tried_again(root, capsys):
    with pytest.raises(SystemExit) as stop:
        course.ensure_venv(root, run=Runner(fail_on="-e .[test]"), environ={})
    assert stop.value.code == 1
    captured = capsys.readouterr()
    assert "pip says something" in captured.out
    assert "course: the install failed; the whole log is in .venv/install.log" in captured.err
    assert not (root / ".venv" / ".course-installed").exists()
    run = Runner()
    course.ensure_venv(root, run=run, environ={})
    assert run.commands[-1][-2:] == ["-e", ".[test]"], "the next run installs again"


def test_a_venv_that_cannot_be_made_is_removed_and_explained(root):
    with pytest.raises(SystemExit, match="could not create .venv"):
        course.ensure_venv(root, run=Runner(fail_on="-m venv"), environ={})
    assert not (root / ".venv").exists()


def test_course_torch_cpu_installs_pytorchs_cpu_wheels_first(root, capsys):
    run = Runner()
    course.ensure_venv(root, run=run, environ={"COURSE_TORCH": "cpu"})
    python = str(course.venv_python(root))
    assert run.commands[2] == [python, "-m", "pip", "install", "torch>=2.3,<2.15", "torchvision>=0.18,<0.30",
                               "--index-url", "https://download.pytorch.org/whl/cpu"]
    assert run.commands[3][-2:] == ["-e", ".[test]"]
    assert "into .venv, PyTorch's CPU-only wheels (first time" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="COURSE_TORCH must be 'cpu'"):
        course.ensure_venv(root, run=Runner(), environ={"COURSE_TORCH": "rocm"})


def test_the_torch_requirements_come_from_this_pyproject():
    reqs = course.torch_requirements((ROOT / "pyproject.toml").read_text())
    assert [r.split(">")[0].split("<")[0].split("=")[0] for r in reqs] == ["torch", "torchvision"]
    with pytest.raises(SystemExit, match="no torch and torchvision"):
        course.torch_requirements('dependencies = ["numpy>=1"]')


@pytest.mark.parametrize("platform, euid, have, command, expected_cmds, says", [
    ("linux", 0, {"apt-get"}, "grade", [["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "bubblewrap"]],
     "installing Debian's bubblewrap"),
    ("linux", 0, {"apt-get"}, "test", [["apt-get", "update", "-qq"],
                                       ["apt-get", "install", "-y", "-qq", "bubblewrap", "chromium"]],
     "installing Debian's bubblewrap chromium"),
    ("linux", 1000, {"apt-get"}, "test", [], "bubblewrap chromium not found and not root: sudo apt-get install"),
    ("linux", 0, set(), "grade", [], "not found and not root"),
    ("linux", 0, {"apt-get", "bwrap", "chromium"}, "test", [], None),
    ("darwin", 0, {"apt-get"}, "test", [], None),
    ("win32", 0, set(), "grade", [], None),
])
def test_debian_packages_only_on_linux_as_root(capsys, platform, euid, have, command, expected_cmds, says):
    run = Runner()
    course.ensure_debian_packages(command, run=run, platform=platform, euid=euid,
                                  which=lambda name: f"/usr/bin/{name}" if name in have else None)
    assert run.commands == expected_cmds
    out = capsys.readouterr().out
    assert (says in out) if says else out == ""


def test_a_failed_apt_get_says_what_that_means(capsys):
    course.ensure_debian_packages("grade", run=Runner(fail_on="install"), platform="linux", euid=0,
                                  which=lambda name: "/usr/bin/apt-get" if name == "apt-get" else None)
    assert "could not install bubblewrap; grading needs --no-sandbox" in capsys.readouterr().out


def test_the_command_line_run_for_each_command(tmp_path):
    python = tmp_path / "py"
    assert course.command_line(python, [], {})[0] == [str(python), "-m", "course_lib", "lab"]
    argv, env = course.command_line(python, ["test", "--quick"], {"HOME": "/h"})
    assert argv == [str(python), "-m", "course_lib", "test", "--quick"]
    assert env == {"HOME": "/h", "COURSE_PROG": "python course.py"}
    assert course.command_line(python, ["doctor"], {"COURSE_PROG": "./course"})[1]["COURSE_PROG"] == "./course"
    assert course.command_line(python, ["python", "-c", "print(1)"], {})[0] == [str(python), "-c", "print(1)"]


def test_on_windows_python_runs_in_utf8_mode(tmp_path):
    assert course.command_line(tmp_path, ["doctor"], {}, os_name="nt")[1]["PYTHONUTF8"] == "1"
    assert course.command_line(tmp_path, ["python"], {"PYTHONUTF8": "0"}, os_name="nt")[1]["PYTHONUTF8"] == "0"
    assert "PYTHONUTF8" not in course.command_line(tmp_path, ["doctor"], {}, os_name="posix")[1]


def test_an_old_python_is_told_what_is_needed(monkeypatch):
    monkeypatch.setattr(course, "MIN_PYTHON", (99, 0))
    with pytest.raises(SystemExit, match=r"Python 99\.0 or newer is needed, this is 3\."):
        course.main(["doctor"])


def test_course_py_reads_on_old_pythons():
    """Python 3.6-3.9 must reach the version message: no syntax newer than 3.6 (checked with ast's versions)."""
    import ast

    ast.parse((ROOT / "course.py").read_text(), feature_version=(3, 6))
    for newer in ("if (n := 1): pass", "def f(a, /): pass", "match x:\n    case 1: pass"):
        with pytest.raises(SyntaxError):  # what the check would catch
            ast.parse(newer, feature_version=(3, 6))


# ------------------------------------------------------------------------------------------- for real

@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of the entry points and pyproject.toml with a small, already installed .venv: its Python borrows this
    environment's packages and the course (a .pth file), so nothing is installed."""
    root = tmp_path_factory.mktemp("checkout")
    for name in ("course", "course.py", "pyproject.toml"):
        (root / name).write_bytes((ROOT / name).read_bytes())
    (root / "course").chmod(0o755)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True, timeout=120)
    python = course.venv_python(root)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "borrowed.pth").write_text(f"{sysconfig.get_paths()['purelib']}\n{ROOT}\n")
    (root / ".venv" / ".course-installed").write_text(course.checksum(root / "pyproject.toml") + "\n")
    return root


def test_python_course_py_runs_a_command_with_the_venvs_python(checkout):
    env = {k: v for k, v in os.environ.items() if k != "COURSE_PROG"}
    done = subprocess.run([sys.executable, "course.py", "--help"], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python course.py <command>") and "doctor" in done.stdout
    done = subprocess.run([sys.executable, str(checkout / "course.py"), "python", "-c", "import sys; print(sys.prefix)"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert Path(done.stdout.strip()) == checkout / ".venv", "the venv beside course.py, from any folder"


@pytest.mark.skipif(os.name == "nt", reason="./course is the bash entry point")
def test_the_bash_entry_point_runs_course_py(checkout):
    done = subprocess.run(["./course", "--help"], cwd=checkout, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ./course <command>") and "run the venv's Python" in done.stdout
    done = subprocess.run(["bash", str(checkout / "course"), "python", "-c", "import sys; print(sys.argv[1:])", "a b"],
                          cwd="/", capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "['a b']"
    bad = subprocess.run(["./course", "--help"], cwd=checkout, env={**os.environ, "COURSE_PYTHON": "no-such-python"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "course: no-such-python not found" in bad.stderr
