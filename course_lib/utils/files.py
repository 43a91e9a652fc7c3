"""Atomic file writes: the file appears complete or not at all (written beside, then renamed), so an
interrupted command never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """This process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``: the one
    atomic writer (JSON, ``torch.save``, ...). On any error the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.close(fd)
        os.chmod(tmp, 0o666 & ~current_umask())  # as open() would make it: mkstemp's file is private (0600)
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:  # f.name is the temp path
            write(f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_json_atomic(obj: Any, path: str | Path) -> Path:
    """Write JSON to a temporary file beside ``path``, then rename: never a half-written file."""
    return write_atomic(path, lambda f: json.dump(obj, f), "w")
