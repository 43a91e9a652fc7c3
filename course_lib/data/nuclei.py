"""A real, human-annotated instance data set that works offline: 125 nuclei from the 2018 Data Science Bowl.
Taught in: 08_real_images.

The ``stardist`` wheel (pinned to 0.9.2 in ``pyproject.toml``) ships ``stardist/data/images/img2d.tif``,
a 512x512 fluorescence image, and ``mask2d.tif``, its hand-drawn instance labels (0 = background,
k = nucleus k). The course reads the two files from the installed package and never imports
``stardist`` (its own imports pull in numba and csbdeep): ``importlib.metadata`` finds them. Source and
licence: ``data/NUCLEI.md``. The course commits no copy of them.

From the two arrays to COCO files:

1. ``stretch_to_uint8``: the 16-bit grey image -> 8-bit RGB with a fixed percentile stretch.
2. ``split_labels``: a vertical line at ``x = VAL_X0`` splits the image. Validation is the region right of
   the line; training the region left of it. Nuclei that cross the line are erased from the training side,
   so no nucleus the model is scored on was seen, even in part, during training.
3. ``tile_labels``: each region is cut into ``TILE`` x ``TILE`` tiles (the course model's input size);
   training tiles may overlap (``stride`` < ``TILE``), validation tiles never do. A nucleus cut by a
   tile edge keeps its piece in that tile if the piece has at least ``MIN_AREA`` pixels; smaller slivers
   are set to background (too few pixels to draw or to learn from).
4. ``write_nuclei_folders`` writes every tile as ``images/<name>.png`` plus an instance-id mask
   ``masks/<name>.png`` with its sidecar ``masks/<name>.json``: the same layout as a learner's own folder,
   which ``build_coco_dataset`` reads.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

from course_lib.utils.errors import CommandError

STARDIST_VERSION = "0.9.2"
PIP_COMMAND = f'pip install "stardist=={STARDIST_VERSION}"'
FILES = ("stardist/data/images/img2d.tif", "stardist/data/images/mask2d.tif")
TILE = 128  # the course model's input size
VAL_X0 = 384  # validation = x >= 384 (the right-hand column of 128-px tiles), training = x < 384
MIN_AREA = 20  # a nucleus piece cut by a tile edge needs this many pixels to stay an instance
CATEGORY = "nucleus"
SOURCE = ("2018 Data Science Bowl stage 1 training image (BBBC038v1, Caicedo et al., Nature Methods 16, 2019), "
          f"as shipped in the stardist {STARDIST_VERSION} wheel: stardist/data/images/img2d.tif, mask2d.tif")


def locate_nuclei_files() -> tuple[Path, Path]:
    """``(image, mask)`` paths inside the installed stardist package, found without importing it.

    Raises ``CommandError`` naming the pip command when stardist is missing or lacks the files.
    """
    try:
        dist = metadata.distribution("stardist")
    except metadata.PackageNotFoundError:
        raise CommandError(f"the nuclei data come from the stardist package, which is not installed: "
                           f"run {PIP_COMMAND} (or `./course` to reinstall the course's dependencies)") from None
    present = {str(f): f for f in dist.files or ()}
    paths = []
    for name in FILES:
        path = Path(dist.locate_file(present[name])) if name in present else None
        if path is None or not path.is_file():
            raise CommandError(f"stardist {dist.version} has no {name}: the course needs stardist "
                               f"{STARDIST_VERSION}; run {PIP_COMMAND}")
        paths.append(path)
    return paths[0], paths[1]


def load_nuclei() -> tuple[np.ndarray, np.ndarray]:
    """``(image, labels)``: the uint16 (512, 512) fluorescence image and its instance labels (0 = background)."""
    image_path, mask_path = locate_nuclei_files()
    with Image.open(image_path) as im:
        image = np.asarray(im).copy()
    with Image.open(mask_path) as im:
        labels = np.asarray(im).copy()
    if image.shape != labels.shape or image.ndim != 2:
        raise CommandError(f"{image_path} {image.shape} and {mask_path} {labels.shape}: "
                           "expected two 2-D arrays of the same shape")
    return image, labels


def stretch_to_uint8(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """A grey image of any dtype -> (H, W, 3) uint8: the ``low`` and ``high`` percentiles map to 0 and 255.

    Microscopy images use a few hundredths of a 16-bit range; stretching makes them look like the 8-bit
    photos (and shapes) the model was trained on. The grey channel is copied into R, G and B.
    """
    image = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(image, low), np.percentile(image, high)
    scaled = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)
    return np.repeat((scaled * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def split_labels(labels: np.ndarray, val_x0: int = VAL_X0) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` label images: the columns ``x < val_x0`` and ``x >= val_x0``, copies.

    The two are crops of one array side by side, so they share no pixel. A nucleus with pixels on both
    sides of the line keeps its validation part and is erased (set to 0) on the training side.
    """
    train, val = labels[:, :val_x0].copy(), labels[:, val_x0:].copy()
    crossing = np.intersect1d(np.unique(train[train > 0]), np.unique(val[val > 0]))
    train[np.isin(train, crossing)] = 0
    return train, val


def tile_origins(height: int, width: int, tile: int = TILE, stride: int = TILE) -> list[tuple[int, int]]:
    """The ``(y, x)`` top-left corners of the ``tile`` x ``tile`` tiles that fit in an image, ``stride`` apart."""
    if height < tile or width < tile:
        raise ValueError(f"a {height}x{width} region holds no {tile}x{tile} tile")
    return [(y, x) for y in range(0, height - tile + 1, stride) for x in range(0, width - tile + 1, stride)]


