"""course_lib.lessons.draw: the larger detection pictures (upscale, font size, filled labels)."""


from course_lib.lessons import draw
from shared_cases import drawing_case


def test_draw_instances_font_size_and_filled_labels_are_optional():
    image, output, target = drawing_case()
    default = draw.draw_target(image, target, ["bg", "star", "hexagon"])
    big = draw.draw_target(image, target, ["bg", "star", "hexagon"], upscale=6, font_size=20, fill_labels=True)
    assert default.shape == (3, 384, 384) and big.shape == (3, 768, 768)
    assert draw.draw_detections(image, output, ["bg", "star", "hexagon"], 0.5, upscale=2).shape == (3, 256, 256)
