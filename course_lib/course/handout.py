"""``./course handout OUT``: the student edition of the course, without the key.

Copies the repository's tracked files as they are in the working tree (``git ls-files``; outside a git checkout,
the files of the tree without ``.venv``, ``runs``, generated data and caches) into the new folder ``OUT``, except:

* ``solutions/`` (the exercises' answers and the quizzes' stored outputs) and ``tests/`` (the developers'
  suite: it runs the instructor's bank and names quiz answers);
* the quiz bank, rewritten: checkpoint questions lose their key (``bank.KEY_FIELDS``: the right choice or number,
  the explanation, the misconceptions; the instructor grades
  them with the instructor's copy), self-check questions keep theirs (their instant feedback needs them), and
  each file is marked ``"handout": true`` so that ``load_questions`` accepts the missing keys.

It adds ``HANDOUT.md`` and a first line in the README copy saying that this is the student edition. The copy
is built in a temporary folder beside ``OUT`` and renamed to ``OUT`` at the end, so ``OUT`` appears complete
or not at all. It refuses an ``OUT`` that exists and is not an empty folder, or that lies inside the
repository, and overwrites nothing. Before the rename it checks its own output: the bank loads and no
checkpoint's explanation or ``correct`` key is left in any file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path, PurePosixPath

from course_lib.course.bank import CHECKPOINT, KEY_FIELDS, load_questions
from course_lib.utils.errors import CommandError
from course_lib.utils.paths import REPO_ROOT

BANK_PATH = PurePosixPath("course_lib/course/quiz_bank")  # where the bank files are, relative to the root
LEFT_OUT = ("solutions", "tests")  # top-level folders the student edition leaves out
NOTE_FILE = "HANDOUT.md"

# Outside a git checkout: what a walk of the tree skips (top-level folders, folders anywhere, file suffixes).
_SKIP_TOP = {".git", ".venv", "runs", "build", "artifacts", "data/generated", ".ci/run"}
_SKIP_ANYWHERE = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".mypy_cache", ".ruff_cache"}
_SKIP_SUFFIXES = (".pyc", ".egg-info")


def source_files(root: Path) -> list[PurePosixPath]:
    """The files of the course at ``root``, relative: ``git ls-files`` in a checkout, else a walk of the tree."""
    if (root / ".git").exists() and shutil.which("git"):
        done = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True)
        if done.returncode == 0:
            return [PurePosixPath(p) for p in done.stdout.decode("utf-8", "surrogateescape").split("\0") if p]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        dirnames[:] = sorted(d for d in dirnames
                             if d not in _SKIP_ANYWHERE and not d.endswith(_SKIP_SUFFIXES)
                             and (rel_dir / d).as_posix() not in _SKIP_TOP)
        files += [rel_dir / f for f in sorted(filenames) if not f.endswith(_SKIP_SUFFIXES)]
    return files


def untracked_files(root: Path) -> list[str]:
    """Files of a git checkout that git neither tracks nor ignores: a handout leaves them out (commit them first)."""
    if not ((root / ".git").exists() and shutil.which("git")):
        return []
    done = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--others", "--exclude-standard"],
                          capture_output=True)
    names = done.stdout.decode("utf-8", "surrogateescape").split("\0") if done.returncode == 0 else []
    return [n for n in names if n and n.split("/", 1)[0] not in LEFT_OUT]


def student_bank(data: dict) -> dict:
    """A bank file's content for the student edition: checkpoint questions without their key."""
    questions = [q if q.get("kind", CHECKPOINT) != CHECKPOINT
                 else {k: v for k, v in q.items() if k not in KEY_FIELDS}
                 for q in data.get("questions", [])]
    return {"notebook": data["notebook"], "handout": True,
            **{k: v for k, v in data.items() if k not in ("notebook", "handout", "questions")},
            "questions": questions}


def _note(checkpoints: int, self_checks: int) -> str:
    self_check = (f" The {self_checks} self-check questions inside the lessons give instant feedback, as often as\n"
                  "  you like, and are not graded." if self_checks else "")
    return f"""# Student edition

This copy of the course was made for learners with `./course handout`.

- Work in `notebooks/`: each exercise is a function to write, checked as soon as you run its cell.
  The solutions and the developers' test suite (`solutions/`, `tests/`) are not in this copy.
- Quizzes: the {checkpoints} checkpoint questions, in the "Quiz checkpoint" section of each notebook, record
  your **first** checked answer (in the notebook you hand in); your instructor grades them, and their answers
  are not in this copy.{self_check}
- `./course` opens the course in JupyterLab; `./course --help` lists the other commands (`./course test` and
  `./course build` need the instructor's copy).
"""


def _refuse_out(out: Path, root: Path) -> None:
    if out.resolve().is_relative_to(root.resolve()):
        raise CommandError(f"{out} is inside the repository ({root}); write the student edition outside it, "
                           "e.g. ../course-handout")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise CommandError(f"{out} exists and is not a folder; choose a new folder")
    if out.is_dir() and any(out.iterdir()):
        raise CommandError(f"{out} exists and is not empty; choose a new (or empty) folder, nothing is overwritten")


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    else:
        shutil.copy2(src, dst)


