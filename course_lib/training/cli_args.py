"""The command-line options both training commands (``./course train``, ``./course finetune``) share,
defined once. Taught in: 06_fine_tuning
"""

from __future__ import annotations

import argparse


def add_run_args(p: argparse.ArgumentParser, *, epochs: int, batch_size: int, lr: float, weight_decay: float,
                 warmup_iters: int | None, out: str, lr_help: str = "peak learning rate",
                 warmup_help: str = "linear warm-up length in iterations") -> argparse.ArgumentParser:
    """Epochs, batch size, lr, weight decay, warm-up, seed, workers, device, run folder, resume control."""
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size, help="images per iteration and process")
    p.add_argument("--lr", type=float, default=lr, help=lr_help)
    p.add_argument("--weight-decay", type=float, default=weight_decay)
    p.add_argument("--warmup-iters", type=int, default=warmup_iters, help=warmup_help)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--device", default=None, help="cpu or cuda (default: $COURSE_DEVICE, else CUDA if present)")
    p.add_argument("--out", default=out, help="the run folder (last.pt after every epoch)")
    p.add_argument("--fresh", "--no-resume", dest="fresh", action="store_true",
                   help="start over even if --out holds a run")
    p.add_argument("--stop-after", type=int, default=None, help="stop after this many epochs (resume later)")
    return p
