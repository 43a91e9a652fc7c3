"""course_lib.data.notes: notes and warnings printed one a line, the rest counted."""

from course_lib.data.notes import print_notes


def test_notes_print_one_a_line_up_to_the_limit(capsys):
    print_notes([f"n{i}" for i in range(5)], "warning", limit=3)
    assert capsys.readouterr().out == "warning: n0\nwarning: n1\nwarning: n2\nwarning: ... and 2 more\n"
    print_notes([])
    assert capsys.readouterr().out == ""
