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


def test_provenance_describes_this_checkpoint_and_a_run_that_can_be_repeated(provenance):
    """The record must fit the file beside it and the code that would remake it: the checkpoint's size, the
    export path, one epoch loss per epoch (falling), and data splits the shapes generator makes by those names."""
    from course_lib.data.shapes import STANDARD_SPLITS

    assert provenance["command"].startswith(("./course train", "python -m course_lib.train"))  # the checkpoint in data/ predates ./course train
    assert provenance["checkpoint_bytes"] == CHECKPOINT.stat().st_size
    assert provenance["args"]["export"].endswith(CHECKPOINT.name)
    assert provenance["seed"] == provenance["args"]["seed"]
    losses = [e["loss"] for e in provenance["epoch_losses"]]
    assert len(losses) == provenance["args"]["epochs"] and losses[-1] < losses[0] / 2
    assert provenance["data"]["generator"].endswith("shapes_split")
    for name in ("train", "val"):
        split = provenance["data"][name]
        assert STANDARD_SPLITS[split["split"]][:2] == (split["num_images"], split["seed"]), name


@pytest.fixture(scope="module")
def recomputed(provenance):
    val = provenance["data"]["val"]
    ann = shapes_split("val", num_images=val["num_images"], seed=val["seed"], progress=False)
    dataset = CocoInstanceDataset(ann.parent / "images", ann, get_transform(train=False))
    return evaluate_checkpoint_metrics(load_course_model(), dataset, torch.device("cpu"))


def test_metrics_recomputed_from_the_checkpoint_match_the_provenance(provenance, recomputed):
    for t in ("bbox", "segm"):
        for k in ("AP", "AP50", "AP75"):
            assert recomputed[t][k] == pytest.approx(provenance["val_metrics"][t][k], abs=2e-3), (t, k)


def test_checkpoint_reaches_the_course_targets(recomputed):
    """Measured on the checkpoint itself, not read from its record."""
    segm = recomputed["segm"]
    assert segm["AP50"] >= 0.95 and segm["AP"] >= 0.75
