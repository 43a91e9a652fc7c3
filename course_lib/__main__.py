"""``python -m course_lib <command>``: the course's command line.

    doctor   versions, device, COCO weights, widget front end, checkpoint
    run      run notebooks headless, printing each one's time and pass/fail
    build    write notebooks/ from solutions/ (``--check`` to compare only)
    grade    run a student's notebook with a time limit and report every exercise and a score
    train    train the course model (same as ``python -m course_lib.train``)
"""

import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "help"
    if command == "doctor":
        from .doctor import main as run
    elif command == "run":
        from .run_notebooks import main as run
    elif command == "build":
        from .notebook_build import main as run
    elif command == "grade":
        from .grade import main as run
    elif command == "train":
        from .train import main as train

        train(argv)
        return 0
    else:
        print(__doc__)
        return 0 if command in ("help", "-h", "--help") else 2
    return run(argv) or 0


if __name__ == "__main__":
    sys.exit(main())
