"""``pip install .`` (a wheel, not a checkout) gives a package that finds its data: a notebook run from another folder
loads the course checkpoint shipped in the wheel, writes generated data and runs to the user's folder, and reads the
quiz bank.

The wheel is built from a copy of the sources (the checkout gets no build/ folder) and installed with ``--no-deps``
into a fresh venv; that venv borrows this one's packages (torch, ...) through a ``.pth`` file, so nothing is
downloaded, and the course itself comes only from the wheel (the notebook checks where it was imported from).
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel  # runs a notebook in a Jupyter kernel

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["course_lib", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md",
           "data/course_maskrcnn.pt", "data/course_maskrcnn.json", "data/NUCLEI.md"]

CELLS = [
    """import os
from pathlib import Path

import course_lib
from course_lib import CHECKPOINT, DATA_DIR, GENERATED_DIR, RUNS_DIR, get_device, quiz, seed_everything, show_progress
from course_lib.utils.paths import IN_CHECKOUT

site = Path(os.environ["EXPECTED_SITE"]).resolve()
assert Path(course_lib.__file__).resolve().is_relative_to(site), course_lib.__file__
assert not IN_CHECKOUT and DATA_DIR.resolve() == site / "course_lib" / "shipped_data", DATA_DIR
home = Path(os.environ["COURSE_HOME"])
assert GENERATED_DIR == home / "generated" and RUNS_DIR == home / "runs", (GENERATED_DIR, RUNS_DIR)
show_progress()
seed_everything(0)
device = get_device()""",
    """from course_lib import load_inference_model

model, source, class_names = load_inference_model(device)
assert source == "course" and Path(CHECKPOINT).is_file(), (source, CHECKPOINT)""",
    """from course_lib import CocoInstanceDataset, get_transform, run_inference, shapes_split

val_file = shapes_split("val", num_images=4)
assert val_file.is_relative_to(GENERATED_DIR), val_file
val_set = CocoInstanceDataset(val_file.parent / "images", val_file, get_transform(train=False))
outputs = run_inference(model, [val_set[i][0] for i in range(4)], device)
found = sum(int((o["scores"] > 0.5).sum()) for o in outputs)
print(f"{found} confident detections in 4 images")
assert found > 0""",
    """import json

from course_lib import PROVENANCE

print("segm AP", json.loads(PROVENANCE.read_text())["val_metrics"]["segm"]["AP"])
RUNS_DIR.joinpath("wheel-test").mkdir(parents=True)
quiz("overview-maskrcnn-addition")""",
]


def test_the_installed_wheel_finds_its_data_from_another_folder(tmp_path):
    source = tmp_path / "source"
    for name in SOURCES:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("maskrcnn_step_by_step-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("course_lib/shipped_data/course_maskrcnn.pt", "course_lib/shipped_data/course_maskrcnn.json",
                    "course_lib/shipped_data/NUCLEI.md", "course_lib/course/quiz_bank/00_overview.json"):
        assert shipped in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co., after the venv's own
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "-q", str(wheel)], check=True,
                   capture_output=True, timeout=300)

    import nbformat

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nbformat.write(nb, elsewhere / "wheel.ipynb")
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_RUNS_DIR", "COURSE_DATA_DIR", "PYTHONPATH")}
    env.update(COURSE_HOME=str(tmp_path / "home"), EXPECTED_SITE=str(site), COURSE_PROG="course")
    done = subprocess.run([str(python), "-m", "course_lib", "run", "wheel.ipynb"], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 0 failed" in done.stdout
    assert (tmp_path / "home" / "generated" / "shapes_val" / "annotations.json").is_file()
    assert (tmp_path / "home" / "runs" / "wheel-test").is_dir()
    assert not (site / "course_lib" / "shipped_data" / "generated").exists(), "nothing written into the package"
    assert json.loads((source / "data" / "course_maskrcnn.json").read_text())  # the copy the wheel took
