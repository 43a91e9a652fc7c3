"""Hidden cases (``course grade`` only): drawn from the run's seed, never in the notebook, fair to right answers.

For every notebook, an answer that passes the notebook's cases but is wrong elsewhere fails a hidden case; the
solutions' own answers pass the hidden cases of every seed tried.
"""

from __future__ import annotations

import ast
import math

import pytest
import torch

from course_lib.course import checkers
from course_lib.course.checkers.core import compare, registry, run_checks
from course_lib.utils.paths import REPO_ROOT as ROOT

NOTEBOOKS = ("01_backbone_fpn", "02_anchors_rpn", "03_roi_align", "04_heads_mask_branch", "05_coco_dataset",
             "06_fine_tuning", "07_your_mask_rcnn", "08_real_images")
SEEDS = (0, 1, 12345, 2**31 - 1)


def _adapted(check, fn):
    return check.adapted(fn)


def catches(check, fn, seeds=SEEDS[:3]) -> str:
    """Assert ``fn`` passes the notebook's cases and fails a hidden case for every seed; the first message."""
    shown = run_checks(check.__name__, _adapted(check, fn), _adapted(check, check.reference), check.cases(),
                       verbose=False)
    assert shown.status == "pass", shown.message
    messages = []
    for seed in seeds:
        hidden = run_checks(check.__name__, _adapted(check, fn), _adapted(check, check.reference),
                            check.hidden_cases(seed), verbose=False)
        assert hidden.status == "fail", f"seed {seed}: {hidden.message}"
        messages.append(hidden.message)
    return messages[0]


def _comparable(x):
    """A case's arguments as values ``compare`` can judge: a module by its weights."""
    if isinstance(x, torch.nn.Module):
        return dict(x.state_dict())
    if isinstance(x, (list, tuple)):
        return [_comparable(v) for v in x]
    if isinstance(x, dict):
        return {k: _comparable(v) for k, v in x.items()}
    return torch.from_numpy(x) if type(x).__module__ == "numpy" else x


def _same_case(a, b) -> bool:
    return compare(_comparable([a.args, a.kwargs]), _comparable([b.args, b.kwargs])) is None


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_checker_has_hidden_cases_of_its_own_drawn_from_the_seed(notebook):
    for name in registry[notebook]:
        check = getattr(checkers, name)
        assert check.hidden_cases is not None, name
        shown = {c.name for c in check.cases()}
        first, again, other = check.hidden_cases(7), check.hidden_cases(7), check.hidden_cases(8)
        assert len(first) == len(again) and all(map(_same_case, first, again)), f"{name}: the same seed must give the same hidden cases (the grader draws them twice)"
        assert not all(map(_same_case, first, other)), f"{name}: another seed must give other hidden cases"
        new = [c for c in first if c.name not in shown]
        assert new, f"{name}: no hidden case that the notebook does not already show"


