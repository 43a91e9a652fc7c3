"""Where the course keeps its files. Taught in: every notebook (used, not taught).

The package finds its files in one of two ways:

* from a checkout (``git clone``, then ``./course`` or ``pip install -e .``): the data in ``<checkout>/data``
  and the runs in ``<checkout>/runs``;
* installed as a wheel (``pip install .``, no checkout beside the package): the files the course ships (the
  checkpoint, its provenance, ``NUCLEI.md``) are read from ``course_lib/shipped_data/`` inside the package (the
  build copies them there: ``setup.py``), and what the course writes (generated data, runs) goes to a folder of
  the user's: ``COURSE_HOME``, else ``$XDG_DATA_HOME/maskrcnn-step-by-step`` (``~/.local/share/...``) on Linux,
  ``~/Library/Application Support/maskrcnn-step-by-step`` on macOS, ``%LOCALAPPDATA%\\maskrcnn-step-by-step`` on
  Windows.

``COURSE_DATA_DIR`` overrides the data folder (the checkpoint and ``generated/`` under it), e.g. for a read-only
checkout. ``COURSE_RUNS_DIR`` moves what the notebooks write (training runs, a notebook's own files); the test
suite points it at a temporary folder. Nothing here creates a folder.
"""

import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # course_lib/
REPO_ROOT = PACKAGE_DIR.parent  # the checkout (for an installed wheel: site-packages; IN_CHECKOUT says which)
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file()
SHIPPED_DIR = PACKAGE_DIR / "shipped_data"  # an installed wheel's copy of data/'s shipped files
APP_NAME = "maskrcnn-step-by-step"


def user_folder(platform: str = sys.platform, environ=os.environ, home: Path | None = None) -> Path:
    """The folder an installed (not checked-out) course writes to: ``COURSE_HOME``, else the platform's usual
    place for an application's data."""
    if environ.get("COURSE_HOME"):
        return Path(environ["COURSE_HOME"]).expanduser()
    home = home or Path.home()
    if platform == "win32":
        return Path(environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / APP_NAME
    if platform == "darwin":
        return home / "Library" / "Application Support" / APP_NAME
    return Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share") / APP_NAME


if os.environ.get("COURSE_DATA_DIR"):
    DATA_DIR = Path(os.environ["COURSE_DATA_DIR"])
    GENERATED_DIR = DATA_DIR / "generated"
elif IN_CHECKOUT:
    DATA_DIR = REPO_ROOT / "data"
    # Generated, re-creatable data (shapes images, masks, COCO files) lives here and is not in git.
    GENERATED_DIR = DATA_DIR / "generated"
else:
    DATA_DIR = SHIPPED_DIR  # read-only: inside the installed package
    GENERATED_DIR = user_folder() / "generated"
CHECKPOINT = DATA_DIR / "course_maskrcnn.pt"
PROVENANCE = DATA_DIR / "course_maskrcnn.json"
# Training runs and the files a notebook writes (one folder per notebook), not in git.
RUNS_DIR = Path(os.environ.get("COURSE_RUNS_DIR") or (REPO_ROOT / "runs" if IN_CHECKOUT else user_folder() / "runs"))


def shown(path: str | os.PathLike) -> str:
    """``path`` as a message shows it, the same on every machine: relative to the course's folder when inside it
    (a checkout), ``~/...`` under the home folder, else as it is. Stored outputs then name no one's machine."""
    path = Path(path)
    bases = [(REPO_ROOT, None)] if IN_CHECKOUT else []
    for base, prefix in (*bases, (Path.home(), Path("~"))):
        try:
            relative = path.relative_to(base)
        except ValueError:
            continue
        return str(prefix / relative if prefix else relative)
    return str(path)
