"""The committed course checkpoint: size, weights-only loading, provenance, and recomputed metrics."""

import json

import pytest
import torch

from course_lib.data.coco_dataset import CocoInstanceDataset, get_transform
from course_lib.data.shapes import shapes_split
from course_lib.detection.course_model import load_course_model
from course_lib.training.train_course_model import evaluate_checkpoint_metrics
from course_lib.utils.paths import CHECKPOINT, PROVENANCE

pytestmark = pytest.mark.training  # evaluates the checkpoint on 200 images


@pytest.fixture(scope="module")
def provenance():
    return json.loads(PROVENANCE.read_text())


def test_checkpoint_is_small_and_loads_weights_only():
    assert CHECKPOINT.stat().st_size <= 25 * 2**20
    ckpt = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"model", "config"}


def test_provenance_names_command_seed_data_time_and_metrics(provenance):
    assert provenance["command"].startswith(("./course train", "python -m course_lib.train"))  # the checkpoint in data/ predates ./course train
    assert isinstance(provenance["seed"], int)
    assert provenance["data"]["train"]["num_images"] > 0 and provenance["data"]["val"]["num_images"] > 0
    assert provenance["train_seconds"] > 0
    assert provenance["checkpoint_bytes"] == CHECKPOINT.stat().st_size
    for t in ("bbox", "segm"):
        assert {"AP", "AP50", "AP75"} <= set(provenance["val_metrics"][t])


def test_metrics_recomputed_from_the_checkpoint_match_the_provenance(provenance):
    val = provenance["data"]["val"]
    ann = shapes_split("val", num_images=val["num_images"], seed=val["seed"], progress=False)
    dataset = CocoInstanceDataset(ann.parent / "images", ann, get_transform(train=False))
    metrics = evaluate_checkpoint_metrics(load_course_model(), dataset, torch.device("cpu"))
    for t in ("bbox", "segm"):
        for k in ("AP", "AP50", "AP75"):
            assert metrics[t][k] == pytest.approx(provenance["val_metrics"][t][k], abs=2e-3), (t, k)


def test_checkpoint_reaches_the_course_targets(provenance):
    segm = provenance["val_metrics"]["segm"]
    assert segm["AP50"] >= 0.95 and segm["AP"] >= 0.75
