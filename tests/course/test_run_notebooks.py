"""course_lib.course.run_notebooks: the headless notebook runner."""

import nbformat
import pytest

from course_lib.course import run_notebooks


@pytest.mark.kernel
def test_headless_runner_reports_pass_fail_and_time(tmp_path, capsys):
    good, bad = tmp_path / "01_good.ipynb", tmp_path / "02_bad.ipynb"
    for path, src in [(good, "print(6 * 7)"), (bad, "raise ValueError('broken on purpose')")]:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(src)]
        nbformat.write(nb, path)
    assert run_notebooks.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "PASS  01_good" in out and "FAIL  02_bad" in out and "broken on purpose" in out
    assert "1 passed, 1 failed" in out
    assert nbformat.read(good, as_version=4).cells[0].outputs == [], "without --write files stay untouched"
    assert run_notebooks.main([str(good), "--write"]) == 0
    assert "42" in nbformat.read(good, as_version=4).cells[0].outputs[0]["text"]
