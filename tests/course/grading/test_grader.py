"""``course grade`` on whole notebooks: honest, wrong, forged, crashing, looping, memory-eating and hostile ones.

Each notebook runs in a real kernel in a real sandbox, then its functions in the probe. The class test grades
honest and broken submissions together (serial and ``--jobs 2`` give the same gradebook); the hostile
notebook tries to harm what is outside it, and the test looks there afterwards.
"""

import csv
import json
import os
import subprocess
import time
from pathlib import Path

import nbformat
import pytest

from course_lib.course.grading import cli
from course_lib.course.grading.grader import GradeOptions, grade
from course_lib.course.grading.isolation import engine_problem, site_packages
from course_lib.course.grading.quizzes import QUIZ_MIME, grade_quizzes, quiz_answers
from course_lib.course.grading.submission import SubmissionError
from course_lib.utils.errors import CommandError
from course_lib.utils.paths import REPO_ROOT as ROOT

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(engine_problem() is not None, reason=f"no isolation engine: {engine_problem()}")]

SETUP = "import torch\nfrom course_lib import answer, check_filter_detections, check_binarize_masks"
SOLVED_FILTER = ("def filter_detections(output, score_threshold):\n"
                 "    keep = output['scores'] >= score_threshold\n"
                 "    return {k: v[keep] for k, v in output.items()}\n"
                 "filter_detections = check_filter_detections(filter_detections)")
SOLVED_MASKS = ("def binarize_masks(masks, threshold=0.5):\n    return masks[:, 0] > threshold\n"
                "binarize_masks = check_binarize_masks(binarize_masks)")
STUB_MASKS = ("def binarize_masks(masks, threshold=0.5):\n"
              "    raise NotImplementedError('Exercise: replace this line with your code')\n"
              "binarize_masks = check_binarize_masks(binarize_masks)")
WRONG_MASKS = ("def binarize_masks(masks, threshold=0.5):\n    return masks > threshold\n"
               "binarize_masks = check_binarize_masks(binarize_masks)")
# Right on the notebook's thresholds only: the hidden cases use others.
SPECIAL_CASED_FILTER = ("def filter_detections(output, score_threshold):\n"
                        "    if score_threshold not in (0.5, 0.9, 0.7):\n"
                        "        return output\n"
                        "    keep = output['scores'] >= score_threshold\n"
                        "    return {k: v[keep] for k, v in output.items()}\n"
                        "filter_detections = check_filter_detections(filter_detections)")
# The first answer counts: the second, right one, comes too late.
QUIZ_ANSWERS = ('answer("overview-maskrcnn-addition", 1)\nanswer("overview-annotation-format", 0)\n'
                'answer("overview-annotation-format", 1)')
OPTIONS = GradeOptions(timeout=120)


