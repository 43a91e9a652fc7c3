"""What the course needs to run on macOS (the Apple GPU), Windows and anywhere else, checked on this Linux machine.

* No float64 on the paths a model on the Apple GPU takes (MPS has no float64): the course model's training step and
  its inference, in both flavours, watched op by op.
* DataLoader workers on macOS and Windows start by *spawn*: what a notebook hands a DataLoader (datasets,
  transforms, ``collate_fn``) must pickle and load in a fresh interpreter, and no notebook starts workers for a
  dataset class it defines itself.
* No POSIX-only call outside the grading sandbox (``course_lib/course/grading/``, Linux by design) unless reviewed
  here, with the reason.
"""

import json
import pickle
import re

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from course_lib.utils.paths import REPO_ROOT


class Float64Watch(TorchDispatchMode):
    """Records every op that takes or makes a float64 tensor."""

    def __init__(self):
        super().__init__()
        self.ops: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in tree_flatten((args, kwargs, out))[0]):
            self.ops[str(func)] = self.ops.get(str(func), 0) + 1
        return out


def test_the_float64_watch_sees_float64():
    with Float64Watch() as watch:
        torch.ones(2) + 1
    assert watch.ops == {}
    with Float64Watch() as watch:
        torch.ones(2, dtype=torch.float64) * 2
    assert "aten.mul.Tensor" in watch.ops


@pytest.mark.parametrize("flavour", ["torchvision's classes", "the course's parts"])
def test_the_course_model_trains_and_predicts_without_float64(flavour):
    from course_lib.data.shapes import shapes_sample
    from course_lib.detection.course_model import build_course_model
    from course_lib.detection.mask_rcnn import build_course_mask_rcnn
    from course_lib.training.engine import train_steps

    build = build_course_model if flavour == "torchvision's classes" else build_course_mask_rcnn
    images, targets = zip(*(shapes_sample(0, i) for i in range(2)), strict=True)
    torch.manual_seed(0)
    model = build()
    with Float64Watch() as watch:
        losses = train_steps(model, [(list(images), list(targets))], device="cpu")
        model.eval()
        with torch.no_grad():
            out = model(list(images))
    assert watch.ops == {}, f"ops with float64 tensors (none exist on the Apple GPU): {watch.ops}"
    assert all(torch.isfinite(torch.tensor(v)) for v in losses[0].values()) and len(out) == 2


# ------------------------------------------------------------------------------------------- spawn-safe data

@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory):
    from course_lib.data.shapes import make_shapes_dataset

    root = tmp_path_factory.mktemp("shapes")
    return root / "images", make_shapes_dataset(root, 4, seed=0, progress=False)


def notebook_datasets(coco_folder):
    from course_lib.data.coco_dataset import CocoInstanceDataset, get_transform
    from course_lib.data.nuclei import nuclei_transform

    images, ann = coco_folder
    return {"05/06/07 train": CocoInstanceDataset(images, ann, get_transform(train=True)),
            "06/07 val": torch.utils.data.Subset(CocoInstanceDataset(images, ann, get_transform(train=False)), [0, 1]),
            "08 train": CocoInstanceDataset(images, ann, nuclei_transform(train=True)),
            "05 plain": CocoInstanceDataset(images, ann)}


def test_what_notebooks_hand_a_dataloader_pickles(coco_folder):
    from course_lib.data.coco_dataset import collate_fn

    for name, dataset in notebook_datasets(coco_folder).items():
        copy = pickle.loads(pickle.dumps(dataset))
        torch.manual_seed(0)
        image, target = copy[0]
        torch.manual_seed(0)
        expected_image, expected = dataset[0]  # the same random flips and turns after the same seed
        assert torch.equal(image, expected_image) and torch.equal(target["boxes"], expected["boxes"]), name
    assert pickle.loads(pickle.dumps(collate_fn)) is collate_fn  # a module-level function, found by name


