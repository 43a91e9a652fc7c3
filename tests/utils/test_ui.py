"""course_lib.utils.ui: headless detection and progress bars that stay quiet when nobody is watching."""

import io

import pytest

from course_lib.utils.ui import headless, progress_bar


@pytest.mark.parametrize("value, expected", [(None, False), ("", False), ("0", False), ("1", True),
                                             ("yes", True), ("true", True)])
def test_headless_reads_course_headless(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("COURSE_HEADLESS", raising=False)
    else:
        monkeypatch.setenv("COURSE_HEADLESS", value)
    assert headless() is expected


def bar_output(monkeypatch, headless_value, **kwargs):
    monkeypatch.setenv("COURSE_HEADLESS", headless_value)
    out = io.StringIO()
    items = list(progress_bar(range(5), desc="epoch 3", file=out, mininterval=0, **kwargs))
    assert items == [0, 1, 2, 3, 4]  # the iterable passes through unchanged either way
    return out.getvalue()


def test_progress_bar_shows_when_watched(monkeypatch):
    assert "epoch 3" in bar_output(monkeypatch, "0")


def test_progress_bar_is_silent_when_headless_or_disabled(monkeypatch):
    assert bar_output(monkeypatch, "1") == ""
    assert bar_output(monkeypatch, "0", enabled=False) == ""


def test_progress_bar_manual_updates_total_and_leave(monkeypatch):
    monkeypatch.setenv("COURSE_HEADLESS", "0")
    with progress_bar(total=7, desc="steps", file=io.StringIO()) as bar:
        bar.update(3)
        assert (bar.total, bar.n, bar.disable) == (7, 3, False)
        assert not bar.leave  # bars do not stay behind in the output
    monkeypatch.setenv("COURSE_HEADLESS", "1")
    with progress_bar(total=7, file=io.StringIO()) as bar:
        assert bar.disable and bar.total == 7
