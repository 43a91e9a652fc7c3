"""The one model-file module: save and read (weights_only), classes, provenance, the spec stored and read
back, and every file read once per run (a finetune run that resumes, counted through torch.load)."""

from collections import Counter
from pathlib import Path

import pytest
import torch

from course_lib.detection.course_model import (
    COURSE_SPEC,
    CourseModelSpec,
    build_course_model,
    load_course_model,
    model_from_file,
)
from course_lib.detection.mask_rcnn import MaskRCNN, load_course_mask_rcnn
from course_lib.detection.model_file import (
    ModelFileError,
    load_file,
    model_file_classes,
    read_model_file,
    read_once,
    read_provenance,
    save_model_file,
    write_provenance,
)
from course_lib.utils.errors import CommandError
from course_lib.utils.paths import CHECKPOINT


@pytest.fixture
def torch_loads(monkeypatch):
    """Counts ``torch.load`` calls per file (resolved path)."""
    counts, real = Counter(), torch.load

    def counting(f, *args, **kwargs):
        counts[Path(f).resolve()] += 1
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    return counts


def test_the_committed_checkpoint_has_its_spec_and_classes():
    model_file = read_model_file(CHECKPOINT)
    assert model_file.arch == "course" and model_file.classes == list(COURSE_SPEC.classes)
    assert CourseModelSpec.from_config(model_file.config, strict=False) == COURSE_SPEC
    assert model_file_classes(CHECKPOINT) == ["__background__", "circle", "square", "triangle"]


def test_a_changed_spec_is_saved_in_the_model_file_and_read_back(tmp_path):
    spec = COURSE_SPEC.replace(classes=("__background__", "a", "b"), image_size=96, rpn_post_nms_top_n_test=77,
                               mask_layers=2, backbone_blocks=(1, 2, 1, 1))
    assert spec.num_classes == 3
    model = build_course_model(spec)
    path = save_model_file(model, tmp_path / "m.pt", config=spec.to_config(), half=True)
    model_file = read_model_file(path)
    assert model_file.classes == ["__background__", "a", "b"]
    assert CourseModelSpec.from_config(model_file.config) == spec
    for flavour in (model_from_file(model_file), load_course_mask_rcnn(path)):  # both flavours, strict loads
        assert flavour.transform.min_size == (96,) and flavour.rpn.post_nms_top_n() == 77
        assert len(flavour.roi_heads.mask_head) == 2 and len(flavour.backbone.body.layer2) == 2
    assert isinstance(load_course_mask_rcnn(path), MaskRCNN) and not load_course_mask_rcnn(path).training


def test_the_spec_refuses_unknown_and_inconsistent_settings():
    with pytest.raises(ValueError, match="unknown course model settings.*fpn_width"):
        build_course_model({"fpn_width": 32})
    with pytest.raises(ValueError, match="num_classes is 3 but 4 classes"):
        CourseModelSpec(num_classes=3)
    assert CourseModelSpec.from_config({"num_classes": 2}).classes == ("__background__", "class1")
    assert CourseModelSpec.from_config({**COURSE_SPEC.to_config(), "arch": "course"}) == COURSE_SPEC


def test_provenance_sits_beside_the_model_file(tmp_path):
    path = tmp_path / "m.pt"
    assert read_provenance(path) is None
    write_provenance(path, {"seed": 3})
    assert read_provenance(path) == {"seed": 3} and (tmp_path / "m.json").is_file()
    assert read_provenance(CHECKPOINT)["val_metrics"]["segm"]["AP"] > 0


def test_missing_and_foreign_files_say_so(tmp_path):
    from course_lib.training.model_file import load_model_file

    with pytest.raises(FileNotFoundError, match="model file not found"):
        read_model_file(tmp_path / "nope.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not a course model file"):
        read_model_file(tmp_path / "other.pt")
    with pytest.raises(CommandError, match="other.pt: not a course model file"):
        load_model_file(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="names its classes"):
        save_model_file(build_course_model(), tmp_path / "x.pt", config={})


def test_read_once_reads_a_file_once_until_it_changes(tmp_path, torch_loads):
    path = save_model_file(build_course_model(), tmp_path / "m.pt", config=COURSE_SPEC.to_config())
    load_file(path), load_file(path)
    assert torch_loads[path.resolve()] == 2  # outside read_once: every call reads
    with read_once():
        first = load_file(path)
        assert load_file(path) is first and read_model_file(path).state_dict is first["model"]
        assert torch_loads[path.resolve()] == 3
        save_model_file(build_course_model(), path, config=COURSE_SPEC.to_config())  # a new file
        assert load_file(path) is not first and torch_loads[path.resolve()] == 4
    load_file(path)
    assert torch_loads[path.resolve()] == 5


def test_loading_the_course_model_reads_the_checkpoint_once(torch_loads):
    from course_lib.detection.course_model import load_inference_model

    load_course_model()
    load_inference_model(prefer="course")
    assert torch_loads == Counter({CHECKPOINT.resolve(): 2})  # once per call


@pytest.mark.training
def test_a_finetune_run_that_resumes_reads_each_file_once(tmp_path, torch_loads):
    from course_lib.data.shapes import NEW_CLASSES, make_shapes_dataset
    from course_lib.training.finetune import main

    train = make_shapes_dataset(tmp_path / "train", 2, seed=31, classes=NEW_CLASSES, progress=False)
    out = tmp_path / "run"
    args = ["--data-train", str(train), "--data-val", str(train), "--epochs", "2", "--batch-size", "2",
            "--device", "cpu", "--no-progress", "--no-eval", "--out", str(out)]
    main(args + ["--stop-after", "1"])
    assert torch_loads == Counter({CHECKPOINT.resolve(): 1})  # no last.pt yet
    torch_loads.clear()
    # changed settings accepted: the run reads last.pt for its settings and its epoch, then fit resumes from it
    resumed = main(args + ["--lr", "0.001", "--accept-changes"])
    assert resumed["history"][-1]["epoch"] == 1 and (out / "model.pt").is_file()
    assert torch_loads == Counter({CHECKPOINT.resolve(): 1, (out / "last.pt").resolve(): 1})
