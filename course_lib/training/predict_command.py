"""``./course predict``: a folder of images -> one overlay PNG per image (masks, boxes, class and score)
and ``results.json`` (COCO results: ``image_id``, ``category_id``, ``bbox``, RLE ``segmentation``,
``score``, plus ``file_name``). Taught in: 00_overview (reading a model's output)

    ./course predict --model runs/mine/model.pt --images new_photos/ --out runs/mine/predictions
    ./course predict --model runs/mine/model.pt --coco my_data/annotations_val.json --out runs/mine/val_predictions
    ./course predict --model runs/mine/model.pt --images big_scans/ --out runs/mine/tiled --tile 512 --overlap 64

Images are read upright (a photo's EXIF Orientation applied, as annotation tools show it), so overlays,
boxes and masks are in the frame you see. Overlays show the detections with ``score >= --score-threshold``
(0.5). Without ``--coco``, results.json holds the same detections, with image ids 1, 2, ... in file-name
order. With ``--coco VAL.json`` it is meant for COCOeval: each image gets the id that file gives its
``file_name`` (images of the folder that are not in it are named and skipped), and results.json keeps every
detection the model returns (score at or above its own threshold, 0.05 for the course model), not only
those of the overlays. AP averages precision over the whole recall range: cutting the detections at 0.5
ends the precision-recall curve early and lowers AP (on one data set, segm AP 0.197 at 0.5 instead of
0.298), so COCO results keep the low scores and a picture keeps the confident ones.

A file that cannot be read (truncated, not an image) is skipped with one line naming it; macOS ``._*``
files are ignored; photo formats PIL cannot read (HEIC, raw) are named with what to do. The command fails
only when no image could be read. ``--tile SIZE`` runs the model on SIZE x SIZE tiles sharing ``--overlap``
pixels and joins objects cut by tile edges (``training.tiling``): for images much larger than the model's
input size. Detections are filtered by score before their masks are pasted at full size, and results.json
pastes one mask at a time (``predict.detect``): a 12-megapixel photo's detections cost 12 MB each, not 48.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path, PurePosixPath

import torch
from PIL import Image, features

from course_lib.data.coco_build import IMAGE_EXTENSIONS
from course_lib.data.coco_meta import image_root_of, read_coco_json
from course_lib.data.image_files import orientation, read_rgb, stored_size_reason
from course_lib.training.data_checks import check_model_categories
from course_lib.training.evaluation import to_coco_results
from course_lib.training.model_file import load_model_file
from course_lib.training.overlays import draw_instances
from course_lib.training.predict import Detections, binarize_masks, detect, model_score_threshold
from course_lib.training.tiling import detect_tiled
from course_lib.utils.device import get_device
from course_lib.utils.errors import CommandError
from course_lib.utils.files import write_atomic, write_json_atomic
from course_lib.utils.ui import progress_bar

# Photo formats a folder of photos often holds that the course does not read, and what to do about them.
_CONVERT = "convert them to JPEG or PNG"
NOT_READ = {
    ".heic": "PIL cannot read HEIC (the iPhone's default format); convert them to JPEG, e.g. on macOS "
             "`sips -s format jpeg IMG.HEIC --out IMG.jpg`, on Linux `heif-convert IMG.HEIC IMG.jpg`, or set "
             "the iPhone's Camera > Formats to Most Compatible",
    ".heif": "PIL cannot read HEIF; convert them to JPEG (macOS: `sips -s format jpeg IMG.HEIF --out IMG.jpg`)",
    ".avif": f"AVIF is not among the course's image types; {_CONVERT}",
    ".gif": f"GIF is not among the course's image types; {_CONVERT}",
    **{ext: "raw camera files are not images PIL reads; export them as JPEG from your photo software"
       for ext in (".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf")},
}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="course predict", description=__doc__.split("\n\n")[0],
                                epilog="Images are read upright (EXIF Orientation applied). Unreadable files are "
                                       "skipped with one line each; the command fails only when none can be read.")
    p.add_argument("--model", required=True, help="a model file (finetune's model.pt, data/course_maskrcnn.pt)")
    p.add_argument("--images", help="a folder of images (default with --coco: that file's image folder)")
    p.add_argument("--out", required=True, help="folder for <stem>.png overlays and results.json")
    p.add_argument("--score-threshold", type=float, default=0.5,
                   help="detections drawn on the overlays (and, without --coco, written to results.json) have at "
                        "least this score (default 0.5)")
    p.add_argument("--coco", metavar="VAL.json",
                   help="a COCO file whose image ids results.json uses (matched by file_name), for COCOeval; "
                        "results.json then keeps every detection the model returns (its own score threshold, "
                        "0.05 for the course model): cutting at 0.5 ends the precision-recall curve early and "
                        "lowers AP. The overlays keep --score-threshold")
    p.add_argument("--tile", type=int, metavar="SIZE",
                   help="predict on SIZE x SIZE tiles and join the objects their edges cut (for images much larger "
                        "than the model's input size)")
    p.add_argument("--overlap", type=int, metavar="N",
                   help="pixels neighbouring tiles share (default SIZE // 4; about the size of an object)")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def overlay(image: torch.Tensor, output: dict | Detections, classes: list[str]) -> torch.Tensor:
    """(3, H, W) uint8 image with the detections' masks (half transparent), boxes and ``class score``, at the
    image's own size (``draw_instances``, as the notebooks draw them); ``output`` is a model's output dict or
    ``Detections`` (whose masks are made and drawn one at a time)."""
    if isinstance(output, Detections):
        masks = output.mask_sequence() if output.crops is not None else None
        output = {"boxes": output.boxes, "labels": output.labels, "scores": output.scores}
    else:
        masks = binarize_masks(output["masks"]) if "masks" in output else None
    return draw_instances(image, output["boxes"], output["labels"], masks, classes, output["scores"], alpha=0.5,
                          upscale=1)


def coco_results(found: Detections, image_id: int, file_name: str) -> list[dict]:
    """COCO result dicts of ``found`` (``evaluation.to_coco_results``' format), one full-size mask at a time."""
    results = []
    for i in range(len(found)):
        one = {"boxes": found.boxes[i:i + 1], "labels": found.labels[i:i + 1], "scores": found.scores[i:i + 1]}
        if found.crops is not None:
            one["masks"] = found.mask(i)[None, None]
        results += [{**r, "file_name": file_name} for r in to_coco_results({image_id: one})]
    return results


def _names(paths: list[Path], limit: int = 3) -> str:
    shown = ", ".join(p.name for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def list_folder(folder: Path) -> tuple[list[Path], dict[str, list[Path]]]:
    """``(images the course reads, {extension: files of a photo format it does not read})``, sorted by name.
    macOS ``._*`` files (resource forks copied beside the photos) and other files are left out."""
    readable = {e for e in IMAGE_EXTENSIONS if e != ".webp" or features.check("webp")}
    not_read = {**NOT_READ, **({} if ".webp" in readable else
                               {".webp": f"this PIL was built without WebP support; {_CONVERT}"})}
    images, unsupported = [], {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("._"):
            continue
        ext = p.suffix.lower()
        if ext in readable:
            images.append(p)
        elif ext in not_read:
            unsupported.setdefault(ext, []).append(p)
    return images, unsupported


def coco_images(ann_file: Path) -> dict[str, dict]:
    """``{file_name: image entry}`` of a COCO file, each entry also under its base name when that is unique."""
    try:
        data = read_coco_json(ann_file)
        entries = [{"id": int(im["id"]), "file_name": str(im["file_name"]), "width": int(im["width"]),
                    "height": int(im["height"])} for im in data["images"]]
    except FileNotFoundError:
        raise CommandError(f"{ann_file}: --coco file not found") from None
    except (ValueError, KeyError, TypeError) as e:
        raise CommandError(f"{ann_file}: not a COCO file with images (id, file_name, width, height): "
                           f"{type(e).__name__}: {e}") from None
    by_name = {e["file_name"]: e for e in entries}
    base_names: dict[str, list[dict]] = {}
    for e in entries:
        base_names.setdefault(PurePosixPath(e["file_name"]).name, []).append(e)
    return {**{b: es[0] for b, es in base_names.items() if len(es) == 1}, **by_name}


def _size_problem(path: Path, rgb_shape, entry: dict, ann_file: Path) -> str | None:
    """``None``, or the line saying why an image's upright size is not the one ``ann_file`` records."""
    h, w = rgb_shape[:2]
    if (w, h) == (entry["width"], entry["height"]):
        return None
    with Image.open(path) as im:
        tag = orientation(im)
    why = stored_size_reason((entry["width"], entry["height"]), (w, h), tag)
    return (f"skipped {path.name}: {w}x{h} upright but {entry['width']}x{entry['height']} in {ann_file}"
            + (f" ({why}; build the file again with ./course coco build)" if why else
               "; its results would not line up with its annotations"))


def main(argv=None) -> int:
    args = parse_args(argv)
    ann_file = Path(args.coco) if args.coco else None
    if args.images is None and ann_file is None:
        raise CommandError("give --images (a folder of images) or --coco (a COCO file, read from its image folder)")
    if ann_file is not None and not ann_file.is_file():
        raise CommandError(f"{ann_file}: --coco file not found")
    folder, out = Path(args.images) if args.images else image_root_of(ann_file), Path(args.out)
    if not folder.is_dir():
        raise CommandError(f"{folder}: not a folder of images")
    overlap = args.overlap if args.overlap is not None else max(1, (args.tile or 0) // 4)
    if args.tile is not None and (args.tile < 2 or not 1 <= overlap < args.tile):
        raise CommandError(f"--tile {args.tile} --overlap {overlap}: tiles need SIZE >= 2 and 1 <= N < SIZE")
    paths, unsupported = list_folder(folder)
    if not paths and not unsupported:
        raise CommandError(f"{folder}: no images (files ending in {', '.join(IMAGE_EXTENSIONS)})")
    by_name = coco_images(ann_file) if ann_file else None
    device = get_device(args.device)
    model, classes, _ = load_model_file(args.model, device)
    if ann_file is not None:
        check_model_categories(classes, ann_file)

    skipped = []
    for ext, files in unsupported.items():
        print(f"skipped {len(files)} {ext} file(s) ({_names(files)}): {NOT_READ.get(ext) or _CONVERT}")
        skipped += files
    image_ids = {p: i for i, p in enumerate(paths, start=1)}
    if by_name is not None:
        image_ids = {p: by_name[p.name]["id"] for p in paths if p.name in by_name}
        absent = [p for p in paths if p not in image_ids]
        if absent:
            print(f"skipped {len(absent)} image(s) that {ann_file} does not list ({_names(absent)}): "
                  "results need its image ids")
            skipped += absent
        found_ids = set(image_ids.values())
        missing = sorted({e["file_name"] for e in by_name.values() if e["id"] not in found_ids})
        if missing:
            print(f"note: {len(missing)} image(s) of {ann_file} are not in {folder} ({', '.join(missing[:3])}"
                  f"{' ...' if len(missing) > 3 else ''}): COCOeval counts their objects as missed")
    # COCO results keep everything the model returns; without --coco, results.json shows what the overlays show.
    results_threshold = model_score_threshold(model) if ann_file else args.score_threshold
    run_threshold = min(args.score_threshold, results_threshold)
    stems = Counter(p.stem for p in image_ids)  # two photos a.jpg and a.png: overlays named a.jpg.png, a.png.png
    results, drawn, read = [], 0, 0
    bar = progress_bar(list(image_ids), desc="predict", enabled=not args.no_progress)
    for path in bar:
        try:
            rgb = torch.from_numpy(read_rgb(path)).permute(2, 0, 1)
        except Exception as e:  # noqa: BLE001 (PIL raises OSError, SyntaxError, ValueError, ... for a bad file)
            bar.write(f"skipped {path.name}: cannot read it ({type(e).__name__}: {e})")
            skipped.append(path)
            continue
        if by_name is not None:
            problem = _size_problem(path, rgb.shape[1:], by_name[path.name], ann_file)
            if problem:
                bar.write(problem)
                skipped.append(path)
                continue
        if args.tile:
            found = detect_tiled(model, rgb, tile=args.tile, overlap=overlap, device=device,
                                 score_threshold=run_threshold)
        else:
            found = detect(model, [rgb.float() / 255], device, run_threshold)[0]
        results += coco_results(found.above(results_threshold), image_ids[path], path.name)
        shown = found.above(args.score_threshold)
        drawn += len(shown)
        picture = overlay(rgb, shown, classes).permute(1, 2, 0).numpy()
        name = f"{path.stem}.png" if stems[path.stem] == 1 else f"{path.name}.png"
        write_atomic(out / name, lambda f, a=picture: Image.fromarray(a).save(f, format="PNG"))
        read += 1
    if read == 0:
        raise CommandError(f"{folder}: no image could be read ({len(skipped)} skipped, named above)")
    write_json_atomic(results, out / "results.json")
    kept = (f"score >= {results_threshold:g}, the model's own threshold; image ids of {ann_file}" if ann_file
            else f"score >= {args.score_threshold:g}")
    print(f"{read} image(s) read, {len(skipped)} skipped; {drawn} detection(s) with score >= "
          f"{args.score_threshold:g} drawn in {read} overlay(s) in {out}; {len(results)} detection(s) in "
          f"{out / 'results.json'} ({kept})")
    return 0
