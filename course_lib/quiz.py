"""Quiz checkpoints: a question bank, a widget, and a headless fallback. Used in: every notebook.

``quiz("id")`` shows the question as radio buttons with a Check button; pressing it shows whether
the choice is right and why. Where no widget front end renders it (a terminal, nbconvert, a headless
run, ``COURSE_HEADLESS=1``), the same object prints as plain text that ends with the
``answer("id", choice)`` call that grades it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from .ui import headless


@dataclass(frozen=True)
class Question:
    id: str
    notebook: str
    text: str
    choices: tuple[str, ...]
    correct: int  # index into choices
    explanation: str


BANK: dict[str, Question] = {}


def _add(qid, notebook, text, choices, correct, explanation):
    if qid in BANK:
        raise ValueError(f"duplicate quiz id {qid!r}")
    if not 0 <= correct < len(choices):
        raise ValueError(f"quiz {qid!r}: correct index {correct} outside {len(choices)} choices")
    BANK[qid] = Question(qid, notebook, text, tuple(choices), correct, explanation)


# --- 00_overview -------------------------------------------------------------------------------
_add("overview-maskrcnn-addition", "00_overview",
     "What is the primary addition of Mask R-CNN over Faster R-CNN?",
     ["A deeper backbone network",
      "A branch that predicts a binary mask for each region of interest, in parallel with the box and class branch",
      "A second region proposal network",
      "Replacing anchors with keypoints"],
     1,
     "Mask R-CNN keeps Faster R-CNN's backbone, RPN and box head and adds a small fully convolutional "
     "branch that predicts a 28x28 mask per RoI and per class, in parallel with classification and box "
     "regression. (It also swaps RoIPool for RoIAlign so that the masks line up with the pixels.)")
_add("overview-annotation-format", "00_overview",
     "What format should your custom dataset annotations be in for Mask R-CNN training?",
     ["One text label per image",
      "Bounding boxes only, in YOLO's normalised format",
      "Per-instance annotations with a class, a box and a segmentation mask, e.g. a COCO instances JSON",
      "A single semantic-segmentation PNG with one colour per class"],
     2,
     "Training needs every object separately: its category, its box and its mask. The COCO instances "
     "format stores exactly that (boxes as [x, y, width, height], masks as polygons or RLE); torchvision's "
     "model then wants per image a target dict with boxes (N, 4) xyxy, labels (N,) and masks (N, H, W). "
     "A semantic PNG cannot tell two touching objects of the same class apart.")
_add("overview-output-masks", "00_overview",
     "In eval mode, what does torchvision's Mask R-CNN return in `output['masks']` for N detections on a "
     "H x W image?",
     ["A (N, H, W) bool tensor", "A (N, 1, H, W) float tensor of probabilities in [0, 1]",
      "A (N, 28, 28) tensor of logits", "A list of polygons"],
     1,
     "The 28x28 mask of each detection's predicted class is passed through a sigmoid and pasted into the "
     "full image, giving soft masks of shape (N, 1, H, W). Threshold them (usually at 0.5) for binary masks.")
_add("overview-weights-api", "00_overview",
     "Which call loads torchvision's COCO-trained Mask R-CNN with today's API?",
     ["maskrcnn_resnet50_fpn(pretrained=True)", "maskrcnn_resnet50_fpn(weights='DEFAULT')",
      "maskrcnn_resnet50_fpn().load('coco')", "torch.hub.load('maskrcnn')"],
     1,
     "Since torchvision 0.13 the `weights=` argument takes a weights enum (or its name, like 'DEFAULT'). "
     "`pretrained=True` was deprecated then and removed later; the enum also carries the class names and "
     "the preprocessing transforms in `weights.meta` and `weights.transforms()`.")


def _check(qid: str) -> Question:
    if qid not in BANK:
        raise KeyError(f"no quiz {qid!r}; known ids: {', '.join(sorted(BANK))}")
    return BANK[qid]


def grade(qid: str, choice: int | str) -> tuple[bool, str]:
    """``(is_correct, feedback)`` for a choice given as its index or its exact text."""
    q = _check(qid)
    if isinstance(choice, str):
        if choice not in q.choices:
            raise ValueError(f"quiz {qid!r}: {choice!r} is not one of the choices {list(q.choices)}")
        choice = q.choices.index(choice)
    if not 0 <= choice < len(q.choices):
        raise ValueError(f"quiz {qid!r}: choice {choice} is outside 0..{len(q.choices) - 1}")
    ok = choice == q.correct
    verdict = "Correct!" if ok else f"Not quite: the answer is ({q.correct}) {q.choices[q.correct]}."
    return ok, f"{verdict} {q.explanation}"


def _record(qid: str, ok: bool) -> None:
    try:  # the progress file is optional: a quiz must work without it
        from .progress import record
    except ImportError:
        return
    record(BANK[qid].notebook, f"quiz:{qid}", ok)


def answer(qid: str, choice: int | str) -> bool:
    """Headless grading: print the feedback for ``choice`` and return whether it is right."""
    ok, feedback = grade(qid, choice)
    _record(qid, ok)
    print(feedback)
    return ok


def question_text(qid: str) -> str:
    q = _check(qid)
    lines = [f"Quiz {qid}: {q.text}"]
    lines += [f"  ({i}) {c}" for i, c in enumerate(q.choices)]
    lines.append(f'Answer with: answer("{qid}", <number>)')
    return "\n".join(lines)


def _widgets_wanted() -> bool:
    if headless():
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ != "TerminalInteractiveShell"


class QuizWidget:
    """Radio buttons, a Check button and a feedback line for one question.

    ``radio``, ``button`` and ``feedback`` are public so that tests (and curious learners) can drive it:
    ``w.radio.index = 1; w.button.click(); w.feedback.value``.
    """

    def __init__(self, qid: str):
        import ipywidgets as W

        self.question = _check(qid)
        self.radio = W.RadioButtons(options=list(self.question.choices), index=None,
                                    layout=W.Layout(width="auto"))
        self.button = W.Button(description="Check", button_style="primary")
        self.feedback = W.HTML("")
        self.button.on_click(self._on_check)
        self.box = W.VBox([W.HTML(f"<b>Quiz:</b> {html.escape(self.question.text)}"), self.radio, self.button,
                           self.feedback])

    def _on_check(self, _button=None) -> None:
        if self.radio.index is None:
            self.feedback.value = "Pick an answer first."
            return
        ok, text = grade(self.question.id, self.radio.index)
        _record(self.question.id, ok)
        colour = "green" if ok else "#b00"
        self.feedback.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.box._repr_mimebundle_(**kwargs)
        # Front ends without widgets (and nbval) show the text form instead of "VBox(...)".
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/plain"] = question_text(self.question.id)
        return bundle


class _TextQuiz:
    def __init__(self, qid: str):
        self.qid = qid
        _check(qid)

    def __repr__(self) -> str:
        return question_text(self.qid)


def quiz(qid: str):
    """Show quiz ``qid``: a widget in JupyterLab, plain text with an ``answer()`` hint elsewhere."""
    return QuizWidget(qid) if _widgets_wanted() else _TextQuiz(qid)


def ids_for(notebook: str) -> list[str]:
    """Quiz ids of one notebook (e.g. ``"00_overview"``), in bank order."""
    return [q.id for q in BANK.values() if q.notebook == notebook]
