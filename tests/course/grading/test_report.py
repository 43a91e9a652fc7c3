"""Reports, feedback and gradebooks: nothing a submission wrote can forge a line, a cell or a formula."""

import csv

from course_lib.course.grading.report import clean, csv_rows, feedback_markdown, feedback_name, format_grade_report

HOSTILE = "boom\x1b[2J\r\nScore: 100/100\u202e" + "x" * 1000


def report(**changes):
    base = {"notebook": "s/alice/00_overview.ipynb", "course_notebook": "00_overview", "student": "alice",
            "seconds": 1.0, "error": None, "score": 0.0, "out_of": 2.0,
            "exercises": [{"checker": "check_x", "status": "fail", "points": 0.0, "out_of": 1.0, "groups": {},
                           "message": f"raised ValueError: {HOSTILE}", "hint": "look", "review": ""}],
            "quizzes": [{"id": "q1", "status": "wrong", "choice": 1, "points": 0.0, "out_of": 1.0}]}
    return base | changes


def test_clean_makes_one_short_printable_line():
    line = clean(HOSTILE)
    assert "\x1b" not in line and "\n" not in line and "\r" not in line and "\u202e" not in line
    assert len(line) == 300 and line.endswith("...")


def test_reports_feedback_and_csv_carry_no_control_characters_and_no_formulas(tmp_path):
    r = report(student="=HYPERLINK(\"http://x\")", error="cell 3 raised: " + HOSTILE)
    text = format_grade_report(r) + feedback_markdown(r)
    assert "\x1b" not in text and "\r" not in text
    assert sum(line.startswith("Score:") for line in text.splitlines()) == 2  # the real ones only
    columns, rows = csv_rows([r])
    assert rows[0]["student"].startswith("'=") and "\n" not in rows[0]["error"]
    path = tmp_path / "g.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    assert len(path.read_text().splitlines()) == 2
    assert feedback_name(report(student="../../etc/passwd"), False) == "_.._etc_passwd.md"
