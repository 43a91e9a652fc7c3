"""course_lib.utils.budget: the training size a notebook cell takes on the CPU, a GPU, or in a smoke run."""

import torch

from course_lib.utils.budget import SMOKE_ENV, smoke_run, training_budget


def test_cpu_gpu_and_smoke_sizes(monkeypatch):
    monkeypatch.delenv(SMOKE_ENV, raising=False)
    sizes = dict(cpu=(200, 2), gpu=(300, 8), smoke=(8, 2))
    assert not smoke_run()
    assert training_budget(torch.device("cpu"), **sizes) == (200, 2)
    assert training_budget(torch.device("cuda"), **sizes) == (300, 8)  # only the device's type is read
    assert training_budget("mps", **sizes) == (300, 8)
    monkeypatch.setenv(SMOKE_ENV, "1")
    assert smoke_run() and training_budget(torch.device("cpu"), **sizes) == (8, 2)
    monkeypatch.setenv(SMOKE_ENV, "0")
    assert not smoke_run() and training_budget(torch.device("cpu"), **sizes) == (200, 2)
