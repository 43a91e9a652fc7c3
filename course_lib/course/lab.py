"""``course lab``: open the course in JupyterLab at notebook 00, or run every notebook headless.

    ./course lab                      JupyterLab on notebooks/ (extra options go to ``jupyter lab``)
    ./course lab --headless [00 ..]   run notebooks/ top to bottom without a browser
"""

from __future__ import annotations

import os
import shutil
import sys

from course_lib.utils.errors import CommandError
from course_lib.utils.paths import REPO_ROOT


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    if argv[:1] == ["--headless"]:
        from course_lib.course.run_notebooks import main as run

        return run(["notebooks", *argv[1:]])
    from course_lib.course.doctor import main as doctor

    doctor([])
    jupyter = shutil.which("jupyter", path=os.path.dirname(sys.executable)) or shutil.which("jupyter")
    if jupyter is None:
        raise CommandError("jupyter is not installed in this environment; run ./course again to reinstall")
    root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []  # containers run as root
    os.chdir(REPO_ROOT)
    os.execv(jupyter, [jupyter, "lab", *root, "notebooks/00_overview.ipynb", *argv])
    return 0  # not reached
