"""Quizzes: a question bank, a widget, and a headless fallback. Used in: every notebook.

``quiz("id")`` shows the question as radio buttons with a Check button. Where no widget front end renders
it (a terminal, nbconvert, a headless run, ``COURSE_HEADLESS=1``), the same object prints as plain text that
ends with the ``answer("id", choice)`` call that answers it.

Feedback never names the right choice. A right answer is told so with the explanation; a wrong one is told
it is not right and invited to look at the lesson again. What happens next depends on the question's kind
(``course_lib.course.bank``):

* a **checkpoint** (the notebook's quiz checkpoint, graded by the instructor) records the FIRST checked
  answer: Check then disables the widget, and in this kernel a later ``answer()`` call, or the same quiz shown
  again, says that the first answer stands (``FIRST_ANSWERS``). In the student edition (``./course handout``)
  the bank has no key for checkpoints: the feedback only says which answer was recorded.
* a **self-check** (inside a lesson) gives instant feedback as often as the learner likes; nobody grades it.

The widget also leaves the learner's choice in the notebook's saved outputs, where ``course grade`` reads
it: showing it displays an invisible record ``{"id": ..., "choice": null}`` (mime type ``RECORD_MIME``, with
a display id), and Check updates that record to the chosen index: once for a checkpoint (the first choice),
on every press for a self-check (the last). ``answer()`` for a checkpoint run in a notebook's kernel
displays the same record, holding the first answer given in that kernel. The front end writes the record
into the cell's outputs, so the saved ``.ipynb`` carries the recorded choice, and only that: neither the
correct answer nor the verdict. (JupyterLab applies the update only while it still holds the request that
displayed the record: after a page reload, re-run the quiz cell before answering.)
"""

from __future__ import annotations

import html
import uuid

from course_lib.course.bank import CHECKPOINT, Question, load_questions
from course_lib.course.progress import record
from course_lib.utils.ui import headless

BANK: dict[str, Question] = load_questions()

# The mime type of the widget's record of a learner's choice; read by ``course_lib.course.grade``.
RECORD_MIME = "application/vnd.course.quiz+json"

# The first choice checked for each checkpoint quiz in this kernel (by a widget or by ``answer()``): the
# recorded one. Later attempts leave it as it is.
FIRST_ANSWERS: dict[str, int] = {}


def _check(qid: str) -> Question:
    if qid not in BANK:
        raise KeyError(f"no quiz {qid!r}; known ids: {', '.join(sorted(BANK))}")
    return BANK[qid]


def choice_index(qid: str, choice: int | str) -> int:
    """The index of a choice given as its index or its exact text (``ValueError`` if it is neither)."""
    q = _check(qid)
    if isinstance(choice, str):
        if choice not in q.choices:
            raise ValueError(f"quiz {qid!r}: {choice!r} is not one of the choices {list(q.choices)}")
        choice = q.choices.index(choice)
    if isinstance(choice, bool) or not isinstance(choice, int) or not 0 <= choice < len(q.choices):
        raise ValueError(f"quiz {qid!r}: choice {choice!r} is outside 0..{len(q.choices) - 1}")
    return choice


def grade(qid: str, choice: int | str) -> tuple[bool | None, str]:
    """``(is_correct, feedback)`` for a choice given as its index or its exact text.

    ``is_correct`` is None where the bank holds no key (a checkpoint in the student edition). The feedback never
    names the right choice: a right answer gets the explanation, a wrong one an invitation to look again. For a
    checkpoint it starts with the choice it records.
    """
    q = _check(qid)
    i = choice_index(qid, choice)
    if q.kind == CHECKPOINT:
        recorded = f"Recorded: ({i}) {q.choices[i]}"
        if q.correct is None:
            return None, f"{recorded} — your instructor grades checkpoint quizzes."
        if i == q.correct:
            return True, f"{recorded}. Correct! {q.explanation}"
        return False, (f"{recorded}. Not quite: have another look at this notebook's lessons; checkpoint quizzes "
                       "keep the first answer.")
    if i == q.correct:
        return True, f"Correct! {q.explanation}"
    return False, "Not quite: have another look at the lesson above, then try again."


def _record_progress(qid: str, ok: bool | None) -> None:
    # Without a key (the student edition) a checkpoint counts once it is answered: the learner is done with it.
    record(BANK[qid].notebook, f"quiz:{qid}", True if ok is None else ok)


def _first_answer_stands(qid: str) -> str:
    q = BANK[qid]
    first = FIRST_ANSWERS[qid]
    return (f"Your first answer stands: ({first}) {q.choices[first]} is recorded for quiz {qid} "
            "(checkpoint quizzes keep the first answer).")


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (where displayed outputs are saved with the notebook)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ != "TerminalInteractiveShell"


