"""Layer 4: training and evaluation, as torchvision's ``references/detection``. The loop (``engine``),
resumable checkpoints (``checkpoint``), model files loaded for the commands (``model_file``), running a model
(``predict``), COCO AP (``evaluation``), PR curves (``pr_curves``), error analysis (``error_analysis``),
the checks run on data before use (``data_checks``), and the commands: ``train_course_model`` and
``finetune`` (sharing ``cli_args``), ``evaluate_command``, ``predict_command``, ``export``.
"""
