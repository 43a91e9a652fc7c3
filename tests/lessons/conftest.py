"""Lesson tests draw figures: every figure a lesson function draws must carry alt text (``draw.with_alt``);
figures are closed after every test. A test that draws figures of its own asks for ``own_figures``."""

import matplotlib.pyplot as plt
import pytest


@pytest.fixture
def own_figures():
    """Marks a test whose figures are its own (not a lesson's): they need no alt text."""


@pytest.fixture(autouse=True)
def close_figures(request):
    yield
    try:
        if "own_figures" not in request.fixturenames:
            from course_lib.lessons.draw import alt_text

            missing = [n for n in plt.get_fignums() if not alt_text(plt.figure(n))]
            assert not missing, (f"{len(missing)} figure(s) drawn without alt text: give them draw.with_alt(fig, ...) "
                                 "in the lesson function that makes them")
    finally:
        plt.close("all")
