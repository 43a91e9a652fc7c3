"""course_lib.lessons.nb06_fine_tuning: the error pictures (whole image or zoomed)."""


from course_lib.lessons.nb06_fine_tuning import DET_COLOUR, ERROR_TITLES, GT_COLOUR, draw_error
from shared_cases import drawing_case


def test_draw_error_whole_image_keeps_its_size_and_colours_the_masks():
    image, output, target = drawing_case()
    picture, title = draw_error(image, output, target, "poor_masks", (0, 0, 0.52), ["bg", "star", "hexagon"])
    assert picture.shape == (3, 128, 128) and title == "image 9: poor mask, mask IoU 0.52"
    # both masks: yellow-ish; gt only: green-ish; outside: grey
    both, gt_only, outside = picture[:, 42, 114], picture[:, 48, 102], picture[:, 100, 10]  # [:, y, x]
    assert both[0] > 150 and both[1] > 150 and both[2] < 100
    assert gt_only[1] > gt_only[0] and gt_only[1] > gt_only[2]
    assert outside[0] == outside[1] == outside[2]


def test_draw_error_zoom_puts_the_names_in_the_title_and_enlarges():
    image, output, target = drawing_case()
    picture, title = draw_error(image, output, target, "wrong_class", (0, 0), ["bg", "star", "hexagon"], zoom=True)
    assert title == "image 9: wrong class\ngt hexagon (green), star 0.90 (red)"
    assert min(picture.shape[-2:]) >= 160  # a 40-pixel window enlarged to about 192
    _, title = draw_error(image, output, target, "background", 0, ["bg", "star", "hexagon"], zoom=True)
    assert title == "image 9: mislocalised\nstar 0.90 (red)" and ERROR_TITLES["background"] == "mislocalised"
    _, title = draw_error(image, output, target, "misses", 0, ["bg", "star", "hexagon"], zoom=True)
    assert title == "image 9: miss\ngt hexagon (green)"
    assert GT_COLOUR != DET_COLOUR
