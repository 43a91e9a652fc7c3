"""course_lib.lessons.nb08_real_images: the table of AP figures with their bootstrap intervals."""

import contextlib
import io

import pytest
from pycocotools.coco import COCO

from course_lib.lessons.nb08_real_images import interval_table
from course_lib.training.evaluation import bootstrap_ap


def tiles(n=4):
    """n 64x64 images with two boxes each; 'good' finds every box, 'half' only those of the first n / 2 images."""
    images = [{"id": i, "width": 64, "height": 64} for i in range(1, n + 1)]
    boxes = [[4.0, 4.0, 20.0, 20.0], [36.0, 30.0, 16.0, 24.0]]
    anns = [{"id": 2 * (i - 1) + k + 1, "image_id": i, "category_id": 1, "bbox": b, "area": b[2] * b[3],
             "iscrowd": 0} for i in range(1, n + 1) for k, b in enumerate(boxes)]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "nucleus"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    good = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9} for a in anns]
    half = [d for d in good if d["image_id"] <= n // 2]
    return gt, good, half


def test_interval_table_shows_each_run_and_the_paired_difference():
    gt, good, half = tiles(8)
    runs = {"good": bootstrap_ap(gt, good, "bbox", n_resamples=200), "half": bootstrap_ap(gt, half, "bbox",
                                                                                         n_resamples=200)}
    lines = interval_table(runs).splitlines()
    assert lines[0] == "bbox, 95% bootstrap intervals over 8 images (200 draws)"
    assert lines[1].split() == ["AP50", "AP75", "AP"]
    assert lines[2].split()[:4] == ["good", "1.000", "[1.000,", "1.000]"]
    assert lines[3].startswith("half") and lines[4].startswith("difference")
    assert lines[5].startswith("(good - half;") and "AP50 beyond" in lines[5]
    # with 4 images, 1 draw in 16 holds only the 2 that both runs get right: the gap is not beyond the noise
    gt4, good4, half4 = tiles(4)
    four = {"good": bootstrap_ap(gt4, good4, "bbox"), "half": bootstrap_ap(gt4, half4, "bbox")}
    assert "AP50 within" in interval_table(four).splitlines()[5]
    same = interval_table({"a": runs["good"], "b": runs["good"]}).splitlines()
    assert same[4].split()[1:4] == ["0.000", "[0.000,", "0.000]"] and "AP within" in same[5]
    one = interval_table({"good": runs["good"]}, stats=("AP",)).splitlines()
    assert len(one) == 3 and one[1].split() == ["AP"]


def test_interval_table_refuses_nothing_to_show_and_unpaired_runs():
    gt, good, half = tiles()
    with pytest.raises(ValueError, match="no runs to show"):
        interval_table({})
    a = bootstrap_ap(gt, good, "bbox", n_resamples=50)
    b = bootstrap_ap(gt, half, "bbox", n_resamples=50, seed=1)
    with pytest.raises(ValueError, match="different resamples"):
        interval_table({"a": a, "b": b})


def test_plot_split_says_how_many_nuclei_each_split_holds():
    import numpy as np

    from course_lib.lessons.draw import alt_text
    from course_lib.lessons.nb08_real_images import plot_split

    labels = np.zeros((64, 96), dtype=np.int32)
    labels[10:20, 5:15] = 1  # train only
    labels[30:40, 40:56] = 2  # across the line at x = 48
    labels[5:15, 70:80] = 3  # val only
    rgb = np.zeros((64, 96, 3), dtype=np.uint8)
    text = alt_text(plot_split(rgb, labels, val_x0=48, tile=32, train_stride=16))
    assert "1 only left of the line at x = 48" in text and "1 only right of it" in text and "1 across" in text
