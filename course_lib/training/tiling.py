"""Prediction on an image much larger than the model's input, tile by tile. Taught in: 08_real_images

A detector resizes every image to its input size (128 pixels for the course model, 800-1333 for
torchvision's): a 512 x 512 microscopy image or a 12-megapixel photo shrinks until small objects vanish.
``predict_tiled`` cuts the image into ``tile`` x ``tile`` pieces whose neighbours share ``overlap`` pixels,
runs the model on each (``predict.detect``), moves the detections to the whole image's coordinates and
joins what the tile edges cut apart:

* an object crossing a tile edge reaches into the band the two tiles share (the edge lies inside the
  neighbour's tile), so both tiles see that part of it; two detections of the same label from two tiles
  are one object when their masks overlap there: inside the shared band, the pixels both masks cover are
  at least ``merge_iou`` of the smaller mask's (intersection over the smaller, not over the union: the
  two arms of a U that an edge cuts apart each join the whole U, where their IoU would be about 0.5).
  The same rule joins an object seen whole by both tiles (a duplicate).
* joined detections become one: the union of the masks, the box around that union (pixel edges), the
  highest score. Joins chain: an object over four tiles comes back once.

Detections of one tile are never joined with each other (the model's own NMS has decided there), and
labels must agree. ``overlap`` must be at least 1 pixel (the band where pieces are compared); give it
about the size of the objects, so that most objects lie whole inside at least one tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from course_lib.training.predict import Detections, crop_to_content, detect, paste_crop


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles along one side of ``length`` pixels start: every ``tile - overlap`` pixels, the last one
    flush with the end (so it may share more than ``overlap``); ``[0]`` when one tile covers the side."""
    if length <= tile:
        return [0]
    return [*range(0, length - tile, tile - overlap), length - tile]


