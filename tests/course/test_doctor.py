"""course_lib.course.doctor: the report of versions, device, weights, widgets and checkpoint."""

from course_lib.course import doctor


def test_doctor_reports_versions_device_weights_widgets_and_checkpoint(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    rows = dict(doctor.report())
    assert rows["torch"][0].isdigit() and rows["torchvision"][0].isdigit()
    assert rows["device"].startswith(("cpu", "cuda"))
    assert "not in the torch cache" in rows["COCO weights"]
    assert rows["widget front end"].startswith("installed")
    assert "val segm AP" in rows["course checkpoint"]
    assert rows["grading sandbox"].startswith(("bubblewrap isolates", "unavailable (only instructors"))
    assert doctor.main() == 0
    assert "widget front end" in capsys.readouterr().out


def test_doctor_says_what_to_do_without_bubblewrap(monkeypatch):
    from course_lib.course.grading import isolation

    monkeypatch.setattr(isolation, "engine_problem", lambda: "bubblewrap is not installed: install bubblewrap")
    rows = dict(doctor.report())
    assert rows["grading sandbox"].endswith("bubblewrap is not installed: install bubblewrap")
