"""Training engine: exact resume, non-finite losses, checkpoints loading with weights_only."""

import pytest
import torch

from course_lib.data.coco_dataset import CocoInstanceDataset, collate_fn, get_transform
from course_lib.data.shapes import make_shapes_dataset
from course_lib.detection.course_model import build_course_model
from course_lib.training.checkpoint import load_checkpoint
from course_lib.training.engine import (
    NonFiniteLossError,
    fit,
    train_one_epoch,
    warmup_cosine,
)

pytestmark = pytest.mark.training


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    ann = make_shapes_dataset(root, 8, seed=5, progress=False)
    return CocoInstanceDataset(root / "images", ann, get_transform(train=True))


def run(dataset, out_dir, stop_after=None, **options):
    torch.manual_seed(0)
    model = build_course_model()
    return fit(model, dataset, epochs=3, batch_size=4, device="cpu", out_dir=out_dir, seed=3,
               optimizer_fn=lambda p: torch.optim.SGD(p, lr=0.005, momentum=0.9, weight_decay=5e-4),
               lr_lambda_fn=lambda total: warmup_cosine(total, 2), collate_fn=collate_fn, progress=False,
               stop_after=stop_after, **options), model


def test_killed_and_resumed_run_follows_the_same_loss_trajectory(tiny_set, tmp_path):
    straight, model_a = run(tiny_set, tmp_path / "a")
    first, _ = run(tiny_set, tmp_path / "b", stop_after=1)
    assert len(first) == 1
    resumed, model_b = run(tiny_set, tmp_path / "b")  # a new process would do exactly this
    assert [h["iter_loss"] for h in resumed] == [h["iter_loss"] for h in straight]
    for (k, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    ckpt = load_checkpoint(tmp_path / "b" / "last.pt")  # weights_only=True
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 3
    assert ckpt["scaler"] is None  # no mixed precision on the CPU unless asked for


def test_mixed_precision_path_trains_and_resumes_its_grad_scaler(tiny_set, tmp_path):
    # AMP is on by default on CUDA only; use_amp=True runs the same autocast + GradScaler code on the CPU (bfloat16).
    straight, _ = run(tiny_set, tmp_path / "a", use_amp=True)
    run(tiny_set, tmp_path / "b", stop_after=1, use_amp=True)
    scaler_state = load_checkpoint(tmp_path / "b" / "last.pt")["scaler"]
    assert scaler_state and scaler_state["scale"] > 0
    resumed, _ = run(tiny_set, tmp_path / "b", use_amp=True)
    assert all(torch.isfinite(torch.tensor(h["iter_loss"])).all() for h in straight)
    assert [h["iter_loss"] for h in resumed] == [h["iter_loss"] for h in straight]


class NaNModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, images, targets):
        return {"loss_a": self.w * 0 + float("nan"), "loss_b": self.w.sum()}


def test_non_finite_loss_names_the_batch_image_ids(tiny_set):
    loader = torch.utils.data.DataLoader(tiny_set, batch_size=3, collate_fn=collate_fn)
    model = NaNModel()
    with pytest.raises(NonFiniteLossError, match=r"image ids \[1, 2, 3\]"):
        train_one_epoch(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, torch.device("cpu"), 0,
                        progress=False)


def test_warmup_then_cosine():
    f = warmup_cosine(100, 10)
    assert f(0) == pytest.approx(0.001) and f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.505, abs=1e-3) and f(100) == pytest.approx(0.01)
