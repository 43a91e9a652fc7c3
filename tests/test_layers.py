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
    # ``from course_lib.lessons import draw`` imports the module course_lib.lessons.draw
    return [(f"{base}.{name}" if name and base.count(".") == 1 else base, line)
            for base, name, line in imported_names(source, module, is_package)]


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


# ---- who may import what, beyond the layers: checkers and commands never reach a lesson; no private names ----

def package_modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def top_level_exports(root: Path = PACKAGE) -> dict[str, str]:
    """``course_lib/__init__.py``'s ``_EXPORTS``, as {public name: module that defines it}."""
    init = root / "__init__.py"
    for node in ast.walk(ast.parse(init.read_text(encoding="utf-8"))) if init.exists() else ():
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets):
            exports = ast.literal_eval(node.value)
            return {name: f"course_lib.{module}" for module, names in exports.items() for name in names.split()}
    return {}


def imported_names(source: str, module: str, is_package: bool) -> list[tuple[str, str | None, int]]:
    """``(module imported from, name or None, line)`` for every course_lib import, relative ones resolved."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "course_lib"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] == "course_lib":
                found += [(base, a.name, node.lineno) for a in node.names]
    return found


def resolved_imports(root: Path = PACKAGE) -> dict[str, list[tuple[str, int]]]:
    """Every module's course_lib imports as the modules that define what it imports: ``from course_lib import
    fit`` is an import of ``course_lib.training.engine`` (through ``_EXPORTS``), ``from course_lib.lessons import
    draw`` one of ``course_lib.lessons.draw``."""
    modules, exports = package_modules(root), top_level_exports(root)
    graph = {}
    for name, path in modules.items():
        edges = []
        for base, imported, line in imported_names(path.read_text(encoding="utf-8"), name, path.name == "__init__.py"):
            if imported and f"{base}.{imported}" in modules:
                edges.append((f"{base}.{imported}", line))
            elif imported and base == "course_lib" and imported in exports:
                edges.append((exports[imported], line))
            else:
                edges.append((base, line))
        graph[name] = edges
    return graph


def command_modules(root: Path = PACKAGE) -> set[str]:
    """The modules of ``course/cli.py``'s ``COMMANDS`` table (``./course train`` -> ``course_lib.training...``)."""
    cli = root / "course" / "cli.py"
    for node in ast.walk(ast.parse(cli.read_text(encoding="utf-8"))) if cli.exists() else ():
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and "COMMANDS" in ast.unparse(node).split("=")[0]:
            return {module for module, _ in ast.literal_eval(node.value).values()}
    return set()


def is_lesson(module: str) -> bool:
    return module.split(".")[:2] == ["course_lib", "lessons"]


def checker_imports_above_training(graph) -> list[str]:
    """Imports of an exercise checker from a layer above training (4), the course package's own modules aside:
    a checker compares with a reference that lives beside the op it teaches, never with a lesson's copy."""
    bad = []
    for module, imports in graph.items():
        if module.startswith("course_lib.course.checkers"):
            bad += [f"{module} (line {line}) imports {target}: a checker imports from layers <= 4 only"
                    for target, line in dict.fromkeys(imports)  # one line per module and statement
                    if layer_of(target) > LAYERS["training"] and not target.startswith("course_lib.course")]
    return bad


def lessons_reached_by_checkers_and_commands(graph, commands: set[str]) -> list[str]:
    """Lesson modules that a checker, a command, or any other module of the course package imports, directly
    or through the modules it imports: lessons only draw and explain, for the notebooks."""
    edges = {m: [t for t, _ in imps if t in graph] for m, imps in graph.items()}
    starts = sorted(m for m in graph if m.startswith("course_lib.course") or m in commands)
    bad = []
    for start in starts:
        seen, stack, via = {start}, [start], {start: None}
        while stack:
            m = stack.pop()
            for t in edges[m]:
                if t not in seen:
                    seen.add(t)
                    via[t] = m
                    stack.append(t)
        for lesson in sorted(t for t in seen if is_lesson(t)):
            path, m = [], lesson
            while m is not None:
                path.append(m)
                m = via[m]
            bad.append(" -> ".join(reversed(path)))
    return bad


