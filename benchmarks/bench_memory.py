"""Benchmark: peak memory (resident set size) of ``./course predict``, ``evaluate`` and ``finetune`` on
12-megapixel photos, with masks pasted the old way (every detection at full size, as float, before any score
filter) and the new way (``training.predict.detect``: the score filter first, bool masks, one at a time for
results.json).

Each measurement runs in a fresh Python process that reports its own peak RSS at the end
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``: torch's allocations are invisible to ``tracemalloc``). Goals
(issue 25): predict under 2 GB, finetune at its defaults under 3 GB. ``baseline`` (imports, the R50 model and the
photo read, nothing run) is the floor every other figure includes.

The data, written once into ``--work`` (default: a temporary folder): ``photo/IMG_0001.jpg``, a synthetic
4032 x 3024 photo stored sideways with EXIF Orientation 6 as a phone stores a portrait shot; 8 training and 2
validation photos (4032 x 3024, 5 annotated blobs each) with their COCO files; and torchvision's
``maskrcnn_resnet50_fpn`` built offline (``weights=None, weights_backbone=None``, 2 classes) saved as model files.
A random model's class scores say nothing, so the classifier's weights are zeroed and its bias set by hand:
every proposal gets the same score, 0.2 in ``r50_low.pt`` (all detections between 0.05 and 0.5: what
``--coco`` writes and the old code pasted before dropping) and 0.98 in ``r50_sure.pt`` (all at least 0.5: the
worst case for an overlay). Either gives the most detections the model keeps, 100 per image.

Run:  python benchmarks/bench_memory.py [--work DIR] [--only NAME ...] [--skip-old] [--list]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve()
SIZE = (4032, 3024)  # width, height as stored (a landscape sensor)
GOALS_MB = {"predict": 2048, "finetune": 3072}

# name -> (what it runs, goal key or None)
MEASUREMENTS = {
    "baseline": ("imports, the R50 model loaded and the photo read; nothing run", None),
    "predict-old": ("the old predict (before 0c28cbb) at 0.5: model(image) pastes every mask as float, then the filter (r50_low)",
                    "predict"),
    "predict": ("./course predict at 0.5 (r50_low: the RoI heads drop every detection)", "predict"),
    "predict-sure": ("./course predict at 0.5, every detection >= 0.5, all drawn (r50_sure)", "predict"),
    "predict-t0-old": ("the old predict (before 0c28cbb) --score-threshold 0: every detection pasted, written and drawn (r50_low)",
                       "predict"),
    "predict-t0": ("./course predict --score-threshold 0: every detection written and drawn (r50_low)", "predict"),
    "predict-coco": ("./course predict --coco: every detection >= 0.05 to results.json, none drawn (r50_low)",
                     "predict"),
    "predict-tiled": ("./course predict --coco --tile 1024 --overlap 128: 20 tiles of detections joined (r50_low)",
                      "predict"),
    "evaluate-old": ("./course evaluate on 2 validation photos with the old predict (before 0c28cbb) (r50_low)", None),
    "evaluate": ("./course evaluate on 2 validation photos (r50_low)", None),
    "finetune-old": ("./course finetune at its defaults, 1 epoch (2 iterations of 4 photos), the old predict (before 0c28cbb) in "
                     "its final evaluation", "finetune"),
    "finetune": ("./course finetune at its defaults, 1 epoch (2 iterations of 4 photos) and its evaluation",
                 "finetune"),
}


# ------------------------------------------------------------------------------------------------ data

def synthetic_photo(rng: np.random.Generator, blobs: int = 12) -> tuple[Image.Image, list[np.ndarray]]:
    """A 4032 x 3024 RGB picture with smooth shading, sensor-like noise and ``blobs`` coloured ellipses and
    rectangles; returns it and the blobs' masks (H, W) bool."""
    w, h = SIZE
    shading = Image.fromarray(rng.integers(40, 200, (6, 8, 3), dtype=np.uint8)).resize(SIZE, Image.BICUBIC)
    pixels = np.asarray(shading, dtype=np.int16)
    pixels = pixels + rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    del pixels
    pen = ImageDraw.Draw(picture)
    masks = []
    for k in range(blobs):
        x0, y0 = int(rng.integers(0, w - 900)), int(rng.integers(0, h - 900))
        x1, y1 = x0 + int(rng.integers(250, 900)), y0 + int(rng.integers(250, 900))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        mask = Image.new("1", SIZE)
        for draw in (pen, ImageDraw.Draw(mask)):
            shape = draw.ellipse if k % 2 else draw.rectangle
            shape((x0, y0, x1, y1), fill=fill if draw is pen else 1)
        masks.append(np.asarray(mask, dtype=bool))
    return picture, masks


