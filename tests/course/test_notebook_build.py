import json
import os
import subprocess
import sys
import types

import pytest

from course_lib.course.notebook_build import (
    COLAB_CELL_ID,
    MarkerError,
    build,
    colab_cell,
    course_repository,
    render,
    stub_code,
    stub_markdown,
    student_notebook,
    with_colab_cell,
)
from course_lib.utils.paths import REPO_ROOT as ROOT


def test_solution_region_becomes_a_stub_at_its_indentation():
    src = "def f(x):\n    '''doc'''\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n\nf = check(f)"
    assert stub_code(src) == ("def f(x):\n    '''doc'''\n"
                              '    raise NotImplementedError("Exercise: replace this line with your code")\n\nf = check(f)')


def test_nbval_markers_are_removed_and_other_code_kept():
    assert stub_code("# NBVAL_CHECK_OUTPUT\nprint(1)") == "print(1)"
    assert stub_code("x = 1  # BEGIN SOLUTION is not a marker here") == "x = 1  # BEGIN SOLUTION is not a marker here"


@pytest.mark.parametrize("bad", ["### BEGIN SOLUTION\nx = 1", "x = 1\n### END SOLUTION",
                                 "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION"])
def test_unbalanced_markers_are_errors(bad):
    with pytest.raises(MarkerError):
        stub_code(bad, "nb, cell 3")


def test_stub_lines_and_the_exercise_message_write_the_learners_stub():
    src = ('def f(boxes):\n'
           '    """doc"""\n'
           '    ### BEGIN SOLUTION\n'
           '    ### STUB # boxes: (N, 4) float32 -> (N,) float32\n'
           '    ### STUB total = ...  # (N,)\n'
           '    ### STUB for box in boxes:\n'
           '    ### STUB     ...\n'
           '    ### STUB\n'
           '    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])\n'
           '        ### STUB # indented stub lines keep their indentation\n'
           '    ### EXERCISE: return the (N,) "areas" of the boxes\n'
           '    return areas\n'
           '    ### END SOLUTION\n'
           '\n'
           'f = check(f)')
    assert stub_code(src) == ('def f(boxes):\n'
                              '    """doc"""\n'
                              '    # boxes: (N, 4) float32 -> (N,) float32\n'
                              '    total = ...  # (N,)\n'
                              '    for box in boxes:\n'
                              '        ...\n'
                              '\n'
                              '        # indented stub lines keep their indentation\n'
                              '    raise NotImplementedError("Exercise: return the (N,) \\"areas\\" of the boxes")\n'
                              '\n'
                              'f = check(f)')
    namespace = {}
    exec(stub_code(src).replace("f = check(f)", ""), namespace)
    with pytest.raises(NotImplementedError, match=r'Exercise: return the \(N,\) "areas" of the boxes'):
        namespace["f"]([])  # the skeleton runs and reaches the raise


def test_stub_lines_without_a_message_and_a_message_without_stub_lines():
    assert stub_code("    ### BEGIN SOLUTION\n    ### STUB x = ...\n    x = 1\n    ### END SOLUTION") == (
        '    x = ...\n    raise NotImplementedError("Exercise: complete the code above")')
    assert stub_code("### BEGIN SOLUTION\n### EXERCISE: return x + 1\nreturn x + 1\n### END SOLUTION") == (
        'raise NotImplementedError("Exercise: return x + 1")')


@pytest.mark.parametrize("bad, says", [
    ("x = 1\n### STUB y = ...", "outside a solution region"),
    ("x = 1\n### EXERCISE: y", "outside a solution region"),
    ("    ### BEGIN SOLUTION\n  ### STUB y = ...\n    ### END SOLUTION", "indented less"),
    ("### BEGIN SOLUTION\n### EXERCISE:\n### END SOLUTION", "says nothing"),
    ("### BEGIN SOLUTION\n### EXERCISE: a\n### EXERCISE: b\n### END SOLUTION", "a second"),
    ("### BEGIN SOLUTION\n### STUBS y = ...\n### END SOLUTION", "looks like a marker"),
    ("### BEGIN SOLUTION\n###STUB y = ...\n### END SOLUTION", "looks like a marker"),
    ("### BEGIN SOLUTION\n### EXERCISE return y\n### END SOLUTION", "looks like a marker"),
    ("### Begin Solution\nx = 1\n### END SOLUTION", "looks like a marker"),
    ("### BEGIN SOLUTION\nx = 1\n## END SOLUTION", "looks like a marker"),
])
def test_mistyped_or_misplaced_markers_are_errors_that_name_the_line(bad, says):
    with pytest.raises(MarkerError, match=says) as err:
        stub_code(bad, "nb, cell 3")
    assert str(err.value).startswith("nb, cell 3, line ")


