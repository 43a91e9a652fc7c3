"""course_lib.data.labelme_files: each LabelMe shape type read (or skipped) as LabelMe means it, and the frame
a LabelMe file was drawn in told from its sizes and imageData."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from course_lib.data.image_files import read_header
from course_lib.data.labelme_files import SKIPPED, check_frame, read_shape


def read(shape, size=(32, 40)):
    problems = []
    return read_shape(shape, "a.json: shape 0", size, problems), problems


@pytest.mark.parametrize("kind", ["line", "linestrip", "point", "points"])
def test_shapes_without_area_are_skipped_whatever_their_points(kind):
    assert read({"shape_type": kind, "points": "whatever"}) == (SKIPPED, [])


def test_polygons_rectangles_and_circles_are_polygons_clamped_to_the_image():
    assert read({"points": [[0, 0], [40.4, 0], [40, 32]]}) == (("polygon", [0.0, 0.0, 40.0, 0.0, 40.0, 32.0]), [])
    assert read({"shape_type": "rectangle", "points": [[5, 6], [1, 2]]})[0] == \
        ("polygon", [1.0, 2.0, 5.0, 2.0, 5.0, 6.0, 1.0, 6.0])
    kind, poly = read({"shape_type": "circle", "points": [[10, 10], [13, 14]]})[0]
    assert kind == "polygon" and len(poly) == 64 and max(poly[0::2]) == 15.0


def png_b64(arr):
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("corner", [(12, 8), (11, 7)], ids=["inclusive (LabelMe)", "exclusive"])
def test_a_mask_shape_is_placed_at_its_first_point_either_corner_convention(corner):
    arr = np.zeros((4, 6), np.uint8)
    arr[1:3, 2:5] = 1
    (kind, mask), problems = read({"shape_type": "mask", "points": [[6.7, 4.2], list(corner)], "mask": png_b64(arr)})
    assert kind == "mask" and problems == []
    expected = np.zeros((32, 40), bool)
    expected[4:8, 6:12] = arr.astype(bool)
    np.testing.assert_array_equal(mask, expected)


def test_an_unknown_shape_type_is_named():
    region, problems = read({"shape_type": "ellipse", "points": [[1, 1], [2, 2]]})
    assert region is None and problems == ["a.json: shape 0: unknown shape_type 'ellipse' (known: polygon, rectangle, "
                                           "circle, mask; line, linestrip, point, points are skipped)"]


def test_check_frame_refuses_image_data_that_fits_neither_frame(tmp_path, photos):
    photos.make(tmp_path / "p.jpg", 3)
    buf = io.BytesIO()
    Image.new("RGB", (30, 20)).save(buf, format="PNG")
    data = {"imageData": base64.b64encode(buf.getvalue()).decode(), "imageHeight": 48, "imageWidth": 64}
    problems = []
    assert check_frame(tmp_path / "p.json", data, tmp_path / "p.jpg", read_header(tmp_path / "p.jpg"), problems) is False
    assert problems == [f"{tmp_path / 'p.json'}: its imageData is 30x20 (WxH) but the image p.jpg is 64x48 upright: "
                        "was the photo changed after it was annotated?"]


def test_check_frame_without_a_tag_trusts_matching_sizes_and_names_a_mismatch(tmp_path, photos):
    photos.make(tmp_path / "p.jpg", 0)
    header = read_header(tmp_path / "p.jpg")
    problems = []
    assert check_frame(tmp_path / "p.json", {"imageHeight": 48, "imageWidth": 64}, tmp_path / "p.jpg", header,
                       problems) is True
    assert check_frame(tmp_path / "p.json", json.loads('{"imageHeight": 64, "imageWidth": 48}'), tmp_path / "p.jpg",
                       header, problems) is False
    assert problems == [f"{tmp_path / 'p.json'}: imageHeight x imageWidth = 64x48 but the image p.jpg is 48x64"]
