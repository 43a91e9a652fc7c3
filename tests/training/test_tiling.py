"""``training.tiling``: a large image predicted tile by tile, objects cut by tile edges joined back into one.

A fake model detects every connected blob of its input (channel 0: label 1, channel 1: label 2), so what each
tile returns is exact and the test checks the tiling and joining alone; one test runs the course model."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from course_lib.data.shapes import CLASSES, render_sample
from course_lib.detection.course_model import load_course_model
from course_lib.training.tiling import (
    Piece,
    detect_tiled,
    merge_pieces,
    predict_tiled,
    seam_overlap,
    tile_grid,
    tile_starts,
)


class BlobModel(torch.nn.Module):
    """Detects each 4-connected blob of on pixels (> 0.5) of channel 0 (label 1) and 1 (label 2), score 0.9, with
    its full-size mask; counts the tiles it sees."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, images):
        outs = []
        for img in images:
            self.seen.append(tuple(img.shape[-2:]))
            boxes, labels, masks = [], [], []
            for label, channel in ((1, 0), (2, 1)):
                ids, n = ndimage.label(img[channel].numpy() > 0.5)
                for k in range(1, n + 1):
                    m = torch.from_numpy(ids == k)
                    ys, xs = m.nonzero(as_tuple=True)
                    boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                    labels.append(label)
                    masks.append(m.float())
            n = len(labels)
            outs.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
                         "labels": torch.tensor(labels, dtype=torch.int64), "scores": torch.full((n,), 0.9),
                         "masks": torch.stack(masks)[:, None] if n else torch.zeros(0, 1, *img.shape[-2:])})
        return outs


def blob_image(objects, size=(300, 400)):
    """(3, H, W) float image with each (label, mask) object drawn in its label's channel."""
    image = torch.zeros(3, *size)
    for label, mask in objects:
        image[label - 1][mask] = 1.0
    return image


def rect(size, y0, y1, x0, x1):
    m = torch.zeros(size, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def test_tile_starts_cover_the_side_and_share_the_overlap():
    assert tile_starts(300, 128, 32) == [0, 96, 172]
    assert tile_starts(400, 128, 32) == [0, 96, 192, 272]
    assert tile_starts(100, 128, 32) == [0] and tile_starts(128, 128, 32) == [0]
    assert tile_starts(129, 128, 1) == [0, 1]
    for length in (513, 1000, 3024, 4032):
        starts = tile_starts(length, 512, 64)
        assert starts[0] == 0 and starts[-1] + 512 == length
        assert all(b - a <= 512 - 64 for a, b in zip(starts, starts[1:], strict=False))  # neighbours share >= 64
    grid = tile_grid(300, 400, 128, 32)
    assert len(grid) == 12 and grid[0] == (0, 0, 128, 128) and grid[-1] == (172, 272, 300, 400)
    assert tile_grid(50, 60, 128, 32) == [(0, 0, 50, 60)]  # smaller than a tile: the image itself


def test_objects_cut_by_tile_edges_come_back_once_each():
    size = (300, 400)
    u_shape = rect(size, 230, 290, 50, 110) & ~rect(size, 230, 275, 65, 95)  # an edge at y = 224 cuts its arms
    objects = [
        (1, rect(size, 60, 75, 110, 150)),      # crosses the edge of the first column of tiles
        (1, rect(size, 40, 50, 20, 380)),       # a bar over all four columns of tiles
        (2, rect(size, 85, 140, 85, 140)),      # on the corner of four tiles
        (1, rect(size, 200, 220, 100, 118)),    # two blobs 3 pixels apart across an edge: two objects
        (1, rect(size, 200, 220, 121, 140)),
        (1, rect(size, 150, 165, 100, 120)),    # whole inside the band two tiles share: a duplicate
        (2, rect(size, 150, 165, 100, 120)),    # the same pixels, another label: its own object
        (1, u_shape),
        (2, rect(size, 5, 25, 300, 330)),       # inside one tile only
    ]
    model = BlobModel()
    out = predict_tiled(model, blob_image(objects, size), tile=128, overlap=32, device="cpu")
    assert len(model.seen) == 12 and set(model.seen) == {(128, 128)}
    assert out["masks"].shape == (len(objects), 1, *size) and out["masks"].dtype == torch.bool
    found = list(zip(out["labels"].tolist(), out["masks"][:, 0], out["boxes"], strict=True))
    for label, mask in objects:  # exactly one instance with the object's label and pixels
        same = [(lab, m, box) for lab, m, box in found if lab == label and torch.equal(m, mask)]
        assert len(same) == 1, (label, mask.nonzero().min(0).values)
        ys, xs = mask.nonzero(as_tuple=True)
        assert same[0][2].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_without_joining_the_cut_objects_come_back_in_pieces():
    size = (300, 400)
    objects = [(1, rect(size, 40, 50, 20, 380))]
    pieces = detect_tiled(BlobModel(), blob_image(objects, size), tile=128, overlap=32, device="cpu", merge_iou=1.01)
    assert len(pieces) == 4  # one per column of tiles: the join above is what makes it one
    assert sum(len(detect_tiled(BlobModel(), blob_image(objects, size), tile=t, overlap=o, device="cpu"))
               for t, o in ((128, 32), (200, 8), (400, 1))) == 3


def test_uint8_images_tiles_of_other_shapes_and_an_empty_image():
    size = (130, 250)
    objects = [(1, rect(size, 10, 120, 90, 160))]
    image = blob_image(objects, size)
    a = detect_tiled(BlobModel(), image, tile=100, overlap=20, device="cpu")
    b = detect_tiled(BlobModel(), (image * 255).to(torch.uint8), tile=100, overlap=20, device="cpu")
    assert len(a) == len(b) == 1 and torch.equal(a.mask(0), objects[0][1]) and torch.equal(b.mask(0), a.mask(0))
    empty = predict_tiled(BlobModel(), torch.zeros(3, 130, 250), tile=100, overlap=20, device="cpu")
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 1, 130, 250)


