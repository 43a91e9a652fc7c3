"""Quizzes: a question bank, a widget, and a headless fallback. Used in: every notebook.

``quiz("id")`` shows the question as radio buttons (or, for a question answered with a number, a text box) with a
Check button. Where no widget front end renders it (a terminal, nbconvert, a headless run, ``COURSE_HEADLESS=1``),
the same object prints as plain text that ends with the ``answer("id", ...)`` call that answers it.

**Order of the choices.** Each learner sees the choices in an order of their own, the same every time: a hash of
the quiz id and a random value made once per learner (``learner_seed()``, kept in ``ORDER_SEED_FILE`` beside the
progress file). Headless (stored outputs, the tests) the bank's order is kept, so outputs stay the same. Whatever
the order on screen, answers, records and the grader use the BANK's index of a choice: the text form prints that
number in brackets before each choice (so the numbers may appear out of order), ``answer("id", n)`` takes it (or
the choice's exact text), and the widget's buttons carry it as their value.

Feedback for a **checkpoint** (the notebook's quiz checkpoint, graded by the instructor) never names the right
choice. A right answer is told so with the explanation; a wrong one is told it is not right and invited to look at
the lesson again. The FIRST checked answer is recorded: Check then disables the widget, and in this kernel a later
``answer()`` call, or the same quiz shown again, says that the first answer stands (``FIRST_ANSWERS``). In the
student edition (``./course handout``) the bank has no key for checkpoints: the feedback only says which answer
was recorded.

A **self-check** (inside a lesson) gives instant feedback as often as the learner likes; nobody grades it. A wrong
choice is answered with the mistaken idea behind it (the bank's ``misconceptions``); the explanation, which may
name the right choice, comes after a second wrong try in this kernel (``WRONG_TRIES``) or on request:
``explain("id")`` or the widget's "Show explanation" button.

**Screen readers and the keyboard.** The widget uses native controls a screen reader names and the keyboard
reaches: the question is a heading (``role="heading"``), each choice a radio button named by its text (Tab moves
from choice to choice, Space picks one: ipywidgets' radios form no group, so the arrow keys do not move between
them), the number box a text field labelled "Your answer", Check a button whose description says which quiz it
checks; the verdict appears in an alert (``role="alert"``), read out as it appears. The verdict is in words, never
in its colour alone.

The widget also leaves the learner's choice in the notebook's saved outputs, where ``course grade`` reads
it: showing it displays an invisible record ``{"id": ..., "choice": null}`` (mime type ``RECORD_MIME``, with
a display id), and Check updates that record to the chosen bank index (or the number typed): once for a
checkpoint (the first choice), on every press for a self-check (the last). ``answer()`` for a checkpoint run in a
notebook's kernel displays the same record, holding the first answer given in that kernel. The front end writes
the record into the cell's outputs, so the saved ``.ipynb`` carries the recorded choice, and only that: neither
the correct answer nor the verdict. (JupyterLab applies the update only while it still holds the request that
displayed the record: after a page reload, re-run the quiz cell before answering.)
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import math
import os
import secrets
import tempfile
import uuid
from pathlib import Path

from course_lib.course.bank import CHECKPOINT, Question, is_right, load_questions, read_response
from course_lib.course.progress import progress_file, record
from course_lib.utils.ui import headless

BANK: dict[str, Question] = load_questions()

# The mime type of the widget's record of a learner's choice; read by ``course_lib.course.grading.quizzes``.
RECORD_MIME = "application/vnd.course.quiz+json"

# The first answer checked for each checkpoint quiz in this kernel (by a widget or by ``answer()``): the
# recorded one (a bank index, or the number of a numeric question). Later attempts leave it as it is.
FIRST_ANSWERS: dict[str, int | float] = {}

# Wrong answers to each self-check in this kernel: from the second on, the feedback adds the explanation.
WRONG_TRIES: dict[str, int] = {}

# The file beside the progress file that holds this learner's random value for the order of the choices.
ORDER_SEED_FILE = "quiz-order-seed"
_SEEDS: dict[Path, str] = {}  # seed file -> its value, read once per process
_PROCESS_SEED = secrets.token_hex(16)  # only where the seed file can be neither read nor written


def _check(qid: str) -> Question:
    if qid not in BANK:
        raise KeyError(f"no quiz {qid!r}; known ids: {', '.join(sorted(BANK))}")
    return BANK[qid]


def _valid_seed(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def _read_seed(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _valid_seed(text) else None


def _create_seed(path: Path) -> str:
    """Write a new random value to ``path`` (atomically, never over another kernel's) and return the one that
    stands; the process's own value where the folder cannot be written (a read-only home)."""
    new = secrets.token_hex(16)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(new + "\n")
            try:
                os.link(tmp, path)  # appears complete or not at all, and fails if the file exists
            except FileExistsError:
                theirs = _read_seed(path)
                if theirs is not None:  # another kernel made it first: use theirs
                    return theirs
                os.replace(tmp, path)  # a damaged seed file: replace it
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    except OSError:
        return _PROCESS_SEED
    return new


def order_seed_file() -> Path:
    """Where this learner's random value for the order of quiz choices is kept: beside the progress file."""
    return progress_file().parent / ORDER_SEED_FILE


def learner_seed() -> str:
    """This learner's random value (32 hex digits), made once and kept in ``order_seed_file()``."""
    path = order_seed_file()
    if path not in _SEEDS:
        _SEEDS[path] = _read_seed(path) or _create_seed(path)
    return _SEEDS[path]


def choice_order(qid: str) -> list[int]:
    """The bank indices of quiz ``qid``'s choices in the order this learner sees them.

    Stable for a learner (a hash of ``learner_seed()`` and the quiz id), different between learners; the bank's
    own order when headless, so that stored outputs do not change. Empty for a numeric question.
    """
    q = _check(qid)
    n = len(q.choices)
    if headless() or n < 2:
        return list(range(n))
    seed = learner_seed()
    return sorted(range(n), key=lambda i: hashlib.sha256(f"{seed}/{qid}/{i}".encode()).digest())


def read_answer(qid: str, response: int | float | str) -> int | float:
    """A response as the bank understands it (``ValueError`` if it is none): for a choice question the BANK's
    index of the choice, given as that index or as the choice's exact text; for a numeric question the number."""
    return read_response(_check(qid), response)


def _number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _shown(q: Question, value: int | float) -> str:
    """How a response is named in feedback: ``(2) the choice's text``, or the number."""
    return _number(value) if q.numeric else f"({value}) {q.choices[value]}"


def _misconception(q: Question, value: int | float) -> str:
    """The mistaken idea behind a wrong choice, as a sentence about the choice ("" where the bank has none)."""
    if q.numeric or not q.misconceptions or not q.misconceptions[value].strip():
        return ""
    text = q.misconceptions[value].strip()
    if len(text) > 1 and text[1].islower():  # "Believes ..." -> "this choice believes ..."; "RoI..." stays
        text = text[0].lower() + text[1:]
    return f"this choice {text}"


def grade(qid: str, choice: int | float | str, *, wrong_before: int = 0) -> tuple[bool | None, str]:
    """``(is_correct, feedback)`` for a response (a bank index, a choice's text, or a number).

    ``is_correct`` is None where the bank holds no key (a checkpoint in the student edition). A checkpoint's
    feedback starts with the answer it records and never names the right choice: a right answer gets the
    explanation, a wrong one an invitation to look again. A self-check's wrong answer gets the mistaken idea behind
    that choice; with ``wrong_before`` >= 1 (an earlier wrong try) the explanation too.
    """
    q = _check(qid)
    value = read_answer(qid, choice)
    if q.kind == CHECKPOINT:
        recorded = f"Recorded: {_shown(q, value)}"
        if not q.has_key:
            return None, f"{recorded} — your instructor grades checkpoint quizzes."
        if is_right(q, value):
            return True, f"{recorded}. Correct! {q.explanation}"
        return False, (f"{recorded}. Not quite: have another look at this notebook's lessons; checkpoint quizzes "
                       "keep the first answer.")
    if is_right(q, value):
        return True, f"Correct! {q.explanation}"
    why = _misconception(q, value)
    text = f"Not quite: {why}" if why else "Not quite."
    if wrong_before >= 1:
        return False, f"{text} Have another look at the lesson above, then try again. Explanation: {q.explanation}"
    return False, (f"{text} Have another look at the lesson above, then try again; the explanation comes after "
                   "another miss, or on request.")


def _record_progress(qid: str, ok: bool | None) -> None:
    # Without a key (the student edition) a checkpoint counts once it is answered: the learner is done with it.
    record(BANK[qid].notebook, f"quiz:{qid}", True if ok is None else ok)


def _self_check_attempt(qid: str, value: int | float) -> tuple[bool, str]:
    """Grade a self-check answer, counting this kernel's wrong tries (the widget and ``answer()`` share them)."""
    ok, text = grade(qid, value, wrong_before=WRONG_TRIES.get(qid, 0))
    if not ok:
        WRONG_TRIES[qid] = WRONG_TRIES.get(qid, 0) + 1
    _record_progress(qid, ok)
    return bool(ok), text


def _first_answer_stands(qid: str) -> str:
    q = BANK[qid]
    return (f"Your first answer stands: {_shown(q, FIRST_ANSWERS[qid])} is recorded for quiz {qid} "
            "(checkpoint quizzes keep the first answer).")


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (where displayed outputs are saved with the notebook)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ != "TerminalInteractiveShell"


def answer(qid: str, choice: int | float | str) -> bool | None:
    """Headless answering: print the feedback for ``choice`` and return whether it is right.

    ``choice`` is the number in brackets before a choice (the bank's index, whatever order the choices were
    shown in) or the choice's exact text; for a question answered with a number, the number (an int or a float,
    not a string).

    For a checkpoint the first call for ``qid`` in this kernel is the recorded answer: a later call prints that
    the first answer stands and returns the first answer's verdict (None where the bank holds no key). In a
    notebook's kernel the recorded answer is also displayed as the quiz record the grader reads.
    """
    q = _check(qid)
    value = read_answer(qid, choice)
    if q.kind != CHECKPOINT:
        ok, feedback = _self_check_attempt(qid, value)
        print(feedback if ok or WRONG_TRIES[qid] > 1 else f'{feedback} (explain("{qid}") shows it.)')
        return ok
    if qid in FIRST_ANSWERS:
        ok, _ = grade(qid, FIRST_ANSWERS[qid])
        print(_first_answer_stands(qid))
    else:
        FIRST_ANSWERS[qid] = value
        ok, feedback = grade(qid, value)
        _record_progress(qid, ok)
        print(feedback)
    if _in_kernel():
        from IPython.display import display

        display({RECORD_MIME: {"id": qid, "choice": FIRST_ANSWERS[qid]}}, raw=True)
    return ok


def explain(qid: str) -> None:
    """Print a self-check's explanation (it may name the right choice). Checkpoints keep theirs for the grade."""
    q = _check(qid)
    if q.kind == CHECKPOINT:
        print(f"Quiz {qid} is a checkpoint: your instructor grades it, and its explanation comes with the grade.")
        return
    print(f"Quiz {qid}: {q.explanation}")


def question_text(qid: str) -> str:
    """The text form of a quiz: the question, the choices in this learner's order with their bank numbers, and
    the ``answer()`` call that answers it."""
    q = _check(qid)
    lines = [f"Quiz {qid}: {q.text}"]
    how = ("a checkpoint: your first answer is the one recorded" if q.kind == CHECKPOINT
           else "a self-check: try as often as you like")
    if q.numeric:
        within = f" (answers within {_number(q.tolerance)} of the value count)" if q.tolerance > 0 else ""
        lines.append(f'Answer with: answer("{qid}", <a number>){within} — {how}')
    else:
        lines += [f"  ({i}) {q.choices[i]}" for i in choice_order(qid)]
        lines.append(f'Answer with: answer("{qid}", <the number in brackets>) — {how}')
    return "\n".join(lines)


def _widgets_wanted() -> bool:
    if headless():
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return _in_kernel()


def parse_number(text: str) -> int | float | None:
    """A number typed into the widget: an int where it is one, else a finite float; None for anything else."""
    text = text.strip()
    with contextlib.suppress(ValueError):
        return int(text)
    with contextlib.suppress(ValueError):
        value = float(text)
        if math.isfinite(value):
            return value
    return None


class QuizWidget:
    """Radio buttons (or a text box for a number), a Check button and a feedback line for one question.

    ``radio``, ``entry``, ``button``, ``explain_button`` and ``feedback`` are public so that tests (and curious
    learners) can drive it. The radio buttons show the choices in this learner's order (``choice_order``) and
    their values are the BANK's indices: ``w.radio.value = 2; w.button.click(); w.feedback.value`` answers the
    bank's choice 2 (``w.radio.index`` is the position on screen). A numeric question has ``entry`` (a text box,
    ``w.entry.value = "768"``) and no ``radio``. A self-check has ``explain_button``; a checkpoint has none.

    Displayed in a kernel, it shows the widget and then the record of the choice (see the module's
    docstring); ``record()`` is that record now. A checkpoint already answered in this kernel shows its first
    answer, locked.
    """

    def __init__(self, qid: str):
        import ipywidgets as W

        self.question = q = _check(qid)
        self.checkpoint = q.kind == CHECKPOINT
        self.radio = self.entry = self.explain_button = None
        if q.numeric:  # the description is a <label> tied to the text field: its accessible name
            self.entry = W.Text(value="", placeholder="a number", description="Your answer:",
                                style={"description_width": "initial"}, layout=W.Layout(width="20em"))
            answer_area = self.entry
        else:
            self.radio = W.RadioButtons(options=[(q.choices[i], i) for i in choice_order(qid)], index=None,
                                        layout=W.Layout(width="auto"))
            answer_area = self.radio
        self.button = W.Button(description="Check", button_style="primary",
                               tooltip=f"Check your answer to quiz {qid}")  # the title: the button's description
        self.button.on_click(self._on_check)
        self.feedback = W.HTML("")
        buttons = self.button
        if not self.checkpoint:
            self.explain_button = W.Button(description="Show explanation",
                                           tooltip=f"Show the explanation of quiz {qid}")
            self.explain_button.on_click(self._on_explain)
            buttons = W.HBox([self.button, self.explain_button])
        how = ("checkpoint: your first checked answer is the one recorded" if self.checkpoint
               else "self-check: try as often as you like")
        heading = f'<div role="heading" aria-level="3"><b>Quiz</b> ({how}): {html.escape(q.text)}</div>'
        self.box = W.VBox([W.HTML(heading), answer_area, buttons, self.feedback])
        self.choice: int | float | None = None  # the recorded answer: a checkpoint's first, a self-check's last
        self._display_id = f"course-quiz-{uuid.uuid4().hex}"
        self._displayed = False
        if self.checkpoint and qid in FIRST_ANSWERS:
            self.choice = FIRST_ANSWERS[qid]
            self._lock()

    def record(self) -> dict:
        """What the saved notebook carries for this quiz: its id and the recorded choice (or None)."""
        return {"id": self.question.id, "choice": self.choice}

    def _set_inputs(self, value: int | float, disabled: bool) -> None:
        if self.entry is not None:
            self.entry.value = _number(value)
            self.entry.disabled = disabled
        else:
            self.radio.value = value
            self.radio.disabled = disabled
        self.button.disabled = disabled

    def _lock(self) -> None:
        """Show the checkpoint's recorded answer and its feedback; no further answers."""
        ok, text = grade(self.question.id, self.choice)
        self._set_inputs(self.choice, disabled=True)
        self._show(ok, text)

    def _say(self, text: str, colour: str = "#333") -> None:
        """Feedback in an alert, so that a screen reader reads it out as it appears."""
        self.feedback.value = f'<div role="alert" style="color:{colour}">{html.escape(text)}</div>'

    def _show(self, ok: bool | None, text: str) -> None:
        # dark enough for a contrast of at least 4.5:1 on white; the words say the verdict, not only the colour
        self._say(text, {True: "#006400", False: "#b00000", None: "#333"}[ok])

    def _response(self) -> int | float | None:
        if self.entry is not None:
            return parse_number(self.entry.value)
        return self.radio.value

    def _on_check(self, _button=None) -> None:
        qid = self.question.id
        if self.checkpoint and qid in FIRST_ANSWERS:  # answered already (a click on a disabled button, in code)
            self.choice = FIRST_ANSWERS[qid]
            self._lock()
            return
        value = self._response()
        if value is None:
            self._say("Type a number first (digits, with a point for decimals)."
                      if self.entry is not None else "Pick an answer first.")
            return
        if self.checkpoint:
            ok, text = grade(qid, value)
            _record_progress(qid, ok)
            FIRST_ANSWERS[qid] = value
            self._set_inputs(value, disabled=True)
        else:
            ok, text = _self_check_attempt(qid, value)
        self.choice = value
        if self._displayed:  # an update_display_data: the front end rewrites the record in the cell's outputs
            from IPython.display import update_display

            update_display({RECORD_MIME: self.record()}, raw=True, display_id=self._display_id)
        self._show(ok, text)

    def _on_explain(self, _button=None) -> None:
        self._say(f"Explanation: {self.question.explanation}")

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
