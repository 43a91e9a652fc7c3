"""How much a notebook trains: its CPU budget, a GPU's larger one, or a smoke run. Taught in: 06, 07, 08.

``./course test`` runs ``notebooks/`` (the stubs) only to show that every cell runs; nothing there is compared,
so it sets ``COURSE_SMOKE=1`` and the training cells take their ``smoke`` size. ``solutions/`` always run in
full: their stored outputs are what nbval checks.
"""

from __future__ import annotations

import os
from typing import TypeVar

import torch

SMOKE_ENV = "COURSE_SMOKE"

Size = TypeVar("Size")


def smoke_run() -> bool:
    """True when ``$COURSE_SMOKE`` is ``1``: a test run that only checks the cells run."""
    return os.environ.get(SMOKE_ENV, "").strip() == "1"


def training_budget(device: torch.device, *, cpu: Size, gpu: Size, smoke: Size) -> Size:
    """``smoke`` in a smoke run, else ``gpu`` on an accelerator and ``cpu`` on the CPU.

    >>> training_budget(torch.device("cpu"), cpu=(200, 2), gpu=(300, 8), smoke=(8, 1))
    (200, 2)
    """
    if smoke_run():
        return smoke
    return cpu if torch.device(device).type == "cpu" else gpu
