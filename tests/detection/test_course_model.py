"""The course model's architecture, and the offline / cached-weights choice."""

import pytest
import torch

from course_lib.detection.backbone_utils import build_backbone
from course_lib.detection.course_model import (
    build_course_model,
    coco_weights_available,
    coco_weights_file,
    get_instance_segmentation_model,
    load_inference_model,
)

pytestmark = pytest.mark.equality  # compared with torchvision: ./course test --cpu-variants runs it


def tiny_targets(n_images=2, size=128):
    targets = []
    for _i in range(n_images):
        boxes = torch.tensor([[10.0, 12.0, 50.0, 60.0], [70.0, 20.0, 110.0, 90.0]])
        masks = torch.zeros(2, size, size, dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
            masks[k, y1:y2, x1:x2] = 1
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 3]), "masks": masks})
    return targets


def test_course_model_trains_and_predicts_with_torchvision_formats():
    torch.manual_seed(0)
    model = build_course_model()
    images = [torch.rand(3, 128, 128), torch.rand(3, 128, 128)]
    losses = model(images, tiny_targets())
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 100, 150)])[0]
    assert set(out) == {"boxes", "labels", "scores", "masks"}
    assert out["masks"].shape[1:] == (1, 100, 150)


def test_backbone_uses_real_batchnorm_and_returns_p2_to_p6():
    backbone = build_backbone()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())
    feats = backbone(torch.rand(1, 3, 128, 128))
    assert {k: tuple(v.shape[-2:]) for k, v in feats.items()} == {
        "0": (32, 32), "1": (16, 16), "2": (8, 8), "3": (4, 4), "pool": (2, 2)}


def test_offline_uses_the_course_checkpoint_with_one_sentence(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert not coco_weights_available()
    model, source, classes = load_inference_model()
    assert source == "course" and classes == ["__background__", "circle", "square", "triangle"]
    printed = capsys.readouterr().out.strip()
    assert printed.count("\n") == 0 and printed.count(". ") == 0, "one sentence"
    assert "not in the torch cache" in printed and "course uses its own shapes checkpoint" in printed
    assert not model.training


def test_cached_coco_weights_are_loaded_with_weights_default(monkeypatch, tmp_path):
    """With the weights file in the torch cache, weights="DEFAULT" loads it, and nothing is downloaded."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    fake = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    with torch.no_grad():
        fake.roi_heads.box_predictor.cls_score.bias.fill_(0.123)
    path = coco_weights_file()
    path.parent.mkdir(parents=True)
    torch.save(fake.state_dict(), path)
    model, source, classes = load_inference_model()
    assert source == "coco" and len(classes) == 91 and classes[1] == "person"
    assert torch.allclose(model.roi_heads.box_predictor.cls_score.bias, torch.tensor(0.123))


def test_head_replacement_counts_background():
    model = get_instance_segmentation_model(num_classes=5, model=build_course_model())
    assert model.roi_heads.box_predictor.cls_score.out_features == 5
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 20
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 5
