"""Resumable training checkpoints: model, optimiser, scheduler, scaler, epoch, history and every random
state, so that a resumed run continues exactly where it stopped. Taught in: 06_fine_tuning

Read through ``course_lib.detection.model_file.load_file`` (``weights_only=True``), the one reader of weight
files: inside its ``read_once()`` a run that checks a checkpoint and then resumes from it reads it once.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from course_lib.detection.model_file import load_file
from course_lib.utils.files import write_atomic


def rng_state() -> dict:
    """All RNG states as tensors and plain Python values, so that ``weights_only=True`` loads them."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos,
                                                      has_gauss, gauss], "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, model, optimizer, scheduler, epoch: int, history: list, config: dict,
                    scaler=None) -> Path:
    """Everything needed to resume after ``epoch``; written to a temporary name, then renamed."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict() if scheduler is not None else None,
             "scaler": scaler.state_dict() if scaler is not None else None,
             "epoch": epoch, "history": history, "config": config, "rng": rng_state()}
    return write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path) -> dict:
    """A training checkpoint, loaded with ``weights_only=True`` (``model_file.load_file``)."""
    return load_file(path)
