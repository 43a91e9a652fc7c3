"""``./course handout OUT``: the student edition, without solutions, tests or checkpoint keys, written atomically."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from course_lib.course import cli, handout
from course_lib.course.bank import CHECKPOINT, KEY_FIELDS, SELF_CHECK, load_questions
from course_lib.utils.errors import CommandError
from course_lib.utils.paths import REPO_ROOT

BANK = handout.BANK_PATH
INSTRUCTOR = load_questions()
CHECKPOINTS = {q.id: q for q in INSTRUCTOR.values() if q.kind == CHECKPOINT}


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    """The course's own student edition, written once for this module."""
    out = tmp_path_factory.mktemp("handout") / "student"
    done = handout.write_handout(out)
    assert done["checkpoints"] == len(CHECKPOINTS) and done["self_checks"] == len(INSTRUCTOR) - len(CHECKPOINTS)
    return out


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _explanation_forms(text: str) -> set[bytes]:
    return {t.encode() for t in (text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1])}


def test_no_checkpoint_key_survives_anywhere(student):
    assert CHECKPOINTS
    files = [p for p in student.rglob("*") if p.is_file()]
    assert len(files) > 50
    for path in files:
        data = path.read_bytes()
        for q in CHECKPOINTS.values():
            assert not any(form in data for form in _explanation_forms(q.explanation)), (path, q.id)
        if path.suffix in (".json", ".ipynb"):
            stack = [json.loads(data)]
            while stack:
                item = stack.pop()
                if isinstance(item, dict):
                    assert not (item.get("id") in CHECKPOINTS and any(k in item for k in KEY_FIELDS)), (path, item)
                    stack += item.values()
                elif isinstance(item, list):
                    stack += item
    for path in (student / BANK).glob("*.json"):
        text = path.read_text()
        if all(q.kind == CHECKPOINT for q in INSTRUCTOR.values()):  # the course today: no key at all
            assert not any(f'"{k}"' in text for k in KEY_FIELDS), path


def test_the_handouts_bank_loads_without_the_checkpoint_keys(student):
    bank = load_questions(student / BANK)
    assert bank.keys() == INSTRUCTOR.keys()
    for qid, q in bank.items():
        mine = INSTRUCTOR[qid]
        assert (q.notebook, q.text, q.choices, q.points, q.kind) == (mine.notebook, mine.text, mine.choices,
                                                                      mine.points, mine.kind)
        if q.kind == CHECKPOINT:
            assert q.correct is None and q.explanation is None
        else:
            assert (q.correct, q.explanation) == (mine.correct, mine.explanation)
    assert all(json.loads(p.read_text())["handout"] is True for p in (student / BANK).glob("*.json"))


def test_solutions_and_tests_are_left_out_and_everything_else_is_there(student):
    assert not (student / "solutions").exists() and not (student / "tests").exists()
    tracked = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files"], capture_output=True, text=True,
                             check=True).stdout.split("\n")
    expected = {p for p in tracked if p and not p.startswith(("solutions/", "tests/")) and (REPO_ROOT / p).is_file()}
    written = {p.relative_to(student).as_posix() for p in student.rglob("*") if p.is_file()}
    assert written - expected == {"HANDOUT.md"}
    assert expected - written == set()
    assert os.access(student / "course", os.X_OK)  # modes kept: the entry point still runs
    assert (student / "notebooks" / "00_overview.ipynb").is_file()


def test_the_handout_says_it_is_the_student_edition(student):
    note = (student / "HANDOUT.md").read_text()
    assert note.startswith("# Student edition") and f"the {len(CHECKPOINTS)} checkpoint questions" in note
    assert "**first** checked answer" in note
    readme = (student / "README.md").read_text()
    assert readme.startswith("> **Student edition**")
    assert readme.split("\n", 2)[2] == (REPO_ROOT / "README.md").read_text()


