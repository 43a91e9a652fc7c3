"""course_lib.utils.files: write_json_atomic leaves nothing behind when it fails."""

import pytest

from course_lib.utils.files import write_json_atomic


def test_write_json_atomic_leaves_nothing_when_serialising_fails(tmp_path):
    with pytest.raises(TypeError):
        write_json_atomic({"ok": 1, "bad": object()}, tmp_path / "x.json")
    assert list(tmp_path.iterdir()) == []
