"""Layer 2: ``torchvision.models.detection`` from scratch, file for file (``_utils``, ``anchor_utils``,
``backbone_utils``, ``rpn``, ``roi_heads``), plus ``course_model``: the course's small Mask R-CNN built
from torchvision's classes, its checkpoint, and the COCO weights when they are cached.
"""
