"""``./course predict``: a folder of images -> one overlay PNG per image (masks, boxes, class and score)
and ``results.json`` (COCO results: ``image_id``, ``category_id``, ``bbox``, RLE ``segmentation``,
``score``, plus ``file_name``). Taught in: 00_overview (reading a model's output)

    ./course predict --model runs/mine/model.pt --images new_photos/ --out runs/mine/predictions

Image ids are 1, 2, ... in file-name order. Only detections with ``score >= --score-threshold`` are
drawn and written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from course_lib.data.coco_build import IMAGE_EXTENSIONS
from course_lib.data.coco_dataset import to_rgb_uint8
from course_lib.training.evaluation import to_coco_results
from course_lib.training.model_file import load_model_file
from course_lib.training.overlays import draw_instances
from course_lib.training.predict import binarize_masks, filter_detections, run_inference
from course_lib.utils.device import get_device
from course_lib.utils.errors import CommandError
from course_lib.utils.files import write_atomic, write_json_atomic
from course_lib.utils.ui import progress_bar


def parse_args(argv):
    p = argparse.ArgumentParser(prog="course predict", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a model file (finetune's model.pt, data/course_maskrcnn.pt)")
    p.add_argument("--images", required=True, help="a folder of images")
    p.add_argument("--out", required=True, help="folder for <stem>.png overlays and results.json")
    p.add_argument("--score-threshold", type=float, default=0.5)
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def overlay(image: torch.Tensor, output: dict, classes: list[str]) -> torch.Tensor:
    """(3, H, W) uint8 image with the output's masks (half transparent), boxes and ``class score``, at the
    image's own size (``draw_instances``, as the notebooks draw them)."""
    masks = binarize_masks(output["masks"]) if "masks" in output else None
    return draw_instances(image, output["boxes"], output["labels"], masks, classes, output["scores"], alpha=0.5,
                          upscale=1)


def main(argv=None) -> int:
    args = parse_args(argv)
    folder, out = Path(args.images), Path(args.out)
    if not folder.is_dir():
        raise CommandError(f"{folder}: not a folder of images")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise CommandError(f"{folder}: no images (files ending in {', '.join(IMAGE_EXTENSIONS)})")
    device = get_device(args.device)
    model, classes, _ = load_model_file(args.model, device)
    results = []
    for image_id, path in enumerate(progress_bar(paths, desc="predict", enabled=not args.no_progress), start=1):
        try:
            with Image.open(path) as im:
                rgb = torch.from_numpy(to_rgb_uint8(im)).permute(2, 0, 1)
        except Exception as e:  # noqa: BLE001
            raise CommandError(f"{path}: cannot read the image ({type(e).__name__}: {e})") from None
        output = filter_detections(run_inference(model, [rgb.float() / 255], device)[0], args.score_threshold)
        for r in to_coco_results({image_id: output}):
            results.append({**r, "file_name": path.name})
        picture = overlay(rgb, output, classes).permute(1, 2, 0).numpy()
        write_atomic(out / f"{path.stem}.png", lambda f, a=picture: Image.fromarray(a).save(f, format="PNG"))
    write_json_atomic(results, out / "results.json")
    print(f"{len(results)} detection(s) at score >= {args.score_threshold} in {len(paths)} image(s); "
          f"wrote {len(paths)} overlay(s) and {out / 'results.json'}")
    return 0
