"""The README's "Your own data" block, run as written on a tiny generated LabelMe folder (JPEG photos and
LabelMe JSON as LabelMe writes them), then the commands' one-line failures."""

import json
import re
import shlex

import numpy as np
import pytest
import torch
from PIL import Image

from course_lib.course.cli import main as cli
from course_lib.training.export import check_images, compare_outputs, script_model
from course_lib.training.model_file import load_model_file
from course_lib.utils.paths import REPO_ROOT

pytestmark = pytest.mark.training


def labelme_folder(folder, n, seed):
    """``n`` 64x64 JPEG photos, each with a square (rectangle) and a triangle (polygon), and LabelMe files."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = rng.integers(0, 60, (64, 64, 3)).astype(np.uint8)
        x, y = rng.integers(4, 24, 2)
        img[y:y + 20, x:x + 20] = (220, 40, 40)
        tx, ty = rng.integers(30, 40, 2)
        tri = [[float(tx), float(ty + 20)], [float(tx + 20), float(ty + 20)], [float(tx + 10), float(ty)]]
        yy, xx = np.mgrid[0:64, 0:64]
        inside = (yy <= ty + 20) & (np.abs(xx - (tx + 10)) * 2 <= (yy - ty))
        img[inside] = (40, 200, 40)
        Image.fromarray(img).save(folder / f"photo_{i:02d}.jpg", quality=90)
        shapes = [{"label": "square", "points": [[float(x), float(y)], [float(x + 20), float(y + 20)]],
                   "group_id": None, "description": "", "shape_type": "rectangle", "flags": {}, "mask": None},
                  {"label": "triangle", "points": tri, "group_id": None, "description": "",
                   "shape_type": "polygon", "flags": {}, "mask": None}]
        (folder / f"photo_{i:02d}.json").write_text(json.dumps(
            {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": f"photo_{i:02d}.jpg",
             "imageData": None, "imageHeight": 64, "imageWidth": 64}, indent=2))


def readme_commands():
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split("## Your own data", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [shlex.split(line)[1:] for line in block.strip().splitlines() if line.startswith("./course ")]


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_the_readme_block_runs_from_labelme_files_to_predictions(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    labelme_folder(tmp_path / "my_photos", 8, seed=0)
    labelme_folder(tmp_path / "new_photos", 2, seed=1)
    for f in (tmp_path / "new_photos").glob("*.json"):
        f.unlink()
    commands = readme_commands()
    assert [c[0] for c in commands] == ["coco", "coco", "finetune", "evaluate", "predict", "export"]
    torch.manual_seed(0)
    for argv in commands:
        if argv[0] == "finetune":  # the README trains 10 epochs; here one, tiny
            argv = [a if a != "10" else "1" for a in argv] + ["--batch-size", "2", "--no-progress"]
        if argv[0] in ("evaluate", "predict"):
            argv = argv + ["--no-progress"]
        assert cli(argv) == 0, argv
    out = capsys.readouterr().out
    assert "annotations_val.json: OK" in out and "categories agree" in out
    assert re.search(r"^epoch 0: loss_classifier=.* lr=", out, re.MULTILINE)  # --no-progress keeps one line per epoch
    train = json.loads((tmp_path / "my_data/annotations_train.json").read_text())
    val = json.loads((tmp_path / "my_data/annotations_val.json").read_text())
    assert (len(train["images"]), len(val["images"])) == (6, 2)
    assert [c["name"] for c in train["categories"]] == ["square", "triangle"]
    assert train["info"]["image_root"] == "../my_photos"
    square = next(a for a in train["annotations"] if a["category_id"] == 1)
    assert square["area"] == 400.0  # a 20x20 rectangle
    ev = json.loads((tmp_path / "runs/mine/eval.json").read_text())
    assert set(ev["per_class_ap"]["segm"]) == {"square", "triangle"} and "misses" in ev["errors"]
    pred = tmp_path / "runs/mine/predictions"
    assert sorted(p.name for p in pred.glob("*.png")) == ["photo_00.png", "photo_01.png"]
    assert Image.open(pred / "photo_00.png").size == (64, 64)
    results = json.loads((pred / "results.json").read_text())
    assert all(r["score"] >= 0.5 and r["file_name"].startswith("photo_") for r in results)
    scripted = torch.jit.load(str(tmp_path / "runs/mine/model.ts"))
    model, classes, _ = load_model_file(tmp_path / "runs/mine/model.pt")
    assert classes == ["__background__", "square", "triangle"]
    assert compare_outputs(model, scripted, check_images(0)) == []
    # The stored run refuses to resume with another learning rate, and says what differs.
    argv = commands[2] + ["--lr", "0.001", "--no-progress"]
    argv = [a if a != "10" else "1" for a in argv] + ["--batch-size", "2"]
    assert cli(argv) == 1
    err = capsys.readouterr().err
    assert "lr: 0.005 in the run, 0.001 now" in err and "--accept-changes" in err and err.count("\n") == 1


def test_the_export_check_fails_on_a_model_that_differs():
    model, _, _ = load_model_file(REPO_ROOT / "data" / "course_maskrcnn.pt")
    scripted = script_model(model)
    other, _, _ = load_model_file(REPO_ROOT / "data" / "course_maskrcnn.pt")
    with torch.no_grad():
        other.roi_heads.box_predictor.bbox_pred.bias.add_(1.0)
    assert compare_outputs(model, scripted, check_images(0)) == []
    assert compare_outputs(other, scripted, check_images(0))  # the check can fail


@pytest.mark.parametrize("argv, reason", [
    (["finetune", "--data-train", "missing.json", "--epochs", "1"], "missing.json: --data-train file not found"),
    (["evaluate", "--model", "nope.pt", "--data", "missing.json"], "missing.json: --data file not found"),
    (["predict", "--model", "nope.pt", "--images", "no_folder", "--out", "o"], "no_folder: not a folder"),
    (["export", "--model", "nope.pt", "--out", "m.ts"], "nope.pt: model file not found"),
    (["coco", "validate", "missing.json"], "missing.json: 1 problem(s)"),
    (["coco", "build", "labelme", "no_folder", "--out", "a.json"], "no_folder: does not exist"),
    (["coco", "build", "yolo", ".", "--out", "a.json"], "yolo needs --names"),
    (["coco", "build", "id_png", ".", "--out", "a.json"], "needs --masks and --categories"),
])
def test_commands_fail_with_one_line_and_status_1(argv, reason, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli(argv) == 1
    err = capsys.readouterr().err
    assert reason in err and err.count("\n") == 1, err
    assert not any(p.suffix in (".json", ".ts", ".pt") for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("name", ["coco", "finetune", "evaluate", "predict", "export"])
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        cli([name, "--help"])
    assert e.value.code == 0 and "usage: course" in capsys.readouterr().out
