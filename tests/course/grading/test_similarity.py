"""The similarity flag: normalisation, scores of renamed copies vs independent implementations, find_flags."""

from course_lib.course.grading.similarity import REFERENCE, Flag, find_flags, normalise, review_note, similarity

REFERENCE_IOU = '''
import torch


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of two sets of (x1, y1, x2, y2) boxes: an (N, M) tensor."""
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return inter / union
'''

# Every local renamed, annotations gone, comments and another docstring added, layout changed.
RENAMED_IOU = '''
import torch

def my_iou(a, b):
    """Computes the intersection over union between every box in a and every box in b."""

    # areas of each box
    areas_a = ((a[:, 2] - a[:, 0])
               * (a[:, 3] - a[:, 1]))
    areas_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))  # same for b

    lo = torch.max(a[:, None, :2], b[None, :, :2])   # upper-left corner of the overlap
    hi = torch.min(a[:, None, 2:], b[None, :, 2:])

    size = (hi - lo).clamp(min = 0)
    overlap = size[..., 0] * size[..., 1]

    total = areas_a[:, None] + areas_b[None, :] - overlap
    return overlap / total
'''

# Written independently: explicit loops over box pairs with Python max/min.
LOOP_IOU = '''
import torch


def box_iou(boxes1, boxes2):
    out = torch.zeros(len(boxes1), len(boxes2))
    for i, (ax1, ay1, ax2, ay2) in enumerate(boxes1.tolist()):
        for j, (bx1, by1, bx2, by2) in enumerate(boxes2.tolist()):
            w = max(0.0, min(ax2, bx2) - max(ax1, bx1))
            h = max(0.0, min(ay2, by2) - max(ay1, by1))
            inter = w * h
            union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out
'''

# The loop version copied by a classmate: renamed, re-commented.
LOOP_IOU_COPY = '''
import torch


def box_iou(p, q):
    # result matrix
    res = torch.zeros(len(p), len(q))
    for r, (x0, y0, x1, y1) in enumerate(p.tolist()):
        for c, (u0, t0, u1, t1) in enumerate(q.tolist()):
            width = max(0.0, min(x1, u1) - max(x0, u0))
            height = max(0.0, min(y1, t1) - max(y0, t0))
            i = width * height
            u = (x1 - x0) * (y1 - y0) + (u1 - u0) * (t1 - t0) - i
            res[r, c] = i / u if u > 0 else 0.0
    return res
'''

# A third, honest implementation: unbind the coordinates and broadcast with torch.maximum/minimum.
UNBIND_IOU = '''
import torch


def box_iou(boxes1, boxes2):
    x1, y1, x2, y2 = boxes1.unsqueeze(1).unbind(-1)
    X1, Y1, X2, Y2 = boxes2.unsqueeze(0).unbind(-1)
    iw = (torch.minimum(x2, X2) - torch.maximum(x1, X1)).clamp_min(0)
    ih = (torch.minimum(y2, Y2) - torch.maximum(y1, Y1)).clamp_min(0)
    inter = iw * ih
    return inter / ((x2 - x1) * (y2 - y1) + (X2 - X1) * (Y2 - Y1) - inter)
'''

SHORT = "def total(x):\n    return x.sum()\n"
SHORT_RENAMED = "def total(values):\n    # add up\n    return values.sum()\n"


def test_renamed_reformatted_copy_scores_high():
    score = similarity(REFERENCE_IOU, RENAMED_IOU)
    print(f"renamed copy vs reference: {score:.3f}")
    assert score >= 0.95
    assert normalise(REFERENCE_IOU) == normalise(RENAMED_IOU)


def test_normalise_drops_docstrings_comments_annotations_and_renames_locals():
    toks = normalise(REFERENCE_IOU)
    assert "box_iou" not in toks and "boxes1" not in toks and "area1" not in toks
    assert "torch" in toks and "clamp" in toks and "max" in toks and "min" in toks
    assert not any("IoU" in t or t.startswith("#") for t in toks)
    assert "Tensor" not in toks and "->" not in toks
    assert toks[:7] == ["import", "torch", "\n", "def", "v0", "(", "v1"]


