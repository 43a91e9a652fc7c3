"""Layer 3: data. The synthetic shapes (``shapes``), the real nuclei (``nuclei``), mask encoding and polygon
tracing (``masks``), reading mask files safely (``mask_files``), building a COCO file from images and masks (``coco_build``), importing
annotation tools' files (``importers``: LabelMe, Pascal VOC, YOLO, CVAT/Label Studio COCO), validating one
(``coco_validate``), the ``./course coco`` command (``coco_command``), and the torch ``Dataset`` that reads
it (``coco_dataset``).
"""
