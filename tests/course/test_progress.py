from course_lib.course import progress
from course_lib.course.checkers import check_filter_detections
from course_lib.course.quiz import answer
from course_lib.training.predict import filter_detections


def test_quizzes_and_checkers_record_progress_in_the_progress_file(capsys):
    assert progress.load() == {}
    answer("overview-maskrcnn-addition", 0)
    answer("overview-output-masks", 1)
    check_filter_detections(filter_detections)
    data = progress.load()["00_overview"]
    assert data["quiz:overview-maskrcnn-addition"]["passed"] is False
    assert data["quiz:overview-output-masks"]["passed"] is True
    assert data["exercise:check_filter_detections"]["passed"] is True
    line = next(l for l in progress.summary().splitlines() if l.startswith("00_overview"))
    assert line == "00_overview: quizzes 1/4, exercises 1/3"


def test_a_pass_is_kept_after_a_later_failure():
    progress.record("00_overview", "quiz:overview-weights-api", True)
    progress.record("00_overview", "quiz:overview-weights-api", False)
    assert progress.load()["00_overview"]["quiz:overview-weights-api"]["passed"] is True


def test_progress_file_lives_outside_the_repo_by_default(monkeypatch):
    from pathlib import Path

    from course_lib.utils.paths import REPO_ROOT

    monkeypatch.delenv("COURSE_PROGRESS_FILE")
    assert progress.progress_file() == Path.home() / ".maskrcnn_course" / "progress.json"
    assert REPO_ROOT not in progress.progress_file().parents


def test_corrupt_progress_file_is_treated_as_empty():
    progress.progress_file().write_text("{not json")
    assert progress.load() == {}
    progress.show_progress()


def test_show_progress_prints_no_path_or_counts_when_headless(monkeypatch, capsys):
    progress.record("00_overview", "quiz:overview-weights-api", True)
    monkeypatch.setenv("COURSE_HEADLESS", "1")
    progress.show_progress()
    headless_out = capsys.readouterr().out
    assert str(progress.progress_file()) not in headless_out and "quizzes" not in headless_out
    monkeypatch.setenv("COURSE_HEADLESS", "0")
    progress.show_progress()
    out = capsys.readouterr().out
    assert str(progress.progress_file()) in out and "00_overview: quizzes 1/4" in out
