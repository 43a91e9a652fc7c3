import json
import re
from pathlib import Path

import pytest
import torch
import torchvision

from course_lib.utils import device as device_module
from course_lib.utils.device import (
    DeviceChoice,
    choose_device,
    describe_device,
    get_device,
    mps_verdict,
    mps_version_problem,
    release,
    run_mps_check,
    seed_everything,
)
from course_lib.utils.paths import REPO_ROOT


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine with neither CUDA nor an Apple GPU, whatever this one has."""
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_said", set())


@pytest.fixture
def apple(no_gpu, monkeypatch, tmp_path):
    """A Mac with an Apple GPU, torch 2.14.1 and torchvision 0.29.1; the check's verdicts go to tmp_path."""
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch, "__version__", "2.14.1")
    monkeypatch.setattr(torchvision, "__version__", "0.29.1")
    monkeypatch.setattr(device_module, "check_file", lambda: tmp_path / "runs" / "device_check.json")
    return tmp_path / "runs" / "device_check.json"


def test_default_device_follows_cuda_availability(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_environment_variable_overrides(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    assert choose_device().reason == "asked for (COURSE_DEVICE=cpu)"
    monkeypatch.setenv("COURSE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="COURSE_DEVICE must be one of cpu, cuda, mps"):
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
    assert describe_device(torch.device("mps")) == "mps (Apple GPU)"


# ------------------------------------------------------------------------------------------------- the Apple GPU

def test_release_reads_the_leading_numbers():
    assert release("2.14.1+cpu") == (2, 14, 1)
    assert release("0.29.0a0+git1234") == (0, 29, 0)
    assert release("0.28") == (0, 28) and release("dev") == ()


@pytest.mark.parametrize("torch_v, tv_v, says", [
    ("2.14.1", "0.29.1", None),
    ("2.15.0", "0.30.0", None),
    ("2.14.0+cpu", "0.29.0", None),
    ("2.13.0", "0.28.0", "torchvision 0.28.0 is older than 0.29"),
    ("2.14.1", "0.29.0a0", None),
    ("2.3.0", "0.18.0", "roi_align backward over-counts gradients"),
    ("2.13.1", "0.29.0", "torch 2.13.1 is older than 2.14"),
])
def test_the_version_rule_for_the_apple_gpu(torch_v, tv_v, says):
    problem = mps_version_problem(torch_v, tv_v)
    assert problem is None if says is None else says in problem


def test_mps_is_accepted_when_asked_for(apple, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DEVICE", "mps")
    assert get_device() == torch.device("mps")
    assert choose_device().reason == "asked for (COURSE_DEVICE=mps)"
    assert capsys.readouterr().out == ""
    assert not apple.exists(), "asking for the Apple GPU runs no check"


def test_mps_asked_for_with_an_old_torchvision_is_used_with_one_line(apple, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DEVICE", "mps")
    monkeypatch.setattr(torchvision, "__version__", "0.28.0")
    assert get_device() == get_device() == torch.device("mps")
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "beware: torchvision 0.28.0 is older than 0.29" in out[0]


def test_asking_for_mps_without_an_apple_gpu_says_so(no_gpu, monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "mps")
    with pytest.raises(RuntimeError, match="no Apple GPU"):
        get_device()


def test_without_any_gpu_the_cpu_is_chosen_silently(no_gpu, capsys):
    assert choose_device() == DeviceChoice(torch.device("cpu"), "no CUDA or Apple GPU (MPS) device")
    assert get_device() == torch.device("cpu") and capsys.readouterr().out == ""


def test_cuda_comes_before_the_apple_gpu(apple, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device(verdict=lambda: pytest.fail("no check when CUDA is there")).device.type == "cuda"


def test_the_apple_gpu_is_chosen_when_the_check_passes(apple):
    chosen = choose_device(verdict=lambda: {"ok": True, "detail": "gradients within 1e-06"})
    assert chosen.device == torch.device("mps") and "passed the training check: gradients within 1e-06" in chosen.reason
    assert not chosen.notice


def test_the_cpu_with_one_line_when_the_check_fails(apple, monkeypatch, capsys):
    monkeypatch.setattr(device_module, "run_mps_check", lambda: {"ok": False, "detail": "step 1: gradients off by 79"})
    assert get_device() == torch.device("cpu")
    assert get_device() == torch.device("cpu")
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "course: the CPU, not the Apple GPU: step 1: gradients off by 79"
    assert sum("not the Apple GPU" in line for line in out) == 1, "once per process"


def test_the_check_runs_once_per_version_and_its_verdict_is_kept(apple):
    calls = []

    def fake_check():
        calls.append(1)
        return {"ok": True, "detail": "fine"}

    first = mps_verdict(run_check=fake_check)
    assert first == {"ok": True, "detail": "fine", "torch": "2.14.1", "torchvision": "0.29.1"}
    assert json.loads(apple.read_text()) == first
    assert mps_verdict(run_check=fake_check) == first and len(calls) == 1
    torchvision.__version__ = "0.29.2"  # (the fixture's monkeypatch restores it) a new torchvision: check again
    assert mps_verdict(run_check=fake_check)["torchvision"] == "0.29.2" and len(calls) == 2
    apple.write_text("{not json")
    mps_verdict(run_check=fake_check)
    assert len(calls) == 3 and json.loads(apple.read_text())["ok"] is True


def test_old_versions_are_refused_without_running_the_check(apple, monkeypatch):
    monkeypatch.setattr(torchvision, "__version__", "0.28.0")
    verdict = mps_verdict(run_check=lambda: pytest.fail("the check must not run"))
    assert verdict["ok"] is False and "older than 0.29" in verdict["detail"]
    chosen = choose_device()
    assert chosen.device.type == "cpu" and chosen.notice and "older than 0.29" in chosen.reason


class FakeRun:
    def __init__(self, stdout="", stderr="", returncode=0, timeout=False):
        self.stdout, self.stderr, self.returncode, self.timeout = stdout, stderr, returncode, timeout
        self.cmd = None

    def __call__(self, cmd, **kwargs):
        import subprocess

        self.cmd = cmd
        if self.timeout:
            raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])
        return subprocess.CompletedProcess(cmd, self.returncode, self.stdout, self.stderr)


@pytest.mark.parametrize("fake, ok, says", [
    (FakeRun(stdout='noise\n{"ok": true, "detail": "3 training steps: fine", "error": 1e-06}\n'), True, "fine"),
    (FakeRun(stdout='{"ok": false, "detail": "step 2: off by 79", "error": 79}'), False, "step 2: off by 79"),
    (FakeRun(stderr="Error: command buffer exited with error status.\nInternal Error", returncode=-6), False,
     "ended with status -6: Internal Error"),
    (FakeRun(stdout="{truncated", returncode=1), False, "ended with status 1"),
    (FakeRun(timeout=True), False, "did not finish"),
])
def test_the_check_runs_in_a_subprocess_and_a_crash_is_a_failed_check(monkeypatch, fake, ok, says):
    monkeypatch.setattr(device_module.subprocess, "run", fake)
    result = run_mps_check()
    assert result["ok"] is ok and says in result["detail"]
    assert fake.cmd[1:] == ["-m", "course_lib.utils.mps_check", "--device", "mps"]


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
    helper = root / "course_lib" / "utils" / "device.py"  # the one place that may name CUDA
    for path in sorted([*root.glob("course_lib/**/*.py"), *root.glob("benchmarks/*.py")]):
        if path == helper:
            continue
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