def test_the_handouts_quiz_records_the_first_answer(student, tmp_path):
    """The handout's own code and bank, in a fresh Python: a checkpoint's first answer is recorded, no verdict."""
    qid = "overview-annotation-format"
    script = textwrap.dedent(f"""
        import json
        import course_lib.course.quiz as Q
        from course_lib.course import progress
        assert Q.__file__.startswith({str(student)!r}), Q.__file__
        assert Q.BANK[{qid!r}].correct is None
        w = Q.QuizWidget({qid!r})
        w.radio.value = 0
        w.button.click()
        first = (w.record(), w.feedback.value, w.radio.disabled, w.button.disabled)
        w.radio.value = 2
        w.button.click()
        again = Q.QuizWidget({qid!r})
        print(json.dumps({{"first": first, "later": w.record(), "again": again.record(),
                          "answer": Q.answer("fpn-p6", 3), "answer_later": Q.answer("fpn-p6", 1),
                          "progress": progress.load()}}))
    """)
    env = {**os.environ, "PYTHONPATH": str(student), "COURSE_PROGRESS_FILE": str(tmp_path / "progress.json")}
    done = subprocess.run([sys.executable, "-c", script], cwd=student, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    record, feedback, radio_disabled, button_disabled = result["first"]
    assert record == {"id": qid, "choice": 0} and radio_disabled and button_disabled
    assert "Recorded: (0) One text label per image — your instructor grades checkpoint quizzes." in feedback
    assert result["later"] == result["again"] == {"id": qid, "choice": 0}
    assert result["answer"] is None and result["answer_later"] is None
    assert lines[0].startswith("Recorded: (3)") and lines[1].startswith("Your first answer stands: (3)")
    assert result["progress"]["00_overview"][f"quiz:{qid}"]["passed"] is True  # answered


@pytest.mark.kernel
def test_the_handouts_widget_saves_the_first_answer_in_a_kernel(student, monkeypatch):
    """In a kernel running the handout's code, Check twice: the saved notebook carries the first choice."""
    import nbformat
    from nbclient import NotebookClient

    from course_lib.course.quiz import RECORD_MIME

    monkeypatch.delenv("COURSE_HEADLESS", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(student))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from course_lib.course.quiz import quiz\nw = quiz('fpn-lateral')\nw"),
                nbformat.v4.new_code_cell("import course_lib\nprint(course_lib.__file__)\n"
                                          "w.radio.value = 2\nw.button.click()\nw.radio.value = 1\nw.button.click()\n"
                                          "print(w.feedback.value)")]
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(student)}}).execute()
    printed = "".join(o["text"] for o in nb.cells[1].outputs if o["output_type"] == "stream").splitlines()
    assert printed[0].startswith(str(student))
    assert "Recorded: (2)" in printed[1] and "your instructor grades checkpoint quizzes" in printed[1]
    records = [o["data"][RECORD_MIME] for o in nb.cells[0].outputs if RECORD_MIME in o.get("data", {})]
    assert records == [{"id": "fpn-lateral", "choice": 2}]


def _fake_course(root: Path) -> Path:
    """A small course tree outside git: one bank file with a checkpoint and a self-check, and things to skip."""
    bank = root / BANK
    bank.mkdir(parents=True)
    questions = [{"id": "cp", "kind": CHECKPOINT, "text": "Which?", "choices": ["a", "b", "c"], "correct": 2,
                  "explanation": "The checkpoint's explanation, for the instructor only."},
                 {"id": "sc", "kind": SELF_CHECK, "text": "Which?", "choices": ["a", "b"], "correct": 0,
                  "explanation": "The self-check's explanation, shown to learners."}]
    (bank / "99_x.json").write_text(json.dumps({"notebook": "99_x", "questions": questions}, indent=2))
    files = {"README.md": "# Course\n", "course": "#!/bin/sh\n", "course_lib/__init__.py": "",
             "notebooks/99_x.ipynb": "{}", "data/keep.txt": "kept", "solutions/99_x.ipynb": "{}",
             "tests/test_x.py": "", ".venv/bin/python": "", "runs/99_x/log.txt": "",
             "course_lib/__pycache__/x.cpython-311.pyc": "", "data/generated/img.png": "",
             "course_lib.egg-info/PKG-INFO": "", "notebooks/.ipynb_checkpoints/99_x.ipynb": ""}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "course").chmod(0o755)
    return root


