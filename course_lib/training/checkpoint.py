"""The training engine: ``train_one_epoch`` and ``fit`` with checkpoints and exact resume.
Taught in: 06_fine_tuning (used by ``./course train`` and ``./course finetune``).

A checkpoint is written after every epoch. The data order of epoch ``e`` depends only on
``(seed, e)`` and all RNG states are saved, so a run stopped after any epoch and resumed follows the
same loss trajectory as a run that never stopped.

Every iteration also records how long it waited for the data loader (``time_data``) and how long the
forward, backward and optimizer step took (``time_step``); ``fit`` reports both per epoch, so a loader
that cannot keep up shows as a large "data wait" share.

Under ``torchrun`` (``torch.distributed`` initialised), ``fit`` wraps the model in
``DistributedDataParallel``, gives every process its share of the data through a
``DistributedSampler``, and only rank 0 prints, writes checkpoints and calls ``on_epoch_end``.

Learning-rate recipes: ``make_sgd`` (torchvision's detection recipe: SGD, lr 0.005, momentum 0.9,
weight decay 0.0005) with ``warmup_step`` (linear warm-up, then the LR times ``gamma`` at each
milestone, i.e. ``StepLR``/``MultiStepLR``), or ``warmup_cosine``.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict() if scheduler is not None else None,
             "scaler": scaler.state_dict() if scaler is not None else None,
             "epoch": epoch, "history": history, "config": config, "rng": rng_state()}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path) -> dict:
    """A training checkpoint, loaded with ``weights_only=True``."""
    return torch.load(path, map_location="cpu", weights_only=True)
