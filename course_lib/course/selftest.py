"""``course test``: the whole test suite. The library's tests, then every notebook under nbval (the
solutions with their checked outputs, the student notebooks with their stubs). Options go to pytest,
e.g. ``./course test tests/ops -x``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from course_lib.utils.paths import REPO_ROOT

NBVAL = ["--nbval-lax", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", "--nbval-cell-timeout", "600"]


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    targets = [a for a in argv if not a.startswith("-")]
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    with tempfile.TemporaryDirectory(prefix="course-test-") as tmp:
        # Quizzes and checkers record progress: the tests keep away from the learner's file in $HOME.
        env = {**os.environ, "COURSE_HEADLESS": "1", "MPLBACKEND": "Agg",
               "COURSE_PROGRESS_FILE": os.path.join(tmp, "progress.json")}
        cmd = [sys.executable, "-m", "pytest", *([] if targets else ["tests", "solutions", "notebooks"]),
               *NBVAL, "-p", "no:cacheprovider", *argv]
        return subprocess.call(cmd, cwd=REPO_ROOT, env=env)
