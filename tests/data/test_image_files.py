"""course_lib.data.image_files: photos read upright in each of the 8 EXIF orientations, sizes from the header,
the numpy turns equal to PIL's, the words for a stored size, and any image mode to RGB uint8."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from course_lib.data.image_files import (
    SWAPS_SIDES,
    UPRIGHT_TRANSPOSE,
    ImageHeader,
    describe_orientation,
    orientation,
    read_header,
    read_rgb,
    stored_size_reason,
    to_rgb_uint8,
    upright,
    upright_size,
)

TAGS = range(1, 9)


def picture(h=48, w=64):
    rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3)).astype(np.uint8)
    rgb[4:12, 4:20] = (255, 0, 0)  # a red bar near the top-left corner: its place shows the turn
    return rgb


@pytest.mark.parametrize("tag", TAGS)
def test_a_png_with_each_tag_reads_exactly_upright(tmp_path, photos, tag):
    up = picture()
    path = photos.write(tmp_path / "p.png", tag, up)
    with Image.open(path) as im:
        assert orientation(im) == tag
        assert im.size == ((48, 64) if tag in SWAPS_SIDES else (64, 48))  # stored: turned for tags 5-8
        assert upright_size(im) == (64, 48)
    np.testing.assert_array_equal(read_rgb(path), up)
    assert read_header(path) == ImageHeader(48, 64, tag)


@pytest.mark.parametrize("tag", TAGS)
def test_a_phone_jpeg_with_each_tag_reads_upright(tmp_path, photos, tag):
    obj = photos.make(tmp_path / "p.jpg", tag)
    rgb = read_rgb(tmp_path / "p.jpg")
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    bright = rgb.mean(2) > 128
    assert (bright == obj).mean() > 0.99  # JPEG blurs the edges a little, the L is where it belongs


def test_read_rgb_ignores_the_tag_of_nothing_and_reads_stored_pixels_when_there_is_none(tmp_path, photos):
    up = picture()
    photos.write(tmp_path / "none.png", 0, up)  # no EXIF block at all
    np.testing.assert_array_equal(read_rgb(tmp_path / "none.png"), up)
    with Image.open(tmp_path / "none.png") as im:
        assert orientation(im) == 1 and upright(im) is im


@pytest.mark.parametrize("value", [0, 9, 300])
def test_an_invalid_tag_value_reads_as_upright(tmp_path, value):
    exif = Image.Exif()
    exif[0x0112] = value
    Image.fromarray(picture()).save(tmp_path / "x.jpg", exif=exif)
    with Image.open(tmp_path / "x.jpg") as im:
        assert orientation(im) == 1 and upright_size(im) == (64, 48)
    assert read_header(tmp_path / "x.jpg").orientation == 1


@pytest.mark.parametrize("tag", TAGS)
def test_upright_transpose_turns_as_exif_transpose_turns(tag):
    rgb = picture(5, 7)
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = tag
    im.info["exif"] = exif.tobytes()
    turned = rgb if tag == 1 else np.asarray(Image.fromarray(rgb).transpose(UPRIGHT_TRANSPOSE[tag]))
    np.testing.assert_array_equal(turned, np.asarray(ImageOps.exif_transpose(im)))


def test_header_knows_the_stored_size_and_when_a_size_cannot_tell_the_frames_apart():
    assert ImageHeader(48, 64, 6).stored == (64, 48) and ImageHeader(48, 64, 3).stored == (48, 64)
    assert [ImageHeader(48, 64, t).frame_ambiguous for t in TAGS] == [False, True, True, True, False, False, False,
                                                                      False]
    assert [ImageHeader(48, 48, t).frame_ambiguous for t in TAGS] == [False] + [True] * 7


def test_stored_size_reason_names_the_tag_only_when_the_size_is_the_stored_one():
    why = stored_size_reason((4032, 3024), (3024, 4032), 6)
    assert "EXIF Orientation 6 (turned 90 degrees" in why and "turns it to 3024x4032" in why
    assert stored_size_reason((4032, 3024), (3024, 4032), 1) == ""  # no tag: a plain mismatch
    assert stored_size_reason((4032, 3024), (3024, 4032), 3) == ""  # 3 keeps the sides
    assert stored_size_reason((100, 100), (100, 100), 8) == ""  # a square photo: the size cannot tell
    assert stored_size_reason((4000, 3000), (3024, 4032), 6) == ""  # another size altogether
    assert describe_orientation(3) == "EXIF Orientation 3 (upside down)"


def test_sixteen_bit_extremes_scale_to_the_8_bit_range():
    im = Image.fromarray(np.array([[0, 257, 32768, 65535]], np.uint16))
    assert to_rgb_uint8(im)[0, :, 0].tolist() == [0, 1, 128, 255]


def test_read_rgb_lets_pil_name_a_missing_or_broken_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_rgb(tmp_path / "gone.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match="bad.jpg"):
        read_header(tmp_path / "bad.jpg")


def test_a_png_without_exif_before_its_pixels_is_not_decoded_to_look_for_one(tmp_path):
    Image.fromarray(picture()).save(tmp_path / "plain.png")
    with Image.open(tmp_path / "plain.png") as im:
        im.load = lambda: pytest.fail("the pixels were decoded")
        assert orientation(im) == 1 and upright_size(im) == (64, 48)