def tile_grid(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """The tiles of an image as ``(y0, x0, y1, x1)`` (rows ``y0:y1``, columns ``x0:x1``), row by row."""
    return [(y, x, min(y + tile, height), min(x + tile, width))
            for y in tile_starts(height, tile, overlap) for x in tile_starts(width, tile, overlap)]


@dataclass
class Piece:
    """One tile's detection in the whole image's pixels: its tile, label, score, box and mask crop."""

    tile: int
    rect: tuple[int, int, int, int]  # the tile, (y0, x0, y1, x1)
    label: int
    score: float
    box: torch.Tensor  # (4,) xyxy
    y0: int
    x0: int
    crop: torch.Tensor  # (h, w) bool

    @property
    def crop_rect(self) -> tuple[int, int, int, int]:
        return self.y0, self.x0, self.y0 + self.crop.shape[0], self.x0 + self.crop.shape[1]


def _within(piece: Piece, y0: int, x0: int, y1: int, x1: int) -> torch.Tensor:
    """``piece``'s mask over rows ``y0:y1``, columns ``x0:x1`` of the image, as a (y1 - y0, x1 - x0) bool array."""
    return paste_crop(torch.zeros((y1 - y0, x1 - x0), dtype=torch.bool), piece.y0, piece.x0, piece.crop, (y0, x0))


def seam_overlap(a: Piece, b: Piece) -> float:
    """How much two pieces' masks overlap inside the band their tiles share: the pixels both cover over the
    smaller mask's pixels there (0 when the tiles share no pixel or a mask does not reach into the band)."""
    cy0, cx0 = max(a.rect[0], b.rect[0]), max(a.rect[1], b.rect[1])
    cy1, cx1 = min(a.rect[2], b.rect[2]), min(a.rect[3], b.rect[3])
    ra, rb = a.crop_rect, b.crop_rect
    if not (max(ra[0], rb[0]) < min(ra[2], rb[2]) and max(ra[1], rb[1]) < min(ra[3], rb[3])):
        return 0.0  # the crops do not meet: no pixel in common
    y0, x0 = max(cy0, min(ra[0], rb[0])), max(cx0, min(ra[1], rb[1]))
    y1, x1 = min(cy1, max(ra[2], rb[2])), min(cx1, max(ra[3], rb[3]))
    if y1 <= y0 or x1 <= x0:
        return 0.0
    ma, mb = _within(a, y0, x0, y1, x1), _within(b, y0, x0, y1, x1)
    smaller = min(int(ma.sum()), int(mb.sum()))
    return int((ma & mb).sum()) / smaller if smaller else 0.0


def merge_pieces(pieces: list[Piece], merge_iou: float = 0.5) -> list[list[int]]:
    """Groups of piece indices that are one object: same label, different tiles, ``seam_overlap`` >= ``merge_iou``;
    joined transitively (union-find). Every piece is in one group."""
    parent = list(range(len(pieces)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_tile: dict[int, list[int]] = {}
    for i, p in enumerate(pieces):
        by_tile.setdefault(p.tile, []).append(i)
    tiles = sorted(by_tile)
    for u, ta in enumerate(tiles):
        for tb in tiles[u + 1:]:
            ra, rb = pieces[by_tile[ta][0]].rect, pieces[by_tile[tb][0]].rect
            if max(ra[0], rb[0]) >= min(ra[2], rb[2]) or max(ra[1], rb[1]) >= min(ra[3], rb[3]):
                continue  # these tiles share no pixel
            for i in by_tile[ta]:
                for j in by_tile[tb]:
                    if pieces[i].label == pieces[j].label and root(i) != root(j) and \
                            seam_overlap(pieces[i], pieces[j]) >= merge_iou:
                        parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(pieces)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _joined(pieces: list[Piece]) -> tuple[torch.Tensor, int, int, torch.Tensor, float]:
    """(box, y0, x0, crop, score) of a group: the union of the masks, the box around it, the best score."""
    if len(pieces) == 1:
        p = pieces[0]
        return p.box, p.y0, p.x0, p.crop, p.score
    rects = [p.crop_rect for p in pieces]
    y0, x0 = min(r[0] for r in rects), min(r[1] for r in rects)
    y1, x1 = max(r[2] for r in rects), max(r[3] for r in rects)
    union = torch.zeros((y1 - y0, x1 - x0), dtype=torch.bool)
    for p in pieces:
        union |= _within(p, y0, x0, y1, x1)
    cy, cx, crop = crop_to_content(union)
    if crop.numel() and crop.any():
        box = torch.tensor([x0 + cx, y0 + cy, x0 + cx + crop.shape[1], y0 + cy + crop.shape[0]], dtype=torch.float32)
    else:  # no mask pixel at all: the boxes' union
        boxes = torch.stack([p.box for p in pieces])
        box = torch.cat([boxes[:, :2].min(0).values, boxes[:, 2:].max(0).values])
    return box, y0 + cy, x0 + cx, crop, max(p.score for p in pieces)


@torch.no_grad()
def detect_tiled(model, image: torch.Tensor, *, tile: int, overlap: int, device: torch.device | str,
                 score_threshold: float = 0.05, merge_iou: float = 0.5, progress=None) -> Detections:
    """``predict_tiled``'s detections as ``Detections`` (masks as crops: what ``./course predict --tile`` uses
    on large photos). ``image`` may be uint8 (each tile is turned to float [0, 1] on its own, saving the
    whole float copy); ``progress`` wraps the list of tiles (e.g. a progress bar)."""
    tile, overlap = int(tile), int(overlap)
    if tile < 1 or not 1 <= overlap < tile:
        raise ValueError(f"tiling needs tile >= 1 and 1 <= overlap < tile (pieces are compared where the tiles "
                         f"overlap); got tile {tile}, overlap {overlap}")
    height, width = int(image.shape[-2]), int(image.shape[-1])
    pieces: list[Piece] = []
    rects = tile_grid(height, width, tile, overlap)
    for k, (ty0, tx0, ty1, tx1) in enumerate(progress(rects) if progress else rects):
        part = image[:, ty0:ty1, tx0:tx1]
        part = part.float() / 255 if part.dtype == torch.uint8 else part
        found = detect(model, [part], device, score_threshold)[0]
        if found.crops is None:
            raise ValueError("tiled prediction joins the pieces of an object by their masks; this model returns none")
        shift = torch.tensor([tx0, ty0, tx0, ty0], dtype=found.boxes.dtype)
        for i, (y0, x0, crop) in enumerate(found.crops):
            pieces.append(Piece(k, (ty0, tx0, ty1, tx1), int(found.labels[i]), float(found.scores[i]),
                                found.boxes[i] + shift, y0 + ty0, x0 + tx0, crop))
    joined = [(_joined([pieces[i] for i in group]), pieces[group[0]].label)
              for group in merge_pieces(pieces, merge_iou)]
    joined.sort(key=lambda item: -item[0][4])  # highest score first, as a model returns them
    boxes = torch.stack([j[0][0] for j in joined]) if joined else torch.zeros((0, 4))
    labels = torch.tensor([j[1] for j in joined], dtype=torch.int64)
    scores = torch.tensor([j[0][4] for j in joined], dtype=torch.float32)
    crops = [(j[0][1], j[0][2], j[0][3]) for j in joined]
    return Detections(boxes.float(), labels, scores, (height, width), crops)


def predict_tiled(model, image: torch.Tensor, *, tile: int, overlap: int, device: torch.device | str,
                  score_threshold: float = 0.05, merge_iou: float = 0.5) -> dict:
    """``model``'s detections on a large ``image`` ((3, H, W) float in [0, 1]), tile by tile (see the module).

    Tiles are ``tile`` x ``tile`` pixels, neighbours sharing ``overlap`` (>= 1) pixels; detections with
    ``score >= score_threshold`` are kept in each tile; pieces of one object are joined when, inside the band
    their tiles share, the pixels both masks cover are at least ``merge_iou`` of the smaller mask's there.
    Returns a torchvision-style dict in the whole image's pixels: ``boxes`` (N, 4) xyxy, ``labels`` (N,),
    ``scores`` (N,), ``masks`` (N, 1, H, W) bool. Full-size masks cost H * W bytes each: for a large photo
    with many objects use ``detect_tiled`` (masks as crops).
    """
    return detect_tiled(model, image, tile=tile, overlap=overlap, device=device, score_threshold=score_threshold,
                        merge_iou=merge_iou).to_output()