def write_data(work: Path) -> None:
    """The photos, COCO files and model files of the benchmark (skipped when ``work/ready`` exists)."""
    if (work / "ready").exists():
        return
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    from course_lib.data.coco_build import masks_to_coco
    from course_lib.detection.model_file import R50_ARCH, save_model_file
    from course_lib.utils.files import write_json_atomic

    rng = np.random.default_rng(0)
    (work / "photo").mkdir(parents=True, exist_ok=True)
    picture, _ = synthetic_photo(rng)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned clockwise: the upright photo is 3024 x 4032
    picture.save(work / "photo" / "IMG_0001.jpg", quality=90, exif=exif)
    categories = [{"id": 1, "name": "blob"}]
    (work / "coco").mkdir(exist_ok=True)
    write_json_atomic({"images": [{"id": 1, "file_name": "IMG_0001.jpg", "width": SIZE[1], "height": SIZE[0]}],
                       "annotations": [], "categories": categories}, work / "coco" / "photo.json")
    for split, n in (("train", 8), ("val", 2)):
        (work / split).mkdir(exist_ok=True)
        images, annotations = [], []
        for i in range(1, n + 1):
            picture, masks = synthetic_photo(rng, blobs=5)
            name = f"{split}_{i:02d}.jpg"
            picture.save(work / split / name, quality=90)
            images.append({"id": i, "file_name": name, "width": SIZE[0], "height": SIZE[1]})
            annotations += masks_to_coco(masks, 1, image_id=i, first_id=len(annotations) + 1)
            print(f"  wrote {split}/{name}", flush=True)
        write_json_atomic({"info": {"image_root": f"../{split}"}, "images": images, "annotations": annotations,
                           "categories": categories}, work / "coco" / f"{split}.json")
    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2).eval()
    config = {"arch": R50_ARCH, "num_classes": 2, "classes": ["__background__", "blob"]}
    for name, score in (("r50_low", 0.2), ("r50_sure", 0.98)):
        cls = model.roi_heads.box_predictor.cls_score
        with torch.no_grad():  # every proposal scores `score` for class 1: softmax([0, b]) = sigmoid(b)
            cls.weight.zero_()
            cls.bias.copy_(torch.tensor([0.0, math.log(score / (1 - score))]))
        save_model_file(model, work / f"{name}.pt", config=config)
    (work / "ready").write_text("1")


# ------------------------------------------------------------------------------------ the old pasting

def old_predict(model, dataset, device, batch_size: int = 8, progress: bool = True) -> dict[int, dict]:
    """``training.predict.predict`` as it was before 0c28cbb: ``model(images)`` (float masks at full size), kept whole."""
    import torch

    from course_lib.data.coco_dataset import collate_fn
    from course_lib.training.predict import run_inference

    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    outputs = {}
    for images, targets in loader:
        for t, out in zip(targets, run_inference(model, images, device), strict=True):
            outputs[int(t["image_id"])] = out
    return outputs


def old_predict_command(model_file: Path, photo: Path, out: Path, score_threshold: float) -> int:
    """the old ``predict`` command (before 0c28cbb) on one photo: the model's output with every mask pasted as float, filtered at
    ``score_threshold``, turned into COCO results and drawn. Returns the number of detections kept."""
    import torch

    from course_lib.data.image_files import read_rgb
    from course_lib.training.evaluation import to_coco_results
    from course_lib.training.model_file import load_model_file
    from course_lib.training.predict import filter_detections, run_inference
    from course_lib.training.predict_command import overlay

    model, classes, _ = load_model_file(model_file)
    rgb = torch.from_numpy(read_rgb(photo)).permute(2, 0, 1)
    output = filter_detections(run_inference(model, [rgb.float() / 255], "cpu")[0], score_threshold)
    to_coco_results({1: output})
    picture = overlay(rgb, output, classes).permute(1, 2, 0).numpy()
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(out / "IMG_0001.png")
    return len(output["scores"])


# ---------------------------------------------------------------------------------------- one child

