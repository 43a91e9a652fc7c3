"""Inputs that several test modules share: awkward masks, a hand-made mask folder, random RoIs, the notebook's
separable RoIAlign and a small drawing case. On pytest's path through ``pythonpath`` in pyproject.toml."""

import json
import math

import numpy as np
import torch
from PIL import Image

from course_lib.ops.roi_align import linear_weights


def hand_made_masks():
    """Named (H, W) masks covering the awkward cases."""
    cases = {}
    m = np.zeros((7, 9), bool)
    m[3, 4] = True
    cases["single pixel"] = m
    for y, x in [(0, 0), (0, 8), (6, 0), (6, 8)]:
        m = np.zeros((7, 9), bool)
        m[y, x] = True
        cases[f"corner pixel {y, x}"] = m
    cases["full image"] = np.ones((5, 6), bool)
    cases["1x1 image"] = np.ones((1, 1), bool)
    m = np.zeros((12, 12), bool)
    m[1:11, 1:11] = True
    m[3:9, 3:9] = False
    cases["ring (hole)"] = m
    m = m.copy()
    m[5:7, 5:7] = True
    cases["part inside a hole"] = m
    m = np.zeros((10, 10), bool)
    m[0:10, 0:4] = True
    m[2:5, 1:3] = False
    m[6:8, 1:3] = False
    cases["two holes, touching the border"] = m
    cases["checkerboard (corner contacts)"] = (np.indices((6, 7)).sum(0) % 2).astype(bool)
    m = np.zeros((8, 8), bool)
    m[np.arange(8), np.arange(8)] = True
    cases["diagonal line"] = m
    m = np.zeros((9, 9), bool)
    m[4, :] = m[:, 4] = True
    cases["one-pixel-wide cross"] = m
    cases["hole touching at a corner"] = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 1], [0, 0, 1, 1]], bool)
    return cases


def write_hand_made_folder(root):
    """Two images: touching instances, a ring, border pixels, a single pixel and a crowd region."""
    (root / "images").mkdir()
    (root / "masks").mkdir()
    ids = np.zeros((10, 12), np.uint8)
    ids[0:4, 0:5] = 1  # touches the border and instance 2
    ids[0:4, 5:9] = 2
    ids[5:10, 0:6] = 3
    ids[6:9, 1:5] = 0  # a hole
    ids[9, 11] = 4  # single pixel in the corner
    ids[5:8, 8:12] = 5  # crowd
    Image.fromarray(np.full((10, 12, 3), 90, np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(ids).save(root / "masks" / "a.png")
    sidecar = {"1": "cat", "2": "dog", "3": "cat", "4": "dog", "5": {"category": "cat", "iscrowd": 1}}
    (root / "masks" / "a.json").write_text(json.dumps(sidecar))
    Image.fromarray(np.full((6, 5), 200, np.uint8)).save(root / "images" / "b.jpg")  # no instances
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(root / "masks" / "b.png")
    (root / "masks" / "b.json").write_text("{}")
    return ids


def random_rois(n, n_images, height, width, scale, seed):
    """(n, 5) rois in image pixels: inside, partly outside, wholly outside, zero-size and inverted boxes."""
    g = torch.Generator().manual_seed(seed)
    img_h, img_w = height / scale, width / scale
    xy = torch.rand(n, 2, generator=g) * torch.tensor([img_w, img_h]) * 1.4 - torch.tensor([img_w, img_h]) * 0.2
    wh = torch.rand(n, 2, generator=g) * torch.tensor([img_w, img_h]) * 0.7
    wh[: n // 8] = 0  # zero-size boxes
    wh[n // 8 : n // 6, 0] *= 0.01  # thinner than a cell
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[n // 6 : n // 5] = boxes[n // 6 : n // 5][:, [2, 3, 0, 1]] - 1  # x2 < x1, y2 < y1
    boxes[n // 5 : n // 4] += torch.tensor([img_w, img_h, img_w, img_h]) * 1.5  # wholly outside
    batch = torch.randint(0, n_images, (n, 1), generator=g).float()
    return torch.cat([batch, boxes], dim=1)


def grads(fn, x, rois, g, *args):
    x = x.clone().requires_grad_(True)
    out = fn(x, rois, *args)
    out.backward(g)
    return out.detach(), x.grad


def roi_align_separable(feature, box, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """The notebook's solution: Wy and Wx from linear_weights, then one einsum."""
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (float(v) * spatial_scale - offset for v in box)
    (out_h, out_w), (_, H, W) = output_size, feature.shape

    def axis_weights(start, end, bins, size):
        length = end - start if aligned else max(end - start, 1.0)
        n = sampling_ratio if sampling_ratio > 0 else math.ceil(length / bins)
        positions = start + (torch.arange(bins)[:, None] + (torch.arange(n) + 0.5) / n) * (length / bins)
        return linear_weights(positions.flatten(), size).view(bins, n, size).mean(1)

    return torch.einsum("ih,chw,jw->cij", axis_weights(y1, y2, out_h, H), feature, axis_weights(x1, x2, out_w, W))


def square_mask(x1, y1, x2, y2, size=128):
    m = torch.zeros(size, size, dtype=torch.bool)
    m[y1:y2, x1:x2] = True
    return m


def drawing_case():
    image = torch.full((3, 128, 128), 0.5)
    target = {"image_id": 9, "boxes": torch.tensor([[100.0, 20.0, 128.0, 50.0]]), "labels": torch.tensor([2]),
              "masks": square_mask(100, 20, 128, 50)[None].to(torch.uint8)}
    output = {"boxes": torch.tensor([[104.0, 24.0, 124.0, 46.0]]), "labels": torch.tensor([1]),
              "scores": torch.tensor([0.9]), "masks": square_mask(104, 24, 124, 46)[None, None].float()}
    return image, output, target


def stub(*args, **kwargs):
    """A learner's untouched exercise."""
    raise NotImplementedError("Exercise: replace this line with your code")


def passes_fails_and_waits(capsys, check, right, wrong, failing_case: str):
    """A checker hands back a right answer (PASS), the reference for a wrong one (FAIL naming ``failing_case``, with
    a hint) and for a stub (NOT YET)."""
    assert check(right) is right
    assert capsys.readouterr().out.startswith(f"PASS {check.__name__}")

    assert check(wrong) is check.reference
    out = capsys.readouterr().out
    assert out.startswith(f"FAIL {check.__name__}, case '{failing_case}") and "Hint" in out

    assert check(stub) is check.reference
    assert capsys.readouterr().out.startswith(f"NOT YET {check.__name__}")


def panels(fig) -> list:
    """The figure's drawing panels (colour bars left out), each checked to hold something drawn."""
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    for ax in axes:
        assert ax.images or ax.lines or ax.patches or ax.collections, f"empty panel {ax.get_title()!r}"
    return axes


def rand_boxes(n, seed, size=200.0, min_wh=1.0, max_wh=80.0, dtype=torch.float32):
    """Random (x1, y1, x2, y2) boxes, some reaching outside [0, size]."""
    g = torch.Generator().manual_seed(seed)
    ctr = torch.rand(n, 2, generator=g, dtype=torch.float64) * (size + 40) - 20
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * (max_wh - min_wh) + min_wh
    return torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1).to(dtype)