def _solution_functions(notebook: str) -> dict[str, object]:
    """The solution notebook's answers, by checker: the imports of every code cell, then each exercise's def."""
    import nbformat

    nb = nbformat.read(ROOT / "solutions" / f"{notebook}.ipynb", as_version=4)
    cells = [ast.parse(c.source) for c in nb.cells if c.cell_type == "code"]
    namespace: dict = {}
    imports = [n for tree in cells for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    exec(compile(ast.Module(body=imports, type_ignores=[]), notebook, "exec"), namespace)
    answers = {}
    for tree in cells:
        calls = [n for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
                 and isinstance(n.value.func, ast.Name) and n.value.func.id.startswith("check_")]
        defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        if calls and defs:
            exec(compile(ast.Module(body=defs, type_ignores=[]), notebook, "exec"), namespace)
            for call in calls:
                answers[call.value.func.id] = namespace[call.value.args[0].id]
    return answers


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_solutions_pass_the_hidden_cases(notebook):
    answers = _solution_functions(notebook)
    assert sorted(answers) == sorted(registry[notebook])
    seeds = SEEDS[:2] if notebook == "06_fine_tuning" else SEEDS
    for name, fn in answers.items():
        check = getattr(checkers, name)
        for seed in seeds:
            result = run_checks(name, _adapted(check, fn), _adapted(check, check.reference), check.hidden_cases(seed),
                                verbose=False)
            assert result.status == "pass", f"seed {seed}: {result.message}"


# ------------------------------------------------------- answers right on the notebook's cases, wrong elsewhere

def test_01_an_fpn_unrolled_for_the_notebooks_2_and_4_levels():
    import torch.nn.functional as F

    def unrolled(features, inner_blocks, layer_blocks):
        def up(x, like):
            return F.interpolate(x, size=like.shape[-2:], mode="nearest")

        if len(features) == 2:
            p3 = inner_blocks[1](features[1])
            p2 = inner_blocks[0](features[0]) + up(p3, features[0])
            return [layer_blocks[0](p2), layer_blocks[1](p3)]
        c2, c3, c4, c5 = features
        i5 = inner_blocks[3](c5)
        i4 = inner_blocks[2](c4) + up(i5, c4)
        i3 = inner_blocks[1](c3) + up(i4, c3)
        i2 = inner_blocks[0](c2) + up(i3, c2)
        return [layer_blocks[k](x) for k, x in enumerate((i2, i3, i4, i5))]

    assert "raised ValueError" in catches(checkers.check_fpn_merge, unrolled)


def test_03_bilinear_with_strict_bounds_and_levels_with_math_log2():
    def strict(feature, y, x):  # `>= W` where RoIAlign has `> W`: a point exactly on x = W reads 0, not column W-1
        C, H, W = feature.shape
        if y < -1.0 or y >= H or x < -1.0 or x >= W:
            return feature.new_zeros(C)
        return checkers.check_bilinear_interpolate.reference(feature, y, x)

    message = catches(checkers.check_bilinear_interpolate, strict)
    assert "x exactly W reads the last column" in message and "values differ" in message

    def one_by_one(boxes, k_min=2, k_max=5, canonical_scale=224, canonical_level=4):
        levels = []
        for x1, y1, x2, y2 in boxes.tolist():
            k = math.floor(canonical_level + math.log2(math.sqrt((x2 - x1) * (y2 - y1)) / canonical_scale) + 1e-6)
            levels.append(min(max(k, k_min), k_max) - k_min)
        return torch.tensor(levels, dtype=torch.int64)

    message = catches(checkers.check_assign_fpn_levels, one_by_one)
    assert "zero width" in message and "math domain error" in message


def test_04_a_cross_entropy_written_with_log_sigmoid():
    from course_lib.detection.roi_heads import project_masks_on_boxes

    def by_hand(mask_logits, proposals, gt_masks, gt_labels, mask_matched_idxs):
        M = mask_logits.shape[-1]
        labels = torch.cat([lab[idx] for lab, idx in zip(gt_labels, mask_matched_idxs, strict=True)])
        targets = torch.cat([project_masks_on_boxes(m, p, idx, M)
                             for m, p, idx in zip(gt_masks, proposals, mask_matched_idxs, strict=True)])
        if targets.numel() == 0:
            return mask_logits.sum() * 0
        p = mask_logits[torch.arange(len(labels)), labels].sigmoid()
        return -(targets * p.log() + (1 - targets) * (1 - p).log()).mean()

    assert "confident logits" in catches(checkers.check_maskrcnn_loss, by_hand)


def test_05_labels_in_the_dicts_order_instead_of_the_ids_order():
    def dict_order(instance_map, categories):
        target = checkers.check_instance_map_to_target.reference(instance_map, categories)
        return {**target, "labels": torch.tensor(list(categories.values()), dtype=torch.int64)}

    assert "categories listed in reverse id order" in catches(checkers.check_instance_map_to_target, dict_order)


def test_06_mask_iou_with_view_on_non_contiguous_masks():
    def viewed(masks1, masks2):
        a = masks1.view(len(masks1), masks1.shape[1] * masks1.shape[2]).float()
        b = masks2.view(len(masks2), masks2.shape[1] * masks2.shape[2]).float()
        inter = a @ b.T
        union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
        return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))

    message = catches(checkers.check_mask_iou, viewed)
    assert "not contiguous" in message and "raised RuntimeError" in message


def test_08_boxes_recomputed_from_the_rotated_masks():
    from torchvision.ops import masks_to_boxes

    def from_masks(image, target):
        masks = torch.rot90(target["masks"], 1, dims=(-2, -1))
        boxes = masks_to_boxes(masks) + torch.tensor([0.0, 0, 1, 1]) if len(masks) else target["boxes"]
        return torch.rot90(image, 1, dims=(-2, -1)), {**target, "boxes": boxes, "masks": masks}

    assert "a box larger than its mask" in catches(checkers.check_rot90_target, from_masks)


def test_03_roi_pool_rounding_halves_up_with_floor():
    def floor_half(feature, box, output_size, spatial_scale=1.0):  # floor(v + 0.5): right for 2.5, wrong for -2.5
        (out_h, out_w), (C, H, W) = output_size, feature.shape
        x1, y1, x2, y2 = (math.floor(v + 0.5) for v in (box.float() * torch.tensor(spatial_scale)).tolist())

        def edges(first, last, bins, size):
            i = torch.arange(bins + 1, dtype=torch.float32) * (torch.tensor(max(last - first + 1, 1.0)) / bins)
            return list(zip((torch.floor(i[:-1]).long() + first).clamp(0, size).tolist(),
                            (torch.ceil(i[1:]).long() + first).clamp(0, size).tolist(), strict=True))

        out = feature.new_zeros(C, out_h, out_w)
        for i, (r0, r1) in enumerate(edges(y1, y2, out_h, H)):
            for j, (c0, c1) in enumerate(edges(x1, x2, out_w, W)):
                if r1 > r0 and c1 > c0:
                    out[:, i, j] = feature[:, r0:r1, c0:c1].amax(dim=(1, 2))
        return out

    message = catches(checkers.check_roi_pool_one_box, floor_half)
    assert "negative corners exactly half-way" in message and "values differ" in message


def test_05_annotations_in_the_sidecars_string_order():
    import numpy as np

    from course_lib.data.masks import mask_to_annotation

    def string_order(instance_map, sidecar, cat_ids, image_id, first_id=1):
        annotations = []
        for key in sorted(sidecar):  # "10" < "2" < "9"
            mask = instance_map == int(key)
            if not np.any(mask):
                continue
            entry = sidecar[key]
            name, crowd = (entry["category"], entry.get("iscrowd", 0)) if isinstance(entry, dict) else (entry, 0)
            annotation = mask_to_annotation(mask, first_id + len(annotations), image_id, cat_ids[name])
            annotations.append({**annotation, "iscrowd": crowd})
        return annotations

    assert "ids 2, 9, 10, 11" in catches(checkers.check_instance_map_to_annotations, string_order)
