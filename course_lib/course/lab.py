"""``course lab``: open your workspace in JupyterLab at notebook 00, or run every notebook headless.

    ./course lab                      JupyterLab on your workspace (created on first run, course updates merged
                                      in, your edits kept: ``course_lib.course.workspace``); extra options go to
                                      ``jupyter lab``
    ./course lab --headless [00 ..]   run the course's notebooks/ top to bottom without a browser
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from course_lib.utils.errors import CommandError


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
    from course_lib.course.workspace import WORKSPACE_ENV, open_workspace

    workspace = open_workspace()
    os.environ[WORKSPACE_ENV] = str(workspace)  # the kernels save passing exercises there
    root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []  # containers run as root
    os.chdir(workspace)
    command = [jupyter, "lab", *root, "00_overview.ipynb", *argv]
    if os.name == "nt":  # Windows has no exec: os.execv would return to the shell at once
        return subprocess.call(command)
    os.execv(jupyter, command)
    return 0  # not reached
