"""``./course predict``: photos read upright, files it cannot read skipped and named, ``--coco`` results with the
file's image ids and COCO's low score threshold (COCOeval on them = ``evaluate`` in process), ``--tile``."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from course_lib.course.cli import main as cli
from course_lib.data.coco_dataset import CocoInstanceDataset, get_transform, load_coco
from course_lib.data.shapes import render_sample, shapes_split
from course_lib.detection.course_model import load_course_model
from course_lib.training.evaluation import coco_eval, evaluate
from course_lib.training.overlays import draw_instances
from course_lib.training.predict import Detections
from course_lib.training.predict_command import overlay
from course_lib.utils.paths import CHECKPOINT

MODEL = str(CHECKPOINT)


def upright_picture() -> np.ndarray:
    """A 128 x 192 (H x W) picture of shapes: wider than high, so a turned copy has other sides."""
    return np.concatenate([render_sample(1, 2).image, render_sample(1, 3).image[:, :64]], axis=1)


def save_turned(picture: np.ndarray, path, tag: int):
    """Save ``picture`` as a JPEG whose stored pixels need EXIF Orientation ``tag`` to be shown as ``picture``."""
    stored = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90}[tag]  # undoes exif_transpose's turn
    exif = Image.Exif()
    exif[0x0112] = tag
    Image.fromarray(picture).transpose(stored).save(path, exif=exif, quality=100, subsampling=0)


def run(capsys, *argv):
    code = cli(["predict", "--model", MODEL, *argv, "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_photos_are_read_upright(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    picture = upright_picture()
    Image.fromarray(picture).save(folder / "upright.png")
    save_turned(picture, folder / "turned6.jpg", 6)
    save_turned(picture, folder / "turned3.jpg", 3)
    assert Image.open(folder / "turned6.jpg").size == (128, 192)  # stored sideways
    code, out, _ = run(capsys, "--images", str(folder), "--out", str(tmp_path / "out"))
    assert code == 0 and "3 image(s) read, 0 skipped" in out
    for name in ("upright", "turned6", "turned3"):
        assert Image.open(tmp_path / "out" / f"{name}.png").size == (192, 128)  # the upright frame
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    by_file = {}
    for r in results:
        by_file.setdefault(r["file_name"], []).append(r)
    reference = sorted(r["bbox"] for r in by_file["upright.png"] if r["score"] > 0.9)
    assert len(reference) >= 3
    for name in ("turned6.jpg", "turned3.jpg"):  # the same objects at the same places (JPEG moves them a little)
        boxes = sorted(r["bbox"] for r in by_file[name] if r["score"] > 0.9)
        assert len(boxes) == len(reference)
        assert np.abs(np.array(boxes) - np.array(reference)).max() < 3, name
        assert all(r["segmentation"]["size"] == [128, 192] for r in by_file[name])


def test_files_it_cannot_read_are_skipped_and_named(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(render_sample(1, 0).image).save(folder / "good.jpg")
    Image.fromarray(render_sample(1, 1).image).save(folder / "good.png")
    data = (folder / "good.jpg").read_bytes()
    (folder / "broken.jpg").write_bytes(data[:len(data) // 2])  # a truncated JPEG
    (folder / "._good.jpg").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (folder / "IMG_0001.HEIC").write_bytes(b"not read")
    (folder / "IMG_0002.heic").write_bytes(b"not read")
    (folder / "notes.txt").write_text("not an image")
    code, out, err = run(capsys, "--images", str(folder), "--out", str(tmp_path / "out"))
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert len(lines) == 3, out
    assert lines[0].startswith("skipped 2 .heic file(s) (IMG_0001.HEIC, IMG_0002.heic): PIL cannot read HEIC")
    assert "convert them to JPEG" in lines[0]
    assert lines[1].startswith("skipped broken.jpg: cannot read it (OSError: image file is truncated")
    assert lines[2].startswith("2 image(s) read, 3 skipped; ")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.jpg.png", "good.png.png", "results.json"]
    assert {r["file_name"] for r in json.loads((tmp_path / "out" / "results.json").read_text())} <= {"good.jpg",
                                                                                                       "good.png"}


def test_it_fails_only_when_nothing_could_be_read(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(render_sample(1, 0).image).save(folder / "a.jpg")
    data = (folder / "a.jpg").read_bytes()
    (folder / "a.jpg").write_bytes(data[:len(data) // 3])
    (folder / "b.heif").write_bytes(b"not read")
    code, out, err = run(capsys, "--images", str(folder), "--out", str(tmp_path / "out"))
    assert code == 1 and err.count("\n") == 1 and "no image could be read (2 skipped, named above)" in err
    assert "skipped a.jpg: cannot read it" in out and "skipped 1 .heif file(s) (b.heif)" in out
    assert not (tmp_path / "out" / "results.json").exists()
    (folder / "a.jpg").unlink()
    (folder / "b.heif").unlink()
    code, _, err = run(capsys, "--images", str(folder), "--out", str(tmp_path / "out"))
    assert code == 1 and "no images (files ending in" in err


@pytest.fixture(scope="module")
def shapes_val(tmp_path_factory):
    return shapes_split("predict_val", num_images=8, seed=5, root=tmp_path_factory.mktemp("d") / "val",
                        progress=False)


def test_coco_results_carry_the_files_ids_and_cocoeval_on_them_equals_evaluate(shapes_val, tmp_path, capsys):
    images = shapes_val.parent / "images"
    coco = json.loads(shapes_val.read_text())
    for im in coco["images"]:  # ids that are not 1, 2, ... in file-name order
        im["id"] += 100
    for ann in coco["annotations"]:
        ann["image_id"] += 100
    ann_file = tmp_path / "val.json"
    ann_file.write_text(json.dumps({**coco, "info": {"image_root": str(images)}}))
    extra = tmp_path / "extra_images"
    extra.mkdir()
    for p in images.iterdir():
        (extra / p.name).write_bytes(p.read_bytes())
    Image.fromarray(render_sample(9, 0).image).save(extra / "zz_not_in_the_file.png")
    code, out, _ = run(capsys, "--coco", str(ann_file), "--images", str(extra), "--out", str(tmp_path / "out"))
    assert code == 0
    assert "skipped 1 image(s) that" in out and "does not list (zz_not_in_the_file.png)" in out
    assert "8 image(s) read, 1 skipped" in out
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    ids = {im["file_name"]: im["id"] for im in coco["images"]}
    assert all(r["image_id"] == ids[r["file_name"]] for r in results)
    scores = [r["score"] for r in results]
    assert min(scores) < 0.5 <= max(scores) and min(scores) >= 0.05  # the model's own threshold, not 0.5
    drawn = int(out.split("; ")[1].split(" detection")[0])
    assert drawn == sum(s >= 0.5 for s in scores) < len(results)  # the overlays keep 0.5

    model = load_course_model()
    report = evaluate(model, CocoInstanceDataset(images, ann_file, get_transform(train=False)), "cpu",
                      progress=False)
    gt = load_coco(ann_file)
    for iou_type in ("bbox", "segm"):
        stats = coco_eval(gt, results, iou_type).stats
        assert round(float(stats[0]), 4) == round(report[iou_type]["AP"], 4)
        assert round(float(stats[1]), 4) == round(report[iou_type]["AP50"], 4)

    # --images defaults to the file's image folder; the README's folder-only run has ids 1, 2, ...
    code, out, _ = run(capsys, "--coco", str(ann_file), "--out", str(tmp_path / "out2"))
    assert code == 0 and "8 image(s) read, 0 skipped" in out


def test_coco_files_that_do_not_fit_are_refused_or_named(shapes_val, tmp_path, capsys):
    images = shapes_val.parent / "images"
    coco = json.loads(shapes_val.read_text())
    coco["images"][0]["width"], coco["images"][0]["height"] = 100, 128
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(coco))
    code, out, _ = run(capsys, "--coco", str(odd), "--images", str(images), "--out", str(tmp_path / "out"))
    name = coco["images"][0]["file_name"]
    assert code == 0 and f"skipped {name}: 128x128 upright but 100x128 in {odd}" in out
    # A phone photo whose file records its stored (sideways) size: named, with the reason.
    photos = tmp_path / "photos"
    photos.mkdir()
    save_turned(upright_picture(), photos / "IMG_0001.jpg", 6)
    turned = {**coco, "images": [{"id": 1, "file_name": "IMG_0001.jpg", "width": 128, "height": 192}],
              "annotations": []}
    odd.write_text(json.dumps(turned))
    code, out, err = run(capsys, "--coco", str(odd), "--images", str(photos), "--out", str(tmp_path / "out"))
    assert code == 1 and "no image could be read (1 skipped" in err
    assert "skipped IMG_0001.jpg: 192x128 upright but 128x192 in" in out and "EXIF Orientation 6" in out
    coco["categories"][0]["name"] = "ellipse"
    odd.write_text(json.dumps(coco))
    code, _, err = run(capsys, "--coco", str(odd), "--images", str(images), "--out", str(tmp_path / "out"))
    assert code == 1 and "disagree on their categories" in err and err.count("\n") == 1
    code, _, err = run(capsys, "--coco", str(tmp_path / "missing.json"), "--out", str(tmp_path / "out"))
    assert code == 1 and "missing.json: --coco file not found" in err
    (tmp_path / "bad.json").write_text("{}")
    code, _, err = run(capsys, "--coco", str(tmp_path / "bad.json"), "--images", str(images), "--out", "o")
    assert code == 1 and "not a COCO file with images" in err
    code, _, err = run(capsys, "--out", str(tmp_path / "out"))
    assert code == 1 and "give --images" in err


def test_tiled_prediction_from_the_command_line(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(upright_picture()).save(folder / "wide.png")
    code, out, _ = run(capsys, "--images", str(folder), "--out", str(tmp_path / "out"), "--tile", "96",
                       "--overlap", "32")
    assert code == 0 and "1 image(s) read" in out
    assert Image.open(tmp_path / "out" / "wide.png").size == (192, 128)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results and all(r["segmentation"]["size"] == [128, 192] for r in results)
    for tile, overlap in (("96", "96"), ("96", "0"), ("1", "0")):
        code, _, err = run(capsys, "--images", str(folder), "--out", str(tmp_path / "out"), "--tile", tile,
                           "--overlap", overlap)
        assert code == 1 and "tiles need SIZE >= 2 and 1 <= N < SIZE" in err


def test_the_overlay_of_detections_is_the_overlay_of_their_full_masks():
    """``predict`` draws masks one at a time from ``Detections``: the same picture as the (N, H, W) masks give."""
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 40, 50), generator=g, dtype=torch.uint8)
    masks = torch.rand(4, 1, 40, 50, generator=g) * (torch.rand(4, 1, 40, 50, generator=g) > 0.3)
    masks[:, :, :, :10] = 0  # empty borders and overlapping masks
    output = {"boxes": torch.tensor([[10.0, 2, 30, 20], [12, 10, 40, 39], [20, 0, 49, 15], [11, 11, 14, 14]]),
              "labels": torch.tensor([1, 2, 1, 3]), "scores": torch.tensor([0.9, 0.8, 0.7, 0.6]), "masks": masks}
    found = Detections.from_output(output, (40, 50))
    for classes in (["bg", "a", "b", "c"], ["bg", "a"]):  # coloured by class, and by instance
        assert torch.equal(overlay(image, found, classes), overlay(image, output, classes))
        assert torch.equal(overlay(image, found, classes),
                           draw_instances(image, output["boxes"], output["labels"], masks[:, 0] > 0.5, classes,
                                          output["scores"], alpha=0.5, upscale=1))
    assert not torch.equal(overlay(image, found, classes), overlay(image, found.select(torch.tensor([0, 1, 2])),
                                                                   classes))


def test_help_explains_the_two_thresholds(capsys):
    with pytest.raises(SystemExit):
        cli(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--coco VAL.json" in text and "lowers AP" in text and "--tile SIZE" in text