def test_a_spawned_worker_loads_the_course_dataset(coco_folder):
    """What ``fit(..., num_workers=2)`` does on macOS and Windows (their default start method is spawn)."""
    from course_lib.data.coco_dataset import collate_fn

    dataset = notebook_datasets(coco_folder)["06/07 val"]
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=collate_fn,
                                         multiprocessing_context="spawn")
    (images, targets), = list(loader)
    assert len(images) == 2 and torch.equal(images[0], dataset[0][0])
    assert torch.equal(targets[1]["masks"], dataset[1][1]["masks"])


def _code_cells(folder: str):
    for path in sorted((REPO_ROOT / folder).glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] == "code":
                yield path.name, "".join(cell["source"])


WORKERS = re.compile(r"num_workers\s*=\s*(?!0\b)\w")


def test_no_notebook_starts_dataloader_workers():
    """Workers for a class defined in a notebook fail under spawn (the worker cannot import the kernel's
    ``__main__``); the course's own datasets are importable, but the notebooks keep num_workers=0 anyway."""
    assert WORKERS.search("fit(model, ds, num_workers=4)") and not WORKERS.search("num_workers=0, x=1")
    hits = [(name, line.strip()) for name, code in _code_cells("solutions") for line in code.splitlines()
            if WORKERS.search(line)]
    assert hits == []


def test_course_defaults_start_no_workers():
    import inspect

    from course_lib.training import engine, predict

    assert inspect.signature(engine.fit).parameters["num_workers"].default == 0
    assert inspect.signature(engine.make_loader).parameters["num_workers"].default == 0
    assert "num_workers" not in inspect.getsource(predict.run_inference) or \
        "num_workers=0" in inspect.getsource(predict.run_inference)


# ----------------------------------------------------------------------------------------- POSIX-only calls

POSIX_ONLY = re.compile(r"\bos\.fork\b|\bimport (fcntl|resource|pwd|grp|termios)\b|[\"']/tmp\b|\bsignal\.SIG(?!INT\b)"
                        r"|\bos\.(getuid|geteuid|getgid|setsid|killpg|setpgrp|sched_getaffinity|exec[lv]p?e?)\b"
                        r"|\.venv/bin\b|transport=\"ipc\"")
# Reviewed uses outside grading/, each with why it is there and how it behaves elsewhere.
REVIEWED = {
    ("course_lib/course/selftest.py", "os.sched_getaffinity"): "falls back to os.cpu_count() (AttributeError)",
    ("course_lib/course/lab.py", "os.geteuid"): "guarded by hasattr(os, 'geteuid')",
    ("course_lib/course/lab.py", "os.execv"): "not on Windows (os.name == 'nt' runs JupyterLab with subprocess.call)",
    ("course_lib/course/sandbox.py", 'transport="ipc"'): "only where zmq.has('ipc') and not on Windows, else TCP on "
                                                         "the loopback",
}


def posix_only_uses() -> dict[tuple[str, str], list[int]]:
    found: dict[tuple[str, str], list[int]] = {}
    for path in sorted((REPO_ROOT / "course_lib").rglob("*.py")):
        rel = path.relative_to(REPO_ROOT).as_posix()
        if rel.startswith("course_lib/course/grading/"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in POSIX_ONLY.finditer(line):
                found.setdefault((rel, m.group(0)), []).append(number)
    return found


def test_the_posix_pattern_catches_what_it_should():
    for bad in ["pid = os.fork()", "import fcntl", "os.kill(pid, signal.SIGKILL)", "Path('/tmp/x')",
                "os.setsid()", 'python = ".venv/bin/python"', "os.execv(a, b)", "os.execvpe(a, b, c)"]:
        assert POSIX_ONLY.search(bad), bad
    for fine in ["signal.SIGINT", "tempfile.gettempdir()", "os.cpu_count()", "resources = 1", "import os"]:
        assert not POSIX_ONLY.search(fine), fine


def test_nothing_outside_grading_assumes_posix_unless_reviewed():
    found = posix_only_uses()
    unreviewed = {k: v for k, v in found.items() if k not in REVIEWED}
    assert unreviewed == {}, f"POSIX-only calls outside the grading sandbox (lines): {unreviewed}"
    stale = sorted(set(REVIEWED) - set(found))
    assert stale == [], f"reviewed uses that are gone (remove them from REVIEWED): {stale}"
