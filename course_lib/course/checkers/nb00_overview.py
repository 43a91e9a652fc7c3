"""Checkers for 00_overview's exercises.
"""

from course_lib.course.checkers.core import Case, checker
from course_lib.lessons.nb00_overview import fake_detections
from course_lib.training.predict import binarize_masks, filter_detections

__all__ = ["check_binarize_masks", "check_filter_detections"]


def _detection_cases() -> list[Case]:
    return [Case("typical output, threshold 0.5", (fake_detections(8, seed=0), 0.5)),
            Case("threshold 0.9 keeps few", (fake_detections(8, seed=1), 0.9)),
            Case("no detections at all", (fake_detections(0, seed=2), 0.5)),
            Case("nothing above the threshold", (fake_detections(5, seed=3, max_score=0.3), 0.5)),
            Case("score exactly at the threshold is kept", (fake_detections(4, seed=4, exact=0.7), 0.7))]


def _masks_cases() -> list[Case]:
    return [Case("typical soft masks", (fake_detections(6, seed=5)["masks"], 0.5)),
            Case("no masks", (fake_detections(0, seed=6)["masks"], 0.5)),
            Case("other threshold", (fake_detections(3, seed=7)["masks"], 0.25))]


check_filter_detections = checker(
    "check_filter_detections", filter_detections, _detection_cases, notebook="00_overview",
    hint="Hint: build one boolean index from output['scores'] >= score_threshold and apply it to every "
         "tensor in the dict.")


check_binarize_masks = checker(
    "check_binarize_masks", binarize_masks, _masks_cases, notebook="00_overview",
    hint="Hint: masks arrive as (N, 1, H, W) probabilities; drop the channel dimension and compare with the "
         "threshold to get (N, H, W) bool.")
