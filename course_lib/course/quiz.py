"""Quiz checkpoints: a question bank, a widget, and a headless fallback. Used in: every notebook.

``quiz("id")`` shows the question as radio buttons with a Check button; pressing it shows whether
the choice is right and why. Where no widget front end renders it (a terminal, nbconvert, a headless
run, ``COURSE_HEADLESS=1``), the same object prints as plain text that ends with the
``answer("id", choice)`` call that grades it.

The widget also leaves the learner's choice in the notebook's saved outputs, where ``course grade``
reads it: showing it displays an invisible record ``{"id": ..., "choice": null}`` (mime type
``RECORD_MIME``, with a display id), and each press of Check updates that record to the chosen index.
The front end writes the update into the quiz cell's outputs, so the saved ``.ipynb`` carries the last
checked choice, and only that: neither the correct answer nor the verdict. (JupyterLab applies the
update only while it still holds the request that displayed the record: after a page reload, re-run
the quiz cell before answering.)
"""

from __future__ import annotations

import html
import uuid

from course_lib.course.bank import Question, load_questions
from course_lib.course.progress import record
from course_lib.utils.ui import headless

BANK: dict[str, Question] = load_questions()

# The mime type of the widget's record of a learner's choice; read by ``course_lib.course.grade``.
RECORD_MIME = "application/vnd.course.quiz+json"


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

    Displayed in a kernel, it shows the widget and then the record of the choice (see the module's
    docstring); ``record()`` is that record now.
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
        self.choice: int | None = None  # the choice last checked
        self._display_id = f"course-quiz-{uuid.uuid4().hex}"
        self._displayed = False

    def record(self) -> dict:
        """What the saved notebook carries for this quiz: its id and the choice last checked (or None)."""
        return {"id": self.question.id, "choice": self.choice}

    def _on_check(self, _button=None) -> None:
        if self.radio.index is None:
            self.feedback.value = "Pick an answer first."
            return
        ok, text = grade(self.question.id, self.radio.index)
        _record(self.question.id, ok)
        self.choice = self.radio.index
        if self._displayed:  # an update_display_data: the front end rewrites the record in the cell's outputs
            from IPython.display import update_display

            update_display({RECORD_MIME: self.record()}, raw=True, display_id=self._display_id)
        colour = "green" if ok else "#b00"
        self.feedback.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.box._repr_mimebundle_(**kwargs)
        # Front ends without widgets (and nbval) show the text form instead of "VBox(...)".
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/plain"] = question_text(self.question.id)
        return bundle

    def _ipython_display_(self) -> None:
        from IPython.display import display

        bundle = self._repr_mimebundle_()
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        display(data, metadata=metadata, raw=True)
        # No text/plain: JupyterLab has no renderer for the record alone and shows nothing.
        display({RECORD_MIME: self.record()}, raw=True, display_id=self._display_id)
        self._displayed = True


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