def test_every_stub_in_these_notebooks_says_what_to_write():
    """Every exercise carries '### EXERCISE:' (a message saying what to write), not the default."""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        name = path.stem
        nb = json.loads(path.read_text())
        stubs = ["".join(c["source"]) for c in nb["cells"] if "raise NotImplementedError" in "".join(c["source"])]
        assert stubs, name
        for stub in stubs:
            assert "replace this line with your code" not in stub and "complete the code above" not in stub, (
                f"{name}: a stub without '### EXERCISE:'\n{stub}")


def test_markdown_answers_are_hidden():
    assert stub_markdown("Q?\n<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->") == "Q?\n*Your answer here.*"


def test_student_notebook_drops_outputs_and_metadata():
    nb = {"cells": [{"cell_type": "code", "source": ["x = 1\n", "x"], "outputs": [{"output_type": "stream"}],
                     "execution_count": 3, "metadata": {"tags": ["t"], "execution": {}}, "id": "a"}],
          "metadata": {"kernelspec": {"name": "python3"}, "widgets": {}}, "nbformat": 4, "nbformat_minor": 5}
    out = student_notebook(nb)
    cell = out["cells"][0]
    assert cell["outputs"] == [] and cell["execution_count"] is None and cell["metadata"] == {"tags": ["t"]}
    assert out["metadata"] == {"kernelspec": {"name": "python3"}}
    assert nb["cells"][0]["outputs"], "the solution itself is not modified"


def test_notebooks_folder_is_exactly_what_the_build_writes():
    stale = build(ROOT / "solutions", ROOT / "notebooks", check=True)
    assert not stale, f"notebooks/ is stale (run `./course build`): {stale}"


def test_every_exercise_is_stubbed_in_the_student_notebooks():
    for sol in sorted((ROOT / "solutions").glob("*.ipynb")):
        sol_text = sol.read_text()
        student = (ROOT / "notebooks" / sol.name).read_text()
        n_regions = sol_text.count("### BEGIN SOLUTION")
        assert student.count("raise NotImplementedError(\\\"Exercise") == n_regions
        assert "### BEGIN SOLUTION" not in student and "NBVAL_" not in student
        assert all(c.get("outputs", []) == [] for c in json.loads(student)["cells"])


def test_build_is_deterministic(tmp_path):
    build(ROOT / "solutions", tmp_path)
    first = {p.name: p.read_text() for p in tmp_path.glob("*.ipynb")}
    build(ROOT / "solutions", tmp_path)
    assert first == {p.name: p.read_text() for p in tmp_path.glob("*.ipynb")}
    nb = json.loads(next(iter(first.values())))
    assert render(nb) == next(iter(first.values()))


def test_render_is_nbformats_writer_and_validates():
    import nbformat

    nb = {"cells": [{"cell_type": "code", "source": "x = 1\nx", "outputs": [], "execution_count": None,
                     "metadata": {}, "id": "a"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}}, "nbformat": 4, "nbformat_minor": 5}
    text = render(nb)
    assert text == nbformat.writes(nbformat.from_dict(nb), version=4, split_lines=False) + "\n"
    assert '"source": "x = 1\\nx"' in text, "a cell's source stays one string"
    bad = json.loads(text)
    bad["cells"][0]["cell_type"] = "kode"
    with pytest.raises(nbformat.ValidationError):
        render(bad)


# ------------------------------------------------------------------------------------------- the Colab cell

URL = "https://example.org/course.git"


