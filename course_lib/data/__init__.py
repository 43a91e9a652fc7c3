"""Layer 3: data. The synthetic shapes (``shapes``), mask encoding and polygon tracing (``masks``), building
a COCO file from images and masks (``coco_build``), validating one (``coco_validate``), and the torch
``Dataset`` that reads it (``coco_dataset``).
"""
