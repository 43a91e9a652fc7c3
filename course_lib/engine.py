"""The training engine: ``train_one_epoch`` and ``fit`` with checkpoints and exact resume.
Taught in: 06_fine_tuning (used by ``python -m course_lib.train``).

A checkpoint is written after every epoch. The data order of epoch ``e`` depends only on
``(seed, e)`` and all RNG states are saved, so a run stopped after any epoch and resumed follows the
same loss trajectory as a run that never stopped.
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .ui import progress_bar


class NonFiniteLossError(RuntimeError):
    """Raised when a loss turns NaN or inf; the message names the batch's image ids."""


def warmup_cosine(total_iters: int, warmup_iters: int, min_factor: float = 0.01) -> Callable[[int], float]:
    """LR factor per iteration: linear warm-up from 0.001, then cosine decay to ``min_factor``."""

    def factor(it: int) -> float:
        if it < warmup_iters:
            return 0.001 + (1 - 0.001) * it / max(1, warmup_iters)
        t = (it - warmup_iters) / max(1, total_iters - warmup_iters)
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return factor


def _to_device(images, targets, device):
    images = [img.to(device, non_blocking=True) for img in images]
    targets = [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
               for t in targets]
    return images, targets


def train_one_epoch(model, optimizer, data_loader, device, epoch: int, scheduler=None, scaler=None,
                    max_grad_norm: float | None = 10.0, progress: bool = True) -> dict[str, list[float]]:
    """One pass over ``data_loader``. Returns the per-iteration history of every loss term and ``lr``.

    ``scheduler`` is stepped every iteration (warm-up needs that). ``scaler`` (a
    ``torch.amp.GradScaler``) turns on mixed precision; use it on CUDA only.
    """
    model.train()
    history: dict[str, list[float]] = defaultdict(list)
    bar = progress_bar(data_loader, desc=f"epoch {epoch}", enabled=progress)
    for images, targets in bar:
        images, targets = _to_device(images, targets, device)
        with torch.autocast(device_type=device.type, enabled=scaler is not None):
            loss_dict = model(images, targets)
            loss = sum(loss_dict.values())
        if not torch.isfinite(loss):
            ids = [t["image_id"] for t in targets]
            terms = {k: round(float(v), 4) for k, v in loss_dict.items()}
            raise NonFiniteLossError(f"epoch {epoch}: loss is {float(loss)} on the batch with image ids {ids}; "
                                     f"terms: {terms}. Lower the learning rate or check those annotations.")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        for k, v in loss_dict.items():
            history[k].append(float(v.detach()))
        history["loss"].append(float(loss.detach()))
        history["lr"].append(optimizer.param_groups[0]["lr"])
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    return dict(history)


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


def make_loader(dataset, batch_size: int, seed: int, epoch: int, shuffle: bool = True, num_workers: int = 0,
                collate_fn=None):
    """A DataLoader whose order (and augmentation draws) depend only on ``(seed, epoch)``."""
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g,
                                       num_workers=num_workers, collate_fn=collate_fn,
                                       persistent_workers=False)


def fit(model, dataset, *, epochs: int, batch_size: int, device, out_dir: str | Path, seed: int = 0,
        optimizer_fn: Callable, lr_lambda_fn: Callable[[int], Callable] | None = None, resume: bool = True,
        use_amp: bool | None = None, num_workers: int = 0, collate_fn=None, config: dict | None = None,
        max_grad_norm: float | None = 10.0, progress: bool = True, stop_after: int | None = None,
        on_epoch_end: Callable | None = None) -> list[dict]:
    """Train for ``epochs`` epochs, checkpointing to ``out_dir/last.pt`` after each one.

    ``optimizer_fn(params)`` builds the optimizer; ``lr_lambda_fn(total_iters)`` the per-iteration LR
    factor. With ``resume`` and an existing ``last.pt``, training continues after its epoch.
    ``stop_after`` ends the run early after that many epochs (to demonstrate resume).
    Returns one dict per epoch: the mean of every loss term, ``lr``, ``seconds``.
    """
    out_dir = Path(out_dir)
    device = torch.device(device)
    use_amp = (device.type == "cuda") if use_amp is None else use_amp
    model.to(device)
    optimizer = optimizer_fn([p for p in model.parameters() if p.requires_grad])
    iters_per_epoch = math.ceil(len(dataset) / batch_size)
    scheduler = (torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda_fn(epochs * iters_per_epoch))
                 if lr_lambda_fn else None)
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    history: list[dict] = []
    start = 0
    ckpt_path = out_dir / "last.pt"
    if resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt["scheduler"] is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        history, start = list(ckpt["history"]), ckpt["epoch"] + 1
        if progress:
            print(f"resumed from {ckpt_path} after epoch {ckpt['epoch']}")
    else:
        torch.manual_seed(seed)
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        loader = make_loader(dataset, batch_size, seed, epoch, num_workers=num_workers, collate_fn=collate_fn)
        h = train_one_epoch(model, optimizer, loader, device, epoch, scheduler, scaler, max_grad_norm, progress)
        summary = {k: float(np.mean(v)) for k, v in h.items() if k != "lr"}
        summary.update(epoch=epoch, lr=h["lr"][-1], seconds=time.perf_counter() - t0, iter_loss=h["loss"])
        history.append(summary)
        save_checkpoint(ckpt_path, model, optimizer, scheduler, epoch, history, config or {}, scaler)
        if progress:
            terms = " ".join(f"{k}={v:.3f}" for k, v in summary.items() if k.startswith("loss"))
            tqdm.write(f"epoch {epoch}: {terms} lr={summary['lr']:.2e} ({summary['seconds']:.0f} s)")
        if on_epoch_end is not None:
            on_epoch_end(epoch, model)
        if stop_after is not None and epoch + 1 - start >= stop_after:
            break
    return history
