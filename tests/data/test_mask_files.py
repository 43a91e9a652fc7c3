"""course_lib.data.mask_files: the rules every mask file passes, each refusal naming the file."""

import io

import numpy as np
import pytest
from PIL import Image

from course_lib.data.mask_files import (
    NOISE_PIXELS,
    NOISE_RATIO,
    VOID,
    ImageFileError,
    MaskFileError,
    image_header,
    image_size,
    is_jpeg,
    read_mask_file,
)


def save(path, arr, fmt=None, mode=None, palette=False):
    im = Image.fromarray(arr, mode) if mode else Image.fromarray(arr)
    if palette:
        im = im.convert("P") if im.mode != "P" else im
        im.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    im.save(path, format=fmt)
    return path


def refused(path, match, **kwargs):
    """read_mask_file refuses ``path``; the message starts with the file's path and says ``match``."""
    with pytest.raises(MaskFileError, match=match) as e:
        read_mask_file(path, **kwargs)
    assert str(e.value).startswith(f"{path}: "), str(e.value)
    return str(e.value)


def two_squares():
    m = np.zeros((12, 10), np.uint8)
    m[2:6, 1:5] = 255
    return m


# ---------------------------------------------------------------- image_size and is_jpeg

def test_image_size_is_height_width(tmp_path):
    assert image_size(save(tmp_path / "a.png", np.zeros((7, 13, 3), np.uint8))) == (7, 13)
    assert image_size(str(save(tmp_path / "b.jpg", np.zeros((5, 3), np.uint8)))) == (5, 3)  # str paths too


def test_image_size_refuses_missing_and_non_image_files_naming_them(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageFileError, match="no such file") as e:
        image_size(missing)
    assert str(e.value).startswith(str(missing))
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    with pytest.raises(ImageFileError, match="not an image file PIL can open") as e:
        image_size(text)
    assert str(e.value).startswith(str(text))
    with pytest.raises(ImageFileError, match="no such file"):
        image_size(tmp_path)  # a folder is not a file


def test_is_jpeg_reads_the_content_not_the_extension(tmp_path):
    m = two_squares()
    assert is_jpeg(save(tmp_path / "mask.png", m, fmt="JPEG"))
    assert is_jpeg(save(tmp_path / "mask.jpg", m))
    assert not is_jpeg(save(tmp_path / "mask.jpeg", m, fmt="PNG"))
    (tmp_path / "empty.png").write_bytes(b"")
    assert not is_jpeg(tmp_path / "empty.png")
    (tmp_path / "short.png").write_bytes(b"\xff\xd8")  # two of the three magic bytes
    assert not is_jpeg(tmp_path / "short.png")


# ---------------------------------------------------------------- binary masks

@pytest.mark.parametrize("on", [1, 255, 7])
def test_binary_mask_reads_as_bool(tmp_path, on):
    m = (two_squares() > 0).astype(np.uint8) * on
    out = read_mask_file(save(tmp_path / "m.png", m))
    assert out.dtype == bool and out.shape == (12, 10)
    assert np.array_equal(out, m > 0)


def test_binary_mask_with_one_value_and_mode_1(tmp_path):
    assert not read_mask_file(save(tmp_path / "empty.png", np.zeros((4, 5), np.uint8))).any()
    assert read_mask_file(save(tmp_path / "full.png", np.full((4, 5), 255, np.uint8))).all()
    m = two_squares() > 0
    assert np.array_equal(read_mask_file(save(tmp_path / "bits.png", m)), m)  # a 1-bit PNG


def test_binary_mask_with_more_than_two_values_is_refused(tmp_path):
    m = two_squares()
    m[0, 0] = 128
    msg = refused(save(tmp_path / "m.png", m), r"not a binary mask: 3 distinct values \(0, 128, 255\)")
    assert "lossy compression" in msg
    many = np.arange(100, dtype=np.uint8).reshape(10, 10)
    refused(save(tmp_path / "many.png", many), r"100 distinct values \(0, 1, 2, 3, 4, 5, \.\.\.\)")