def test_every_built_notebook_has_the_colab_cell_before_its_first_code_cell(tmp_path):
    build(ROOT / "solutions", tmp_path)
    url = course_repository()
    for path in sorted(tmp_path.glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        ids = [c["id"] for c in cells]
        assert ids.count(COLAB_CELL_ID) == 1, path.name
        first_code = next(c for c in cells if c["cell_type"] == "code")
        assert first_code["id"] == COLAB_CELL_ID and first_code["source"] == colab_cell(url)["source"], path.name
        solution = json.loads((ROOT / "solutions" / path.name).read_text())["cells"]
        assert [i for i in ids if i != COLAB_CELL_ID] == [c["id"] for c in solution], "the other cells keep their ids"


def test_the_colab_cell_is_placed_before_the_first_code_cell_and_only_once():
    nb = {"cells": [{"cell_type": "markdown", "id": "t", "source": "# title", "metadata": {}},
                    {"cell_type": "code", "id": "c", "source": "x = 1", "metadata": {}, "outputs": [],
                     "execution_count": None}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    out = with_colab_cell(nb, URL)
    assert [c["id"] for c in out["cells"]] == ["t", COLAB_CELL_ID, "c"] and len(nb["cells"]) == 2
    assert f'"git", "clone", "--depth", "1", "{URL}"' in out["cells"][1]["source"]
    render(out)  # a valid notebook
    with pytest.raises(MarkerError, match="already has the id 'colab-setup'"):
        with_colab_cell(out, URL, "00_x.ipynb")
    only_markdown = {**nb, "cells": nb["cells"][:1]}
    assert [c["id"] for c in with_colab_cell(only_markdown, URL)["cells"]] == ["t", COLAB_CELL_ID]


def test_the_repository_comes_from_pyproject(tmp_path):
    assert course_repository().startswith("https://")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n[project.urls]\nRepository = "https://example.org/c.git"\n')
    assert course_repository(pyproject) == "https://example.org/c.git"
    for bad in ['[project]\nname = "x"\n', '[project.urls]\nRepository = "git@example.org:c.git"\n',
                '[project.urls]\nRepository = "https://x\\"; import os"\n']:
        pyproject.write_text(bad)
        with pytest.raises(ValueError, match=r"\[project.urls\] Repository must be"):
            course_repository(pyproject)


@pytest.fixture
def colab(monkeypatch, tmp_path):
    """Runs the Colab cell's code as Colab would, with ``google.colab`` imported or not, its commands recorded
    by a fake runner (``git clone`` makes the folder), its clone folder moved under ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COURSE_WORKSPACE", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    calls = []

    def fake_run(cmd, check=False, **kwargs):
        calls.append(cmd)
        if cmd[:2] == ["git", "clone"]:
            os.makedirs(cmd[-1])
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    course = tmp_path / "content" / "maskrcnn-step-by-step"
    source = colab_cell(URL)["source"].replace("/content/maskrcnn-step-by-step", str(course))

    def run(on_colab: bool) -> dict:
        if on_colab:
            monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
        else:
            monkeypatch.delitem(sys.modules, "google.colab", raising=False)
        namespace = {}
        exec(compile(source, "colab-setup", "exec"), namespace)
        return namespace

    return types.SimpleNamespace(run=run, calls=calls, course=course)


def test_the_colab_cell_does_nothing_elsewhere(colab, capsys):
    cwd, path, env = os.getcwd(), list(sys.path), dict(os.environ)
    namespace = colab.run(on_colab=False)
    assert colab.calls == [] and capsys.readouterr() == ("", "")
    assert (os.getcwd(), sys.path, dict(os.environ)) == (cwd, path, env)
    assert set(namespace) - {"__builtins__"} == {"sys"}
    assert not colab.course.exists()


def test_on_colab_the_cell_clones_installs_and_moves_into_the_workspace(colab, capsys):
    colab.run(on_colab=True)
    course = str(colab.course)
    assert colab.calls == [["git", "clone", "--depth", "1", URL, course],
                           [sys.executable, "-m", "pip", "install", "--quiet", "-e", course]]
    assert sys.path[0] == course
    assert os.environ["COURSE_WORKSPACE"] == os.path.join(course, "workspace")
    assert os.getcwd() == os.path.realpath(os.path.join(course, "workspace"))
    assert capsys.readouterr() == ("", ""), "the commands speak for themselves"
    colab.run(on_colab=True)  # run again (or another notebook in the same session): nothing to fetch
    assert len(colab.calls) == 2 and sys.path.count(course) == 1


def test_on_colab_a_workspace_already_set_is_kept(colab, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_WORKSPACE", str(tmp_path / "drive" / "my workspace"))
    colab.run(on_colab=True)
    assert os.getcwd() == os.path.realpath(tmp_path / "drive" / "my workspace")


def test_on_colab_a_failed_install_stops_the_cell_and_is_tried_again(colab, monkeypatch):
    def failing_pip(cmd, check=False, **kwargs):
        colab.calls.append(cmd)
        if cmd[:2] == ["git", "clone"]:
            os.makedirs(cmd[-1])
            return subprocess.CompletedProcess(cmd, 0)
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(subprocess, "run", failing_pip)
    with pytest.raises(subprocess.CalledProcessError):
        colab.run(on_colab=True)
    colab.calls.clear()
    with pytest.raises(subprocess.CalledProcessError):
        colab.run(on_colab=True)
    assert [c[1:4] for c in colab.calls] == [["-m", "pip", "install"]], "the clone is there; the install is retried"