def test_independent_implementations_score_low():
    pairs = {"reference vs loops": (REFERENCE_IOU, LOOP_IOU), "reference vs unbind": (REFERENCE_IOU, UNBIND_IOU),
             "loops vs unbind": (LOOP_IOU, UNBIND_IOU)}
    for name, (a, b) in pairs.items():
        score = similarity(a, b)
        print(f"{name}: {score:.3f}")
        assert score < 0.9, name
    copy = similarity(LOOP_IOU, LOOP_IOU_COPY)
    print(f"loops vs its renamed copy: {copy:.3f}")
    assert copy >= 0.95


def test_attribute_names_are_kept():
    clamp, clip = "def f(boxes):\n    return boxes.clamp(0)\n", "def f(boxes):\n    return boxes.clip(0)\n"
    assert "clamp" in normalise(clamp) and "clip" in normalise(clip)
    assert normalise(clamp) != normalise(clip)
    # A local that shares an attribute's name: the local is renamed, the attribute is not.
    assert normalise("def f(clamp):\n    return clamp.clamp(0)\n") == [
        "def", "v0", "(", "v1", ")", ":", "\n", "<indent>", "return", "v1", ".", "clamp", "(", "0", ")", "\n",
        "<dedent>"]


def test_unparsable_source_does_not_raise():
    for bad in ["def f(x:\n    return x +", "def f(x):\n  return (x\n", "\0", "", "   \n\t  x = '''"]:
        toks = normalise(bad)
        assert isinstance(toks, list)
        assert 0.0 <= similarity(bad, REFERENCE_IOU) <= 1.0
    assert normalise("def f(x:\n    return x +")[:4] == ["def", "f", "(", "x"]


def test_short_function_never_flags():
    assert similarity(SHORT, SHORT_RENAMED) == 1.0
    assert len(normalise(SHORT)) < 25
    subs = {"ann": {"total": SHORT}, "ben": {"total": SHORT_RENAMED}}
    assert find_flags(subs, {"total": SHORT}) == []
    assert find_flags(subs, {"total": SHORT}, min_tokens=5) != []


def test_find_flags_reference_copy_and_copying_pair():
    subs = {
        "alice": {"box_iou": RENAMED_IOU, "total": SHORT},
        "bob": {"box_iou": LOOP_IOU},
        "carol": {"box_iou": LOOP_IOU_COPY, "total": SHORT_RENAMED},
        "dave": {"box_iou": UNBIND_IOU},
    }
    flags = find_flags(subs, {"box_iou": REFERENCE_IOU, "total": SHORT})
    print(flags)
    assert [(f.student, f.checker, f.other) for f in flags] == [
        ("alice", "box_iou", REFERENCE), ("bob", "box_iou", "carol"), ("carol", "box_iou", "bob")]
    assert flags[0].score == 1.0
    assert flags[1].score == flags[2].score >= 0.9
    assert not any("dave" in (f.student, f.other) for f in flags)
    assert review_note(flags, "dave", "box_iou") == ""


def test_review_note_text():
    flags = [Flag("ann", "iou", "bob", 0.93), Flag("ann", "iou", REFERENCE, 0.97), Flag("ann", "nms", "bob", 0.91),
             Flag("bob", "iou", "ann", 0.93)]
    assert review_note(flags, "ann", "iou") == "review: 0.97 like the course reference; 0.93 like bob"
    assert review_note(flags, "ann", "nms") == "review: 0.91 like bob"
    assert review_note(flags, "ann", "other") == ""
    assert review_note([], "ann", "iou") == ""
    assert review_note([Flag("ann", "iou", "bob", 0.9)], "ann", "iou") == "review: 0.90 like bob"


def test_small_edit_still_flags_but_reordering_lowers_the_score():
    edited = similarity(REFERENCE_IOU, RENAMED_IOU.replace(".clamp(min = 0)", ".clamp_min(0)"))
    lines = RENAMED_IOU.splitlines()
    at = next(k for k, line in enumerate(lines) if line.strip().startswith("lo ="))
    lines[at], lines[at + 1] = lines[at + 1], lines[at]
    swapped = similarity(REFERENCE_IOU, "\n".join(lines))
    print(f"one call changed: {edited:.3f}; two statements swapped: {swapped:.3f}")
    assert edited >= 0.95
    # A documented limit: swapping two lines also swaps the names' numbering, so the score drops below 0.9.
    assert swapped < 0.9
