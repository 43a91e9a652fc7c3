"""The install files agree with each other and with the README."""

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI (a test dependency there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name
NOT_FROM_PYPROJECT = {"python", "pip"}


def pyproject_requirements() -> dict[str, SpecifierSet]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {Requirement(r).name.lower(): Requirement(r).specifier for r in reqs}


def conda_requirements() -> dict[str, SpecifierSet]:
    text = (ROOT / "environment.yml").read_text()
    deps = {}
    for line in text.split("dependencies:", 1)[1].splitlines():
        # conda packages ("  - name>=1") and pip packages ("      - name==1  # why"), not "- -e ."
        m = re.match(r"^(?:  |      )- ([A-Za-z0-9_.\-]+)\s*([<>=!~][^#]*)?\s*(?:#.*)?$", line)
        if m:
            name = CONDA_NAMES.get(m.group(1).lower(), m.group(1).lower())
            deps[name] = SpecifierSet((m.group(2) or "").replace(" ", ""))
    return deps


def test_environment_yml_lists_exactly_the_pyproject_packages_with_the_same_ranges():
    py, conda = pyproject_requirements(), conda_requirements()
    conda_pkgs = {k: v for k, v in conda.items() if k not in NOT_FROM_PYPROJECT}
    assert set(conda_pkgs) == set(py), f"only in pyproject: {set(py) - set(conda_pkgs)}; " \
                                       f"only in environment.yml: {set(conda_pkgs) - set(py)}"
    for name, spec in py.items():
        assert conda_pkgs[name] == spec, f"{name}: pyproject {spec} vs environment.yml {conda_pkgs[name]}"


def test_environment_yml_installs_the_course_itself():
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"- pip:\n\s+- -e \.", text)
    assert "python>=3.10" in text


@pytest.mark.parametrize("package", ["torch", "torchvision"])
def test_pins_admit_the_installed_torch(package):
    installed = metadata.version(package).split("+")[0]
    assert installed in pyproject_requirements()[package], (package, installed)


def test_pins_resolve_to_the_capped_releases():
    # pip here is capped at torch 2.14.1 / torchvision 0.29.1: the ranges must admit exactly those tops.
    py = pyproject_requirements()
    assert "2.14.1" in py["torch"] and "2.15.0" not in py["torch"]
    assert "0.29.1" in py["torchvision"] and "0.30.0" not in py["torchvision"]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [line.strip() for b in blocks for line in b.splitlines() if line.strip().startswith("./course")]


def test_ci_runs_the_readme_test_command():
    test_cmds = [c for c in readme_commands() if c.split()[1:2] == ["test"]]
    assert test_cmds, "the README gives no ./course test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert any(re.search(rf"^{re.escape(c)}\s*$", ci, re.M) for c in test_cmds), ".ci/run must call it exactly"


def test_readme_first_screen_has_both_commands():
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "./course lab" in first_screen and "./course test" in first_screen
    assert "./course lab --headless" in (ROOT / "README.md").read_text()


def test_no_file_over_25_mb_in_the_repo():
    import subprocess

    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    big = [f for f in files if (ROOT / f).is_file() and (ROOT / f).stat().st_size > 25 * 2**20]
    assert not big, f"files over 25 MB: {big}"


def test_nothing_in_the_repository_points_outside_it():
    import subprocess

    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    this = Path(__file__).resolve().relative_to(ROOT).as_posix()
    bad = [f for f in files if f != this and f.endswith((".py", ".md", ".ipynb", ".toml", ".yml", ".cfg", "course"))
           and (ROOT / f).is_file()  # tracked but deleted in the working tree: nothing to read
           and re.search(r"\.\./shared|COURSE\.md", (ROOT / f).read_text(encoding="utf-8", errors="replace"))]
    assert bad == [], f"these files point outside the repository: {bad}"
