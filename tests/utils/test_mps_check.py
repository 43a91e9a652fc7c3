"""course_lib.utils.mps_check: the short training check that decides whether the Apple GPU is used.

No Apple GPU here: the comparison is tested on made-up gradients, the whole check on the CPU against itself, and its
power on the fault it is for (roi_align's backward over-counting, as MPS did before torchvision 0.29), simulated on
the CPU."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from course_lib.utils import mps_check
from course_lib.utils.mps_check import TOLERANCE, check, compare_gradients, training_gradients


def grads(scale=1.0, **changes):
    g = torch.Generator().manual_seed(0)
    out = {"backbone.w": torch.randn(8, 4, generator=g) * scale, "head.b": torch.randn(3, generator=g) * scale}
    out.update(changes)
    return out


def test_equal_gradients_agree():
    assert compare_gradients(grads(), grads()) == (True, 0.0, compare_gradients(grads(), grads())[2])
    ok, error, line = compare_gradients(grads(), grads())
    assert ok and error == 0.0 and line.startswith("gradients within 0.0e+00 of the CPU's (tolerance 0.05")


def test_rounding_noise_passes_and_an_over_count_fails():
    noisy = {k: v * (1 + 1e-5 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1)))
             for k, v in grads().items()}
    ok, error, _ = compare_gradients(grads(), noisy)
    assert ok and 0 < error < 1e-4
    ok, error, line = compare_gradients(grads(), grads(scale=100.0))
    assert not ok and error == pytest.approx(99.0) and line.startswith("gradients off by 9.9e+01")
    twice_in_one = grads(**{"backbone.w": grads()["backbone.w"] * 2})
    ok, error, line = compare_gradients(grads(), twice_in_one)
    assert not ok and "largest difference in backbone.w" in line


def test_the_tolerance_is_the_edge():
    ref = {"w": torch.tensor([1.0, 0.0])}
    assert compare_gradients(ref, {"w": torch.tensor([1.0 + TOLERANCE * 0.99, 0.0])})[0]
    assert not compare_gradients(ref, {"w": torch.tensor([1.0 + TOLERANCE * 1.01, 0.0])})[0]


@pytest.mark.parametrize("other, says", [
    (grads(**{"head.b": torch.tensor([1.0, float("nan"), 0.0])}), "non-finite gradients in 1 parameter(s), e.g. head.b"),
    (grads(**{"head.b": torch.tensor([float("inf"), 0.0, 0.0])}), "non-finite"),
    ({"backbone.w": grads()["backbone.w"]}, "different parameters have gradients (missing ['head.b']"),
    (grads(extra=torch.zeros(1)), "extra ['extra']"),
    (grads(**{"head.b": torch.zeros(4)}), "head.b: gradient of shape (4,), expected (3,)"),
])
def test_gradients_that_cannot_agree(other, says):
    ok, error, line = compare_gradients(grads(), other)
    assert not ok and error == math.inf and says in line


def test_a_non_finite_reference_or_a_zero_one():
    ok, _, line = compare_gradients(grads(**{"head.b": torch.full((3,), float("nan"))}), grads())
    assert not ok and "the reference's own gradients are not finite" in line
    zero = {k: torch.zeros_like(v) for k, v in grads().items()}
    assert compare_gradients(zero, zero)[:2] == (True, 0.0)
    assert compare_gradients(zero, grads())[:2] == (False, math.inf)


def test_the_check_reports_a_device_that_fails_to_train(monkeypatch):
    def fake(device, steps=3, states=None):
        if device == "broken":
            raise RuntimeError("The operator 'torchvision::roi_align' is not implemented\nfor the device")
        return [grads()] * steps, [{}] * steps

    monkeypatch.setattr(mps_check, "training_gradients", fake)
    result = check("broken")
    assert result == {"ok": False, "error": math.inf, "detail": "training on broken failed: RuntimeError: The "
                                                                "operator 'torchvision::roi_align' is not implemented"}
    assert check("cpu") == {"ok": True, "error": 0.0, "detail": "3 training steps: " + compare_gradients(grads(), grads())[2]}


def test_the_check_names_the_first_step_that_disagrees(monkeypatch):
    def fake(device, steps=3, states=None):
        return ([grads(), grads(), grads(scale=2.0)] if device == "other" else [grads()] * 3), [{}] * 3

    monkeypatch.setattr(mps_check, "training_gradients", fake)
    result = check("other")
    assert not result["ok"] and result["detail"].startswith("step 3: gradients off by 1.0e+00")


def test_the_tiny_batch_is_the_same_every_time():
    (a, ta), (b, tb) = mps_check.tiny_batch(), mps_check.tiny_batch()
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(torch.equal(x[k], y[k]) for x, y in zip(ta, tb, strict=True) for k in x)
    assert [len(t["boxes"]) for t in ta] == [3, 2] and ta[0]["masks"].dtype == torch.uint8


@pytest.fixture(scope="module")
def cpu_run():
    return training_gradients("cpu", steps=2)


def test_two_cpu_runs_from_the_same_weights_agree(cpu_run):
    grads_cpu, states = cpu_run
    again, _ = training_gradients("cpu", steps=2, states=states)
    for ref, got in zip(grads_cpu, again, strict=True):
        ok, error, _ = compare_gradients(ref, got)
        assert ok and error < 1e-4
    assert all(torch.isfinite(g).all() for step in grads_cpu for g in step.values())


@pytest.mark.parametrize("factor", [100.0, 1.1])
def test_the_check_catches_roi_align_backward_over_counting(cpu_run, monkeypatch, factor):
    """The fault of MPS roi_align before torchvision 0.29, made on the CPU: its backward multiplied by ``factor``."""
    import torchvision.ops.poolers as poolers

    class OverCounted(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.view_as(x)

        @staticmethod
        def backward(ctx, grad):
            return grad * factor

    roi_align = poolers.roi_align
    monkeypatch.setattr(poolers, "roi_align", lambda x, *args, **kw: roi_align(OverCounted.apply(x), *args, **kw))
    grads_cpu, states = cpu_run
    faulty, _ = training_gradients("cpu", steps=1, states=states)
    ok, error, line = compare_gradients(grads_cpu[0], faulty[0])
    assert not ok and error > TOLERANCE, line


def test_the_command_prints_one_json_line():
    done = subprocess.run([sys.executable, "-m", "course_lib.utils.mps_check", "--device", "cpu", "--steps", "1"],
                          capture_output=True, text=True, timeout=600, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"] is True and result["error"] == 0.0
    assert result["detail"].startswith("1 training steps: gradients within 0.0e+00")