def answer(qid: str, choice: int | str) -> bool | None:
    """Headless answering: print the feedback for ``choice`` and return whether it is right.

    For a checkpoint the first call for ``qid`` in this kernel is the recorded answer: a later call prints that
    the first answer stands and returns the first answer's verdict (None where the bank holds no key). In a
    notebook's kernel the recorded choice is also displayed as the quiz record the grader reads.
    """
    q = _check(qid)
    index = choice_index(qid, choice)
    if q.kind != CHECKPOINT:
        ok, feedback = grade(qid, index)
        _record_progress(qid, ok)
        print(feedback)
        return ok
    if qid in FIRST_ANSWERS:
        ok, _ = grade(qid, FIRST_ANSWERS[qid])
        print(_first_answer_stands(qid))
    else:
        FIRST_ANSWERS[qid] = index
        ok, feedback = grade(qid, index)
        _record_progress(qid, ok)
        print(feedback)
    if _in_kernel():
        from IPython.display import display

        display({RECORD_MIME: {"id": qid, "choice": FIRST_ANSWERS[qid]}}, raw=True)
    return ok


def question_text(qid: str) -> str:
    q = _check(qid)
    lines = [f"Quiz {qid}: {q.text}"]
    lines += [f"  ({i}) {c}" for i, c in enumerate(q.choices)]
    how = ("a checkpoint: your first answer is the one recorded" if q.kind == CHECKPOINT
           else "a self-check: try as often as you like")
    lines.append(f'Answer with: answer("{qid}", <number>) — {how}')
    return "\n".join(lines)


def _widgets_wanted() -> bool:
    if headless():
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return _in_kernel()


class QuizWidget:
    """Radio buttons, a Check button and a feedback line for one question.

    ``radio``, ``button`` and ``feedback`` are public so that tests (and curious learners) can drive it:
    ``w.radio.index = 1; w.button.click(); w.feedback.value``.

    Displayed in a kernel, it shows the widget and then the record of the choice (see the module's
    docstring); ``record()`` is that record now. A checkpoint already answered in this kernel shows its first
    answer, locked.
    """

    def __init__(self, qid: str):
        import ipywidgets as W

        self.question = _check(qid)
        self.checkpoint = self.question.kind == CHECKPOINT
        self.radio = W.RadioButtons(options=list(self.question.choices), index=None,
                                    layout=W.Layout(width="auto"))
        self.button = W.Button(description="Check", button_style="primary")
        self.feedback = W.HTML("")
        self.button.on_click(self._on_check)
        how = ("checkpoint: your first checked answer is the one recorded" if self.checkpoint
               else "self-check: try as often as you like")
        self.box = W.VBox([W.HTML(f"<b>Quiz</b> ({how}): {html.escape(self.question.text)}"), self.radio,
                           self.button, self.feedback])
        self.choice: int | None = None  # the recorded choice: a checkpoint's first, a self-check's last
        self._display_id = f"course-quiz-{uuid.uuid4().hex}"
        self._displayed = False
        if self.checkpoint and qid in FIRST_ANSWERS:
            self.choice = FIRST_ANSWERS[qid]
            self._lock()

    def record(self) -> dict:
        """What the saved notebook carries for this quiz: its id and the recorded choice (or None)."""
        return {"id": self.question.id, "choice": self.choice}

    def _lock(self) -> None:
        """Show the checkpoint's recorded answer and its feedback; no further answers."""
        ok, text = grade(self.question.id, self.choice)
        self.radio.index = self.choice
        self.radio.disabled = self.button.disabled = True
        self._show(ok, text)

    def _show(self, ok: bool | None, text: str) -> None:
        colour = {True: "green", False: "#b00", None: "#333"}[ok]
        self.feedback.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def _on_check(self, _button=None) -> None:
        qid = self.question.id
        if self.checkpoint and qid in FIRST_ANSWERS:  # answered already (a click on a disabled button, in code)
            self.choice = FIRST_ANSWERS[qid]
            self._lock()
            return
        if self.radio.index is None:
            self.feedback.value = "Pick an answer first."
            return
        ok, text = grade(qid, self.radio.index)
        _record_progress(qid, ok)
        self.choice = self.radio.index
        if self.checkpoint:
            FIRST_ANSWERS[qid] = self.choice
            self.radio.disabled = self.button.disabled = True
        if self._displayed:  # an update_display_data: the front end rewrites the record in the cell's outputs
            from IPython.display import update_display

            update_display({RECORD_MIME: self.record()}, raw=True, display_id=self._display_id)
        self._show(ok, text)

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
