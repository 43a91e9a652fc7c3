"""Layer 2: ``torchvision.models.detection`` from scratch, file for file (``_utils``, ``anchor_utils``,
``backbone_utils``, ``rpn``, ``roi_heads``), plus ``course_model``: the course's small Mask R-CNN (its one
spec and one builder, in torchvision's classes or the course's), its checkpoint, and the COCO weights when they
are cached; and ``model_file``: the one reader and writer of weight files.
"""
