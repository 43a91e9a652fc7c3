"""Where the course keeps its files. Taught in: every notebook (used, not taught).

``COURSE_DATA_DIR`` overrides the data folder, e.g. for a read-only checkout. ``COURSE_RUNS_DIR`` moves what the
notebooks write (training runs, a notebook's own files); the test suite points it at a temporary folder.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # course_lib/utils/paths.py -> the repository
DATA_DIR = Path(os.environ.get("COURSE_DATA_DIR", REPO_ROOT / "data"))
# Generated, re-creatable data (shapes images, masks, COCO files) lives here and is not in git.
GENERATED_DIR = DATA_DIR / "generated"
CHECKPOINT = DATA_DIR / "course_maskrcnn.pt"
PROVENANCE = DATA_DIR / "course_maskrcnn.json"
# Training runs and the files a notebook writes (one folder per notebook), not in git.
RUNS_DIR = Path(os.environ.get("COURSE_RUNS_DIR", REPO_ROOT / "runs"))


def shown(path: str | os.PathLike) -> str:
    """``path`` as a message shows it, the same on every machine: relative to the course's folder when inside it,
    ``~/...`` under the home folder, else as it is. Stored outputs then name no one's machine."""
    path = Path(path)
    for base, prefix in ((REPO_ROOT, None), (Path.home(), Path("~"))):
        try:
            relative = path.relative_to(base)
        except ValueError:
            continue
        return str(prefix / relative if prefix else relative)
    return str(path)
