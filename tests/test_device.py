import pytest
import torch

from course_lib.device import describe_device, get_device, seed_everything


def test_default_device_follows_cuda_availability(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    assert get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_environment_variable_overrides(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    monkeypatch.setenv("COURSE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="COURSE_DEVICE"):
        get_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_missing_cuda_says_so(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        get_device()


def test_argument_beats_environment(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    assert get_device("cpu").type == "cpu"
    assert describe_device(torch.device("cpu")).startswith("cpu (")


def test_seed_everything_repeats_every_generator():
    import random

    import numpy as np

    def draw():
        g = seed_everything(123)
        return (random.random(), np.random.rand(), torch.rand(3).tolist(), torch.rand(2, generator=g).tolist())

    assert draw() == draw()
    seed_everything(124)
    assert torch.rand(1).item() != (seed_everything(123), torch.rand(1).item())[1]
