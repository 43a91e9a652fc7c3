"""``python -m course_lib <command>``: the course's command line (see ``course_lib.course.cli``)."""

import os
import sys

from course_lib.course.cli import main

if __name__ == "__main__":
    sys.exit(main(prog=os.environ.get("COURSE_PROG", "python -m course_lib")))