def child(name: str, work: Path, detections: int) -> dict:
    """Run measurement ``name`` in this process; return what it found (detections, seconds)."""
    import course_lib.training.evaluation as evaluation
    from course_lib.course.cli import main as cli

    photo_dir, out = work / "photo", work / "out" / name
    info: dict = {}
    if detections != 100:  # every R50 built from a model file keeps at most `detections` per image
        import torchvision.models.detection as tv_detection

        build = tv_detection.maskrcnn_resnet50_fpn
        tv_detection.maskrcnn_resnet50_fpn = lambda **kw: build(**kw, box_detections_per_img=detections)
    if name == "baseline":
        from course_lib.data.image_files import read_rgb
        from course_lib.training.model_file import load_model_file

        load_model_file(work / "r50_low.pt")
        read_rgb(photo_dir / "IMG_0001.jpg")
    elif name.endswith("-old") and name.startswith("predict"):
        threshold = {"predict-old": 0.5, "predict-t0-old": 0.0}[name]
        info["results"] = old_predict_command(work / "r50_low.pt", photo_dir / "IMG_0001.jpg", out, threshold)
    elif name.startswith("predict"):
        model = "r50_sure.pt" if name == "predict-sure" else "r50_low.pt"
        argv = ["predict", "--model", str(work / model), "--images", str(photo_dir), "--out", str(out),
                "--no-progress", "--device", "cpu"]
        coco = ["--coco", str(work / "coco" / "photo.json")]
        argv += {"predict-coco": coco, "predict-t0": ["--score-threshold", "0"],
                 "predict-tiled": [*coco, "--tile", "1024", "--overlap", "128"]}.get(name, [])
        assert cli(argv) == 0
        info["results"] = len(json.loads((out / "results.json").read_text()))
    else:
        if name.endswith("-old"):
            evaluation.predict = old_predict  # evaluate (and finetune's final evaluation) paste the old way
        if name.startswith("evaluate"):
            assert cli(["evaluate", "--model", str(work / "r50_low.pt"), "--data", str(work / "coco" / "val.json"),
                        "--no-progress", "--device", "cpu"]) == 0
        else:
            assert cli(["finetune", "--data-train", str(work / "coco" / "train.json"),
                        "--data-val", str(work / "coco" / "val.json"), "--epochs", "1", "--out", str(out),
                        "--fresh", "--no-progress", "--device", "cpu"]) == 0
    return info


def measure(name: str, work: Path, detections: int) -> dict:
    """Run ``name`` in a fresh interpreter; its peak RSS in MB, seconds and findings."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE), "--child", name, "--work", str(work),
                           "--detections", str(detections)],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{\"peak_mb\"")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}", "seconds": seconds}
    return {**json.loads(lines[-1]), "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", help="folder for the photos, COCO files and model files (kept; default: temporary)")
    p.add_argument("--only", nargs="*", choices=list(MEASUREMENTS), help="run these measurements only")
    p.add_argument("--skip-old", action="store_true", help="skip the old-way measurements (they need up to ~10 GB)")
    p.add_argument("--detections", type=int, default=100,
                   help="the most detections the R50 keeps per image (torchvision's default: 100)")
    p.add_argument("--list", action="store_true", help="list the measurements and stop")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.list:
        for name, (what, goal) in MEASUREMENTS.items():
            print(f"{name:18s} {what}" + (f" (goal < {GOALS_MB[goal]} MB)" if goal else ""))
        return
    if args.child:
        info = child(args.child, Path(args.work), args.detections)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
        print(json.dumps({"peak_mb": round(peak), **info}))
        return
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        print(f"data in {work}; R50 keeps at most {args.detections} detections per image", flush=True)
        write_data(work)
        names = args.only or [n for n in MEASUREMENTS if not (args.skip_old and n.endswith("-old"))]
        print(f"{'measurement':18s} {'peak RSS':>10s} {'goal':>8s} {'seconds':>8s}  found", flush=True)
        for name in names:
            r = measure(name, work, args.detections)
            goal = MEASUREMENTS[name][1]
            if "error" in r:
                print(f"{name:18s} {'failed':>10s} {'':8s} {r['seconds']:8.0f}  {r['error']}", flush=True)
                continue
            found = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("peak_mb", "seconds"))
            verdict = "" if goal is None else ("ok" if r["peak_mb"] < GOALS_MB[goal] else "OVER")
            print(f"{name:18s} {r['peak_mb']:7d} MB {verdict:>8s} {r['seconds']:8.0f}  {found}", flush=True)


if __name__ == "__main__":
    main()
