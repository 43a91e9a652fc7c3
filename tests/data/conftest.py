"""Fixtures shared by the tests of course_lib.data: the shapes data set and small good COCO folders."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from course_lib.data.coco_build import build_coco_dataset
from course_lib.data.shapes import make_shapes_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes_dataset(root, 10, seed=3, progress=False)
    return root


@pytest.fixture
def folder(tmp_path):
    """A small good data set: 3 images (12x10) with instance-id masks and sidecars."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(3):
        ids = np.zeros((10, 12), np.uint8)
        ids[1:4, 1:5], ids[5:9, 6:11] = 1, 2
        Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(tmp_path / "images" / f"im{i}.png")
        Image.fromarray(ids).save(tmp_path / "masks" / f"im{i}.png")
        (tmp_path / "masks" / f"im{i}.json").write_text('{"1": "cat", "2": "dog"}')
    return tmp_path


def _build(folder, **kw):
    return build_coco_dataset(folder / "images", folder / "masks", folder / "out.json", ["cat", "dog"], **kw)


@pytest.fixture
def good(folder):
    """(folder, COCO dict) of a good file; annotation ids 1-6, image ids 1-3, two RLE and one polygon image."""
    coco = json.loads(_build(folder).read_text())
    polygons = json.loads(_build(folder, encoding="polygon").read_text())
    coco["annotations"][4:] = polygons["annotations"][4:]  # image 3 has polygons
    return folder, coco


# --- phone photos: real EXIF Orientation tags -----------------------------------------------------------------

# The tag whose turn undoes tag t's: 6 and 8 are each other's, the others their own.
INVERSE_TAG = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}


def l_shape(h=48, w=64):
    """An L-shaped object in an (h, w) upright frame: no flip or turn maps it onto itself."""
    m = np.zeros((h, w), bool)
    m[6:30, 8:16] = True
    m[22:30, 8:40] = True
    return m


L_POLYGON = [[8, 6], [16, 6], [16, 22], [40, 22], [40, 30], [8, 30]]  # l_shape's outline, (x, y) pixel corners


def write_photo(path, tag, upright, quality=95):
    """Save the (H, W, 3) ``upright`` picture as a phone would: the stored pixels turned so that EXIF
    Orientation ``tag`` turns them back (``tag`` 0: no EXIF at all). Returns the path."""
    from course_lib.data.image_files import UPRIGHT_TRANSPOSE

    path.parent.mkdir(parents=True, exist_ok=True)
    inverse = INVERSE_TAG[tag or 1]
    stored = upright if inverse == 1 else np.asarray(Image.fromarray(upright).transpose(UPRIGHT_TRANSPOSE[inverse]))
    kw = {"quality": quality} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    if tag:
        exif = Image.Exif()
        exif[0x0112] = tag
        kw["exif"] = exif
    Image.fromarray(stored).save(path, **kw)
    return path


def phone_photo(path, tag, h=48, w=64):
    """A JPEG with EXIF Orientation ``tag`` whose upright picture is a bright L (``l_shape``) on a dark noisy
    ground; returns the L's mask in the upright frame."""
    obj = l_shape(h, w)
    rgb = np.random.default_rng(tag).integers(0, 40, (h, w, 3)).astype(np.uint8)
    rgb[obj] = (230, 200, 60)
    write_photo(path, tag, rgb)
    return obj


def on_object(image, mask):
    """(share of the mask's pixels that lie on the bright object, share of the object the mask covers),
    ``image`` (3, H, W) uint8 as the Dataset returns it, ``mask`` (H, W)."""
    bright = np.asarray(image).mean(0) > 128
    mask = np.asarray(mask).astype(bool)
    return (bright & mask).sum() / max(mask.sum(), 1), (bright & mask).sum() / max(bright.sum(), 1)


@pytest.fixture
def photos():
    """The phone-photo helpers above: ``photos.make(path, tag)``, ``photos.write``, ``photos.on_object``,
    ``photos.polygon`` (the L's outline), ``photos.inverse``."""
    return SimpleNamespace(make=phone_photo, write=write_photo, on_object=on_object, polygon=L_POLYGON,
                           l_shape=l_shape, inverse=INVERSE_TAG)