def test_outside_git_the_tree_is_walked_and_self_checks_keep_their_key(tmp_path):
    root = _fake_course(tmp_path / "course")
    out = tmp_path / "out" / "student"
    assert handout.write_handout(out, root) == {"files": 7, "checkpoints": 1, "self_checks": 1}
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == {"README.md", "HANDOUT.md", "course", f"{BANK}/99_x.json", "course_lib/__init__.py",
                       "notebooks/99_x.ipynb", "data/keep.txt"}
    bank = json.loads((out / BANK / "99_x.json").read_text())
    cp, sc = bank["questions"]
    assert "correct" not in cp and "explanation" not in cp and bank["handout"] is True
    assert sc["correct"] == 0 and sc["explanation"] == "The self-check's explanation, shown to learners."
    loaded = load_questions(out / BANK)
    assert loaded["cp"].correct is None and loaded["sc"].correct == 0
    assert "The checkpoint's explanation" not in "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert "The 1 self-check questions" in (out / "HANDOUT.md").read_text()
    assert _leftovers(out.parent) == []


def test_in_a_git_checkout_only_tracked_files_are_copied(tmp_path):
    root = _fake_course(tmp_path / "course")
    (root / ".gitignore").write_text(".venv/\nruns/\n__pycache__/\n*.egg-info/\n")
    (root / "scratch.md").write_text("an instructor's note, never added")
    git = ["git", "-C", str(root)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "README.md", "course", "course_lib", "notebooks", "solutions", "tests",
                    ".gitignore"], check=True)
    (root / "course").unlink()  # tracked, deleted in the working tree: skipped
    out = tmp_path / "student"
    handout.write_handout(out, root)
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == {"README.md", "HANDOUT.md", ".gitignore", f"{BANK}/99_x.json", "course_lib/__init__.py",
                       "notebooks/99_x.ipynb", "notebooks/.ipynb_checkpoints/99_x.ipynb"}  # as git tracks them
    assert set(handout.untracked_files(root)) == {"scratch.md", "data/keep.txt", "data/generated/img.png"}


def test_a_copy_that_would_keep_a_checkpoint_key_is_refused(tmp_path):
    root = _fake_course(tmp_path / "course")
    (root / "notes.md").write_text("Answer: The checkpoint's explanation, for the instructor only.\n")
    out = tmp_path / "student"
    with pytest.raises(CommandError, match=r"notes\.md holds the explanation of checkpoint quiz 'cp'"):
        handout.write_handout(out, root)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_out_must_be_new_or_empty_and_outside_the_repository(tmp_path):
    root = _fake_course(tmp_path / "course")
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("keep me")
    with pytest.raises(CommandError, match="exists and is not empty"):
        handout.write_handout(full, root)
    assert [p.name for p in full.iterdir()] == ["mine.txt"] and (full / "mine.txt").read_text() == "keep me"
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(CommandError, match="exists and is not a folder"):
        handout.write_handout(tmp_path / "a_file", root)
    for inside in (root / "handout", root, root / "notebooks"):
        with pytest.raises(CommandError, match="inside the repository"):
            handout.write_handout(inside, root)
    assert not (root / "handout").exists()
    with pytest.raises(CommandError, match="inside the repository"):
        handout.write_handout(REPO_ROOT / "build" / "student")
    empty = tmp_path / "empty"
    empty.mkdir()
    handout.write_handout(empty, root)
    assert (empty / "HANDOUT.md").is_file()
    assert _leftovers(tmp_path) == []


def test_a_failed_copy_leaves_nothing_behind(tmp_path, monkeypatch):
    root = _fake_course(tmp_path / "course")
    calls = []

    def copy_then_fail(src, dst, *args, **kwargs):
        calls.append(src)
        if len(calls) == 3:
            raise OSError("disk full")
        return shutil.copy2(src, dst)

    monkeypatch.setattr(handout.shutil, "copy2", copy_then_fail)
    with pytest.raises(OSError, match="disk full"):
        handout.write_handout(tmp_path / "student", root)
    assert not (tmp_path / "student").exists() and _leftovers(tmp_path) == []


def test_the_command_line_writes_it_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "student"
    assert cli.main(["handout", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"wrote the student edition to {out}" in said and f"{len(CHECKPOINTS)} checkpoint quizzes" in said
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert cli.main(["handout", str(out)]) == 1
    assert "exists and is not empty" in capsys.readouterr().err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
