"""The one module that reads and writes the course's weight files. Taught in: 06_fine_tuning

Two kinds of file, both read here with ``torch.load(..., weights_only=True)`` (``load_file``, the only call):

* a **model file** (``data/course_maskrcnn.pt``, written by ``./course train`` in float16; finetune's
  ``model.pt``): ``{"model": state_dict, "config": {...}}``. ``config`` holds ``classes`` (index = label,
  ``[0]`` background) and either the course model's spec (``course_model.CourseModelSpec.to_config()``;
  ``arch`` absent or ``"course"``) or ``arch="maskrcnn_resnet50_fpn"`` with ``num_classes`` (and
  ``image_size`` when set). ``read_model_file`` returns it as a ``ModelFile``; ``course_model.model_from_file``
  builds the model it describes. Its provenance (``./course train``'s record) is the ``.json`` beside it.
* a **training checkpoint** (``<run>/last.pt``, ``training.checkpoint``): model, optimiser, schedule,
  random states, history and the run's config.

Inside ``read_once()`` every file is read from disk once, however many steps of a run ask for it (finetune
checks a run's settings in ``last.pt``, then ``fit`` resumes from it); a file written in the meantime is a new
file (its size, time or inode changed) and is read again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from course_lib.utils.files import write_atomic, write_json_atomic

COURSE_ARCH = "course"
R50_ARCH = "maskrcnn_resnet50_fpn"


class ModelFileError(ValueError):
    """A file that is not a course model file (unreadable, or without ``model`` and ``config``)."""


# ------------------------------------------------------------------------------------------ reading once

_cache: dict[Path, tuple[tuple, dict]] | None = None  # path -> (file identity, content) inside read_once()


def _identity(path: Path) -> tuple:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


@contextmanager
def read_once() -> Iterator[None]:
    """Within the block, ``load_file`` reads each file from disk once (the same content is returned again
    while the file is unchanged). Blocks nest; the cache is dropped when the outermost one ends."""
    global _cache
    outer = _cache is not None
    if not outer:
        _cache = {}
    try:
        yield
    finally:
        if not outer:
            _cache = None


def forget(path: str | Path) -> None:
    """Drop ``path`` from the ``read_once`` cache (its last reader is done: free the memory)."""
    if _cache is not None:
        _cache.pop(Path(path).resolve(), None)


def load_file(path: str | Path) -> dict:
    """``torch.load(path, map_location="cpu", weights_only=True)``: the one place a weights file is read."""
    path = Path(path)
    if _cache is None:
        return torch.load(path, map_location="cpu", weights_only=True)
    key, identity = path.resolve(), _identity(path)
    hit = _cache.get(key)
    if hit is not None and hit[0] == identity:
        return hit[1]
    content = torch.load(path, map_location="cpu", weights_only=True)
    _cache[key] = (identity, content)
    return content


# ------------------------------------------------------------------------------------------ model files

@dataclass(frozen=True)
class ModelFile:
    """A model file's content: ``config`` (``classes``, ``arch`` and the spec) and its ``state_dict`` as stored."""

    path: Path
    config: dict
    state_dict: dict

    @property
    def classes(self) -> list[str]:
        """Class names, index = label id (``[0]`` is the background)."""
        return list(self.config["classes"])

    @property
    def arch(self) -> str:
        """``'course'`` (the course model, built from its spec) or ``'maskrcnn_resnet50_fpn'``."""
        return self.config.get("arch", COURSE_ARCH)

    def float_state_dict(self) -> dict:
        """The weights with float16 ones (the exported course checkpoint) back in float32."""
        return {k: v.float() if v.is_floating_point() else v for k, v in self.state_dict.items()}


def read_model_file(path: str | Path) -> ModelFile:
    """Read a model file (``weights_only=True``). ``FileNotFoundError`` when it is missing, ``ModelFileError``
    when it is not a model file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        content = load_file(path)
        config, state = content["config"], content["model"]
        if "classes" not in config:
            raise KeyError("classes")
    except Exception as e:  # noqa: BLE001 - a file that is not ours
        raise ModelFileError(f"{path}: not a course model file ({type(e).__name__}: {e})") from None
    return ModelFile(path=path, config=dict(config), state_dict=state)


def save_model_file(model: torch.nn.Module, path: str | Path, *, config: dict, half: bool = False) -> Path:
    """Write a model file atomically; ``config`` must name the ``classes``; ``half`` stores floating weights
    as float16 (half the size)."""
    if "classes" not in config:
        raise ValueError("a model file's config names its classes (index = label, [0] background)")
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    return write_atomic(path, lambda f: torch.save({"model": state, "config": config}, f))


def model_file_classes(path: str | Path) -> list[str]:
    """Class names of a model file, index = label id (``[0]`` is the background)."""
    return read_model_file(path).classes


# ------------------------------------------------------------------------------------------ provenance

def provenance_path(path: str | Path) -> Path:
    """Where a model file's provenance lives: beside it, ``.json`` (``data/course_maskrcnn.json``)."""
    return Path(path).with_suffix(".json")


def write_provenance(path: str | Path, provenance: dict) -> Path:
    """Write the provenance (command, seed, data, metrics...) of the model file ``path`` beside it."""
    return write_json_atomic(provenance, provenance_path(path))


def read_provenance(path: str | Path) -> dict | None:
    """The provenance of the model file ``path``; ``None`` when it has none."""
    p = provenance_path(path)
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