def cut_tile(labels: np.ndarray, y: int, x: int, tile: int = TILE, min_area: int = MIN_AREA) -> np.ndarray:
    """The tile at ``(y, x)`` as a uint16 instance-id mask, ids 1, 2, ... in order of the original labels.

    A label with fewer than ``min_area`` pixels inside the tile becomes background.
    """
    crop = labels[y:y + tile, x:x + tile]
    ids, counts = np.unique(crop[crop > 0], return_counts=True)
    out = np.zeros(crop.shape, np.uint16)
    for new_id, old_id in enumerate(ids[counts >= min_area], start=1):
        out[crop == old_id] = new_id
    return out


def tile_labels(labels: np.ndarray, tile: int = TILE, stride: int = TILE,
                min_area: int = MIN_AREA) -> list[tuple[tuple[int, int], np.ndarray]]:
    """Every tile of a label image: ``[((y, x), instance-id mask), ...]`` (see ``cut_tile``)."""
    return [((y, x), cut_tile(labels, y, x, tile, min_area)) for y, x in tile_origins(*labels.shape, tile, stride)]


def _write_png(array: np.ndarray, path: Path) -> None:
    """8-bit masks when the ids fit (smaller files), else 16-bit."""
    if array.ndim == 2 and array.max(initial=0) < 256:
        array = array.astype(np.uint8)
    Image.fromarray(array).save(path)


def write_split(image: np.ndarray, labels: np.ndarray, out_dir: str | Path, x_offset: int = 0,
                stride: int = TILE, tile: int = TILE, min_area: int = MIN_AREA) -> Path:
    """Write the tiles of one region as ``out_dir/images/<name>.png``, ``out_dir/masks/<name>.png`` (ids) and
    ``out_dir/masks/<name>.json`` (``{"1": "nucleus", ...}``).

    ``image`` is the (H, W, 3) uint8 region and ``labels`` its (H, W) labels; names carry the tile's
    position in the whole image (``x_offset`` = where the region starts). The folder is built next to
    ``out_dir`` and moved into place, so a failure leaves no half-written folder. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for (y, x), ids in tile_labels(labels, tile, stride, min_area):
            name = f"nuclei_y{y:03d}_x{x + x_offset:03d}.png"
            _write_png(image[y:y + tile, x:x + tile], tmp / "images" / name)
            _write_png(ids, tmp / "masks" / name)
            # The sidecar names every instance's category. It also says that a small cut piece beside a
            # big nucleus is meant, not compression noise (which build_coco_dataset refuses otherwise).
            sidecar = {str(k): CATEGORY for k in range(1, int(ids.max(initial=0)) + 1)}
            (tmp / "masks" / name).with_suffix(".json").write_text(json.dumps(sidecar))
        shutil.copymode(out_dir.parent, tmp)  # mkdtemp's folder is private (0700): other users must read the data
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out_dir


def write_nuclei_folders(root: str | Path | None = None, train_stride: int = 64, val_x0: int = VAL_X0,
                         min_area: int = MIN_AREA) -> Path:
    """Write ``root/train`` (overlapping tiles, ``x < val_x0``) and ``root/val`` (a grid, ``x >= val_x0``).

    Each holds ``images/`` and ``masks/`` (instance ids, one category), the layout ``build_coco_dataset``
    reads. ``root`` defaults to ``data/generated/nuclei``; the folders are written once and reused while
    their parameters (in ``root/params.json``) stay the same. Returns ``root``.
    """
    from course_lib.utils.paths import GENERATED_DIR

    root = Path(root) if root is not None else GENERATED_DIR / "nuclei"
    params = {"source": SOURCE, "tile": TILE, "train_stride": train_stride, "val_x0": val_x0,
              "min_area": min_area, "version": 1}
    stamp = root / "params.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params and all(
            (root / s / d).is_dir() for s in ("train", "val") for d in ("images", "masks")):
        return root
    image, labels = load_nuclei()
    rgb = stretch_to_uint8(image)
    train, val = split_labels(labels, val_x0)
    write_split(rgb[:, :val_x0], train, root / "train", 0, train_stride, TILE, min_area)
    write_split(rgb[:, val_x0:], val, root / "val", val_x0, TILE, TILE, min_area)
    stamp.write_text(json.dumps(params, indent=1))
    return root


def nuclei_transform(train: bool):
    """``transforms.v2`` for the nuclei: when training, random flips and a random multiple of 90° rotation.

    Microscopy has no "up": the 8 flips and rotations of a tile are all equally real, so each epoch sees
    the few annotated nuclei in a new orientation. Then float [0, 1], as ``get_transform``.
    """
    import torch
    from torchvision.transforms import v2

    steps = []
    if train:
        steps += [v2.RandomHorizontalFlip(0.5), v2.RandomVerticalFlip(0.5),
                  v2.RandomApply([v2.RandomRotation((90, 90))], p=0.5)]  # with the flips: all 8 orientations
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


def rot90_target(image, target: dict):
    """Rotate an image and its target a quarter turn anticlockwise, as ``torch.rot90(image, 1, dims=(-2, -1))``.

    ``image`` is (C, H, W), ``target["masks"]`` (N, H, W) and ``target["boxes"]`` (N, 4) ``(x1, y1, x2, y2)``
    pixel edges; other keys are copied. The pixel at (row y, column x) goes to (row W - 1 - x, column y), so a box
    becomes ``(y1, W - x2, y2, W - x1)``. ``nuclei_transform`` gets the same from ``v2.RandomRotation((90, 90))``.
    """
    import torch

    width = image.shape[-1]
    x1, y1, x2, y2 = torch.as_tensor(target["boxes"]).unbind(-1)
    boxes = torch.stack([y1, width - x2, y2, width - x1], dim=-1)
    return torch.rot90(image, 1, dims=(-2, -1)), {**target, "boxes": boxes,
                                                 "masks": torch.rot90(target["masks"], 1, dims=(-2, -1))}
