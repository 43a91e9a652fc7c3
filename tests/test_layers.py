"""course_lib's layers: every import points down (or within its own package), and no import cycle.

The layers, bottom to top: utils 0, ops 1, detection 2, data 3, training 4, lessons 5, course 6.
The top-level ``course_lib/__init__.py`` and ``__main__.py`` sit above them all.
"""

import ast
from pathlib import Path

import pytest

from course_lib.utils.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "course_lib"
LAYERS = {"utils": 0, "ops": 1, "detection": 2, "data": 3, "training": 4, "lessons": 5, "course": 6}
TOP = 7  # course_lib/__init__.py and __main__.py


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def course_imports(source: str, module: str, is_package: bool) -> list[tuple[str, int]]:
    """``(imported course_lib module, line)`` for every import in ``source``, relative ones resolved."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "course_lib"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] == "course_lib":
                # ``from course_lib.lessons import draw`` imports the module course_lib.lessons.draw
                found += [(f"{base}.{a.name}" if base.count(".") == 1 and base != "course_lib" else base,
                           node.lineno) for a in node.names]
    return found


def layer_of(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 and parts[1] in LAYERS else TOP


def import_graph(root: Path = PACKAGE) -> dict[str, list[tuple[str, int]]]:
    graph = {}
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        graph[name] = course_imports(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
    return graph


def upward_imports(graph) -> list[str]:
    bad = []
    for module, imports in graph.items():
        for target, line in imports:
            if layer_of(target) > layer_of(module):
                bad.append(f"{module} (line {line}) imports {target}: layer {layer_of(target)} is above "
                           f"layer {layer_of(module)}")
    return bad


def cycles(graph) -> list[list[str]]:
    """Import cycles among course_lib modules (each found once, as a path that returns to its start)."""
    edges = {m: sorted({t for t, _ in imps if t in graph and t != m}) for m, imps in graph.items()}
    found, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        stack.append(m)
        for t in edges[m]:
            if state.get(t) == "open":
                found.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack)
        stack.pop()
        state[m] = "done"

    for m in edges:
        if m not in state:
            visit(m, [])
    return found


def test_every_import_points_down_a_layer():
    assert upward_imports(import_graph()) == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_every_module_belongs_to_a_layer():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert loose == [], f"modules outside the layers: {loose}"


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "course_lib" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "course_lib"


@pytest.mark.parametrize("statement", [
    "from course_lib.training.engine import fit",      # absolute
    "from ..training import engine",                     # relative, to a package
    "import course_lib.lessons.draw",                    # plain import
    "def f():\n    from course_lib.course.quiz import quiz\n",  # inside a function
])
def test_a_planted_upward_import_is_caught(tmp_path, statement):
    root = write(tmp_path, {"__init__.py": "", "ops/__init__.py": "", "ops/boxes.py": statement + "\n",
                            "training/__init__.py": "", "training/engine.py": "def fit(): pass\n",
                            "lessons/__init__.py": "", "lessons/draw.py": "", "course/__init__.py": "",
                            "course/quiz.py": ""})
    bad = upward_imports(import_graph(root))
    assert len(bad) == 1 and bad[0].startswith("course_lib.ops.boxes (line ")


def test_a_planted_cycle_is_caught(tmp_path):
    root = write(tmp_path, {"__init__.py": "", "data/__init__.py": "",
                            "data/a.py": "from course_lib.data.b import x\n",
                            "data/b.py": "from course_lib.data import a\nx = 1\n"})
    graph = import_graph(root)
    assert upward_imports(graph) == []
    assert cycles(graph) == [["course_lib.data.a", "course_lib.data.b", "course_lib.data.a"]]


def test_a_downward_import_passes(tmp_path):
    root = write(tmp_path, {"__init__.py": "", "course/__init__.py": "", "ops/__init__.py": "",
                            "ops/boxes.py": "x = 1\n", "course/cli.py": "from course_lib.ops.boxes import x\n"})
    assert upward_imports(import_graph(root)) == []


def test_the_progress_line_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys; from course_lib import show_progress; show_progress(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'matplotlib', 'PIL')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
