"""course_lib.data.coco_dataset: CocoInstanceDataset's targets, image modes, transforms and errors naming the bad image."""


import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from course_lib.data.coco_build import build_coco_dataset
from course_lib.data.coco_dataset import CocoInstanceDataset, collate_fn, get_transform
from course_lib.utils.files import write_json_atomic
from shared_cases import write_hand_made_folder


def test_dataset_targets_and_joint_flip(shapes):
    ds = CocoInstanceDataset(shapes / "images", shapes / "annotations.json")
    image, target = ds[0]
    n = len(target["labels"])
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, 128, 128)
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].shape == (n, 4)
    assert isinstance(target["masks"], tv_tensors.Mask) and target["masks"].shape == (n, 128, 128)
    assert target["labels"].dtype == torch.int64 and target["iscrowd"].tolist() == [0] * n
    flipped_image, flipped = v2.RandomHorizontalFlip(p=1.0)(image, target)
    torch.testing.assert_close(flipped_image, image.flip(-1))
    torch.testing.assert_close(flipped["masks"], target["masks"].flip(-1))
    for box, mask in zip(flipped["boxes"], flipped["masks"], strict=True):  # boxes moved with the masks
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    images, targets = collate_fn([ds[0], ds[1]])
    assert len(images) == len(targets) == 2


def test_dataset_image_without_instances_and_crowd_flag(tmp_path):
    write_hand_made_folder(tmp_path)
    out = build_coco_dataset(tmp_path / "images", tmp_path / "masks", tmp_path / "o.json", ["cat", "dog"])
    ds = CocoInstanceDataset(tmp_path / "images", out, transforms=get_transform(train=True))
    image, target = ds[1]
    assert image.shape == (3, 6, 5) and image.dtype == torch.float32
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 6, 5) and target["labels"].shape == (0,)
    assert CocoInstanceDataset(tmp_path / "images", out)[0][1]["iscrowd"].tolist() == [0, 0, 0, 0, 1]
    kept = CocoInstanceDataset(tmp_path / "images", out, drop_crowd=True)[0][1]
    assert kept["iscrowd"].tolist() == [0, 0, 0, 0] and kept["masks"].shape[0] == 4


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "1", "LA"])
def test_dataset_converts_image_modes_to_rgb_uint8(tmp_path, mode):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    if mode == "I;16":
        im, expected = Image.fromarray(gray.astype(np.uint16) * 257), gray  # 16-bit is scaled, not clipped
    elif mode == "RGBA":
        rgba = np.dstack([gray, 255 - gray, gray // 2, np.zeros_like(gray)])
        im, expected = Image.fromarray(rgba, "RGBA"), rgba[..., :3]
    elif mode == "P":
        im = Image.fromarray(gray % 4).convert("P")
        im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
        expected = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)[gray % 4]
    elif mode == "1":
        im, expected = Image.fromarray(gray > 127), np.where(gray > 127, 255, 0).astype(np.uint8)
    else:
        im, expected = Image.fromarray(gray).convert(mode), gray
    im.save(tmp_path / "x.png")
    assert Image.open(tmp_path / "x.png").mode == mode
    coco = {"images": [{"id": 1, "file_name": "x.png", "height": 6, "width": 7}], "annotations": [],
            "categories": [{"id": 1, "name": "a"}]}
    ds = CocoInstanceDataset(tmp_path, write_json_atomic(coco, tmp_path / "a.json"))
    image = ds[0][0]
    assert image.dtype == torch.uint8 and image.shape == (3, 6, 7)
    expected = np.broadcast_to(expected[..., None], (6, 7, 3)) if expected.ndim == 2 else expected
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), expected)


def test_augmentation_pipeline_keeps_boxes_masks_and_labels_together(shapes):
    torch.manual_seed(0)
    aug = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.8, 1.2)),
                      v2.SanitizeBoundingBoxes(), v2.ToDtype(torch.float32, scale=True)])
    ds = CocoInstanceDataset(shapes / "images", shapes / "annotations.json", transforms=aug)
    for i in range(3):
        image, t = ds[i]
        assert image.dtype == torch.float32 and float(image.max()) <= 1.0
        assert len(t["boxes"]) == len(t["labels"]) == len(t["masks"])


CATEGORIES = ["cat", "dog"]


def build(folder, **kw):
    return build_coco_dataset(folder / "images", folder / "masks", folder / "out.json", CATEGORIES, **kw)


def test_dataset_names_a_missing_or_corrupt_image(good):
    folder, coco = good
    ds = CocoInstanceDataset(folder / "images", build(folder))
    (folder / "images" / "im1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"im1.png: image file not found \(image id 2 of out.json"):
        ds[1]
    (folder / "images" / "im2.png").write_bytes(b"not an image")
    with pytest.raises(OSError, match=r"im2.png: cannot read the image \(image id 3 of out.json\)"):
        ds[2]
    Image.fromarray(np.zeros((9, 12, 3), np.uint8)).save(folder / "images" / "im0.png")
    with pytest.raises(ValueError, match=r"im0.png: the image is 12x9 \(WxH\) but image id 1 of out.json says 12x10"):
        ds[0]


# --- phone photos ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tag", range(1, 9))
def test_dataset_reads_phone_photos_upright_so_masks_lie_on_their_objects(tmp_path, photos, tag):
    from course_lib.data.masks import mask_to_annotation

    obj = photos.make(tmp_path / "p.jpg", tag)
    coco = {"images": [{"id": 1, "file_name": "p.jpg", "height": 48, "width": 64}],
            "categories": [{"id": 1, "name": "L"}], "annotations": [mask_to_annotation(obj, 1, 1, 1)]}
    image, target = CocoInstanceDataset(tmp_path, write_json_atomic(coco, tmp_path / "a.json"))[0]
    assert image.shape == (3, 48, 64)
    assert min(photos.on_object(image, target["masks"][0])) > 0.95


def test_dataset_names_the_exif_tag_when_the_json_has_the_stored_size(tmp_path, photos):
    photos.make(tmp_path / "p.jpg", 6)
    coco = {"images": [{"id": 1, "file_name": "p.jpg", "height": 64, "width": 48}],
            "categories": [{"id": 1, "name": "L"}], "annotations": []}
    ds = CocoInstanceDataset(tmp_path, write_json_atomic(coco, tmp_path / "a.json"))
    with pytest.raises(ValueError, match=r"p.jpg: the image is 64x48 \(WxH, upright\) but image id 1 of a.json says "
                                         r"48x64: 48x64 is the photo's stored size, but its EXIF Orientation 6"):
        ds[0]
