"""Exercise checkers: ``check_<name>(fn)`` compares a learner's function with the reference.
Used in: every notebook with an exercise.

A checker runs ``fn`` on several named cases and prints one of:

* ``PASS check_x: all 4 cases agree with the reference``
* ``FAIL check_x, case 'empty input': shape (0, 4) expected, got (4,). Hint: ...``
* ``NOT YET check_x: the exercise is not implemented yet ...`` (the stub raised ``NotImplementedError``)

It returns the function the notebook should go on with: the learner's when it passes, else the
reference, so that every later cell still runs. The machinery is in ``core``; each notebook's checkers
are in their own submodule and all are importable from here: ``from course_lib.checkers import check_x``.
"""

from .core import Case, CheckResult, checker, compare, run_checks  # noqa: F401
from .nb00_overview import *  # noqa: F401,F403
from .nb01_backbone_fpn import *  # noqa: F401,F403
from .nb02_anchors_rpn import *  # noqa: F401,F403
from .nb03_roi_align import *  # noqa: F401,F403
from .nb04_heads_mask_branch import *  # noqa: F401,F403
from .nb05_coco_dataset import *  # noqa: F401,F403
from .nb06_fine_tuning import *  # noqa: F401,F403
