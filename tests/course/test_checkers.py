import torch

from course_lib.course.checkers import (
    Case,
    check_binarize_masks,
    check_filter_detections,
    compare,
    run_checks,
)
from course_lib.course.checkers.nb00_overview import fake_detections
from course_lib.training.predict import binarize_masks, filter_detections


def test_fake_detections_have_sorted_scores_and_the_exact_threshold():
    out = fake_detections(6, seed=0, exact=0.7)
    assert (out["scores"][:-1] >= out["scores"][1:]).all()
    assert (out["scores"] == 0.7).sum() == 1
    assert out["masks"].shape == (6, 1, 32, 40)


def test_reference_passes_and_is_returned(capsys):
    def mine(output, threshold):
        keep = output["scores"] >= threshold
        return {k: v[keep] for k, v in output.items()}

    assert check_filter_detections(mine) is mine
    assert capsys.readouterr().out.startswith("PASS check_filter_detections")


def test_stub_says_not_yet_and_hands_back_the_reference(capsys):
    def stub(output, threshold):
        raise NotImplementedError("Exercise: replace this line with your code")

    assert check_filter_detections(stub) is filter_detections
    assert "NOT YET check_filter_detections" in capsys.readouterr().out


def test_failure_names_the_case_what_differs_and_a_hint(capsys):
    def strict(output, threshold):  # off by one at the threshold
        keep = output["scores"] > threshold
        return {k: v[keep] for k, v in output.items()}

    assert check_filter_detections(strict) is filter_detections
    out = capsys.readouterr().out
    assert "FAIL check_filter_detections, case 'score exactly at the threshold is kept'" in out
    assert "shape" in out and "Hint 1/2:" in out


def test_exceptions_are_reported_not_raised(capsys):
    assert check_binarize_masks(lambda m, t: m.squeeze(7)) is binarize_masks
    assert "raised IndexError" in capsys.readouterr().out


def test_wrong_dtype_and_values_are_caught():
    assert "dtype" in compare(torch.ones(3), torch.ones(3, dtype=torch.int64))
    msg = compare(torch.tensor([1.0, 2.0, 3.5]), torch.tensor([1.0, 2.0, 3.0]))
    assert "index (2,)" in msg and "expected 3" in msg
    assert compare({"a": torch.zeros(0, 4)}, {"a": torch.zeros(0, 4)}) is None
    assert "keys" in compare({"a": 1}, {"b": 1})


def test_learner_in_place_edits_do_not_change_the_reference_inputs():
    def vandal(masks, threshold):
        masks.zero_()
        return binarize_masks(masks, threshold)

    cases = [Case("soft", (fake_detections(3, seed=0)["masks"], 0.5))]
    result = run_checks("check_vandal", vandal, binarize_masks, cases, verbose=False)
    assert result.status == "fail"


def test_hints_come_in_steps_one_per_failure_or_per_call(capsys):
    from course_lib.course.checkers import checker, hint

    check = checker("check_steps_demo", binarize_masks, lambda: [Case("soft", (fake_detections(3, seed=0)["masks"], 0.5))],
                    hint=["Drop the channel dimension.", "Compare with the threshold.", "masks[:, 0] > threshold"])
    wrong = lambda m, t: m > t  # noqa: E731
    check(wrong)
    out = capsys.readouterr().out
    assert out.startswith("FAIL check_steps_demo, case 'soft': result: shape") and "Hint 1/3: Drop the channel" in out
    assert "Compare" not in out
    check(wrong)
    assert "Hint 2/3: Compare with the threshold." in capsys.readouterr().out
    assert hint("check_steps_demo") == "Hint 3/3: masks[:, 0] > threshold"
    assert hint("steps_demo") == "Hint 3/3: masks[:, 0] > threshold"  # the last step stays
    assert check(lambda m, t: m[:, 0] > t) is not binarize_masks
    assert capsys.readouterr().out.splitlines()[-1] == "PASS check_steps_demo: all 1 cases agree with the reference"


def test_compare_uses_assert_close_and_names_the_worst_index():
    assert compare(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-7])) is None
    msg = compare(torch.tensor([[0.0, 5.0], [1.0, float("nan")]]), torch.tensor([[0.0, 5.0], [1.0, 2.0]]))
    assert "index (1, 1)" in msg and "expected 2" in msg


def test_a_failing_case_shows_its_own_hint_first_and_steps_advance_only_on_the_same_case(capsys):
    """Two different bugs in 03's roi_pool_one_box: each gets the hint of the case it breaks, not step 3/3."""
    import math

    import torch

    from course_lib.course.checkers import check_roi_pool_one_box
    from course_lib.course.checkers.core import _hints_shown, _last_case
    from course_lib.ops.roi_pool import roi_pool_one_box

    _hints_shown.pop("check_roi_pool_one_box", None)
    _last_case.pop("check_roi_pool_one_box", None)

    def bankers_rounding(feature, box, output_size, spatial_scale=1.0):
        rounded = torch.round(box * spatial_scale) / spatial_scale  # even neighbour: 2.5 -> 2
        return roi_pool_one_box(feature, rounded, output_size, spatial_scale)

    def float64_edges(feature, box, output_size, spatial_scale=1.0):
        out = roi_pool_one_box(feature, box, output_size, spatial_scale)
        if output_size == (7, 7) and math.isclose(spatial_scale, 1.0):
            out = out.clone()
            out[:, -1, -1] += 1  # what one edge a cell further does to the last bin
        return out

    messages = []
    for fn in (bankers_rounding, bankers_rounding, bankers_rounding, float64_edges, bankers_rounding):
        check_roi_pool_one_box(fn)
        messages.append(capsys.readouterr().out)
    assert "case 'corners exactly half-way" in messages[0] and "Hint for this case: Python's round(2.5)" in messages[0]
    assert "Hint 1/" in messages[1] and "Hint 2/" in messages[2], "the same case again: the general steps advance"
    assert "case 'a 29-cell box in 7 bins" in messages[3] and "Hint for this case: Look at how a bin edge" in messages[3]
    assert "Hint for this case: Python's round(2.5)" in messages[4], "another case failed in between: start over"