@pytest.mark.parametrize("tile, overlap", [(128, 0), (128, 128), (0, 0), (64, -1)])
def test_tiles_need_an_overlap_to_compare_pieces(tile, overlap):
    with pytest.raises(ValueError, match="1 <= overlap < tile"):
        predict_tiled(BlobModel(), torch.zeros(3, 200, 200), tile=tile, overlap=overlap, device="cpu")


def test_seam_overlap_and_merge_pieces_by_hand():
    def piece(tile, rect_, label, y0, x0, crop):
        return Piece(tile, rect_, label, 0.9, torch.zeros(4), y0, x0, crop)

    left, right = (0, 0, 10, 10), (0, 6, 10, 16)  # they share columns 6..9
    full = torch.ones(4, 8, dtype=torch.bool)
    a = piece(0, left, 1, 2, 2, full)              # columns 2..9 (cut at the left tile's edge)
    b = piece(1, right, 1, 2, 6, full)             # columns 6..13
    c = piece(1, right, 1, 2, 11, full[:, :3])     # columns 11..13: never in the shared band
    d = piece(1, right, 2, 2, 6, full)             # b's pixels, another label
    assert seam_overlap(a, b) == 1.0 and seam_overlap(a, c) == 0.0
    assert merge_pieces([a, b, c, d]) == [[0, 1], [2], [3]]
    far = piece(2, (0, 20, 10, 30), 1, 2, 20, full)  # a tile that shares nothing with the others
    assert seam_overlap(a, far) == 0.0 and merge_pieces([a, far]) == [[0], [1]]


def test_the_course_model_on_a_large_shapes_image_finds_each_straddling_shape_once():
    """Four shapes images side by side and a shape pasted over each seam: with tiles of 128 (the course model's
    input) and 48 pixels shared, each straddling shape is found once with its class, covering it. (The model
    may also call a shape by a second class, in a tile or in a whole image alike: labels are joined apart.)"""
    model = load_course_model()
    canvas = np.zeros((256, 256, 3), dtype=np.uint8)
    for k, (y, x) in enumerate(((0, 0), (0, 128), (128, 0), (128, 128))):
        canvas[y:y + 128, x:x + 128] = render_sample(1, 20 + k).image
    s = render_sample(1, 7)  # two of its shapes pasted again, centred on the seams x = 128 and y = 128
    straddling = []
    for m, (cy, cx) in zip(s.masks[:2], ((64, 128), (128, 64)), strict=True):
        ys, xs = np.nonzero(m)
        ty, tx = cy - int(ys.mean()), cx - int(xs.mean())
        target = np.zeros((256, 256), dtype=bool)
        target[ys + ty, xs + tx] = True
        canvas[target] = s.image[ys, xs]
        straddling.append(target)
    image = torch.from_numpy(canvas).permute(2, 0, 1).float() / 255
    out = predict_tiled(model, image, tile=128, overlap=48, device="cpu", score_threshold=0.5)
    masks = out["masks"][:, 0]
    for target, name in zip(straddling, s.labels[:2], strict=True):
        t = torch.from_numpy(target)
        ious = (masks & t).sum((1, 2)) / (masks | t).sum((1, 2))
        labels = out["labels"][ious > 0.5].tolist()
        assert CLASSES.index(name) + 1 in labels and len(labels) == len(set(labels)), (name, labels, ious)
