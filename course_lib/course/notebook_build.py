"""Builds the learners' ``notebooks/`` from ``solutions/`` (the single source). For instructors.

    python -m course_lib build             # write notebooks/ from solutions/
    python -m course_lib build --check     # exit 1 if notebooks/ is not what the build writes

In code cells, the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` become the learner's stub at the
marker's indentation (nbgrader's convention). Inside a region, two more markers write that stub:

* ``### STUB <line>``: a line of the stub (a comment or a skeleton line), kept in order with the marker and
  its one following space removed, so ``    ### STUB # boxes: (N, 4) float32`` gives ``    # boxes: (N, 4) float32``
  and ``    ### STUB     total = ...`` gives ``        total = ...``. A bare ``### STUB`` gives an empty line.
  A stub line must not be indented less than ``### BEGIN SOLUTION`` (it would leave the function), and a
  skeleton must run as it is (``x = ...``, comments), so that the stub still reaches its ``raise``.
* ``### EXERCISE: <what to write>``: at most one per region; the stub ends with
  ``raise NotImplementedError("Exercise: <what to write>")``.

Without ``### EXERCISE:`` the message is ``replace this line with your code``, or ``complete the code above``
after ``### STUB`` lines; a region without either marker becomes that single ``raise`` line (``STUB``). A line
that looks like a marker but is not one (``### STUBS``, ``###STUB``, ``### Begin Solution``, ``### EXERCISE``
without the colon or text, a marker outside a region) is a ``MarkerError``, as is an unbalanced region.

In markdown cells, ``<!-- BEGIN SOLUTION -->`` ... ``<!-- END SOLUTION -->`` becomes a prompt for the learner's
answer. Outputs, execution counts and ``# NBVAL_...`` test markers are removed. Never edit a
generated notebook by hand: edit the solution and rebuild.

Before its first code cell, every learner's notebook gets the Colab cell (id ``colab-setup``, so the workspace's
merge by cell id keeps it): on Google Colab only, it clones the course's repository (``[project.urls]
Repository`` in pyproject.toml, the one place the address is written), installs it and moves into its workspace;
anywhere else it does nothing and prints nothing.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from string import Template

from course_lib.utils.paths import REPO_ROOT

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"


MD_BEGIN, MD_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"


STUB_MARK, EXERCISE_MARK = "### STUB", "### EXERCISE:"


DEFAULT_MESSAGE, AFTER_STUB_MESSAGE = "replace this line with your code", "complete the code above"


STUB = f'raise NotImplementedError("Exercise: {DEFAULT_MESSAGE}")'


MD_STUB = "*Your answer here.*"


NBVAL_MARKER = re.compile(r"^\s*# NBVAL_\w+\s*$")


# Anything a marker could be mistyped as: "### STUBS", "##STUB", "### begin solution", "### EXERCISE".
MARKER_LIKE = re.compile(r"^#{2,}\s*(BEGIN\s*SOLUTION|END\s*SOLUTION|STUB|EXERCISE)", re.I)


COLAB_CELL_ID = "colab-setup"
# $repository is filled in by the build (a JSON string is a Python string literal).
COLAB_CELL = Template("""\
# On Google Colab only: fetch and install the course (a few minutes, once per session). Elsewhere this does nothing.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    course = "/content/maskrcnn-step-by-step"
    if not os.path.isdir(course):
        subprocess.run(["git", "clone", "--depth", "1", $repository, course], check=True)
    if not os.path.isfile(os.path.join(course, ".colab-installed")):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", course], check=True)
        open(os.path.join(course, ".colab-installed"), "w").close()
    if course not in sys.path:
        sys.path.insert(0, course)  # this kernel started before the install
    os.environ.setdefault("COURSE_WORKSPACE", os.path.join(course, "workspace"))  # set it to keep work on Drive
    os.makedirs(os.environ["COURSE_WORKSPACE"], exist_ok=True)
    os.chdir(os.environ["COURSE_WORKSPACE"])""")


class MarkerError(ValueError):
    """A solution region is opened without being closed, or closed without being opened, or a marker is mistyped
    or misplaced."""


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def raise_line(message: str) -> str:
    """``raise NotImplementedError("Exercise: <message>")`` with the message quoted for Python."""
    quoted = message.replace("\\", "\\\\").replace('"', '\\"')
    return f'raise NotImplementedError("Exercise: {quoted}")'


def _stub_region(indent: str, stub_lines: list[str], message: str | None) -> list[str]:
    if message is None:
        message = AFTER_STUB_MESSAGE if stub_lines else DEFAULT_MESSAGE
    return [*stub_lines, indent + raise_line(message)]


def stub_code(source: str, where: str = "cell") -> str:
    out, inside = [], False
    indent, stub_lines, message = "", [], None
    for number, line in enumerate(source.split("\n"), 1):
        stripped = line.strip()
        at = f"{where}, line {number}"
        if stripped == BEGIN:
            if inside:
                raise MarkerError(f"{at}: '{BEGIN}' inside another solution region")
            inside, indent, stub_lines, message = True, _indent(line), [], None
        elif stripped == END:
            if not inside:
                raise MarkerError(f"{at}: '{END}' without '{BEGIN}'")
            inside = False
            out += _stub_region(indent, stub_lines, message)
        elif stripped == STUB_MARK or stripped.startswith(STUB_MARK + " "):
            if not inside:
                raise MarkerError(f"{at}: '{STUB_MARK}' outside a solution region")
            if len(_indent(line)) < len(indent):
                raise MarkerError(f"{at}: '{STUB_MARK}' is indented less than its '{BEGIN}'")
            rest = line.lstrip()[len(STUB_MARK) + 1:]
            stub_lines.append(_indent(line) + rest if rest.strip() else "")
        elif stripped.startswith(EXERCISE_MARK):
            text = stripped[len(EXERCISE_MARK):].strip()
            if not inside:
                raise MarkerError(f"{at}: '{EXERCISE_MARK}' outside a solution region")
            if not text:
                raise MarkerError(f"{at}: '{EXERCISE_MARK}' says nothing; write what the learner writes")
            if message is not None:
                raise MarkerError(f"{at}: a second '{EXERCISE_MARK}' in one solution region")
            message = text
        elif MARKER_LIKE.match(stripped):
            raise MarkerError(f"{at}: {stripped!r} looks like a marker but is none of "
                              f"'{BEGIN}', '{END}', '{STUB_MARK} <line>', '{EXERCISE_MARK} <text>'")
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


def course_repository(pyproject: Path = REPO_ROOT / "pyproject.toml") -> str:
    """The course's git repository: ``Repository`` under ``[project.urls]`` in pyproject.toml."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser from PyPI (a test dependency there)
        import tomli as tomllib
    urls = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}).get("urls", {})
    url = urls.get("Repository", "")
    if not re.fullmatch(r"https://[\w.\-/~%]+", url):
        raise ValueError(f"{pyproject}: [project.urls] Repository must be the course's https:// git address, "
                         f"got {url!r}")
    return url


