"""Reading a submission before anything runs, and finding the functions it hands in, from their cells.

``read_submission(path)`` refuses, with a reason, what a grader must not open: a symlink, a special file, a
file over the size limit, something that is not a notebook; a ``data/`` folder beside it is checked the
same way (regular files and folders only). ``exercise_source(cells, checker)`` finds the function a notebook
hands to ``check_x`` (the last ``check_x(name)`` call) and the code that defines it: the function's last
definition before that call, then, transitively, the top-level definitions, imports and assignments of the
notebook that it uses (the names ``symtable`` says it reads as globals). A function that is itself an
exercise (``box_iou = check_box_iou(box_iou)``) is reported in ``exercises_used``: the grader lends the
course's version of it when the learner's did not pass, as the notebook does.
"""

from __future__ import annotations

import ast
import builtins
import stat
import symtable
from dataclasses import dataclass, field
from pathlib import Path

MAX_NOTEBOOK_BYTES = 64 * 2**20
MAX_DATA_BYTES = 512 * 2**20
BUILTINS = frozenset(dir(builtins))


class SubmissionError(Exception):
    """A submission the grader will not run; the message names the file and the reason."""


@dataclass
class Submission:
    path: Path
    student: str
    notebook: str  # the course notebook, e.g. "02_anchors_rpn"
    nb: object  # the nbformat notebook as handed in
    data_dir: Path | None = None


def _refuse_special(path: Path, what: str) -> None:
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        raise SubmissionError(f"{path}: {what} is a symbolic link; hand in the file itself")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise SubmissionError(f"{path}: {what} is not a regular file")


def check_data_dir(folder: Path) -> None:
    """Refuse a ``data/`` folder holding links or special files, or more than ``MAX_DATA_BYTES``."""
    total = 0
    _refuse_special(folder, "the data folder")
    for path in sorted(folder.rglob("*")):
        _refuse_special(path, "a file in data/")
        if path.is_file():
            total += path.lstat().st_size
    if total > MAX_DATA_BYTES:
        raise SubmissionError(f"{folder}: data/ holds {total / 2**20:.0f} MB, over the {MAX_DATA_BYTES >> 20} MB limit")


def read_notebook(path: Path):
    import nbformat

    if not path.exists() and not path.is_symlink():
        raise SubmissionError(f"{path}: no such notebook")
    _refuse_special(path, "the notebook")
    if path.is_dir():
        raise SubmissionError(f"{path}: a folder, not a notebook")
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise SubmissionError(f"{path}: {path.stat().st_size >> 20} MB, over the {MAX_NOTEBOOK_BYTES >> 20} MB limit")
    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    except Exception as exc:  # not UTF-8, not JSON, or JSON that is not a notebook
        raise SubmissionError(f"{path}: not a Jupyter notebook ({type(exc).__name__})") from None
    if not isinstance(getattr(nb, "cells", None), list):
        raise SubmissionError(f"{path}: not a Jupyter notebook (no cells)")
    return nb


def read_submission(path: Path, notebook: str) -> Submission:
    """Everything the grader needs of one submission, read and checked before any code runs."""
    path = Path(path)
    nb = read_notebook(path)
    data = path.parent / "data"
    data_dir = None
    if data.exists() or data.is_symlink():
        check_data_dir(data)
        data_dir = data
    return Submission(path=path, student=path.absolute().parent.name, notebook=notebook, nb=nb, data_dir=data_dir)


# ------------------------------------------------------------------------------------- the submitted code

@dataclass
class ExerciseSource:
    function: str  # the name handed to the checker
    parts: list[tuple[str, bool]]  # (code, required) in notebook order: the function, and what it uses
    part_names: list[list[str]] = field(default_factory=list)  # the names each part binds
    exercises_used: dict[str, str] = field(default_factory=dict)  # {function name: its checker}
    call_cell: int = 0  # the index of the cell that hands it to the checker

    @property
    def source(self) -> str:
        """The parts as one text (for similarity and reports)."""
        return "\n\n".join(text for text, _ in self.parts)

    def without(self, names) -> list[tuple[str, bool]]:
        """The parts, less those that define one of ``names`` (functions the grader lends instead)."""
        return [part for part, bound in zip(self.parts, self.part_names, strict=True) if not set(bound) & set(names)]


@dataclass
class _Statement:
    position: int
    node: ast.stmt
    text: str
    cell: int  # the index of its cell in the notebook


def _statements(cells) -> list[_Statement]:
    found = []
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        text = cell.get("source", "")
        text = "".join(text) if isinstance(text, list) else text
        lines = [line for line in text.splitlines() if not line.lstrip().startswith(("%", "!"))]
        text = "\n".join(lines)
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in tree.body:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            segment = "\n".join(text.splitlines()[first - 1:node.end_lineno])  # decorators included
            found.append(_Statement(len(found), node, segment, index))
    return found


def _bound_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"]
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return []


def global_reads(text: str) -> set[str]:
    """Names a statement's code reads from the module's globals (its own locals and builtins excluded)."""
    try:
        table = symtable.symtable(text, "<cell>", "exec")
    except SyntaxError:
        return set()
    names: set[str] = set()

    def visit(t, top: bool) -> None:
        for sym in t.get_symbols():
            if sym.is_referenced() and (top or sym.is_global()):
                names.add(sym.get_name())
        for child in t.get_children():
            visit(child, False)

    visit(table, True)
    return names - BUILTINS


def _check_call(node: ast.stmt, checker: str) -> str | None:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == checker \
                and sub.args and isinstance(sub.args[0], ast.Name):
            return sub.args[0].id
    return None


def _is_check_rebinding(node: ast.stmt) -> str | None:
    """``x = check_y(x)``: the checker's name, else None."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
            and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name) \
            and node.value.func.id.startswith("check_") and node.value.args \
            and isinstance(node.value.args[0], ast.Name) and node.value.args[0].id == node.targets[0].id:
        return node.value.func.id
    return None


def exercise_source(cells, checker: str) -> ExerciseSource | None:
    """The code that defines the function handed to ``checker`` (``None`` when the notebook never calls it)."""
    statements = _statements(cells)
    calls = [(s.position, name) for s in statements if (name := _check_call(s.node, checker))]
    if not calls:
        return None
    call_at, function = calls[-1]
    call_cell = statements[call_at].cell

    def binding(name: str, before: int) -> _Statement | None:
        for s in reversed(statements[:before]):
            if name in _bound_names(s.node):
                return s
        return None

    chosen: dict[int, _Statement] = {}
    used: dict[str, str] = {}
    target = binding(function, call_at)
    while target is not None and _is_check_rebinding(target.node):
        target = binding(function, target.position)
    if target is None or not isinstance(target.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return ExerciseSource(function, [], [], call_cell=call_cell)
    queue = [target]
    while queue:
        s = queue.pop()
        if s.position in chosen:
            continue
        chosen[s.position] = s
        if isinstance(s.node, (ast.Import, ast.ImportFrom)):
            continue
        for name in sorted(global_reads(s.text)):
            found = binding(name, call_at)
            if found is not None and (check := _is_check_rebinding(found.node)):
                used[name] = check
                found = binding(name, found.position)
            if found is not None and found.position not in chosen:
                queue.append(found)
    # A helper that fails to define (an import of the course, say) only leaves its name undefined.
    ordered = sorted(chosen.values(), key=lambda s: s.position)
    return ExerciseSource(function, [(s.text, s is target) for s in ordered],
                          [_bound_names(s.node) for s in ordered], used, call_cell)