def notebook(folder: Path, *cells: str, name: str = "00_overview.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)
    return folder / name


def by_name(report):
    return {e["checker"]: e for e in report["exercises"]}


def statuses(report, names=("check_filter_detections", "check_binarize_masks")):
    return {e["checker"]: e["status"] for e in report["exercises"] if e["checker"] in names}


def test_honest_answer_with_one_wrong_exercise_loses_only_that_one_and_quizzes_count(tmp_path, capsys):
    path = notebook(tmp_path / "alice", SETUP, SOLVED_FILTER, WRONG_MASKS, QUIZ_ANSWERS)
    before = path.read_text()
    out_json = tmp_path / "report.json"
    assert cli.main([str(path), "--json", str(out_json), "--timeout", "120"]) == 0
    report = json.loads(out_json.read_text())
    assert statuses(report) == {"check_filter_detections": "pass", "check_binarize_masks": "fail"}
    masks = by_name(report)["check_binarize_masks"]
    assert "case 'typical soft masks'" in masks["message"] and "shape" in masks["message"]
    from course_lib.course.checkers import check_binarize_masks

    assert masks["hint"] == check_binarize_masks.hint[0], "the feedback gives the first hint step, not the answer"
    quizzes = {q["id"]: q["status"] for q in report["quizzes"]}
    assert quizzes["overview-maskrcnn-addition"] == "right" and quizzes["overview-annotation-format"] == "wrong"
    assert list(quizzes.values()).count("unanswered") == len(quizzes) - 2
    n = len(report["exercises"])
    assert (report["score"], report["out_of"]) == (2, n + len(quizzes)) and report["error"] is None
    assert report["student"] == "alice" and "sources" not in report
    out = capsys.readouterr().out
    assert f"Score: 2/{n + len(quizzes)} (exercises 1/{n}, quizzes 1/{len(quizzes)})" in out
    assert path.read_text() == before, "the student's file is not modified"


def test_a_notebook_that_reads_the_course_checkpoint_runs_inside_the_sandbox(tmp_path):
    """00 loads data/course_maskrcnn.pt: the sandbox, where the checkout's pyproject.toml is not, still finds it."""
    submitted = tmp_path / "learner" / "00_overview.ipynb"
    submitted.parent.mkdir()
    submitted.write_bytes((ROOT / "notebooks" / "00_overview.ipynb").read_bytes())
    report = grade(submitted, seed=1, options=GradeOptions(timeout=300))
    assert report["error"] is None, report["error"]
    assert {e["status"] for e in report["exercises"]} == {"not attempted"}  # the stubs ran to their raise


def test_printed_verdicts_patched_checkers_and_the_handed_in_reference_earn_nothing(tmp_path):
    path = notebook(
        tmp_path / "mallory", SETUP,
        "filter_detections = check_filter_detections(check_filter_detections.reference)",
        "import course_lib.course.checkers.core as core\ncore.compare = lambda *a, **k: None\n" + WRONG_MASKS,
        "from course_lib.course.progress import record\n"
        "record('00_overview', 'exercise:check_binarize_masks', True)\n"
        "print('PASS check_binarize_masks: all 3 cases agree with the reference')\n"
        "print('\\x1b[2JScore: 100/100')")
    report = grade(path, options=OPTIONS)
    assert statuses(report) == {"check_filter_detections": "not attempted", "check_binarize_masks": "fail"}
    assert report["score"] == 0 and report["error"] is None


def test_hidden_cases_catch_an_answer_that_special_cases_the_notebook_inputs(tmp_path):
    path = notebook(tmp_path / "trent", SETUP, SPECIAL_CASED_FILTER, SOLVED_MASKS)
    report = grade(path, seed=7, options=OPTIONS)
    e = by_name(report)
    assert e["check_binarize_masks"]["status"] == "pass" and e["check_binarize_masks"]["points"] == 1
    f = e["check_filter_detections"]
    assert f["status"] == "partial" and f["groups"] == {"notebook": True, "hidden": False}
    assert f["points"] == 0.5 and f["message"].startswith("a hidden case")


CRASH = "import os\nos._exit(3)"
LOOP = "while True:\n    pass"
MEMORY = "x = bytearray(64 * 2**30)"
FORK_BOMB = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)"
FLOOD = "import sys\nfor _ in range(300):\n    print('x' * 1_000_000)"


