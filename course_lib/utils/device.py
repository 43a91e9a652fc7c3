"""One device helper and one seed helper for the whole course. Taught in: 00_overview.

``get_device()`` picks CUDA when present; else the Apple GPU (MPS) where it can be trusted to train; else the CPU.
``COURSE_DEVICE=cpu|cuda|mps`` overrides. ``choose_device()`` says why (``./course doctor`` shows it).

The Apple GPU is chosen by itself only where torch and torchvision are new enough (``mps_version_problem``: before
torchvision 0.29 the MPS ``roi_align`` backward over-counted gradients, about 100x at 512 RoIs, so training went to
NaN) and a short check passes on this machine (``course_lib.utils.mps_check``: a few training steps of a tiny
Mask R-CNN whose gradients must be finite and agree with the CPU's; some Macs hit Metal "Internal Error"s in
``MultiScaleRoIAlign``). The check runs once per torch/torchvision version, in a subprocess; its verdict is kept in
``<runs>/device_check.json``. Otherwise the CPU, with one line saying why. MPS has no float64: code that a model
on the device runs keeps to float32 (``tests/test_portability.py`` checks the course model's paths).

``seed_everything(seed)`` seeds Python, NumPy and torch so that a CPU run prints the same numbers twice.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

CHOICES = ("cpu", "cuda", "mps")
# The first releases whose MPS kernels train the course model right: torchvision 0.29 fixed roi_align's backward
# on MPS (pytorch/vision#9510) and is built for torch 2.14.
MPS_MIN_TORCH = (2, 14)
MPS_MIN_TORCHVISION = (0, 29)
CHECK_FILE = "device_check.json"  # in the runs folder: the Apple GPU check's verdict per torch/torchvision version
CHECK_TIMEOUT_S = 600

_said: set[str] = set()  # lines already printed by get_device in this process


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    reason: str  # one line: why this device
    notice: bool = False  # get_device prints the reason: an Apple GPU passed over, or asked for with old versions


def release(version: str) -> tuple[int, ...]:
    """The leading release numbers of a version: ``"2.14.1+cpu"`` -> ``(2, 14, 1)``, ``"0.29.0a0+abc"`` ->
    ``(0, 29, 0)``, ``"dev"`` -> ``()``."""
    m = re.match(r"\d+(\.\d+)*", version.strip())
    return tuple(int(p) for p in m.group(0).split(".")) if m else ()


def mps_version_problem(torch_version: str, torchvision_version: str) -> str | None:
    """Why these versions may not train on the Apple GPU, or None when they are new enough."""
    need_tv, need_torch = ".".join(map(str, MPS_MIN_TORCHVISION)), ".".join(map(str, MPS_MIN_TORCH))
    if release(torchvision_version)[:2] < MPS_MIN_TORCHVISION:
        return (f"torchvision {torchvision_version} is older than {need_tv}, whose MPS roi_align backward "
                "over-counts gradients (training goes to NaN)")
    if release(torch_version)[:2] < MPS_MIN_TORCH:
        return f"torch {torch_version} is older than {need_torch} (torchvision {need_tv} is built for it)"
    return None


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def check_file() -> Path:
    from course_lib.utils.paths import RUNS_DIR

    return Path(RUNS_DIR) / CHECK_FILE


def run_mps_check() -> dict:
    """``course_lib.utils.mps_check`` in a fresh interpreter (a crash on the device ends only that one):
    ``{"ok", "detail"}``."""
    cmd = [sys.executable, "-m", "course_lib.utils.mps_check", "--device", "mps"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"ok": False, "detail": f"the check did not finish in {CHECK_TIMEOUT_S} s"}
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
        return {"ok": bool(result["ok"]), "detail": str(result["detail"])}
    except (IndexError, ValueError, KeyError, TypeError):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"ok": False, "detail": f"the check ended with status {done.returncode}: {last}"}


def mps_verdict(run_check=None) -> dict:
    """Whether this machine's Apple GPU trains the course model right: ``{"ok", "detail", "torch",
    "torchvision"}``, read from the runs folder when this torch/torchvision was checked before, else checked now
    (``run_check()``, default ``run_mps_check``: a few seconds) and written there."""
    import torchvision

    from course_lib.utils.files import write_json_atomic

    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    problem = mps_version_problem(versions["torch"], versions["torchvision"])
    if problem:
        return {"ok": False, "detail": problem, **versions}
    path = check_file()
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        if {k: kept.get(k) for k in versions} == versions and isinstance(kept.get("ok"), bool):
            return kept
    except (OSError, ValueError, AttributeError):
        pass  # never checked (or an unreadable file): check again
    _say("course: checking once that the Apple GPU trains like the CPU (a few seconds)")
    verdict = {**(run_check or run_mps_check)(), **versions}
    try:
        write_json_atomic(verdict, path)
    except OSError:
        pass  # a read-only runs folder: the check runs again next time
    return verdict


def choose_device(prefer: str | None = None, *, verdict=None) -> DeviceChoice:
    """The device every notebook uses and why: ``prefer`` > ``$COURSE_DEVICE`` > CUDA if present > the Apple GPU
    where ``verdict()`` (default ``mps_verdict``) says it trains right > the CPU."""
    choice = (prefer or os.environ.get("COURSE_DEVICE", "")).strip().lower()
    if choice in ("", "auto"):
        if torch.cuda.is_available():
            return DeviceChoice(torch.device("cuda"), "CUDA is available")
        if mps_available():
            v = (verdict or mps_verdict)()
            if v["ok"]:
                return DeviceChoice(torch.device("mps"), f"the Apple GPU passed the training check: {v['detail']}")
            return DeviceChoice(torch.device("cpu"), f"the CPU, not the Apple GPU: {v['detail']}", notice=True)
        return DeviceChoice(torch.device("cpu"), "no CUDA or Apple GPU (MPS) device")
    if choice not in CHOICES:
        raise ValueError(f"COURSE_DEVICE must be one of {', '.join(CHOICES)} or auto, got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("COURSE_DEVICE=cuda was asked for, but torch sees no CUDA device "
                           f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}).")
    if choice == "mps":
        if not mps_available():
            raise RuntimeError("COURSE_DEVICE=mps was asked for, but torch sees no Apple GPU "
                               f"(torch {torch.__version__}; MPS needs macOS on Apple silicon).")
        import torchvision

        problem = mps_version_problem(torch.__version__, torchvision.__version__)
        if problem:
            return DeviceChoice(torch.device("mps"), f"asked for (COURSE_DEVICE=mps); beware: {problem}",
                                notice=True)
    return DeviceChoice(torch.device(choice), f"asked for (COURSE_DEVICE={choice})")


def _say(line: str) -> None:
    if line not in _said:
        _said.add(line)
        print(line, flush=True)


def get_device(prefer: str | None = None) -> torch.device:
    """Return the device every notebook uses: ``prefer`` > ``$COURSE_DEVICE`` > CUDA if present > the Apple GPU
    where it trains right > CPU. Where an Apple GPU is passed over, or asked for with versions that train it
    wrong, one line says why (once per process)."""
    chosen = choose_device(prefer)
    if chosen.notice:
        _say(f"course: {chosen.reason}")
    return chosen.device


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
    """A one-line description such as ``cpu (2 threads)``, ``cuda:0 (NVIDIA H100)`` or ``mps (Apple GPU)``."""
    device = device or get_device()
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return f"{device} (Apple GPU)"
    return f"cpu ({torch.get_num_threads()} threads)"
