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

Why per-iteration factors for ``LambdaLR`` and not torch's ``LinearLR`` + ``MultiStepLR`` in a
``SequentialLR``: one function of the iteration is the whole schedule, so a learner can plot it
(06_fine_tuning does) and a resumed run recomputes it from the iteration count alone; and
``SequentialLR`` hands over at the warm-up's end, so a milestone inside the warm-up (a short run's)
would be lost, while here warm-up and steps multiply.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from course_lib.training.checkpoint import (
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from course_lib.utils.paths import shown
from course_lib.utils.ui import progress_bar


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


def warmup_step(total_iters: int, warmup_iters: int, milestones: list[int] | tuple[int, ...] = (),
                gamma: float = 0.1, warmup_factor: float = 0.001) -> Callable[[int], float]:
    """LR factor per iteration: linear warm-up from ``warmup_factor``, then ``gamma`` at each milestone.

    ``milestones`` are iteration numbers (epochs x iterations per epoch for an epoch schedule), as in
    ``torch.optim.lr_scheduler.MultiStepLR``; one milestone every ``k`` iterations is ``StepLR``.
    torchvision's detection references warm up over the first 1000 iterations from 0.001 and step
    ``gamma=0.1``. ``total_iters`` is unused (the signature matches ``warmup_cosine`` for ``fit``).
    """
    milestones = sorted(int(m) for m in milestones)

    def factor(it: int) -> float:
        warm = 1.0 if it >= warmup_iters else warmup_factor + (1 - warmup_factor) * it / max(1, warmup_iters)
        return warm * gamma ** sum(it >= m for m in milestones)

    return factor


def make_sgd(params, lr: float = 0.005, momentum: float = 0.9, weight_decay: float = 0.0005):
    """torchvision's fine-tuning recipe (the detection tutorial and ``references/detection``): plain SGD."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _to_device(images, targets, device):
    images = [img.to(device, non_blocking=True) for img in images]
    targets = [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
               for t in targets]
    return images, targets


def train_one_epoch(model, optimizer, data_loader, device, epoch: int, scheduler=None, scaler=None,
                    max_grad_norm: float | None = 10.0, progress: bool = True) -> dict[str, list[float]]:
    """One pass over ``data_loader``. Returns the per-iteration history of every loss term and ``lr``.

    ``scheduler`` is stepped every iteration (warm-up needs that). ``scaler`` (a
    ``torch.amp.GradScaler``) turns on mixed precision: float16 autocast on CUDA, where ``fit`` uses it by
    default, and bfloat16 on the CPU (where the tests run this path without a GPU). The history also holds,
    per iteration, ``time_data`` (seconds spent waiting for the loader to hand over the batch) and
    ``time_step`` (seconds from then until the step is done; it includes the GPU work, since reading
    the loss values waits for it).
    """
    model.train()
    history: dict[str, list[float]] = defaultdict(list)
    bar = progress_bar(data_loader, desc=f"epoch {epoch}", enabled=progress)
    t_ready = time.perf_counter()
    for images, targets in bar:
        t_data = time.perf_counter()
        images, targets = _to_device(images, targets, device)
        with torch.autocast(device_type=device.type, enabled=scaler is not None):
            loss_dict = model(images, targets)
            loss = sum(loss_dict.values())
        if not torch.isfinite(loss):
            ids = [t["image_id"] for t in targets]
            terms = {k: round(float(v.detach()), 4) for k, v in loss_dict.items()}
            raise NonFiniteLossError(f"epoch {epoch}: loss is {float(loss.detach())} on the batch with image ids {ids}; "
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
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
        t_done = time.perf_counter()
        history["time_data"].append(t_data - t_ready)
        history["time_step"].append(t_done - t_data)
        t_ready = t_done
    return dict(history)


def make_loader(dataset, batch_size: int, seed: int, epoch: int, shuffle: bool = True, num_workers: int = 0,
                collate_fn=None, num_replicas: int = 1, rank: int = 0):
    """A DataLoader whose order (and augmentation draws) depend only on ``(seed, epoch)``.

    With ``num_replicas > 1`` (distributed training) a ``DistributedSampler`` hands process ``rank``
    its own ``1 / num_replicas`` of the shuffled data, as torchvision's references do.
    """
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    sampler = None
    if num_replicas > 1:
        sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=num_replicas, rank=rank,
                                                      shuffle=shuffle, seed=seed)
        sampler.set_epoch(epoch)
        shuffle = False
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g,
                                       sampler=sampler, num_workers=num_workers, collate_fn=collate_fn,
                                       persistent_workers=False)


def distributed_info() -> tuple[int, int]:
    """``(rank, world_size)``: ``(0, 1)`` unless ``torch.distributed`` is initialised (e.g. by ``torchrun``)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def fit(model, dataset, *, epochs: int, batch_size: int, device, out_dir: str | Path, seed: int = 0,
        optimizer_fn: Callable, lr_lambda_fn: Callable[[int], Callable] | None = None, resume: bool = True,
        use_amp: bool | None = None, num_workers: int = 0, collate_fn=None, config: dict | None = None,
        max_grad_norm: float | None = 10.0, progress: bool = True, stop_after: int | None = None,
        on_epoch_end: Callable | None = None, epoch_lines: bool | None = None,
        on_resume: Callable | None = None) -> list[dict]:
    """Train for ``epochs`` epochs, checkpointing to ``out_dir/last.pt`` after each one.

    ``optimizer_fn(params)`` builds the optimizer; ``lr_lambda_fn(total_iters)`` the per-iteration LR
    factor. With ``resume`` and an existing ``last.pt``, training continues after its epoch.
    ``stop_after`` ends the run early after that many epochs (to demonstrate resume). ``progress``
    shows a bar per epoch; ``epoch_lines`` (default: ``progress``) prints one line of losses per epoch.
    ``on_resume(optimizer, scheduler)`` runs after a checkpoint's states are loaded (to apply changed
    settings on purpose: the optimiser state holds the old learning rate).
    Returns one dict per epoch: the mean of every loss term, ``lr``, ``seconds``, ``data_seconds``
    (waiting for the loader), ``step_seconds`` (computing), ``iter_loss`` (the total loss of every
    iteration) and ``iters`` (every loss term, per iteration, for loss curves).

    Distributed (``torch.distributed`` initialised, e.g. by ``torchrun``): the model is wrapped in
    ``DistributedDataParallel`` (``batch_size`` is per process), each process reads its share of the
    data, and only rank 0 prints, checkpoints and calls ``on_epoch_end(epoch, model)``; the others wait
    for it. The returned history is each process's own.
    """
    out_dir = Path(out_dir)
    device = torch.device(device)
    rank, world = distributed_info()
    progress = progress and rank == 0
    epoch_lines = (progress if epoch_lines is None else epoch_lines) and rank == 0
    use_amp = (device.type == "cuda") if use_amp is None else use_amp
    model.to(device)
    train_model = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = optimizer_fn([p for p in model.parameters() if p.requires_grad])
    iters_per_epoch = len(make_loader(dataset, batch_size, seed, 0, num_replicas=world, rank=rank,
                                      collate_fn=collate_fn))
    scheduler = (torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda_fn(epochs * iters_per_epoch))
                 if lr_lambda_fn else None)
    scaler = torch.amp.GradScaler(device.type) if use_amp else None
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
        if on_resume is not None:
            on_resume(optimizer, scheduler)
        set_rng_state(ckpt["rng"])  # rank 0's states: a distributed resume is not bit-exact
        if rank:
            torch.manual_seed(seed + rank + 1000 * (ckpt["epoch"] + 1))
        history, start = list(ckpt["history"]), ckpt["epoch"] + 1
        if epoch_lines:
            print(f"resumed from {shown(ckpt_path)} after epoch {ckpt['epoch']}")
    else:
        torch.manual_seed(seed + rank)  # other augmentation draws in every process
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        loader = make_loader(dataset, batch_size, seed, epoch, num_workers=num_workers, collate_fn=collate_fn,
                             num_replicas=world, rank=rank)
        h = train_one_epoch(train_model, optimizer, loader, device, epoch, scheduler, scaler, max_grad_norm,
                            progress)
        losses = {k: v for k, v in h.items() if k.startswith("loss")}
        summary = {k: float(np.mean(v)) for k, v in losses.items()}
        summary.update(epoch=epoch, lr=h["lr"][-1], seconds=time.perf_counter() - t0,
                       data_seconds=float(sum(h["time_data"])), step_seconds=float(sum(h["time_step"])),
                       iter_loss=h["loss"], iters=losses)
        history.append(summary)
        if rank == 0:
            save_checkpoint(ckpt_path, model, optimizer, scheduler, epoch, history, config or {}, scaler)
        if epoch_lines:
            terms = " ".join(f"{k}={v:.3f}" for k, v in summary.items() if k.startswith("loss"))
            tqdm.write(f"epoch {epoch}: {terms} lr={summary['lr']:.2e} ({summary['seconds']:.0f} s, "
                       f"data wait {data_wait(summary):.0%})")
        if on_epoch_end is not None and rank == 0:
            on_epoch_end(epoch, model)
        if world > 1:
            torch.distributed.barrier()  # the checkpoint exists (and rank 0 is done) before anyone goes on
        if stop_after is not None and epoch + 1 - start >= stop_after:
            break
    return history


