"""Notebook 07: the trace through every stage, the comparison helpers, training side by side, the figures, and
the exercise's checker (the reference passes, wrong answers fail, the stub says NOT YET).
"""

from __future__ import annotations

import math
from collections import Counter

import matplotlib.pyplot as plt
import pytest
import torch

from course_lib.course.checkers import check_roi_align_batch
from course_lib.course.checkers.core import compare, run_checks
from course_lib.detection._utils import decode_boxes
from course_lib.detection.course_model import load_course_model
from course_lib.detection.mask_rcnn import (
    STAGE_FUNCTIONS,
    from_torchvision,
    load_course_mask_rcnn,
    plug_in,
    wrapped_stage_functions,
)
from course_lib.detection.roi_heads import paste_mask_in_image
from course_lib.lessons import nb07_your_mask_rcnn as lesson
from course_lib.ops.boxes import nms
from course_lib.ops.roi_align import roi_align_one_box

STAGES = ["input", "transform", "backbone + FPN", "rpn.head", "rpn.anchor_generator", "decode_boxes",
          "filter_proposals", "box_roi_pool.assign_fpn_levels", "roi_heads.box_roi_pool", "roi_heads.box_head",
          "roi_heads.box_predictor", "postprocess_detections", "roi_heads.mask_roi_pool", "roi_heads.mask_head", "roi_heads.mask_predictor",
          "maskrcnn_inference", "postprocess (paste)"]


@pytest.fixture(scope="module")
def model():
    return load_course_mask_rcnn()


def _rows(tr):
    return {(stage, name): shape for stage, name, shape, _ in tr.rows}


def test_trace_ends_where_forward_does_and_names_every_stage(model):
    image = lesson.shapes_sample(1, 7)[0]
    tr = lesson.trace(model, image)
    with torch.no_grad():
        direct = model([image])[0]
    out = tr.values["output"]
    assert set(out) == set(direct) and all(torch.equal(out[k], direct[k]) for k in direct)
    assert [s for s, *_ in tr.rows if s] == STAGES
    n_props, n_det = len(tr.values["proposals"]), len(out["boxes"])
    assert n_props == 250 and n_det > 0
    rows = tr.table().splitlines()
    assert rows[0].split() == ["stage", "tensor", "shape", "what", "it", "is"] and len(rows) == len(tr.rows) + 2
    shapes = {name: shape for _, name, shape, _ in tr.rows}
    assert shapes["box_features"] == str((n_props, 64, 7, 7))
    assert shapes["mask_logits"] == str((n_det, 4, 28, 28))
    assert shapes["masks"] == str((n_det, 1, 128, 128))
    assert shapes["anchors"] == str((sum(tr.values["anchors_per_level"]), 4))


def test_trace_on_an_odd_size_and_on_an_empty_image(model):
    odd = lesson.shapes_sample(1, 9)[0][:, 5:102, 3:120]  # resized by the transform, boxes mapped back
    tr = lesson.trace(model, odd)
    with torch.no_grad():
        direct = model([odd])[0]
    assert all(torch.equal(tr.values["output"][k], direct[k]) for k in direct)
    assert tr.values["output"]["masks"].shape[-2:] == (97, 117)
    assert "resized to 106x128" in tr.rows[1][3]  # the longer side to 128 (max_size)
    empty = lesson.trace(model, torch.zeros(3, 128, 128))
    assert empty.values["output"]["masks"].shape == (0, 1, 128, 128)


def _functions(model) -> dict:
    """What the model's instances hold at every stage-function path (None: the class's method is used)."""
    paths = STAGE_FUNCTIONS + ("rpn.nms", "roi_heads.nms", "roi_heads.decode_boxes", "paste_mask")
    return {p: model.get_submodule(p.rpartition(".")[0]).__dict__.get(p.rpartition(".")[2]) for p in paths}


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_trace_is_recorded_from_the_real_forward_and_leaves_the_model_as_it_was():
    model = load_course_mask_rcnn()
    image = lesson.shapes_sample(1, 7)[0]
    with torch.no_grad():
        direct = model([image])[0]
        images, _ = model.transform([image])
        proposals, _ = model.rpn(images, model.backbone(images.tensors))
    model.train()
    model.rpn.head.eval()  # mixed modes: each module's own comes back
    modes, functions = [m.training for m in model.modules()], _functions(model)
    tr = lesson.trace(model, image)
    assert [m.training for m in model.modules()] == modes and _functions(model) == functions
    assert _hooks(model) == 0 and "filter_proposals" not in vars(model.rpn) and "paste_masks" not in vars(model)
    assert all(torch.equal(tr.values["output"][k], direct[k]) for k in direct)  # traced in eval mode
    assert torch.equal(tr.values["proposals"], proposals[0]) and len(tr.values["proposal_scores"]) == 250
    rows = {stage: meaning for stage, _, _, meaning in tr.rows}
    assert rows["filter_proposals"] == "top 500 per level, clip, NMS 0.7, best 250"  # eval's settings, not 1000


