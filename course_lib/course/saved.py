"""Saved functions: each exercise that passes its checker is kept in the learner's workspace, their own code.

When a checker passes in a kernel started from the workspace (``COURSE_WORKSPACE``, which ``./course lab`` sets),
the function's source is saved in ``saved/NN_name.py`` (one module per notebook), with the learner's own
functions it calls and the imports they use, and dated in ``saved/index.json``. A later version that fails does
not replace a passing one: the checker says which is kept. Notebook 07 builds the learner's Mask R-CNN from these
modules; ``show_progress()`` lists them.
"""

from __future__ import annotations

import inspect
import json
import os
import time
import types
from pathlib import Path

from course_lib.utils.files import write_atomic, write_json_atomic

WORKSPACE_ENV = "COURSE_WORKSPACE"  # set by ./course lab (course_lib.course.workspace) for its kernels


def saved_dir() -> Path | None:
    """``<workspace>/saved`` when this kernel runs from a workspace, else None (headless runs, tests)."""
    root = os.environ.get(WORKSPACE_ENV)
    return Path(root) / "saved" if root else None


def read_index(folder: Path | None = None) -> dict:
    """``{notebook: {checker: {"function", "names", "saved"}}}`` of what is saved ({} when nothing)."""
    folder = folder or saved_dir()
    path = folder / "index.json" if folder else None
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def function_sources(fn) -> tuple[list[str], dict[str, str]]:
    """(imports, {name: source}) for ``fn`` and the functions of the same namespace it calls, in calling order."""
    imports: dict[str, str] = {}
    sources: dict[str, str] = {}
    namespace = getattr(fn, "__globals__", {})
    module_name = getattr(fn, "__module__", None)

    def visit(f) -> None:
        if f.__name__ in sources:
            return
        sources[f.__name__] = inspect.getsource(f).rstrip() + "\n"
        for name in f.__code__.co_names + tuple(c for k in f.__code__.co_consts if isinstance(k, types.CodeType)
                                                 for c in k.co_names):
            value = namespace.get(name)
            if isinstance(value, types.ModuleType):
                real = value.__name__
                imports[name] = f"import {real}" if real == name else (
                    f"import {real} as {name}" if "." not in real or real.rsplit(".", 1)[1] != name
                    else f"from {real.rsplit('.', 1)[0]} import {name}")
            elif isinstance(value, types.FunctionType) and value.__module__ == module_name and value is not f:
                visit(value)
            elif callable(value) and getattr(value, "__module__", None) not in (None, module_name) \
                    and "." not in getattr(value, "__qualname__", ".") and value is not f:
                imports[name] = f"from {value.__module__} import {value.__qualname__}" + (
                    f" as {name}" if name != value.__qualname__ else "")  # a course helper or a library's

    visit(fn)
    return sorted(set(imports.values())), dict(reversed(list(sources.items())))


def save_passing(notebook: str, checker: str, fn) -> str:
    """Save a passing exercise; returns the sentence to print ("" outside a workspace or when it cannot be read)."""
    folder = saved_dir()
    if folder is None or not callable(fn):
        return ""
    try:
        imports, sources = function_sources(fn)
    except (OSError, TypeError):  # defined where no source is kept (exec, a lambda in a terminal)
        return "(not saved: Python keeps no source for this function)"
    index = read_index(folder)
    index.setdefault(notebook, {})[checker] = {"function": fn.__name__, "names": list(sources),
                                               "saved": time.strftime("%Y-%m-%d %H:%M")}
    _write_module(folder, notebook, index[notebook], imports, sources)
    write_json_atomic(index, folder / "index.json")
    return f"Saved {fn.__name__} in {folder.name}/{notebook}.py: notebook 07 builds your Mask R-CNN from it."


def _write_module(folder: Path, notebook: str, entries: dict, imports: list[str], sources: dict[str, str]) -> None:
    path = folder / f"{notebook}.py"
    blocks = _read_blocks(path)
    for name, source in sources.items():
        blocks[name] = source
    lines = [f'"""Your functions from {notebook}, saved when they passed their checkers."""', ""]
    known_imports = sorted({line for line in _read_imports(path)} | set(imports))
    text = "\n".join(lines + known_imports) + "\n\n\n" + "\n\n".join(blocks.values())
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: f.write(text), mode="w")


def _read_imports(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith(("import ", "from "))]


def _read_blocks(path: Path) -> dict[str, str]:
    """The top-level functions already saved in ``path``, by name, as text."""
    import ast

    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return {}
    lines = text.splitlines()
    blocks = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            blocks[node.name] = "\n".join(lines[first - 1:node.end_lineno]) + "\n"
    return blocks


def kept_note(notebook: str, checker: str) -> str:
    """What a failing run says when a passing version is saved already."""
    entry = read_index().get(notebook, {}).get(checker)
    if not entry:
        return ""
    return (f"Your passing {entry['function']} from {entry['saved']} stays saved (saved/{notebook}.py); "
            "this version is not saved.")


def summary_lines() -> list[str]:
    """One line per notebook with saved functions, for ``show_progress()``."""
    return [f"  saved from {notebook}: " + ", ".join(f"{e['function']} ({e['saved']})" for e in entries.values())
            for notebook, entries in sorted(read_index().items())]

