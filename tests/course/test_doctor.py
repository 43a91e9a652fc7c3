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


def test_doctor_says_which_device_and_why(monkeypatch):
    import torch

    from course_lib.utils import device

    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert doctor.device_row()[1].startswith("cpu (") and ": no CUDA or Apple GPU (MPS) device; torch is " in \
        doctor.device_row()[1]
    # A Mac whose Apple GPU failed the training check (mocked: no Apple GPU here)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(device, "mps_verdict", lambda: {"ok": False, "detail": "step 1: gradients off by 7.9e+01"})
    assert "the CPU, not the Apple GPU: step 1: gradients off by 7.9e+01" in doctor.device_row()[1]
    monkeypatch.setattr(device, "mps_verdict", lambda: {"ok": True, "detail": "3 training steps: gradients within 2e-06"})
    row = doctor.device_row()[1]
    assert row.startswith("mps (Apple GPU): the Apple GPU passed the training check: 3 training steps")


def test_doctor_fails_on_a_device_that_is_not_there(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DEVICE", "tpu")
    assert doctor.device_row() == ("device", "MISSING: COURSE_DEVICE must be one of cpu, cuda, mps or auto, got 'tpu'")
    assert doctor.main() == 1
    assert "MISSING: COURSE_DEVICE" in capsys.readouterr().out
