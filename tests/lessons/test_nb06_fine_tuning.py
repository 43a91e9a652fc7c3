"""course_lib.lessons.nb06_fine_tuning: the error pictures (whole image or zoomed)."""


from course_lib.lessons.nb06_fine_tuning import DET_COLOUR, ERROR_TITLES, GT_COLOUR, draw_error
from shared_cases import drawing_case


def test_draw_error_whole_image_keeps_its_size_and_colours_the_masks():
    image, output, target = drawing_case()
    picture, title = draw_error(image, output, target, "poor_masks", (0, 0, 0.52), ["bg", "star", "hexagon"])
    assert picture.shape == (3, 128, 128) and title == "image 9: poor mask, mask IoU 0.52"
    # both masks: yellow-ish; gt only: blue-ish; outside: grey
    both, gt_only, outside = picture[:, 42, 114], picture[:, 48, 102], picture[:, 100, 10]  # [:, y, x]
    assert both[0] > 150 and both[1] > 150 and both[2] < 100
    assert gt_only[2] > gt_only[1] > gt_only[0]
    assert outside[0] == outside[1] == outside[2]


def test_draw_error_zoom_puts_the_names_in_the_title_and_enlarges():
    image, output, target = drawing_case()
    picture, title = draw_error(image, output, target, "wrong_class", (0, 0), ["bg", "star", "hexagon"], zoom=True)
    assert title == "image 9: wrong class\ntruth hexagon (blue), star 0.90 (orange-red)"
    assert min(picture.shape[-2:]) >= 160  # a 40-pixel window enlarged to about 192
    _, title = draw_error(image, output, target, "background", 0, ["bg", "star", "hexagon"], zoom=True)
    assert title == "image 9: mislocalised\nstar 0.90 (orange-red)" and ERROR_TITLES["background"] == "mislocalised"
    _, title = draw_error(image, output, target, "misses", 0, ["bg", "star", "hexagon"], zoom=True)
    assert title == "image 9: miss\ntruth hexagon (blue)"
    assert GT_COLOUR != DET_COLOUR


def test_draw_error_with_one_class_names_only_the_truth_and_the_score():
    image, output, target = drawing_case()
    _, title = draw_error(image, output, target, "wrong_class", (0, 0), ["bg", "nucleus"], zoom=True)
    assert title == "image 9: wrong class\ntruth (blue), 0.90 (orange-red)"


def test_draw_error_colours_stay_apart_for_colour_vision_deficiency():
    from course_lib.lessons.nb06_fine_tuning import BOTH_COLOUR
    from course_lib.utils.colours import distance

    for vision in (None, "protanopia", "deuteranopia", "tritanopia"):
        for a, b in ((GT_COLOUR, DET_COLOUR), (GT_COLOUR, BOTH_COLOUR), (DET_COLOUR, BOTH_COLOUR)):
            assert distance(a, b, vision) >= 30, (a, b, vision)
    assert distance("#00e000", "#ff1010", "deuteranopia") < 30  # the green and red used before: too close


def test_loss_and_precision_recall_figures_say_what_they_show():
    import numpy as np

    from course_lib.lessons.draw import alt_text
    from course_lib.lessons.nb06_fine_tuning import plot_loss_curves, plot_pr_curves
    from course_lib.training.pr_curves import PRCurve

    history = [{"iters": {"loss_mask": np.array([1.0, 0.8, 0.6]), "loss": np.array([2.0, 1.5, 1.2])}},
               {"iters": {"loss_mask": np.array([0.5, 0.4]), "loss": np.array([1.0, 0.9])}}]
    text = alt_text(plot_loss_curves(history, smooth=2))
    assert "2 line charts" in text and "over 2 epochs" in text and "loss_mask 0.9 to 0.45" in text
    curve = PRCurve(iou=0.5, category_id=1, recall=np.linspace(0, 1, 4), precision=np.array([1.0, 1.0, 1.0, 0.9]))
    text = alt_text(plot_pr_curves([curve], ["bg", "star"], title="masks"))
    assert "IoU 0.50 star AP 0.975" in text
