"""The command line: one table, help from it, one-line errors, non-zero exits."""

import subprocess
import sys

import pytest

from course_lib.course import cli
from course_lib.utils.errors import CommandError
from course_lib.utils.paths import REPO_ROOT


def test_help_lists_every_command_of_the_table(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, text) in cli.COMMANDS.items():
        assert f"  {name}" in out and text[:30] in out


def test_every_command_module_has_a_main():
    import importlib

    for name, (module, _) in cli.COMMANDS.items():
        assert callable(importlib.import_module(module).main), name


def test_unknown_command_exits_2(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.fixture
def fake_command(monkeypatch):
    import types

    module = types.ModuleType("fake_command")
    monkeypatch.setitem(sys.modules, "fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "fake", ("fake_command", "a command for the test"))
    return module


@pytest.mark.parametrize("error, message", [
    (CommandError("data/train.json: no such file"), "error: data/train.json: no such file"),
    (FileNotFoundError(2, "No such file or directory", "x.json"), "No such file or directory: 'x.json'"),
])
def test_a_user_error_is_one_line_and_exit_1(fake_command, capsys, error, message):
    def main(argv):
        raise error

    fake_command.main = main
    assert cli.main(["fake"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_our_own_bug_keeps_its_traceback(fake_command):
    fake_command.main = lambda argv: 1 / 0
    with pytest.raises(ZeroDivisionError):
        cli.main(["fake"])


def test_ctrl_c_during_training_says_how_to_resume(monkeypatch, capsys):
    import course_lib.training.finetune as finetune

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune, "main", interrupted)
    assert cli.main(["finetune"]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err


def test_python_m_course_lib_uses_the_same_table():
    import os

    env = {k: v for k, v in os.environ.items() if k != "COURSE_PROG"}  # ./course test sets it for its children
    out = subprocess.run([sys.executable, "-m", "course_lib", "--help"], capture_output=True, text=True,
                         cwd=REPO_ROOT, env=env, check=True).stdout
    assert out == cli.usage("python -m course_lib") + "\n"
