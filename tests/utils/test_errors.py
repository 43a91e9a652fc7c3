"""course_lib.utils.errors: CommandError, the failure a user can fix (the command line prints it as one line)."""

import subprocess
import sys

import pytest

from course_lib.utils.errors import CommandError


def test_command_error_is_its_own_kind_of_exception():
    e = CommandError("data/train.json: no such file")
    assert isinstance(e, Exception) and str(e) == "data/train.json: no such file"
    # not a built-in error kind: the command line catches exactly these as "the user can fix it", and a
    # ValueError or KeyError raised by a bug of ours must not be mistaken for one
    for builtin in (ValueError, OSError, KeyError, RuntimeError, TypeError):
        assert not issubclass(CommandError, builtin)
    with pytest.raises(CommandError, match="no such file"):
        raise e


def test_errors_is_layer_0_and_imports_nothing_of_the_course():
    code = ("import sys, course_lib.utils.errors; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('course_lib'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["course_lib", "course_lib.utils", "course_lib.utils.errors"]
