"""The nuclei data (course_lib.data.nuclei): split, tiling, folders, COCO files; one test on the real files."""

from importlib import metadata

import numpy as np
import pytest
import torch
from PIL import Image

from course_lib.data import nuclei
from course_lib.data.coco_build import build_coco_dataset
from course_lib.data.coco_dataset import CocoInstanceDataset
from course_lib.data.coco_validate import validate_coco
from course_lib.utils.errors import CommandError


def synthetic_labels() -> np.ndarray:
    """A 256x256 label image: nucleus 1 left of x = 128, 2 across the line, 3 right of it, 4 a 16-px square
    cut by the tile edge y = 128 (10 px above, 6 px below), 5 across the line y = 64."""
    labels = np.zeros((256, 256), np.uint16)
    labels[10:30, 10:30] = 1
    labels[50:70, 120:140] = 2
    labels[200:220, 200:220] = 3
    labels[118:134, 40:41] = 4  # 16 pixels: 10 in the tile above y = 128, 6 below
    labels[60:68, 60:68] = 5
    return labels


def test_split_erases_crossing_nuclei_from_the_training_side_only():
    labels = synthetic_labels()
    train, val = nuclei.split_labels(labels, val_x0=128)
    assert train.shape == (256, 128) and val.shape == (256, 128)
    assert set(np.unique(train)) == {0, 1, 4, 5}  # 2 crosses x = 128: gone from train
    assert set(np.unique(val)) == {0, 2, 3}  # its right half stays in val
    assert np.count_nonzero(val == 2) == np.count_nonzero(labels[:, 128:] == 2) == 20 * 12
    assert np.array_equal(labels[:, 128:], val)  # val is the region, unchanged
    assert labels[50, 120] == 2  # the input is not modified


def test_tiles_keep_pieces_of_at_least_min_area_and_renumber():
    labels = synthetic_labels()
    train, _ = nuclei.split_labels(labels, val_x0=128)
    tiles = dict(nuclei.tile_labels(train, tile=128, stride=128, min_area=8))
    assert sorted(tiles) == [(0, 0), (128, 0)]
    top, bottom = tiles[(0, 0)], tiles[(128, 0)]
    assert top.dtype == np.uint16 and top.shape == (128, 128)
    # top: 1 (400 px), 4's upper piece (10 px), 5 (64 px), renumbered 1, 2, 3 in label order
    assert [int(np.count_nonzero(top == k)) for k in (1, 2, 3)] == [400, 10, 64] and top.max() == 3
    assert bottom.max() == 0  # 4's lower piece has 6 px < min_area 8: background
    kept = dict(nuclei.tile_labels(train, tile=128, stride=128, min_area=6))[(128, 0)]
    assert int(np.count_nonzero(kept == 1)) == 6


def test_overlapping_tiles_and_origins():
    assert nuclei.tile_origins(256, 128, 128, 64) == [(0, 0), (64, 0), (128, 0)]
    assert len(nuclei.tile_origins(512, 384, 128, 64)) == 7 * 5
    with pytest.raises(ValueError, match="no 128x128 tile"):
        nuclei.tile_origins(100, 384)


def test_stretch_to_uint8_maps_percentiles_to_the_full_range():
    image = np.arange(1000, dtype=np.uint16).reshape(25, 40) + 7
    rgb = nuclei.stretch_to_uint8(image, 1.0, 99.0)
    assert rgb.shape == (25, 40, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and np.array_equal(rgb[..., 0], rgb[..., 2])
    assert 120 <= rgb.reshape(-1, 3)[500, 0] <= 135  # the middle value lands in the middle


def test_folders_build_valid_coco_files_that_share_no_pixel(tmp_path, monkeypatch):
    labels = synthetic_labels()
    image = (labels > 0).astype(np.uint16) * 200 + 10
    monkeypatch.setattr(nuclei, "load_nuclei", lambda: (image, labels))
    root = nuclei.write_nuclei_folders(tmp_path / "nuc", train_stride=64, val_x0=128, min_area=8)
    names = {s: sorted(p.name for p in (root / s / "images").iterdir()) for s in ("train", "val")}
    assert names["val"] == ["nuclei_y000_x128.png", "nuclei_y128_x128.png"]  # positions in the whole image
    assert len(names["train"]) == 3 and all(n.endswith("_x000.png") for n in names["train"])
    counts = {}
    for split in ("train", "val"):
        ann = build_coco_dataset(root / split / "images", root / split / "masks", root / f"{split}.json", "nucleus")
        report = validate_coco(ann, root / split / "images")
        assert report.ok, report.problems
        ds = CocoInstanceDataset(root / split / "images", ann, nuclei.nuclei_transform(False))
        counts[split] = sum(len(ds[i][1]["masks"]) for i in range(len(ds)))
    # train tiles y = 0: 1, 4 (10 px), 5; y = 64: 4 (all 16 px), 5 (32 px); y = 128: 4's 6 px < 8, none
    assert counts == {"train": 3 + 2 + 0, "val": 2}
    with Image.open(root / "val" / "masks" / "nuclei_y000_x128.png") as im:
        assert np.array_equal(np.asarray(im) > 0, labels[:128, 128:] > 0)


def test_train_transform_rotates_image_masks_and_boxes_together():
    from torchvision import tv_tensors

    torch.manual_seed(0)
    image = tv_tensors.Image(torch.zeros(3, 128, 128, dtype=torch.uint8))
    image[:, 10:20, 30:50] = 255
    mask = tv_tensors.Mask((image[:1] > 0).to(torch.uint8))
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[30.0, 10, 50, 20]]), format="XYXY", canvas_size=(128, 128))
    seen = set()
    for _ in range(80):
        img, target = nuclei.nuclei_transform(True)(image, {"masks": mask, "boxes": boxes})
        on = img[0] > 0.5
        assert torch.equal(on, target["masks"][0].bool())
        ys, xs = torch.nonzero(on, as_tuple=True)
        assert target["boxes"][0].tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
        seen.add(tuple(target["boxes"][0].tolist()))
    assert len(seen) == 8  # 4 flips x (rotated or not)


def test_missing_stardist_names_the_pip_command(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(nuclei.metadata, "distribution", missing)
    with pytest.raises(CommandError, match=r'pip install "stardist==0\.9\.2"'):
        nuclei.locate_nuclei_files()


def test_the_real_files_hold_125_nuclei_and_the_split_shares_no_pixel():
    image, labels = nuclei.load_nuclei()
    assert image.shape == labels.shape == (512, 512)
    ids = np.unique(labels[labels > 0])
    assert len(ids) == 125
    train, val = nuclei.split_labels(labels)
    assert train.shape[1] + val.shape[1] == 512 and train.shape[1] == nuclei.VAL_X0
    crossing = np.intersect1d(np.unique(labels[:, :nuclei.VAL_X0]), np.unique(labels[:, nuclei.VAL_X0:]))
    crossing = crossing[crossing > 0]
    assert len(crossing) == 7  # measured in the findings; erased from the training side
    assert not np.isin(train, crossing).any()
    assert not np.intersect1d(np.unique(train[train > 0]), np.unique(val[val > 0])).size


def test_the_written_folders_are_readable_by_other_users(tmp_path):
    root = nuclei.write_nuclei_folders(tmp_path / "nuc", train_stride=64, val_x0=128, min_area=8)
    for folder in (root / "train", root / "val"):
        assert folder.stat().st_mode & 0o777 == (tmp_path / "nuc").stat().st_mode & 0o777
