"""finetune's checks before training (validation, categories agreeing) and resume that never lies
(a changed setting refuses with the differences; --accept-changes applies them; --fresh starts over)."""

import json

import pytest

from course_lib.course.cli import main as cli
from course_lib.data.shapes import NEW_CLASSES, make_shapes_dataset
from course_lib.training.checkpoint import load_checkpoint
from course_lib.training.finetune import main
from course_lib.utils.paths import CHECKPOINT

pytestmark = pytest.mark.training


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    train = make_shapes_dataset(root / "train", 4, seed=21, classes=NEW_CLASSES, progress=False)
    val = make_shapes_dataset(root / "val", 2, seed=22, classes=NEW_CLASSES, progress=False)
    return train, val


def common(train, val, out):
    return ["--data-train", str(train), "--data-val", str(val), "--batch-size", "2", "--device", "cpu",
            "--no-progress", "--out", str(out)]


def edited(path, tmp_path, name, change):
    data = json.loads(path.read_text())
    change(data)
    new = path.parent / name  # beside the original, so the images are found the same way
    new.write_text(json.dumps(data))
    return new


def test_a_run_refuses_changed_settings_and_accepts_them_explicitly(tiny, tmp_path, capsys):
    train, val = tiny
    # --lr-steps fixed: by default the drop moves with --epochs, and this test changes one setting at a time
    args = common(train, val, tmp_path / "run") + ["--epochs", "2", "--lr-steps", "3", "--no-eval"]
    first = main(args + ["--stop-after", "1"])
    assert len(first["history"]) == 1
    stored = load_checkpoint(tmp_path / "run" / "last.pt")["config"]
    assert stored["run"]["lr"] == 0.005 and stored["run"]["warmup_iters"] == 1  # min(50, 10% of 4 iterations)
    capsys.readouterr()
    assert cli(["finetune", *args, "--lr", "0.001", "--epochs", "3"]) == 1
    err = capsys.readouterr().err
    assert "epochs: 2 in the run, 3 now; lr: 0.005 in the run, 0.001 now" in err and err.count("\n") == 1
    resumed = main(args + ["--lr", "0.001", "--accept-changes"])
    assert resumed["history"][-1]["lr"] == pytest.approx(0.001)  # the new lr is used, not the stored one
    stored = load_checkpoint(tmp_path / "run" / "last.pt")["config"]
    assert stored["run"]["lr"] == 0.001 and stored["changes"][0]["after_epoch"] == 0
    assert stored["changes"][0]["differences"] == ["lr: 0.005 in the run, 0.001 now"]
    fresh = main(args + ["--fresh", "--stop-after", "1"])
    assert len(fresh["history"]) == 1 and fresh["history"][0]["epoch"] == 0


def test_a_changed_train_file_refuses_to_resume(tiny, tmp_path, capsys):
    train, val = tiny
    args = common(train, val, tmp_path / "run") + ["--epochs", "2", "--no-eval", "--stop-after", "1"]
    main(args)
    other = edited(train, tmp_path, "train_edited.json", lambda d: d["annotations"].pop())
    capsys.readouterr()
    assert cli(["finetune", *[str(other) if a == str(train) else a for a in args]]) == 1
    err = capsys.readouterr().err
    assert "data_train:" in err and "data_train_sha256:" in err


def test_finetune_refuses_invalid_files_with_the_report(tiny, tmp_path, capsys):
    train, val = tiny

    def shift_box(d):
        d["annotations"][0]["bbox"][0] += 5

    bad = edited(train, tmp_path, "train_bad_box.json", shift_box)
    assert cli(["finetune", *common(bad, val, tmp_path / "r"), "--epochs", "1"]) == 1
    out, err = capsys.readouterr()
    assert "does not match the segmentation's box" in out and "(--data-train): 1 problem(s)" in err
    ids = edited(train, tmp_path, "train_str_ids.json",
                 lambda d: [im.update(id=str(im["id"])) for im in d["images"]])
    assert cli(["finetune", *common(ids, val, tmp_path / "r"), "--epochs", "1"]) == 1
    assert "Results do not correspond to current coco set" in capsys.readouterr().out
    zero = edited(train, tmp_path, "train_zero.json", lambda d: d["categories"][0].update(id=0))
    assert cli(["finetune", *common(zero, val, tmp_path / "r"), "--epochs", "1"]) == 1
    assert "0 is the background label" in capsys.readouterr().out
    assert not (tmp_path / "r").exists()  # nothing trained, nothing written


def test_train_and_val_must_agree_on_categories(tiny, tmp_path, capsys):
    train, val = tiny

    def swap(d):
        a, b = d["categories"][0]["name"], d["categories"][1]["name"]
        d["categories"][0]["name"], d["categories"][1]["name"] = b, a

    swapped = edited(val, tmp_path, "val_swapped.json", swap)
    assert cli(["finetune", *common(train, swapped, tmp_path / "r"), "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "train and val disagree on their categories" in err and "category id 1 is" in err
    assert cli(["evaluate", "--model", str(CHECKPOINT), "--data", str(val)]) == 1
    assert "the model and the data disagree on their categories" in capsys.readouterr().err


def test_image_size_is_stored_in_the_model_file_and_used_when_loading(tmp_path):
    from course_lib.detection.course_model import load_course_model
    from course_lib.detection.model_file import save_model_file
    from course_lib.training.model_file import load_model_file, set_image_size

    model = load_course_model()
    assert model.transform.min_size == (128,) and model.transform.max_size == 128  # the documented default
    set_image_size(model, 96)
    config = {**load_checkpoint(CHECKPOINT)["config"], "image_size": 96}
    loaded, classes, _ = load_model_file(save_model_file(model, tmp_path / "m.pt", config=config), "cpu")
    assert loaded.transform.min_size == (96,) and loaded.transform.max_size == 96
    assert classes == config["classes"]
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]  # written atomically