def _check_no_key(folder: Path, explanations: dict[str, str], checkpoints: set[str]) -> None:
    """Refuse the copy if any file still holds a checkpoint's explanation (as text or JSON-escaped) or a JSON
    object with a checkpoint's id and a ``correct`` key."""
    needles = {qid: {form.encode("utf-8") for form in (text, json.dumps(text)[1:-1],
                                                       json.dumps(text, ensure_ascii=False)[1:-1])}
               for qid, text in explanations.items()}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        for qid, forms in needles.items():
            if any(form in data for form in forms):
                raise CommandError(f"{path.relative_to(folder)} holds the explanation of checkpoint quiz {qid!r}; "
                                   "the student edition must not (remove it from that file)")
        if path.suffix == ".json":
            try:
                obj = json.loads(data)
            except ValueError:
                continue
            stack = [obj]
            while stack:
                item = stack.pop()
                if isinstance(item, dict):
                    if item.get("id") in checkpoints and any(k in item for k in KEY_FIELDS):
                        raise CommandError(f"{path.relative_to(folder)} holds the key of checkpoint quiz "
                                           f"{item['id']!r}")
                    stack += item.values()
                elif isinstance(item, list):
                    stack += item


def write_handout(out: str | Path, root: str | Path = REPO_ROOT) -> dict:
    """Write the student edition of the course at ``root`` into the new folder ``out``; what was written.

    Returns ``{"files": n, "checkpoints": n, "self_checks": n}``. Raises ``CommandError`` for an ``out`` it may
    not write (see the module's docstring) or a copy that would still hold a checkpoint key.
    """
    out, root = Path(out).absolute(), Path(root).absolute()
    _refuse_out(out, root)
    try:
        instructor_bank = load_questions(root / BANK_PATH)
    except ValueError as exc:
        raise CommandError(f"the quiz bank does not load: {exc}") from None
    checkpoint_ids = {q.id for q in instructor_bank.values() if q.kind == CHECKPOINT}
    explanations = {q.id: q.explanation for q in instructor_bank.values() if q.id in checkpoint_ids and q.explanation}
    files = [f for f in source_files(root) if f.parts and f.parts[0] not in LEFT_OUT]

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise CommandError(f"cannot create {out}: {exc}") from None
    try:
        shutil.copymode(root, tmp)  # mkdtemp's folder is private (0700); the edition gets the course's mode
        copied = 0
        for rel in files:
            src, dst = root / rel, tmp / rel
            if not (src.is_file() or src.is_symlink()):  # tracked but deleted in the working tree, or a submodule
                continue
            if rel.parent == BANK_PATH and rel.suffix == ".json" and not src.is_symlink():
                data = json.loads(src.read_text(encoding="utf-8"))
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_text(json.dumps(student_bank(data), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                shutil.copymode(src, dst)
            else:
                _copy(src, dst)
            copied += 1
        bank = load_questions(tmp / BANK_PATH)
        checkpoints = sum(q.kind == CHECKPOINT for q in bank.values())
        (tmp / NOTE_FILE).write_text(_note(checkpoints, len(bank) - checkpoints), encoding="utf-8")
        readme = tmp / "README.md"
        if readme.is_file() and not readme.is_symlink():
            readme.write_text("> **Student edition** (made by `./course handout`; see [HANDOUT.md](HANDOUT.md)): "
                              "no solutions, no checkpoint answers.\n\n" + readme.read_text(encoding="utf-8"),
                              encoding="utf-8")
        _check_no_key(tmp, explanations, checkpoint_ids)
        try:
            os.rename(tmp, out)  # onto a missing or empty folder only: never over anything
        except OSError as exc:
            raise CommandError(f"could not move the finished copy to {out}: {exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return {"files": copied + 1, "checkpoints": checkpoints, "self_checks": len(bank) - checkpoints}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="course handout",
        description="Write the student edition of the course into a new folder: no solutions/, no tests/, and "
                    "no answers to the checkpoint quizzes (self-check quizzes keep theirs).")
    parser.add_argument("out", type=Path, help="the folder to create (must not exist, or be empty; outside "
                                               "the repository)")
    args = parser.parse_args(argv)
    done = write_handout(args.out)
    print(f"wrote the student edition to {args.out}: {done['files']} files ({', '.join(LEFT_OUT)} left out); "
          f"{done['checkpoints']} checkpoint quizzes without their answers, {done['self_checks']} self-check "
          "quizzes with theirs")
    untracked = untracked_files(REPO_ROOT)
    if untracked:
        shown = ", ".join(untracked[:5]) + (f" and {len(untracked) - 5} more" if len(untracked) > 5 else "")
        print(f"note: {len(untracked)} files git does not track are not in it: {shown} (commit them and run "
              "it again if the course needs them)")
    return 0
