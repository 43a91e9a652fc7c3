"""Builds the learners' ``notebooks/`` from ``solutions/`` (the single source). For instructors.

    python -m course_lib build             # write notebooks/ from solutions/
    python -m course_lib build --check     # exit 1 if notebooks/ is not what the build writes

In code cells, the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` become
``raise NotImplementedError(...)`` at the marker's indentation (nbgrader's convention). In markdown
cells, ``<!-- BEGIN SOLUTION -->`` ... ``<!-- END SOLUTION -->`` becomes a prompt for the learner's
answer. Outputs, execution counts and ``# NBVAL_...`` test markers are removed. Never edit a
generated notebook by hand: edit the solution and rebuild.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

from course_lib.utils.paths import REPO_ROOT

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


MD_BEGIN, MD_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"


STUB = 'raise NotImplementedError("Exercise: replace this line with your code")'


MD_STUB = "*Your answer here.*"


NBVAL_MARKER = re.compile(r"^\s*# NBVAL_\w+\s*$")


class MarkerError(ValueError):
    """A solution region is opened without being closed, or closed without being opened."""


def stub_code(source: str, where: str = "cell") -> str:
    out, inside = [], False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise MarkerError(f"{where}: '{BEGIN}' inside another solution region")
            inside = True
            out.append(line[: len(line) - len(line.lstrip())] + STUB)
        elif stripped == END:
            if not inside:
                raise MarkerError(f"{where}: '{END}' without '{BEGIN}'")
            inside = False
        elif not inside and not NBVAL_MARKER.match(line):
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: '{BEGIN}' is never closed")
    return "\n".join(out)


def stub_markdown(source: str, where: str = "cell") -> str:
    pattern = re.compile(re.escape(MD_BEGIN) + r".*?" + re.escape(MD_END), re.S)
    result = pattern.sub(MD_STUB, source)
    if MD_BEGIN in result or MD_END in result:
        raise MarkerError(f"{where}: unbalanced markdown solution markers")
    return result


def student_notebook(nb: dict, name: str = "notebook") -> dict:
    """The learner's version of a solution notebook (a JSON dict, as nbformat stores it)."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb["cells"]):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        where = f"{name}, cell {i}"
        if cell["cell_type"] == "code":
            source = stub_code(source, where)
            cell["outputs"] = []
            cell["execution_count"] = None
        elif cell["cell_type"] == "markdown":
            source = stub_markdown(source, where)
        cell["source"] = source
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k in ("tags", "editable")}
    nb["metadata"] = {k: v for k, v in nb["metadata"].items() if k in ("kernelspec", "language_info")}
    return nb


def render(nb: dict) -> str:
    """The exact text the build writes (stable key order, one-space indent, final newline)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def build(solutions: Path = REPO_ROOT / "solutions", notebooks: Path = REPO_ROOT / "notebooks",
          check: bool = False) -> list[str]:
    """Write (or with ``check``, compare) every student notebook. Returns the names that differ."""
    notebooks.mkdir(exist_ok=True)
    differ = []
    expected_names = set()
    for src in sorted(solutions.glob("*.ipynb")):
        expected_names.add(src.name)
        text = render(student_notebook(json.loads(src.read_text(encoding="utf-8")), src.name))
        dest = notebooks / src.name
        if not dest.exists() or dest.read_text(encoding="utf-8") != text:
            differ.append(src.name)
            if not check:
                dest.write_text(text, encoding="utf-8")
    extra = sorted(p.name for p in notebooks.glob("*.ipynb") if p.name not in expected_names)
    differ += [f"{name} (no solution notebook)" for name in extra]
    return differ


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="course build", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="compare only; exit 1 when notebooks/ is stale")
    p.add_argument("--solutions", type=Path, default=REPO_ROOT / "solutions")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "notebooks")
    args = p.parse_args(argv)
    differ = build(args.solutions, args.out, check=args.check)
    if args.check:
        if differ:
            print("notebooks/ is out of date with solutions/: " + ", ".join(differ)
                  + "\nRun `python -m course_lib build`.")
            return 1
        print("notebooks/ matches solutions/")
        return 0
    print(f"wrote {len(differ)} notebook(s) to {args.out}" + (": " + ", ".join(differ) if differ else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
