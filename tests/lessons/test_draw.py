"""course_lib.lessons.draw: the larger detection pictures, alt text on figures (and in displayed outputs), the
grids of images, and palettes that stay apart for colour-vision deficiency."""

import itertools
from functools import partial

import pytest
import torch
from IPython.core.formatters import DisplayFormatter
from IPython.core.pylabtools import print_figure, retina_figure

from course_lib.lessons import draw
from course_lib.utils.colours import INSTANCE_PALETTE, PALETTE, distance
from shared_cases import drawing_case

VISIONS = (None, "protanopia", "deuteranopia", "tritanopia")


def test_draw_instances_font_size_and_filled_labels_are_optional():
    image, output, target = drawing_case()
    default = draw.draw_target(image, target, ["bg", "star", "hexagon"])
    big = draw.draw_target(image, target, ["bg", "star", "hexagon"], upscale=6, font_size=20, fill_labels=True)
    assert default.shape == (3, 384, 384) and big.shape == (3, 768, 768)
    assert draw.draw_detections(image, output, ["bg", "star", "hexagon"], 0.5, upscale=2).shape == (3, 256, 256)


# ---- alt text ------------------------------------------------------------------------------------------------

def test_with_alt_stores_collapsed_text_and_refuses_empty_text_or_non_figures(own_figures):
    import matplotlib.pyplot as plt

    fig = plt.figure()
    assert draw.alt_text(fig) is None
    assert draw.with_alt(fig, "  a line\n  rising ") is fig
    assert draw.alt_text(fig) == "a line rising"
    with pytest.raises(ValueError, match="alt text is empty"):
        draw.with_alt(fig, " \n ")
    with pytest.raises(TypeError, match="expected a matplotlib Figure, got str"):
        draw.with_alt("fig", "text")


class FakeShell:
    """What register_alt_text needs of IPython: a display formatter, here with matplotlib-inline's PNG one."""

    def __init__(self, retina: bool = False):
        from matplotlib.figure import Figure

        self.display_formatter = DisplayFormatter()
        png = partial(retina_figure, base64=True) if retina else partial(print_figure, fmt="png", base64=True)
        self.display_formatter.formatters["image/png"].for_type(Figure, png)


def formatted(shell, fig):
    return shell.display_formatter.format(fig)


def test_displayed_figures_carry_their_alt_text_as_png_metadata_and_live_as_html(monkeypatch, own_figures):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    shell = FakeShell()
    assert draw.register_alt_text(shell)
    fig = draw.with_alt(plt.subplots(figsize=(1, 1))[0], 'a "quoted" <line>')
    monkeypatch.setenv("COURSE_HEADLESS", "1")  # stored outputs: the PNG with its alt metadata, no HTML
    data, md = formatted(shell, fig)
    assert md["image/png"] == {"alt": 'a "quoted" <line>'} and "text/html" not in data
    monkeypatch.setenv("COURSE_HEADLESS", "0")  # a learner's JupyterLab: an <img alt> it renders, the same PNG
    data, md = formatted(shell, fig)
    assert data["text/html"] == (f'<img src="data:image/png;base64,{data["image/png"]}" '
                                 'alt="a &quot;quoted&quot; &lt;line&gt;">')
    assert md["image/png"]["alt"] == 'a "quoted" <line>'
    plain = plt.subplots(figsize=(1, 1))[0]  # no alt text: formatted as before
    data, md = formatted(shell, plain)
    assert "image/png" in data and "text/html" not in data and not md
    # matplotlib-inline replaces its formatters whenever it configures the backend: they are wrapped again
    shell.display_formatter.formatters["image/png"].for_type(Figure, partial(print_figure, fmt="png", base64=True))
    assert formatted(shell, fig)[1]["image/png"]["alt"] == 'a "quoted" <line>'


def test_retina_figures_keep_their_size_metadata_beside_the_alt_text(monkeypatch, own_figures):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("COURSE_HEADLESS", "0")
    shell = FakeShell(retina=True)
    draw.register_alt_text(shell)
    data, md = formatted(shell, draw.with_alt(plt.subplots(figsize=(1, 1), dpi=50)[0], "a square"))
    w, h = md["image/png"]["width"], md["image/png"]["height"]  # retina: half the PNG's pixels, for sharpness
    assert md["image/png"] == {"width": w, "height": h, "alt": "a square"} and w > 0 and h > 0
    assert data["text/html"].endswith(f'alt="a square" width="{w}" height="{h}">')


def test_register_alt_text_without_ipython_does_nothing():
    assert draw.register_alt_text() is False  # pytest runs no IPython shell
    assert draw.register_alt_text(object()) is False