def private_imports(root: Path = PACKAGE) -> list[str]:
    """``from course_lib.x import _name`` (or ``x._name`` on an imported course_lib module) in another module.

    Private modules themselves (``ops/_utils.py``, ``detection/_utils.py``: torchvision's file names) may be
    imported; the names in them that other modules use are public.
    """
    modules, bad = package_modules(root), []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {}
        for base, imported, line in imported_names(path.read_text(encoding="utf-8"), name,
                                                   path.name == "__init__.py"):
            if imported is None:
                continue
            if f"{base}.{imported}" in modules:  # a module: its private attributes count too
                aliases[imported] = f"{base}.{imported}"
            elif imported.startswith("_") and not imported.startswith("__") and base != name:
                bad.append(f"{name} (line {line}) imports {imported} from {base}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                aliases.update({a.asname: a.name for a in node.names if a.asname and a.name in modules})
            elif isinstance(node, ast.alias) and node.asname and node.name in aliases:
                aliases[node.asname] = aliases[node.name]
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                bad.append(f"{name} (line {node.lineno}) uses {node.value.id}.{node.attr} of {aliases[node.value.id]}")
    return bad


def test_checkers_import_from_layers_up_to_training_only():
    assert checker_imports_above_training(resolved_imports()) == []


def test_no_checker_or_command_reaches_a_lesson():
    commands = command_modules()
    assert "course_lib.training.predict_command" in commands and "course_lib.course.grading.cli" in commands
    assert lessons_reached_by_checkers_and_commands(resolved_imports(), commands) == []


def test_no_private_name_is_imported_from_another_module():
    assert private_imports() == []


LESSON = {"__init__.py": "_EXPORTS = {'lessons.nb03': 'roi_pool_one_box', 'ops.roi_pool': 'roi_pool'}\n",
          "ops/__init__.py": "", "ops/roi_pool.py": "def roi_pool(): pass\n",
          "lessons/__init__.py": "", "lessons/nb03.py": "def roi_pool_one_box(): pass\n_rect = 1\n",
          "training/__init__.py": "", "course/__init__.py": "",
          "course/cli.py": "COMMANDS = {'predict': ('course_lib.training.predict_command', 'text')}\n",
          "course/checkers/__init__.py": "", "course/checkers/core.py": "def checker(): pass\n"}


@pytest.mark.parametrize("statement", [
    "from course_lib.lessons.nb03 import roi_pool_one_box",   # from a lesson module
    "from course_lib import roi_pool_one_box",                  # through the top level's _EXPORTS
    "from course_lib.lessons import nb03",                      # the lesson module itself
    "def cases():\n    import course_lib.lessons.nb03\n",      # inside a function
])
def test_a_planted_checker_import_of_a_lesson_is_caught(tmp_path, statement):
    root = write(tmp_path, {**LESSON, "course/checkers/nb03.py": "from course_lib.course.checkers.core import "
                                                                   "checker\n" + statement + "\n",
                            "training/predict_command.py": "from course_lib.ops.roi_pool import roi_pool\n"})
    graph = resolved_imports(root)
    bad = checker_imports_above_training(graph)
    assert len(bad) == 1 and bad[0].startswith("course_lib.course.checkers.nb03 (line ")
    assert lessons_reached_by_checkers_and_commands(graph, command_modules(root)) == [
        "course_lib.course.checkers.nb03 -> course_lib.lessons.nb03"]


def test_a_planted_command_that_reaches_a_lesson_is_caught(tmp_path):
    """``predict_command`` imports ``overlays``, which (wrongly) imports a lesson: caught through the chain."""
    root = write(tmp_path, {**LESSON, "training/predict_command.py": "from course_lib.training import overlays\n",
                            "training/overlays.py": "from course_lib import roi_pool_one_box\n"})
    graph = resolved_imports(root)
    assert checker_imports_above_training(graph) == []
    assert lessons_reached_by_checkers_and_commands(graph, command_modules(root)) == [
        "course_lib.training.predict_command -> course_lib.training.overlays -> course_lib.lessons.nb03"]
    clean = write(tmp_path / "clean", {**LESSON, "training/predict_command.py": "from course_lib import roi_pool\n"})
    assert lessons_reached_by_checkers_and_commands(resolved_imports(clean), command_modules(clean)) == []


@pytest.mark.parametrize("statement, found", [
    ("from course_lib.lessons.nb03 import _rect", "imports _rect from course_lib.lessons.nb03"),
    ("from .nb03 import _rect", "imports _rect from course_lib.lessons.nb03"),
    ("from course_lib.lessons import nb03\nx = nb03._rect", "uses nb03._rect of course_lib.lessons.nb03"),
    ("import course_lib.lessons.nb03 as n\nx = n._rect", "uses n._rect of course_lib.lessons.nb03"),
    ("def f():\n    from course_lib.lessons.nb03 import _rect as r\n", "imports _rect from course_lib.lessons.nb03"),
])
def test_a_planted_private_import_is_caught(tmp_path, statement, found):
    root = write(tmp_path, {**LESSON, "lessons/nb04.py": statement + "\n"})
    bad = private_imports(root)
    assert len(bad) == 1 and bad[0].startswith("course_lib.lessons.nb04 (line ") and bad[0].endswith(found)


def test_public_names_and_private_modules_may_be_imported(tmp_path):
    root = write(tmp_path, {**LESSON, "ops/_utils.py": "def as_pair(): pass\n_private = 1\n",
                            "ops/roi_align.py": "from course_lib.ops._utils import as_pair\n"
                                                "from course_lib.ops import _utils\n",
                            "lessons/nb04.py": "from course_lib.lessons.nb03 import roi_pool_one_box\n"
                                               "def _own(): pass\n_own()\n"})
    assert private_imports(root) == []


def test_the_progress_line_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys; from course_lib import show_progress; show_progress(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'matplotlib', 'PIL')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def package_edges(graph) -> dict[str, set[str]]:
    """package -> the other course_lib packages its modules import (the top-level modules left out)."""
    edges = {name: set() for name in LAYERS}
    for module, imports in graph.items():
        source = module.split(".")[1] if module.count(".") else None
        if source not in LAYERS:
            continue
        for target, _ in imports:
            parts = target.split(".")
            if len(parts) > 1 and parts[1] in LAYERS and parts[1] != source:
                edges[source].add(parts[1])
    return edges


def documented_edges(text: str) -> dict[str, set[str]]:
    """The "| package | imports from |" table of ARCHITECTURE.md."""
    table = text.split("| package | imports from |", 1)[1].split("\n\n", 1)[0]
    edges = {}
    for row in table.strip().splitlines()[1:]:
        package, targets = (cell.strip() for cell in row.strip("|").split("|"))
        edges[package] = {t.strip() for t in targets.split(",") if t.strip() and not t.strip().startswith("(")}
    return edges


def test_architecture_md_draws_the_real_graph():
    real = package_edges(import_graph())
    drawn = documented_edges((REPO_ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    assert drawn == real, f"ARCHITECTURE.md's edge table differs from the imports: drawn {drawn}, real {real}"
    assert "detection" not in real["data"] and "data" not in real["detection"]  # siblings


def test_the_graph_check_sees_a_new_edge(tmp_path):
    package = tmp_path / "course_lib"
    for name in LAYERS:
        (package / name).mkdir(parents=True)
        (package / name / "__init__.py").write_text("")
    (package / "data" / "reader.py").write_text("from course_lib.detection import rpn\n")
    edges = package_edges(import_graph(package))
    assert edges["data"] == {"detection"} and edges["detection"] == set()
