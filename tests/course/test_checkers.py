import torch

from course_lib.course.checkers import (
    Case,
    check_binarize_masks,
    check_filter_detections,
    compare,
    run_checks,
)
from course_lib.lessons.nb00_overview import fake_detections
from course_lib.training.predict import binarize_masks, filter_detections


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
    assert "shape" in out and "Hint:" in out


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