def test_a_mask_once_saved_as_jpeg_is_refused_even_as_png(tmp_path):
    """The real failure: JPEG leaves in-between values along the edges, and a PNG re-save keeps them."""
    buf = io.BytesIO()
    Image.fromarray(two_squares()).save(buf, format="JPEG", quality=90)
    buf.seek(0)
    noisy = np.asarray(Image.open(buf))
    assert len(np.unique(noisy)) > 2
    refused(save(tmp_path / "resaved.png", noisy), "not a binary mask")


# ---------------------------------------------------------------- JPEG, channels, size, unreadable

def test_jpeg_is_refused_naming_the_file_and_the_disguise(tmp_path):
    disguised = save(tmp_path / "m.png", two_squares(), fmt="JPEG")
    msg = refused(disguised, "is a JPEG file")
    assert "despite its extension" in msg and "save masks as PNG" in msg
    msg = refused(save(tmp_path / "m.JPG", two_squares()), "is a JPEG file")
    assert "despite its extension" not in msg  # a .jpg is what it says
    for kind in ("ids", "palette"):  # every kind, and allow_tiny does not let it through
        refused(disguised, "is a JPEG file", kind=kind, allow_tiny=True)


@pytest.mark.parametrize("channels, mode", [(3, "RGB"), (4, "RGBA")])
def test_multi_channel_masks_are_refused(tmp_path, channels, mode):
    m = np.zeros((6, 8, channels), np.uint8)
    m[1:3, 1:3] = 255
    path = save(tmp_path / "m.png", m)
    for kind in ("binary", "ids"):
        refused(path, f"the mask is {mode} with {channels} channels; a mask must be single-channel", kind=kind)


def test_size_must_match_the_image(tmp_path):
    path = save(tmp_path / "m.png", two_squares())  # 12 high, 10 wide
    assert read_mask_file(path, size=(12, 10)).shape == (12, 10)
    refused(path, r"the mask is 10x12 \(WxH\) but its image is 12x10", size=(10, 12))
    refused(path, "but its image is 10x13", kind="ids", size=[13, 10])