def test_trace_runs_the_plugged_in_learner_functions_and_keeps_them():
    calls = Counter()

    def my_decode(deltas, reference_boxes, weights):
        calls["decode_boxes"] += 1
        return decode_boxes(deltas, reference_boxes, weights)

    def my_nms(boxes, scores, iou_threshold):
        calls["nms"] += 1
        return nms(boxes, scores, iou_threshold)

    def my_paste(mask, box, img_shape):
        calls["paste_mask"] += 1
        return paste_mask_in_image(mask, box, img_shape)

    model = plug_in(load_course_mask_rcnn(), decode_boxes=my_decode, nms=my_nms, paste_mask=my_paste)
    image = lesson.shapes_sample(1, 7)[0]
    with torch.no_grad():
        direct = model([image])[0]
    calls.clear()
    tr = lesson.trace(model, image)
    n_det = len(direct["boxes"])
    assert calls["decode_boxes"] == 2 and calls["nms"] > 0 and calls["paste_mask"] == n_det > 0  # one forward
    assert all(torch.equal(tr.values["output"][k], direct[k]) for k in direct)
    assert {name: shape for _, name, shape, _ in tr.rows}["decoded anchors"] == "(4092, 4)"
    assert model.rpn.decode_boxes is my_decode and model.roi_heads.decode_boxes is my_decode
    assert model.rpn.nms is my_nms and model.roi_heads.nms is my_nms and model.paste_mask is my_paste
    assert _hooks(model) == 0


def test_trace_restores_the_model_after_an_error():
    def broken_paste(mask, box, img_shape):
        raise RuntimeError("my paste_mask is broken")

    model = plug_in(load_course_mask_rcnn(), paste_mask=broken_paste)  # fails at the last stage
    functions = _functions(model)
    with pytest.raises(RuntimeError, match="broken"):
        lesson.trace(model, lesson.shapes_sample(1, 7)[0])
    assert _functions(model) == functions and model.paste_mask is broken_paste and _hooks(model) == 0
    assert not any(m.training for m in model.modules())


def test_wrapped_stage_functions_wraps_any_path_and_restores_it(model):
    seen = []

    def wrap(path, fn):
        def counted(*args, **kwargs):
            seen.append(path)
            return fn(*args, **kwargs)
        return counted

    with wrapped_stage_functions(model, wrap, ("rpn.filter_proposals", "roi_heads.nms")):
        assert "filter_proposals" in vars(model.rpn) and model.roi_heads.nms is not nms
        with torch.no_grad():
            model([lesson.shapes_sample(1, 7)[0]])
    assert seen[0] == "rpn.filter_proposals" and seen.count("rpn.filter_proposals") == 1 and "roi_heads.nms" in seen
    assert "filter_proposals" not in vars(model.rpn) and model.roi_heads.nms is nms and model.rpn.nms is nms


def test_anchors_at_centre_are_the_middle_cells_anchors(model):
    tr = lesson.trace(model, lesson.shapes_sample(1, 3)[0])
    anchors, levels = lesson.anchors_at_centre(tr)
    assert len(anchors) == 15 and levels == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    assert torch.allclose(centres, torch.full_like(centres, 64.0), atol=1.0)  # the middle of a 128-pixel image


def test_parts_table_says_what_is_the_courses(model):
    tv = load_course_model()
    rows = {r[0]: r for r in lesson.parts_table(model, tv)}
    assert len(rows) == len(lesson.PARTS) and all(len(r) == len(lesson.PARTS_HEADER) for r in rows.values())
    for path in ("transform", "backbone.body", "backbone.fpn"):
        assert rows[path][2] == rows[path][3] and rows[path][2].startswith("torchvision/")
    for path in ("rpn.anchor_generator", "rpn", "roi_heads", "roi_heads.box_roi_pool", "roi_heads.mask_head"):
        assert rows[path][2].startswith("course_lib/") and rows[path][3].startswith("torchvision/")
    assert rows["rpn"][1] == "RegionProposalNetwork" and rows["roi_heads.box_roi_pool"][4] == "03"
    with pytest.raises(AttributeError):  # torchvision's stages have no pluggable functions
        lesson.plugged_functions(tv)