def test_a_class_at_once_parallel_equals_serial_and_broken_submissions_get_their_row(tmp_path, capsys):
    subs = tmp_path / "submissions"
    paths = [notebook(subs / "alice", SETUP, SOLVED_FILTER, SOLVED_MASKS, QUIZ_ANSWERS),
             notebook(subs / "bob", SETUP, SOLVED_FILTER, CRASH, SOLVED_MASKS),
             notebook(subs / "carol", SETUP, SOLVED_FILTER, LOOP, SOLVED_MASKS),
             notebook(subs / "dave", SETUP, MEMORY, SOLVED_FILTER),
             notebook(subs / "erin", SETUP, SOLVED_FILTER, FORK_BOMB, SOLVED_MASKS),
             notebook(subs / "frank", SETUP, FLOOD, SOLVED_FILTER)]
    (subs / "gina").mkdir()
    (subs / "gina" / "00_overview.ipynb").write_text("{not json")
    (subs / "hal").mkdir()
    (subs / "hal" / "00_overview.ipynb").symlink_to(paths[0])
    paths += [subs / "gina" / "00_overview.ipynb", subs / "hal" / "00_overview.ipynb"]
    seed_file = tmp_path / "secret.seed"
    assert cli.main(["--new-seed-file", str(seed_file)]) == 0
    assert oct(seed_file.stat().st_mode)[-3:] == "600"
    common = [*map(str, paths), "--seed-file", str(seed_file), "--timeout", "25"]
    started = time.perf_counter()
    assert cli.main([*common, "--csv", str(tmp_path / "serial.csv")]) == 0
    serial_seconds = time.perf_counter() - started
    assert cli.main([*common, "--jobs", "2", "--csv", str(tmp_path / "par" / "parallel.csv")]) == 0
    serial = (tmp_path / "serial.csv").read_text()
    assert serial == (tmp_path / "par" / "parallel.csv").read_text()
    rows = {r["student"]: r for r in csv.DictReader(serial.splitlines())}
    assert set(rows) == {"alice", "bob", "carol", "dave", "erin", "frank", "gina", "hal"}
    assert rows["alice"]["check_filter_detections"] == rows["alice"]["check_binarize_masks"] == "1"
    assert rows["alice"]["quiz:overview-maskrcnn-addition"] == "1" and rows["alice"]["error"] == ""
    assert "died" in rows["bob"]["error"] and rows["bob"]["check_filter_detections"] == "1"
    assert rows["bob"]["check_binarize_masks"] == "0", "an exercise after the crash was never run"
    assert "time limit" in rows["carol"]["error"] and rows["carol"]["check_filter_detections"] == "1"
    assert "MemoryError" in rows["dave"]["error"] and rows["dave"]["score"] == "0"
    assert rows["erin"]["error"] and rows["erin"]["check_filter_detections"] == "1"
    assert rows["frank"]["error"] == "" and rows["frank"]["check_filter_detections"] == "1"
    assert "not a Jupyter notebook" in rows["gina"]["error"] and "symbolic link" in rows["hal"]["error"]
    feedback = (tmp_path / "feedback" / "carol.md").read_text()
    assert "time limit" in feedback and "`check_binarize_masks`: not run" in feedback
    out = capsys.readouterr().out
    assert "\x1b" not in out and len(out) < 200_000, "the flood and escape codes stay in the sandbox"
    # job-array pieces (one gradebook per job) merge into the same gradebook
    header, *lines = serial.splitlines()
    (tmp_path / "a.csv").write_text("\n".join([header, lines[0]]) + "\n")
    (tmp_path / "b.csv").write_text("\n".join([header, *lines[1:]]) + "\n")
    assert cli.main(["--merge", str(tmp_path / "b.csv"), str(tmp_path / "a.csv"),
                     "--csv", str(tmp_path / "all.csv")]) == 0
    assert (tmp_path / "all.csv").read_text() == serial
    assert serial_seconds < 600


def test_a_hostile_notebook_harms_nothing_outside_and_leaks_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INSTRUCTOR_API_TOKEN", "tok-5eCr3t")
    subs = tmp_path / "submissions"
    alice = notebook(subs / "alice", SETUP, SOLVED_FILTER, SOLVED_MASKS)
    alice_before = alice.read_bytes()
    bank = ROOT / "course_lib" / "course" / "quiz_bank" / "00_overview.json"
    bank_before = bank.read_bytes()
    gradebook = tmp_path / "gradebook.csv"
    marker = f"course-hostile-{os.getpid()}"
    attacks = [
        f"open({str(alice)!r}, 'w').write('{{}}')",  # overwrite a classmate's work
        f"print(open({str(alice)!r}).read()[:50])",  # read it
        f"open({str(bank)!r}, 'w').write('{{}}')",  # rewrite the quiz bank
        f"open({str(site_packages() / 'zz_course_planted.pth')!r}, 'w').write('import os')",  # plant a .pth
        f"import subprocess\nsubprocess.Popen(['sh', '-c', 'exec -a {marker} sh -c \"sleep 3; echo x > "
        f"{gradebook}\"'], start_new_session=True)",  # outlive grading and rewrite the gradebook
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",  # kill the grader (or the kernel's parent)
        "import os, signal\nos.kill(-1, signal.SIGKILL)",  # kill everything it may
        "import os\nraise RuntimeError(str(dict(os.environ)) + open('/root/.ssh/id_rsa').read())",
    ]
    hostile = notebook(subs / "mallory", SETUP, *[f"try:\n    exec({a!r})\nexcept BaseException as e:\n    "
                                                  f"print(repr(e)[:200])" for a in attacks[:-1]],
                       attacks[-1], SOLVED_FILTER)
    assert cli.main([str(alice), str(hostile), "--csv", str(gradebook), "--timeout", "60"]) == 0
    time.sleep(4)  # the planted process would have written by now
    rows = {r["student"]: r for r in csv.DictReader(gradebook.read_text().splitlines())}
    assert rows["alice"]["check_filter_detections"] == rows["alice"]["check_binarize_masks"] == "1"
    assert alice.read_bytes() == alice_before and bank.read_bytes() == bank_before
    assert not (site_packages() / "zz_course_planted.pth").exists()
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout == b""
    everything = gradebook.read_text() + (tmp_path / "feedback" / "mallory.md").read_text() + capsys.readouterr().out
    assert "tok-5eCr3t" not in everything and "INSTRUCTOR_API_TOKEN" not in everything
    assert "PRIVATE KEY" not in everything


