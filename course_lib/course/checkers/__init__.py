"""Exercise checkers, one submodule per notebook (``nbNN_<name>``), all re-exported here.

``check_<name>(fn)`` runs a learner's function and the reference on named cases and prints PASS,
FAIL (the first failing case and how it differs) or NOT YET; see ``core``.
"""

from course_lib.course.checkers.core import (  # noqa: F401
    Case,
    CheckResult,
    checker,
    compare,
    hint,
    run_checks,
)
from course_lib.course.checkers.nb00_overview import *  # noqa: F401,F403
from course_lib.course.checkers.nb01_backbone_fpn import *  # noqa: F401,F403
from course_lib.course.checkers.nb02_anchors_rpn import *  # noqa: F401,F403
from course_lib.course.checkers.nb03_roi_align import *  # noqa: F401,F403
from course_lib.course.checkers.nb04_heads_mask_branch import *  # noqa: F401,F403
from course_lib.course.checkers.nb05_coco_dataset import *  # noqa: F401,F403
from course_lib.course.checkers.nb06_fine_tuning import *  # noqa: F401,F403
from course_lib.course.checkers.nb07_your_mask_rcnn import *  # noqa: F401,F403
from course_lib.course.checkers.nb08_real_images import *  # noqa: F401,F403
