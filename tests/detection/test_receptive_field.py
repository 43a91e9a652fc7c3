"""receptive_fields: the measured field agrees with the layer arithmetic, and an off-centre field shows as one."""

import pytest
import torch
from torch import nn

from course_lib.detection.backbone_utils import build_backbone
from course_lib.detection.receptive_field import receptive_fields


def field_radius(layers):
    """Half the receptive field of a chain of (kernel, stride) layers with centred padding, in input pixels."""
    radius, jump = 0, 1
    for kernel, stride in layers:
        radius += (kernel - 1) // 2 * jump
        jump *= stride
    return radius


# The course ResNet (one BasicBlock per stage): conv1 7x7/2, max pool 3x3/2, then two 3x3 convs per stage, the
# first of stages 3-5 with stride 2.
C_LAYERS = [(7, 2), (3, 2), (3, 1), (3, 1)]
for _ in range(3):
    C_LAYERS = [*C_LAYERS, (3, 2), (3, 1)]
C_DEPTH = {"0": 4, "1": 6, "2": 8, "3": 10}  # layers up to the end of C2, C3, C4, C5


@pytest.fixture(scope="module")
def body():
    torch.manual_seed(0)
    return build_backbone().body


def test_course_resnet_cells_centre_on_pixel_cell_times_stride(body):
    fields = receptive_fields(body, 256)
    assert [(f.name, f.stride, f.cell) for f in fields] == [
        ("0", 4, (32, 32)), ("1", 8, (16, 16)), ("2", 16, (8, 8)), ("3", 32, (4, 4))]
    for f in fields:
        r = field_radius(C_LAYERS[:C_DEPTH[f.name]])
        assert f.first == (128 - r, 128 - r) and f.last == (128 + r, 128 + r), f
        assert f.centre == (128.0, 128.0) and f.size == (2 * r + 1,) * 2 and not f.clipped
    assert [f.size[0] for f in fields] == [27, 51, 99, 195]


def test_a_field_cut_by_the_border_is_flagged(body):
    fields = {f.name: f for f in receptive_fields(body, 128)}
    assert not fields["2"].clipped and fields["2"].centre == (64.0, 64.0)  # C4 cell 4: 15..113
    assert fields["3"].clipped and fields["3"].first == (0, 0)  # C5's 195 pixels do not fit in 128


def test_an_unpadded_even_kernel_is_measured_half_a_pixel_off():
    """The wrong answer a centred network never gives: a 2x2 stride-2 conv without padding looks at 2i and 2i+1."""
    net = nn.Conv2d(1, 4, 2, stride=2)
    (f,) = receptive_fields(net, 16, in_channels=1)
    assert f.name == "out" and f.stride == 2 and f.cell == (4, 4)
    assert f.first == (8, 8) and f.last == (9, 9) and f.centre == (8.5, 8.5)  # not 2 * 4 = 8


def test_fpn_maps_lean_towards_the_top_left():
    """P maps add coarser maps through nearest upsampling (fine cells 2i, 2i+1 <- coarse cell i)."""
    torch.manual_seed(0)
    fields = {f.name: f for f in receptive_fields(build_backbone(), 256, n_images=1)}
    for name in ("0", "1", "2"):  # the centre cell is on pixel 128; its field reaches further left than right
        assert fields[name].centre[1] < 128 and 128 - fields[name].first[1] > fields[name].last[1] - 128


def test_mode_and_requires_grad_are_restored_and_train_mode_batchnorm_is_not_used():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    net.train()
    net[0].weight.requires_grad_(False)
    (f,) = receptive_fields(net, 8)
    assert f.first == (3, 3) and f.last == (5, 5)  # BatchNorm in train mode would let every pixel reach the cell
    assert net.training and not net[0].weight.requires_grad and net[0].bias.requires_grad


def test_wrong_networks_and_sizes_are_refused():
    with pytest.raises(TypeError, match="tensor or a dict of tensors, got list"):
        receptive_fields(lambda x: [x], 8)
    with pytest.raises(ValueError, match="no power-of-two stride"):
        receptive_fields(nn.Conv2d(3, 3, 3, stride=3), 12)
    with pytest.raises(ValueError, match="must be positive"):
        receptive_fields(nn.Conv2d(3, 3, 1), 0)
    with pytest.raises(ValueError, match="gradient is zero everywhere"):
        receptive_fields(lambda x: x * 0, 8)
