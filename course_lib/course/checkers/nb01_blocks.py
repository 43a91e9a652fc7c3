"""01's FPN exercise takes convolution modules; the grader sends them into its sandbox as plain data.

Self-contained (torch only): the grader sends this file into the sandbox where a student's ``fpn_merge`` runs
(``Checker.prelude``). ``as_spec`` turns a list of convolution blocks into tensors and numbers; ``fpn_call``
rebuilds them as ``nn.Sequential(nn.Conv2d)`` (what torchvision's ``Conv2dNormActivation`` without norm and
activation is) and calls the function, so the learner's code gets callable blocks either way.
"""

import torch
from torch import nn


def as_spec(blocks) -> list[dict]:
    """Each block's convolution as ``{"weight", "bias", "padding", "stride"}`` (plain data)."""
    specs = []
    for block in blocks:
        conv = next(m for m in block.modules() if isinstance(m, nn.Conv2d))
        specs.append({"weight": conv.weight.detach().clone(), "bias": conv.bias.detach().clone(),
                      "padding": tuple(conv.padding), "stride": tuple(conv.stride)})
    return specs


def as_blocks(specs: list[dict]) -> nn.ModuleList:
    blocks = nn.ModuleList()
    for s in specs:
        out_channels, in_channels, kh, kw = s["weight"].shape
        conv = nn.Conv2d(in_channels, out_channels, (kh, kw), stride=s["stride"], padding=s["padding"])
        with torch.no_grad():
            conv.weight.copy_(s["weight"])
            conv.bias.copy_(s["bias"])
        conv.requires_grad_(False)
        blocks.append(nn.Sequential(conv))
    return blocks


def fpn_call(fn, features, inner_blocks, layer_blocks):
    """``fn(features, inner_blocks, layer_blocks)``, with blocks given as modules or as ``as_spec`` data."""
    if type(inner_blocks) is list:
        inner_blocks, layer_blocks = as_blocks(inner_blocks), as_blocks(layer_blocks)
    return fn(features, inner_blocks, layer_blocks)
