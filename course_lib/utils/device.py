"""One device helper and one seed helper for the whole course. Taught in: 00_overview.

``get_device()`` picks CUDA when present, else CPU; ``COURSE_DEVICE=cpu|cuda`` overrides.
``seed_everything(seed)`` seeds Python, NumPy and torch so that a CPU run prints the same
numbers twice.
"""

import os
import random

import numpy as np
import torch


def get_device(prefer: str | None = None) -> torch.device:
    """Return the device every notebook uses: ``prefer`` > ``$COURSE_DEVICE`` > CUDA if present > CPU."""
    choice = (prefer or os.environ.get("COURSE_DEVICE", "")).strip().lower()
    if choice in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice not in ("cpu", "cuda"):
        raise ValueError(f"COURSE_DEVICE must be 'cpu' or 'cuda', got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("COURSE_DEVICE=cuda was asked for, but torch sees no CUDA device "
                           f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}).")
    return torch.device(choice)


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed ``random``, NumPy and torch (CPU and CUDA); return a seeded ``torch.Generator``.

    The generator is for DataLoaders (``generator=``), so that shuffling does not depend on how
    many random numbers other code drew before.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def describe_device(device: torch.device | None = None) -> str:
    """A one-line description such as ``cpu (2 threads)`` or ``cuda:0 (NVIDIA H100)``."""
    device = device or get_device()
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