def colab_cell(repository: str) -> dict:
    """The Colab cell (a code cell with the fixed id ``colab-setup``) cloning ``repository``."""
    return {"cell_type": "code", "id": COLAB_CELL_ID, "metadata": {}, "execution_count": None, "outputs": [],
            "source": COLAB_CELL.substitute(repository=json.dumps(repository))}


def with_colab_cell(nb: dict, repository: str, name: str = "notebook") -> dict:
    """``nb`` with the Colab cell before its first code cell (at the end when it has none)."""
    if any(cell.get("id") == COLAB_CELL_ID for cell in nb["cells"]):
        raise MarkerError(f"{name}: a cell already has the id {COLAB_CELL_ID!r}, which the build gives its Colab cell")
    nb = copy.deepcopy(nb)
    first_code = next((i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"), len(nb["cells"]))
    nb["cells"].insert(first_code, colab_cell(repository))
    return nb


def render(nb: dict) -> str:
    """The exact text the build writes: nbformat's own writer (sorted keys, one-space indent), validated.

    ``split_lines=False`` keeps each cell's source one string, as the build has always written it; a final
    newline as ``nbformat.write`` adds one. Raises ``nbformat.ValidationError`` on a malformed notebook.
    """
    import nbformat

    node = nbformat.from_dict(nb)
    nbformat.validate(node)
    return nbformat.writes(node, version=4, split_lines=False) + "\n"


def build(solutions: Path = REPO_ROOT / "solutions", notebooks: Path = REPO_ROOT / "notebooks",
          check: bool = False, repository: str | None = None) -> list[str]:
    """Write (or with ``check``, compare) every student notebook. Returns the names that differ. ``repository``
    (default: pyproject.toml's) is what the Colab cell clones."""
    repository = repository or course_repository()
    notebooks.mkdir(exist_ok=True)
    differ = []
    expected_names = set()
    for src in sorted(solutions.glob("*.ipynb")):
        expected_names.add(src.name)
        student = student_notebook(json.loads(src.read_text(encoding="utf-8")), src.name)
        text = render(with_colab_cell(student, repository, src.name))
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
