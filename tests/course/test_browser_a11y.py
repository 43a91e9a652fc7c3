"""Accessibility in a real browser: what Chromium's accessibility tree (the tree a screen reader reads) holds for a
figure and a quiz in JupyterLab, and a quiz answered with the keyboard alone.

Reuses test_browser.py's JupyterLab server and Chromium page (the ``lab`` and ``page`` fixtures, skipped where
Chromium or Playwright is missing). A small notebook of its own keeps it short: one figure with alt text, a
choice quiz and a numeric quiz.
"""

from __future__ import annotations

import nbformat
import pytest
import test_browser  # tests/course/test_browser.py: the JupyterLab + Chromium fixtures

from course_lib.course.quiz import BANK

pytestmark = pytest.mark.browser

lab = test_browser.lab
page = test_browser.page

ALT = "A test figure: one line rising from left to right"
CHOICE_ID, NUMERIC_ID = "overview-annotation-format", "fpn-p-channels"
CELLS = [
    "import matplotlib.pyplot as plt\nfrom course_lib.lessons import draw\nfrom course_lib import quiz",
    f"fig, ax = plt.subplots(figsize=(3, 2))\nax.plot([0, 1], [0, 1])\ndraw.with_alt(fig, {ALT!r});",
    f"quiz({CHOICE_ID!r})",
    f"quiz({NUMERIC_ID!r})",
]


def ax_tree(page) -> list[dict]:
    """Chromium's full accessibility tree, as ``{"role", "name", "description", "disabled"}`` per node."""
    client = page.context.new_cdp_session(page)
    client.send("Accessibility.enable")
    nodes = client.send("Accessibility.getFullAXTree")["nodes"]
    client.detach()

    def value(node, key):
        return (node.get(key) or {}).get("value", "")

    def prop(node, key):
        return next((p["value"].get("value") for p in node.get("properties", []) if p["name"] == key), None)

    return [{"role": value(n, "role"), "name": value(n, "name"), "description": value(n, "description"),
             "disabled": prop(n, "disabled")} for n in nodes if not n.get("ignored")]


def focused(page) -> dict:
    """The focused element: its tag, type, the text of its label and its own text."""
    return page.evaluate("""() => { const el = document.activeElement;
        return {tag: el.tagName, type: el.type || '', label: el.closest('label') ? el.closest('label').innerText : '',
                text: el.innerText || ''}; }""")


@pytest.fixture
def a11y_notebook(lab, request):
    """A notebook of its own per test (its own kernel: a checkpoint answered in one test stays out of the next)."""
    name = f"a11y_{request.node.name[5:30]}.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, lab.root / name)
    return name


def test_figure_alt_text_and_quiz_controls_are_in_the_accessibility_tree(page, lab, a11y_notebook):
    test_browser.open_and_run_all(page, lab, a11y_notebook)
    page.locator(f"img[alt='{ALT}']").wait_for()
    tree = ax_tree(page)
    images = [n for n in tree if n["role"] in ("image", "img")]
    assert ALT in [n["name"] for n in images], images  # the figure is announced by what it shows
    choice = BANK[CHOICE_ID]
    radios = sorted(n["name"] for n in tree if n["role"] == "radio")
    assert radios == sorted(choice.choices), radios  # every choice is a radio button named by its text
    headings = [n["name"] for n in tree if n["role"] == "heading"]
    assert any(choice.text in h for h in headings) and any(BANK[NUMERIC_ID].text in h for h in headings), headings
    textboxes = [n for n in tree if n["role"] == "textbox" and n["name"] == "Your answer:"]
    assert len(textboxes) == 1, [n for n in tree if n["role"] == "textbox"]
    checks = [n for n in tree if n["role"] == "button" and n["name"] == "Check"]
    assert sorted(n["description"] for n in checks) == sorted(
        f"Check your answer to quiz {q}" for q in (CHOICE_ID, NUMERIC_ID))
    page.screenshot(path=str(test_browser.ARTIFACTS / "browser_a11y_page.png"), full_page=True)


def test_a_quiz_is_answered_with_the_keyboard_alone(page, lab, a11y_notebook):
    test_browser.open_and_run_all(page, lab, a11y_notebook)
    choice = BANK[CHOICE_ID]
    quiz = page.locator(f".widget-vbox:has(.widget-radio-box):has-text('{choice.text[:40]}')")
    quiz.scroll_into_view_if_needed()
    wanted = choice.choices[choice.correct]
    # Start just before the quiz (its question), as a reader arriving there would, then only keys.
    quiz.locator("[role=heading]").evaluate("el => { el.tabIndex = -1; el.focus(); }")
    page.keyboard.press("Tab")
    assert focused(page)["type"] == "radio", focused(page)  # Tab reaches the first choice
    for _ in range(len(choice.choices)):
        if focused(page)["label"].strip() == wanted:
            break
        page.keyboard.press("Tab")  # ipywidgets' radios are one tab stop each
    assert focused(page)["label"].strip() == wanted
    page.keyboard.press("Space")
    quiz.locator("input[type=radio]:checked").wait_for()
    while focused(page)["tag"] != "BUTTON":
        page.keyboard.press("Tab")
    assert focused(page)["text"].strip() == "Check"
    page.keyboard.press("Enter")
    alert = quiz.locator("[role=alert]")
    alert.wait_for()
    assert "Correct!" in alert.inner_text()
    tree = ax_tree(page)
    assert any(n["role"] == "alert" for n in tree)  # read out as it appears
    assert all(n["disabled"] for n in tree if n["role"] == "radio" and n["name"] in choice.choices)  # recorded
    quiz.screenshot(path=str(test_browser.ARTIFACTS / "browser_a11y_keyboard_quiz.png"))