def test_plugged_functions_name_the_learners_own():
    def my_nms(boxes, scores, iou_threshold):
        from course_lib.ops.boxes import nms

        return nms(boxes, scores, iou_threshold)

    m = plug_in(load_course_mask_rcnn(), nms=my_nms)
    rows = {r[0]: r for r in lesson.plugged_functions(m)}
    assert rows["nms"][1] == f"my_nms ({__name__})" and rows["nms"][2] == "rpn, roi_heads"
    assert rows["box_iou"][1] == "box_iou (course_lib/ops/boxes.py)"
    assert rows["paste_mask"][2] == "model"


def test_detection_differences_and_their_description(model):
    images = [lesson.shapes_sample(1, i)[0] for i in range(3)]
    tv = load_course_model()
    with torch.no_grad():
        a, b = tv(images), model(images)
    diffs = lesson.detection_differences(a, b)
    assert diffs["same detections"] and max(diffs["boxes"], diffs["scores"], diffs["masks"]) < 1e-4
    assert lesson.describe_differences(diffs).splitlines() == [
        "same detections (count, labels, order): True", "largest difference in boxes : < 0.0001",
        "largest difference in scores: < 0.0001", "largest difference in masks : < 0.0001"]
    shifted = [{**o, "scores": o["scores"] + 0.01} for o in b]
    assert "scores: 0.01" in lesson.describe_differences(lesson.detection_differences(a, shifted))
    fewer = [{k: v[1:] for k, v in o.items()} for o in b]
    d = lesson.detection_differences(a, fewer)
    assert not d["same detections"] and math.isnan(d["boxes"])
    assert lesson.detection_differences(a, a)["masks"] == 0.0


def test_first_divergence_and_smooth():
    assert lesson.first_divergence([1.0, 2.0, 3.0], [1.0, 2.00001, 3.1]) == 3
    assert lesson.first_divergence([1.0, 2.0], [1.0, 2.0]) is None
    assert lesson.smooth([1, 2, 3, 4], 2).tolist() == [1.5, 2.5, 3.5]
    assert lesson.smooth([1, 2], 10).tolist() == [1.5]


def test_train_steps_agree_with_torchvision_on_the_first_steps():
    batches = lesson.shapes_batches(2, batch_size=2, seed=0)
    assert len(batches) == 2 and len(batches[0][0]) == 2 and batches[0][1][0]["labels"].dtype == torch.int64
    tv = load_course_model()
    ours = from_torchvision(tv)
    h_tv = lesson.train_steps(tv, batches, lr=0.002, seed=0)
    h_ours = lesson.train_steps(ours, batches, lr=0.002, seed=0)
    assert set(h_tv[0]) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg",
                            "loss"}
    assert not tv.training and not ours.training
    assert lesson.first_divergence([h["loss"] for h in h_tv], [h["loss"] for h in h_ours], rtol=1e-4) is None
    assert h_tv[0]["loss"] == pytest.approx(sum(v for k, v in h_tv[0].items() if k != "loss"), rel=1e-6)


def test_figures(model):
    tr = lesson.trace(model, lesson.shapes_sample(1, 7)[0])
    fig = lesson.trace_figure(tr, ["__background__", "circle", "square", "triangle"])
    assert len(fig.axes) == 4 and "proposals" in fig.axes[1].get_title()
    plt.close(fig)
    fig = lesson.plot_two_curves({"a": [1.0, 2.0, 3.0, 2.0, 1.0], "b": [1.0, 2.0, 3.1, 2.2, 1.1]}, first=5, k=2)
    assert len(fig.axes) == 2 and "part at step 3" in [t.get_text().strip() for t in fig.axes[0].texts]
    plt.close(fig)
    # fewer steps than the smoothing window (a smoke run trains 4): one running mean over all of them
    fig = lesson.plot_two_curves({"a": [1.0, 2.0, 3.0, 2.0], "b": [1.0, 2.0, 3.0, 2.0]}, first=20, k=10)
    (line, _) = fig.axes[1].get_lines()
    assert list(line.get_xdata()) == [4] and list(line.get_ydata()) == [2.0]
    plt.close(fig)


# ------------------------------------------------------------------ the exercise's checker

def solution(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1):
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(rois) == 0:
        return input.new_zeros((0, input.shape[1], out_h, out_w))
    return torch.stack([roi_align_one_box(input[int(r[0])], r[1:], (out_h, out_w), spatial_scale, sampling_ratio)
                        for r in rois])


