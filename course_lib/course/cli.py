"""The course's command line: one table of commands, used by ``./course`` and ``python -m course_lib``.

Each command is a module with ``main(argv) -> int``; it is imported only when it runs, so
``./course --help`` is instant. A ``CommandError`` (or a missing file) ends the command with its
message on one line and exit status 1; Ctrl-C ends it with status 130.
"""

from __future__ import annotations

import importlib
import sys

from course_lib.utils.errors import CommandError

# name -> (module, one-line help). ``./course`` adds ``python`` (run the course's Python) itself.
# New commands: one row here, and a module with ``main(argv) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "lab": ("course_lib.course.lab", "open the course in JupyterLab (--headless: run every notebook, "
                                     "print each one's time and pass/fail)"),
    "reset": ("course_lib.course.workspace", "a fresh copy of one notebook in your workspace (the old one is kept)"),
    "test": ("course_lib.course.selftest", "run the whole test suite (library tests, then every notebook "
                                           "under nbval, in solutions/ and notebooks/)"),
    "doctor": ("course_lib.course.doctor", "versions, CPU or CUDA, COCO weights, widget front end, checkpoint"),
    "run": ("course_lib.course.run_notebooks", "run notebooks headless (solutions --write stores outputs)"),
    "build": ("course_lib.course.notebook_build", "write notebooks/ from solutions/ (--check only compares)"),
    "grade": ("course_lib.course.grading.cli", "grade students' notebooks: each exercise, quiz and a score"),
    "handout": ("course_lib.course.handout", "write the student edition into a new folder: no solutions, no "
                                             "checkpoint quiz answers"),
    "train": ("course_lib.training.train_course_model", "train the course checkpoint on the shapes data"),
    "finetune": ("course_lib.training.finetune", "fine-tune a model on a COCO data set (yours or the shapes)"),
    "coco": ("course_lib.data.coco_command", "coco build (LabelMe, VOC, YOLO, masks, other tools -> COCO), coco validate"),
    "evaluate": ("course_lib.training.evaluate_command", "COCO AP, per-class AP and an error summary of a model.pt"),
    "predict": ("course_lib.training.predict_command", "a folder of images -> overlay PNGs and COCO results JSON"),
    "export": ("course_lib.training.export", "a model.pt -> TorchScript (outputs checked against the eager model)"),
}


# What Ctrl-C says for the commands that can pick up where they stopped.
RESUME_HINTS = {
    "train": "; the last finished epoch is saved in the run folder (--out): run the same command again to resume",
    "finetune": "; the last finished epoch is saved in the run folder (--out): run the same command again to "
                "resume",
}


def usage(prog: str = "course") -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {prog} <command> [options]   ({prog} <command> --help for its options)", "",
             "commands:"]
    lines += [f"  {name:{width}s}  {text}" for name, (_, text) in COMMANDS.items()]
    if prog in ("./course", "python course.py"):
        lines.append(f"  {'python':{width}s}  run the venv's Python (the course's interpreter)")
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "python -m course_lib") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(prog))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"{prog}: unknown command {name!r}\n\n{usage(prog)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        result = module.main(rest)
    except (CommandError, FileNotFoundError) as exc:
        print(f"{prog} {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        resume = RESUME_HINTS.get(name, "")
        print(f"\n{prog} {name}: interrupted{resume}", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0