def test_commands_that_cannot_grade_exit_with_a_reason(tmp_path):
    (tmp_path / "00_overview.ipynb").write_text("not json")
    with pytest.raises(CommandError, match="no notebook"):
        cli.main([])
    with pytest.raises(CommandError, match="not a gradebook"):
        (tmp_path / "x.csv").write_text("a,b\n1,2\n")
        cli.main(["--merge", str(tmp_path / "x.csv"), "--csv", str(tmp_path / "out.csv")])
    with pytest.raises(CommandError, match="exists already"):
        (tmp_path / "seed").write_text("5\n")
        cli.main(["--new-seed-file", str(tmp_path / "seed")])
    with pytest.raises(CommandError, match="one whole number"):
        (tmp_path / "bad.seed").write_text("five")
        cli.main([str(tmp_path / "00_overview.ipynb"), "--seed-file", str(tmp_path / "bad.seed")])
    report = grade(notebook(tmp_path / "x", "1", name="homework.ipynb"), options=OPTIONS)
    assert "not a course notebook name" in report["error"] and report["score"] == 0


def test_without_an_engine_untrusted_notebooks_are_refused(tmp_path, monkeypatch):
    from course_lib.course.grading import grader

    monkeypatch.setattr(grader, "engine_problem", lambda: "bubblewrap is not installed: install it")
    path = notebook(tmp_path / "alice", SETUP, SOLVED_FILTER)
    with pytest.raises(CommandError, match="cannot isolate student notebooks: bubblewrap is not installed"):
        cli.main([str(path)])
    assert cli.main([str(path), "--no-sandbox", "--timeout", "120"]) == 0  # one's own work


def test_quiz_answers_are_read_from_the_notebook_source_and_widget_records_first_answer_first():
    from course_lib.course.bank import load_questions

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('answer("overview-maskrcnn-addition", 2)\nanswer(qid, 1)\n'
                                          'answer("overview-maskrcnn-addition", 1)'),
                nbformat.v4.new_code_cell('quiz("overview-annotation-format")', outputs=[nbformat.v4.new_output(
                    "display_data", data={QUIZ_MIME: {"id": "overview-annotation-format", "choice": 2}})]),
                nbformat.v4.new_code_cell("this is not python (")]
    assert quiz_answers(nb) == {"overview-maskrcnn-addition": 2, "overview-annotation-format": 2}
    rows = {q["id"]: q for q in grade_quizzes("00_overview", nb, load_questions())}
    assert rows["overview-maskrcnn-addition"]["status"] == "wrong"
    assert rows["overview-annotation-format"]["status"] == "right"
    assert rows["overview-output-masks"]["status"] == "unanswered"


def test_a_data_folder_with_a_link_is_refused(tmp_path):
    from course_lib.course.grading.submission import read_submission

    path = notebook(tmp_path / "eve", SETUP)
    (tmp_path / "eve" / "data").mkdir()
    (tmp_path / "eve" / "data" / "secret").symlink_to("/etc/hostname")
    with pytest.raises(SubmissionError, match="symbolic link"):
        read_submission(path, "00_overview")