def test_checker_passes_the_solution_and_hands_it_back(capsys):
    assert check_roi_align_batch(solution) is solution
    assert "PASS check_roi_align_batch" in capsys.readouterr().out
    for seed in (0, 1, 12345, 2**31 - 1):
        result = run_checks("check_roi_align_batch", solution, check_roi_align_batch.reference,
                            check_roi_align_batch.hidden_cases(seed), verbose=False)
        assert result.status == "pass", f"seed {seed}: {result.message}"


def test_checker_says_not_yet_for_the_stub(capsys):
    def stub(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1):
        raise NotImplementedError("Exercise: replace this line with your code")

    assert check_roi_align_batch(stub) is check_roi_align_batch.reference
    assert "NOT YET" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, case", [
    (lambda i, r, o, s=1.0, sr=-1: solution(i[:1].expand(len(i), -1, -1, -1), r, o, s, sr), "batch index"),
    (lambda i, r, o, s=1.0, sr=-1: solution(i, r, o if isinstance(o, int) else o[0], s, sr), "3x6 output"),
    (lambda i, r, o, s=1.0, sr=-1: solution(i, r, o, s, 2), "adaptive sampling"),
])
def test_checker_catches_wrong_answers(wrong, case, capsys):
    assert check_roi_align_batch(wrong) is check_roi_align_batch.reference
    out = capsys.readouterr().out
    assert "FAIL check_roi_align_batch" in out and case in out and "Hint" in out


def test_empty_rois_without_the_special_case_fail():
    def no_empty_case(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1):
        out = output_size if isinstance(output_size, tuple) else (output_size, output_size)
        return torch.stack([roi_align_one_box(input[int(r[0])], r[1:], out, spatial_scale, sampling_ratio)
                            for r in rois])

    result = run_checks("check_roi_align_batch", no_empty_case, check_roi_align_batch.reference,
                        check_roi_align_batch.cases(), verbose=False)
    assert result.status == "fail" and "no RoIs" in result.message


def test_hidden_cases_catch_an_answer_that_forces_float32():
    def float32(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1):
        return solution(input.float(), rois.float(), output_size, spatial_scale, sampling_ratio)

    shown = run_checks("c", float32, check_roi_align_batch.reference, check_roi_align_batch.cases(), verbose=False)
    assert shown.status == "pass"
    for seed in (0, 1, 12345):
        hidden = run_checks("c", float32, check_roi_align_batch.reference, check_roi_align_batch.hidden_cases(seed),
                            verbose=False)
        assert hidden.status == "fail" and "float64" in hidden.message


def test_hidden_cases_are_drawn_from_the_seed_and_new():
    first, again, other = (check_roi_align_batch.hidden_cases(s) for s in (7, 7, 8))
    same = [compare([a.args, a.kwargs], [b.args, b.kwargs]) is None for a, b in zip(first, again, strict=True)]
    assert len(first) == len(again) and all(same)
    assert not all(compare([a.args, a.kwargs], [b.args, b.kwargs]) is None for a, b in zip(first, other, strict=True))
    assert {c.name for c in first} - {c.name for c in check_roi_align_batch.cases()}


def test_plugged_in_solution_keeps_torchvisions_detections(model):
    tv = load_course_model()
    ours = plug_in(from_torchvision(tv), roi_align=solution)
    images = [lesson.shapes_sample(1, i)[0] for i in range(2)]
    with torch.no_grad():
        diffs = lesson.detection_differences(tv(images), ours(images))
    assert diffs["same detections"] and max(diffs["boxes"], diffs["scores"], diffs["masks"]) < 1e-4


@pytest.mark.training
def test_sampled_positives_records_each_step_and_finds_where_two_runs_draw_differently():
    batches = lesson.shapes_batches(2, batch_size=2, seed=0)
    runs = []
    for _ in range(2):
        model = load_course_mask_rcnn()
        samplers = (model.rpn.fg_bg_sampler, model.roi_heads.fg_bg_sampler)
        with lesson.sampled_positives(model) as counts:
            lesson.train_steps(model, batches, seed=0)
        assert (model.rpn.fg_bg_sampler, model.roi_heads.fg_bg_sampler) == samplers  # restored
        runs.append(counts)
    assert len(runs[0]) == 2 and set(runs[0][0]) == {"rpn", "roi", "rpn drawn", "roi drawn"}
    assert all(c["rpn"] > 0 and c["roi"] > 0 for c in runs[0])
    assert lesson.first_sampling_difference(runs[0], runs[1]) is None  # same seed, same numbers, same draws
    other = [dict(runs[1][0]), {**runs[1][1], "roi drawn": runs[1][1]["roi drawn"] + 1}]
    assert lesson.first_sampling_difference(runs[0], other) == 1  # same counts, other samples
