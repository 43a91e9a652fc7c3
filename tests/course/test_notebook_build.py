import json

import pytest

from course_lib.course.notebook_build import (
    MarkerError,
    build,
    render,
    stub_code,
    stub_markdown,
    student_notebook,
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
