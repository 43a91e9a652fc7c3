"""course_lib.utils.paths: where the course keeps its files (a checkout, or an installed wheel), and the variables
that move them.

The paths are read when the module is imported, so each setting is checked in a fresh ``python -c``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import course_lib
from course_lib.utils import paths

PRINT_PATHS = ("import json; from course_lib.utils import paths as p; print(json.dumps({k: str(getattr(p, k)) "
               "for k in ('REPO_ROOT', 'DATA_DIR', 'GENERATED_DIR', 'CHECKPOINT', 'PROVENANCE', 'RUNS_DIR')}))")


def paths_in_subprocess(tmp_path, **env_vars):
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_DATA_DIR", "COURSE_RUNS_DIR", "COURSE_HOME")}
    env.update(env_vars)
    out = subprocess.run([sys.executable, "-c", PRINT_PATHS], env=env, cwd=tmp_path, capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return {k: Path(v) for k, v in json.loads(out).items()}


def test_repo_root_is_the_checkout():
    assert paths.REPO_ROOT == Path(course_lib.__file__).resolve().parent.parent
    assert paths.IN_CHECKOUT and paths.PACKAGE_DIR == paths.REPO_ROOT / "course_lib"
    assert (paths.REPO_ROOT / "pyproject.toml").is_file() and (paths.REPO_ROOT / "course_lib").is_dir()
    assert paths.REPO_ROOT.is_absolute()


def test_defaults_are_data_and_runs_in_the_checkout(tmp_path):
    p = paths_in_subprocess(tmp_path)  # run from another folder: the paths do not depend on the cwd
    root = paths.REPO_ROOT
    assert p["REPO_ROOT"] == root
    assert p["DATA_DIR"] == root / "data" and p["RUNS_DIR"] == root / "runs"
    assert p["GENERATED_DIR"] == root / "data" / "generated"
    assert p["CHECKPOINT"] == root / "data" / "course_maskrcnn.pt"
    assert p["PROVENANCE"] == root / "data" / "course_maskrcnn.json"


def test_course_data_dir_moves_the_data_and_everything_under_it(tmp_path):
    data = tmp_path / "read only data"
    p = paths_in_subprocess(tmp_path, COURSE_DATA_DIR=str(data))
    assert p["DATA_DIR"] == data
    assert p["GENERATED_DIR"] == data / "generated"
    assert (p["CHECKPOINT"], p["PROVENANCE"]) == (data / "course_maskrcnn.pt", data / "course_maskrcnn.json")
    assert p["RUNS_DIR"] == paths.REPO_ROOT / "runs"  # the runs stay where they were
    assert not data.exists()  # importing creates no folder


def test_course_runs_dir_moves_only_the_runs(tmp_path):
    runs = tmp_path / "runs here"
    p = paths_in_subprocess(tmp_path, COURSE_RUNS_DIR=str(runs))
    assert p["RUNS_DIR"] == runs
    assert p["DATA_DIR"] == paths.REPO_ROOT / "data"
    both = paths_in_subprocess(tmp_path, COURSE_RUNS_DIR=str(runs), COURSE_DATA_DIR=str(tmp_path / "d"))
    assert (both["RUNS_DIR"], both["DATA_DIR"]) == (runs, tmp_path / "d")
    assert not runs.exists()


def test_shown_puts_the_home_folder_as_a_tilde_and_leaves_other_paths(monkeypatch, tmp_path):
    from pathlib import Path

    from course_lib.utils.paths import shown

    monkeypatch.setenv("HOME", str(tmp_path))
    assert shown(tmp_path / ".cache" / "torch" / "w.pth") == str(Path("~", ".cache", "torch", "w.pth"))
    assert shown("/usr/share/x") == "/usr/share/x"


# ------------------------------------------------------------------------- installed as a wheel (no checkout)

def installed_paths(tmp_path, **env_vars):
    """paths.py as a wheel installs it: site-packages/course_lib/utils/paths.py, no pyproject.toml beside."""
    site = tmp_path / "site-packages"
    copy = site / "course_lib" / "utils" / "paths.py"
    copy.parent.mkdir(parents=True)
    copy.write_text(Path(paths.__file__).read_text(encoding="utf-8"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_DATA_DIR", "COURSE_RUNS_DIR", "COURSE_HOME")}
    env.update(env_vars)
    code = (f"import json, runpy; p = runpy.run_path({str(copy)!r}); print(json.dumps({{k: str(p[k]) for k in ('REPO_ROOT', "
            "'DATA_DIR', 'GENERATED_DIR', 'CHECKPOINT', 'PROVENANCE', 'RUNS_DIR', 'IN_CHECKOUT')} | "
            "{'shown': p['shown'](p['CHECKPOINT'])}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return site, json.loads(out)


def test_an_installed_wheel_reads_its_shipped_data_and_writes_to_the_users_folder(tmp_path):
    home = tmp_path / "course home"
    site, p = installed_paths(tmp_path, COURSE_HOME=str(home))
    shipped = site / "course_lib" / "shipped_data"
    assert p["IN_CHECKOUT"] == "False"
    assert Path(p["DATA_DIR"]) == shipped
    assert (Path(p["CHECKPOINT"]), Path(p["PROVENANCE"])) == (shipped / "course_maskrcnn.pt",
                                                             shipped / "course_maskrcnn.json")
    assert Path(p["GENERATED_DIR"]) == home / "generated" and Path(p["RUNS_DIR"]) == home / "runs"
    assert p["shown"] == str(shipped / "course_maskrcnn.pt")  # not relative to site-packages
    assert not home.exists()  # importing creates no folder


def test_an_installed_wheel_follows_the_variables_too(tmp_path):
    _, p = installed_paths(tmp_path, COURSE_HOME=str(tmp_path / "h"), COURSE_DATA_DIR=str(tmp_path / "d"),
                           COURSE_RUNS_DIR=str(tmp_path / "r"))
    assert Path(p["DATA_DIR"]) == tmp_path / "d" and Path(p["CHECKPOINT"]) == tmp_path / "d" / "course_maskrcnn.pt"
    assert Path(p["GENERATED_DIR"]) == tmp_path / "d" / "generated" and Path(p["RUNS_DIR"]) == tmp_path / "r"


@pytest.mark.parametrize("platform, env, expected", [
    ("linux", {}, "home/.local/share/maskrcnn-step-by-step"),
    ("linux", {"XDG_DATA_HOME": "/xdg"}, "/xdg/maskrcnn-step-by-step"),
    ("darwin", {}, "home/Library/Application Support/maskrcnn-step-by-step"),
    ("win32", {"LOCALAPPDATA": "/local app data"}, "/local app data/maskrcnn-step-by-step"),
    ("win32", {}, "home/AppData/Local/maskrcnn-step-by-step"),
    ("darwin", {"COURSE_HOME": "/mine"}, "/mine"),
])
def test_the_users_folder_on_each_platform(platform, env, expected):
    assert paths.user_folder(platform, env, home=Path("home")) == Path(expected)
