"""course_lib.utils.files: write_json_atomic leaves nothing behind when it fails."""

import pytest

from course_lib.utils.files import write_json_atomic


def test_write_json_atomic_leaves_nothing_when_serialising_fails(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic({"ok": 1, "bad": object()}, tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []


def test_an_atomic_write_gets_the_mode_a_plain_open_would_give(tmp_path):
    import os

    from course_lib.utils.files import write_json_atomic

    old = os.umask(0o022)
    try:
        path = write_json_atomic({"a": 1}, tmp_path / "a.json")
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == (tmp_path / "plain.json").stat().st_mode & 0o777 == 0o644