def data_wait(summary: dict) -> float:
    """The share of an epoch's iteration time spent waiting for the data loader (0 to 1)."""
    total = summary["data_seconds"] + summary["step_seconds"]
    return summary["data_seconds"] / total if total > 0 else 0.0


def train_step(model: torch.nn.Module, images: list, targets: list, optimizer) -> dict[str, float]:
    """One SGD step of a detection model in training mode: the loss dict of ``model(images, targets)``, their sum
    backpropagated into freshly zeroed gradients, one ``optimizer.step()``. Returns the losses as floats (``loss``
    their sum). Notebook 07's exercise writes it; ``train_steps`` takes a learner's version as ``step``."""
    losses = model(images, targets)
    loss = sum(losses.values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return {**{k: v.item() for k, v in losses.items()}, "loss": loss.item()}


def train_steps(model: torch.nn.Module, batches: list, lr: float = 0.002, momentum: float = 0.9, seed: int = 0,
                desc: str = "training", device: torch.device | str = "cpu",
                step: Callable = train_step) -> list[dict[str, float]]:
    """SGD on ``batches`` (a list of (images, targets)), one ``step(model, images, targets, optimizer)`` each, from
    the model's current weights (notebook 07 and ``benchmarks/bench_model.py`` train two models side by side with
    it); the seed is set first, so two models that compute the same numbers draw the same samples. Returns each
    step's losses (floats, ``loss`` their sum)."""
    model.to(device).train()
    torch.manual_seed(seed)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=momentum)
    history = []
    for images, targets in progress_bar(batches, desc=desc):
        images = [im.to(device) for im in images]
        targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        history.append(step(model, images, targets, opt))
    model.eval()
    return history
