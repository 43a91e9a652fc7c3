"""Test-wide settings: headless, no display, and no network connection anywhere in the tests."""

import os
import socket

import pytest

os.environ.setdefault("COURSE_HEADLESS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def progress_in_tmp(tmp_path, monkeypatch):
    """Quizzes and checkers record progress; in tests that goes to a temporary file, not the home folder."""
    monkeypatch.setenv("COURSE_PROGRESS_FILE", str(tmp_path / "progress.json"))

_LOOPBACK = ("127.", "::1", "localhost")
_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else str(address)
    if self.family in (socket.AF_INET, socket.AF_INET6) and not str(host).startswith(_LOOPBACK):
        raise RuntimeError(f"the tests tried to open a network connection to {address!r}; "
                           "the course must work offline")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test runs with outgoing (non-loopback) connections refused."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    yield
