"""Fine-tuning: head replacement, the SGD + warm-up + step recipe, data-wait timing, the CLI's exact resume,
and the CLI under torchrun with two gloo processes."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from course_lib.data.coco_dataset import CocoInstanceDataset, collate_fn, get_transform
from course_lib.data.coco_meta import categories_of
from course_lib.data.shapes import NEW_CLASSES, make_shapes_dataset
from course_lib.detection.course_model import (
    build_course_model,
    get_instance_segmentation_model,
    load_course_model,
    load_maskrcnn_resnet50_fpn,
)
from course_lib.training.engine import (
    data_wait,
    fit,
    make_loader,
    make_sgd,
    train_one_epoch,
    warmup_step,
)
from course_lib.training.finetune import load_finetuned, main
from course_lib.utils.paths import REPO_ROOT

pytestmark = pytest.mark.training


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    train = make_shapes_dataset(root / "train", 4, seed=11, classes=NEW_CLASSES, progress=False)
    val = make_shapes_dataset(root / "val", 2, seed=12, classes=NEW_CLASSES, progress=False)
    return train, val


def predictor_shapes(model):
    heads = model.roi_heads
    return {"cls_score": tuple(heads.box_predictor.cls_score.weight.shape),
            "bbox_pred": tuple(heads.box_predictor.bbox_pred.weight.shape),
            "conv5_mask": tuple(heads.mask_predictor.conv5_mask.weight.shape),
            "mask_fcn_logits": tuple(heads.mask_predictor.mask_fcn_logits.weight.shape)}


def test_head_replacement_on_the_course_checkpoint_keeps_everything_else():
    before = load_course_model()
    model = get_instance_segmentation_model(7, load_course_model())
    assert predictor_shapes(model) == {"cls_score": (7, 256), "bbox_pred": (28, 256),
                                       "conv5_mask": (64, 64, 2, 2), "mask_fcn_logits": (7, 64, 1, 1)}
    old, new = before.state_dict(), model.state_dict()
    assert set(old) == set(new)
    for k in old:
        if "predictor" not in k:
            assert torch.equal(old[k], new[k]), k
    model.train()
    images = [torch.rand(3, 128, 128)]
    target = {"boxes": torch.tensor([[10.0, 10, 60, 60]]), "labels": torch.tensor([6]),
              "masks": torch.zeros(1, 128, 128, dtype=torch.uint8)}
    target["masks"][0, 10:60, 10:60] = 1
    losses = model(images, [target])  # label 6 is valid with 7 classes (background counted)
    assert all(torch.isfinite(v) for v in losses.values())


def test_head_replacement_on_torchvision_maskrcnn_resnet50_fpn_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached COCO weights: random, no download
    model, source = load_maskrcnn_resnet50_fpn(verbose=False)
    assert source == "random"
    assert predictor_shapes(model)["cls_score"] == (91, 1024)
    model = get_instance_segmentation_model(4, model)
    assert predictor_shapes(model) == {"cls_score": (4, 1024), "bbox_pred": (16, 1024),
                                       "conv5_mask": (256, 256, 2, 2), "mask_fcn_logits": (4, 256, 1, 1)}


def test_warmup_then_step():
    f = warmup_step(100, 10, milestones=[60, 80], gamma=0.1)
    assert f(0) == pytest.approx(0.001) and f(5) == pytest.approx(0.5005) and f(10) == 1.0
    assert f(59) == 1.0 and f(60) == pytest.approx(0.1) and f(80) == pytest.approx(0.01)
    assert warmup_step(100, 0)(0) == 1.0
    opt = make_sgd([torch.nn.Parameter(torch.zeros(1))])
    assert opt.defaults["lr"] == 0.005 and opt.defaults["momentum"] == 0.9
    assert opt.defaults["weight_decay"] == 0.0005


def test_train_one_epoch_and_fit_report_the_data_wait(tiny, tmp_path):
    train, _ = tiny
    ds = CocoInstanceDataset(train.parent / "images", train, get_transform(train=True))

    class SlowData(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            time.sleep(0.1)
            return ds[i]

    model = get_instance_segmentation_model(4, build_course_model())
    loader = make_loader(SlowData(), 2, seed=0, epoch=0, collate_fn=collate_fn)
    h = train_one_epoch(model, make_sgd(model.parameters()), loader, torch.device("cpu"), 0, progress=False)
    assert len(h["time_data"]) == len(h["time_step"]) == 2
    assert min(h["time_data"]) >= 0.18  # two images at 0.1 s each
    history = fit(model, ds, epochs=1, batch_size=2, device="cpu", out_dir=tmp_path, optimizer_fn=make_sgd,
                  collate_fn=collate_fn, progress=False)
    s = history[0]
    assert 0 <= data_wait(s) < 1 and s["step_seconds"] > 0 and s["data_seconds"] >= 0
    assert set(s["iters"]) >= {"loss", "loss_classifier", "loss_mask"} and len(s["iters"]["loss_mask"]) == 2


def test_finetune_cli_resumes_exactly_and_exports_a_loadable_model(tiny, tmp_path):
    train, val = tiny
    common = ["--data-train", str(train), "--data-val", str(val), "--epochs", "2", "--batch-size", "2",
              "--warmup-iters", "2", "--lr-steps", "1", "--device", "cpu", "--no-progress"]
    straight = main(common + ["--out", str(tmp_path / "a")])
    first = main(common + ["--out", str(tmp_path / "b"), "--stop-after", "1"])
    assert len(first["history"]) == 1 and "export" not in first
    resumed = main(common + ["--out", str(tmp_path / "b"), "--no-eval"])  # a new process would do this
    assert [h["iter_loss"] for h in resumed["history"]] == [h["iter_loss"] for h in straight["history"]]
    assert straight["history"][-1]["lr"] == pytest.approx(0.0005)  # 0.005 x 0.1 after epoch 1
    assert straight["classes"] == categories_of(train) == ["__background__", *NEW_CLASSES]
    assert set(straight["metrics"]) == {"bbox", "segm"}
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert saved["metrics"] == straight["metrics"] and saved["val_images"] == 2
    a, classes = load_finetuned(tmp_path / "a" / "model.pt")
    b, _ = load_finetuned(tmp_path / "b" / "model.pt")
    assert classes == straight["classes"]
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_categories_need_ids_from_one(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 0, "name": "x"}]}))
    with pytest.raises(ValueError, match="0 is background"):
        categories_of(bad)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_finetune_runs_under_torchrun_with_two_gloo_processes(tiny, tmp_path):
    train, val = tiny
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "course_lib.training.finetune",
           "--data-train", str(train), "--data-val", str(val), "--epochs", "1", "--batch-size", "1",
           "--warmup-iters", "1", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COURSE_HEADLESS": "1", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "2 process(es) on cpu" in run.stdout and "2 iterations per epoch" in run.stdout  # 4 images / 2
    assert run.stdout.count("epoch 0:") == 1  # only rank 0 logs
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 0 and not any(k.startswith("module.") for k in ckpt["model"])
    assert (out / "model.pt").exists()
    assert json.loads((out / "metrics.json").read_text())["world_size"] == 2


def test_head_replacement_checker_passes_the_reference_fails_a_forgotten_background_and_waits_for_stubs(capsys):
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    from course_lib.course.checkers import (
        check_get_instance_segmentation_model as check,
    )

    def mine(num_classes, model):
        in_features = model.roi_heads.box_predictor.cls_score.in_features
        model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
        conv5 = model.roi_heads.mask_predictor.conv5_mask
        model.roi_heads.mask_predictor = MaskRCNNPredictor(conv5.in_channels, conv5.out_channels, num_classes)
        return model

    assert check(mine) is mine
    assert capsys.readouterr().out.startswith("PASS check_get_instance_segmentation_model: all 4 cases")

    def no_background(num_classes, model):
        return mine(num_classes - 1, model)

    assert check(no_background) is get_instance_segmentation_model
    out = capsys.readouterr().out
    assert "FAIL check_get_instance_segmentation_model, case 'course model, 4 classes" in out
    assert "cls_score" in out and "background" in out

    def stub(num_classes, model):
        raise NotImplementedError("Exercise: replace this line with your code")

    assert check(stub) is get_instance_segmentation_model
    assert "NOT YET" in capsys.readouterr().out


def test_mask_iou_checker_catches_nan_on_empty_masks(capsys):
    from course_lib.course.checkers import check_mask_iou
    from course_lib.training.error_analysis import mask_iou

    def nan_on_empty(a, b):
        a, b = a.flatten(1).float(), b.flatten(1).float()
        inter = a @ b.T
        return inter / (a.sum(1)[:, None] + b.sum(1)[None] - inter)

    assert check_mask_iou(nan_on_empty) is mask_iou
    assert "case 'an empty mask (IoU 0, not NaN)'" in capsys.readouterr().out
    assert check_mask_iou(mask_iou) is mask_iou


def test_the_default_lr_step_scales_with_the_epochs():
    """`--epochs 10` alone used to keep the drop at epoch 3: 7 of 10 epochs at a tenth of the LR."""
    from course_lib.training.finetune import parse_args

    assert parse_args([]).lr_steps == [3.0]  # the default 4 epochs: as before
    assert parse_args(["--epochs", "10"]).lr_steps == [7.5]
    assert parse_args(["--epochs", "10", "--lr-steps", "2", "6"]).lr_steps == [2.0, 6.0]


def test_finetune_says_how_many_crowd_regions_it_sets_aside(tiny, tmp_path, capsys):
    from course_lib.utils.errors import CommandError

    train, _ = tiny
    data = json.loads(train.read_text())
    data["annotations"][0]["iscrowd"] = 1
    crowded = train.with_name("one_crowd.json")  # beside it: the images are found the same way
    crowded.write_text(json.dumps(data))
    main(["--data-train", str(crowded), "--epochs", "1", "--batch-size", "2", "--device", "cpu", "--no-progress",
          "--no-eval", "--out", str(tmp_path / "run")])
    assert (f"set aside 1 crowd region(s) (iscrowd=1) of {len(data['annotations'])} annotations"
            in capsys.readouterr().out)
    for a in data["annotations"]:
        a["iscrowd"] = 1
    crowded.write_text(json.dumps(data))
    with pytest.raises(CommandError, match="are crowd regions .* sets aside: nothing is left to learn"):
        main(["--data-train", str(crowded), "--no-eval", "--device", "cpu", "--out", str(tmp_path / "run2")])
