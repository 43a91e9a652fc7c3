"""``python -m course_lib doctor``: what this machine has for the course, in a few lines.

Reports the versions, the device the notebooks use (CPU, CUDA or the Apple GPU) and why, whether torchvision's
COCO weights are in the torch cache, whether JupyterLab's widget front end is installed, and the course
checkpoint's metrics.
It never opens a network connection.
"""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ["torch", "torchvision", "numpy", "pycocotools", "matplotlib", "ipywidgets", "jupyterlab",
            "jupyterlab_widgets", "nbval", "tqdm"]


def widget_frontend() -> Path | None:
    """The installed JupyterLab widget extension (``@jupyter-widgets/jupyterlab-manager``), if any."""
    candidates = [Path(sys.prefix) / "share/jupyter/labextensions/@jupyter-widgets/jupyterlab-manager"]
    try:
        from jupyter_core.paths import jupyter_path

        candidates += [Path(p) / "labextensions/@jupyter-widgets/jupyterlab-manager" for p in jupyter_path()]
    except ImportError:
        pass
    return next((p for p in candidates if (p / "package.json").is_file()), None)


def device_row() -> tuple[str, str]:
    """The device the notebooks use, why, and what this torch was built for (the Apple GPU check may run once)."""
    import torch

    from course_lib.utils.device import choose_device, describe_device

    try:
        chosen = choose_device()
    except (ValueError, RuntimeError) as exc:  # COURSE_DEVICE asks for a missing or unknown device
        return "device", f"MISSING: {exc}"
    if torch.version.cuda:
        build = f"a CUDA {torch.version.cuda} build, {torch.cuda.device_count()} GPU(s) visible"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_built():
        build = "built with MPS (Apple GPU) support"
    else:
        build = "a CPU-only build"
    return "device", f"{describe_device(chosen.device)}: {chosen.reason}; torch is {build}"


def report() -> list[tuple[str, str]]:
    from course_lib.detection.course_model import coco_weights_file
    from course_lib.utils.paths import CHECKPOINT, PROVENANCE, shown

    rows = [("python", f"{platform.python_version()} ({sys.executable})")]
    for name in PACKAGES:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "NOT INSTALLED"))
    rows.append(device_row())
    weights = coco_weights_file()
    rows.append(("COCO weights", f"cached at {weights}" if weights.is_file() else
                 f"not in the torch cache ({shown(weights)}); the course uses its own checkpoint"))
    ext = widget_frontend()
    rows.append(("widget front end", f"installed ({ext})" if ext else
                 "MISSING: quizzes fall back to text; `pip install ipywidgets jupyterlab_widgets`"))
    from course_lib.course.grading.isolation import engine_problem

    problem = engine_problem()
    rows.append(("grading sandbox", "bubblewrap isolates students' notebooks here" if problem is None else
                 f"unavailable (only instructors grading students' notebooks need it): {problem}"))
    if CHECKPOINT.is_file() and PROVENANCE.is_file():
        segm = json.loads(PROVENANCE.read_text(encoding="utf-8"))["val_metrics"]["segm"]
        rows.append(("course checkpoint", f"{CHECKPOINT.name}, {CHECKPOINT.stat().st_size / 2**20:.1f} MB, "
                                          f"val segm AP {segm['AP']:.3f} / AP50 {segm['AP50']:.3f}"))
    else:
        rows.append(("course checkpoint", f"MISSING at {CHECKPOINT}: run `./course train`"))
    return rows


def main(argv=None) -> int:
    rows = report()
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:{width}s}  {v}")
    missing = [k for k, v in rows if v.startswith(("NOT INSTALLED", "MISSING"))]
    return 1 if missing else 0
