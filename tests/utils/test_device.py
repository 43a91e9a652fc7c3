import json
import re
from pathlib import Path

import pytest
import torch

from course_lib.utils.device import describe_device, get_device, seed_everything
from course_lib.utils.paths import REPO_ROOT


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


# One device helper: no code chooses CUDA by itself, so the course runs unchanged on CPU or GPU.
HARD_CODED_CUDA = re.compile(r"""\.cuda\(|\.to\(\s*["']cuda|device\s*=\s*["']cuda|torch\.device\(\s*["']cuda["']\s*\)""")


def _course_sources():
    root = REPO_ROOT
    for path in sorted([*root.glob("course_lib/**/*.py"), *root.glob("benchmarks/*.py")]):
        yield path.relative_to(root), path.read_text()
    for path in sorted(root.glob("solutions/*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        yield path.relative_to(root), code


def test_the_hard_coded_cuda_pattern_catches_what_it_should():
    for bad in ["x.cuda()", "m.to('cuda')", 'x.to("cuda:0")', "torch.zeros(3, device='cuda')",
                'torch.device("cuda")']:
        assert HARD_CODED_CUDA.search(bad), bad
    for fine in ["x.to(device)", "torch.device('cuda', rank)", "device.type == 'cuda'", "torch.cuda.is_available()"]:
        assert not HARD_CODED_CUDA.search(fine), fine


@pytest.mark.parametrize("name,source", list(_course_sources()), ids=lambda v: str(v) if isinstance(v, Path) else "")
def test_no_code_hard_codes_cuda(name, source):
    hits = [line.strip() for line in source.splitlines() if HARD_CODED_CUDA.search(line)]
    assert not hits, f"{name} picks CUDA by itself instead of course_lib.utils.device.get_device(): {hits}"