# ---- show_images -----------------------------------------------------------------------------------------------

def test_show_images_alt_text_colour_bars_and_signed_maps():
    maps = [torch.rand(8, 8), torch.rand(8, 8) - 0.5, torch.rand(3, 8, 8)]
    fig = draw.show_images(maps, ["a", "b", "c"], alt="two value maps and a picture", colorbars=True)
    assert draw.alt_text(fig) == "two value maps and a picture"
    assert len(fig.axes) == 3 + 2  # three panels, a colour bar beside each of the two maps
    signed = fig.axes[1].images[0]
    assert signed.get_cmap().name == "RdBu_r" and signed.norm.vmin == -signed.norm.vmax  # centred on 0
    assert fig.axes[0].images[0].get_cmap().name == "viridis"
    shared = draw.show_images(maps[:2], value_range=(-1, 1), alt="on one scale")
    assert len(shared.axes) == 2 + 1 and shared.axes[1].images[0].norm.vmin == -1


def test_show_images_refuses_no_images_and_mismatched_titles():
    with pytest.raises(ValueError, match="no images to show"):
        draw.show_images([])
    with pytest.raises(ValueError, match="2 images but 1 titles"):
        draw.show_images([torch.rand(4, 4)] * 2, ["one"])


# ---- palettes and colour-vision deficiency ---------------------------------------------------------------------

@pytest.mark.parametrize("vision", VISIONS)
def test_neighbouring_class_colours_stay_apart(vision):
    """Labels i and i + 1 differ by at least 20 CIELAB units (15 with tritanopia, the rarest); the course's six
    shape classes (labels 1-6) by at least 15 from each other."""
    least = 15 if vision == "tritanopia" else 20
    for i in range(1, len(PALETTE) - 1):
        assert distance(PALETTE[i], PALETTE[i + 1], vision) >= least, (i, vision)
    for a, b in itertools.combinations(PALETTE[1:7], 2):
        assert distance(a, b, vision) >= 15, (a, b, vision)
    assert all(distance(PALETTE[0], c, vision) >= 20 for c in PALETTE[1:])  # no class looks like background


def test_the_old_palette_fails_the_colour_vision_test():
    """The test above can fail: the palette before (red, green, blue, ...) put labels 1 and 2 8.9 units apart for
    a deuteranope."""
    assert distance("#e6194b", "#3cb44b", "deuteranopia") < 10


@pytest.mark.parametrize("vision", VISIONS)
def test_instance_and_anchor_colours_stay_apart(vision):
    for a, b in itertools.combinations(INSTANCE_PALETTE, 2):
        assert distance(a, b, vision) >= 15, (a, b, vision)
    for a, b in itertools.combinations(INSTANCE_PALETTE[:3], 2):  # the colours touching instances get first
        assert distance(a, b, vision) >= 15, (a, b, vision)
    for a, b in itertools.combinations((draw.POS, draw.NEU, draw.NEG, draw.GT), 2):
        assert distance(a, b, vision) >= 15, (a, b, vision)


def test_simulation_refuses_unknown_visions_and_malformed_colours():
    from course_lib.utils.colours import simulate, text_colour_on

    with pytest.raises(ValueError, match="unknown vision 'achromatopsia'"):
        simulate("#000000", "achromatopsia")
    with pytest.raises(ValueError, match="not a colour of the form #rrggbb"):
        simulate("red", None)
    assert distance("#123456", "#123456", "protanopia") == 0
    assert text_colour_on("#f0e442") == "#000000" and text_colour_on("#0072b2") == "#ffffff"


# ---- the notebooks' stored figures -----------------------------------------------------------------------------

def test_every_figure_stored_in_the_solutions_has_alt_text():
    """Every image a solution notebook shows (its stored outputs, written by ``./course run solutions --write``)
    carries alt text in its ``image/png`` metadata: what ``draw.with_alt`` gave the figure."""
    import nbformat

    from course_lib.utils.paths import REPO_ROOT

    missing, images = [], 0
    for path in sorted((REPO_ROOT / "solutions").glob("*.ipynb")):
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            for output in cell.get("outputs", []):
                if "image/png" in output.get("data", {}):
                    images += 1
                    alt = output.get("metadata", {}).get("image/png", {}).get("alt", "")
                    if len(alt.split()) < 5:  # a sentence, not a placeholder
                        missing.append(f"{path.stem} cell {i}: {cell.source.splitlines()[-1][:60]!r}")
    assert images > 0
    assert not missing, f"{len(missing)} of {images} stored figures have no alt text:\n" + "\n".join(missing)
