"""Layer 4: training and evaluation, as torchvision's ``references/detection``. The loop (``engine``),
resumable checkpoints (``checkpoint``), running a model (``predict``), COCO AP (``evaluation``), PR curves
(``pr_curves``), error analysis (``error_analysis``), and the training commands (``train_course_model``,
``finetune``).
"""