def test_unreadable_or_missing_mask_is_refused(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    refused(broken, "cannot read the mask")
    refused(tmp_path / "missing.png", r"cannot read the mask \(FileNotFoundError")


def test_unknown_kind_is_a_plain_value_error(tmp_path):
    path = save(tmp_path / "m.png", two_squares())
    with pytest.raises(ValueError, match="kind must be 'binary', 'ids' or 'palette', got 'rgb'") as e:
        read_mask_file(path, kind="rgb")
    assert not isinstance(e.value, MaskFileError)


# ---------------------------------------------------------------- instance-id masks

def ids_mask(small, big, shape=(60, 60)):
    """Instance 1 with ``big`` pixels, instance 2 with ``small`` pixels (row-major from the end)."""
    m = np.zeros(shape[0] * shape[1], np.uint8)
    m[:big] = 1
    m[len(m) - small:] = 2
    return m.reshape(shape)


def test_ids_mask_keeps_the_ids(tmp_path):
    m = ids_mask(600, 900)
    m[0, 0] = 0
    out = read_mask_file(save(tmp_path / "m.png", m), kind="ids")
    assert out.dtype == np.uint8 and np.array_equal(out, m)
    assert not read_mask_file(save(tmp_path / "z.png", np.zeros((3, 3), np.uint8)), kind="ids").any()


def test_ids_mask_16_bit_keeps_ids_above_255(tmp_path):
    m = np.zeros((20, 20), np.uint16)
    m[:10] = 300
    m[10:] = 1000
    out = read_mask_file(save(tmp_path / "m16.png", m), kind="ids")
    assert sorted(np.unique(out).tolist()) == [300, 1000]
    assert np.array_equal(out, m)


def test_ids_mask_with_a_speck_beside_a_big_instance_is_refused(tmp_path):
    path = save(tmp_path / "m.png", ids_mask(small=10, big=2000))
    msg = refused(path, r"instance id\(s\) 2 have only 10 pixel\(s\) beside an instance of 2000", kind="ids")
    assert "allow_tiny" in msg and "JPEG" in msg
    assert (read_mask_file(path, kind="ids", allow_tiny=True) == 2).sum() == 10  # a real small object


@pytest.mark.parametrize("small, big, is_noise", [
    (10, 10 * NOISE_RATIO, True),  # exactly NOISE_RATIO times smaller: noise
    (10, 10 * NOISE_RATIO - 1, False),  # a pixel less than that: a real instance
    (NOISE_PIXELS - 1, (NOISE_PIXELS - 1) * NOISE_RATIO, True),
    (NOISE_PIXELS, NOISE_PIXELS * NOISE_RATIO, False),  # NOISE_PIXELS pixels or more is never noise
])
def test_ids_noise_rule_edges(tmp_path, small, big, is_noise):
    path = save(tmp_path / "m.png", ids_mask(small, big, shape=(100, 100)))
    if is_noise:
        refused(path, f"instance id\\(s\\) 2 have only {small} pixel", kind="ids")
    else:
        assert (read_mask_file(path, kind="ids") == 2).sum() == small


def test_ids_noise_lists_every_tiny_id(tmp_path):
    m = np.zeros((60, 60), np.uint8)
    m[:40] = 1  # 2400 pixels
    for k in range(2, 10):  # eight specks: id k has k pixels
        m[48 + k, :k] = k
    refused(save(tmp_path / "m.png", m), r"instance id\(s\) 2, 3, 4, 5, 6, 7, \.\.\. have only 2, 3, 4", kind="ids")
    # the binary rule is about values, not sizes: the same file is refused for its 10 values
    refused(tmp_path / "m.png", "10 distinct values")


# ---------------------------------------------------------------- palette (VOC) masks

def test_palette_mask_keeps_indices_and_void(tmp_path):
    m = np.zeros((8, 8), np.uint8)
    m[1:4, 1:4] = 1
    m[5:7, 5:7] = 15
    m[0, :] = VOID  # VOC's outline
    path = save(tmp_path / "voc.png", m, mode="P", palette=True)
    with Image.open(path) as im:
        assert im.mode == "P"
    out = read_mask_file(path, kind="palette")
    assert np.array_equal(out, m)  # indices, not the palette's colours; VOID left for the caller to count
    assert (out == VOID).sum() == 8


def test_palette_kind_refuses_a_grayscale_png(tmp_path):
    path = save(tmp_path / "gray.png", two_squares())
    refused(path, "is a L image; a VOC mask is a palette", kind="palette")
    refused(save(tmp_path / "rgb.png", np.zeros((4, 4, 3), np.uint8)), "is a RGB image", kind="palette")


# ---------------------------------------------------------------- EXIF Orientation and VOC palettes

def test_image_size_is_the_upright_size_and_the_header_has_the_tag(tmp_path, photos):
    photos.make(tmp_path / "p.jpg", 6)
    assert image_size(tmp_path / "p.jpg") == (48, 64)  # stored 64 rows x 48 columns, turned by the tag
    assert image_header(tmp_path / "p.jpg") == (48, 64, 6)


def test_a_mask_with_the_stored_size_names_the_tag(tmp_path):
    path = save(tmp_path / "m.png", np.zeros((64, 48), np.uint8))
    text = refused(path, "the mask is 48x64", size=(48, 64), orientation=8)
    assert "EXIF Orientation 8 (turned 90 degrees (shown turned anticlockwise)) turns it to 64x48" in text
    assert "save the mask in the upright frame" in text
    assert "EXIF" not in refused(path, "the mask is 48x64", size=(48, 64), orientation=1)


def test_a_voc_palette_mask_read_as_ids_is_refused_pointing_to_coco_build_voc(tmp_path):
    arr = np.zeros((12, 10), np.uint8)
    arr[2:6, 2:6], arr[1, 1:7] = 1, VOID
    path = save(tmp_path / "voc.png", arr, palette=True)
    refused(path, "a palette PNG holding index 255, Pascal VOC's void outline.*./course coco build voc", kind="ids")
    assert VOID in read_mask_file(path, "palette")  # as a VOC mask it reads
    arr[1, 1:7] = 7
    assert read_mask_file(save(tmp_path / "ids.png", arr, palette=True), "ids").max() == 7  # a palette without 255
