"""``./course export``: a model file -> a TorchScript file that runs without the course's code.
Taught in: 06_fine_tuning

    ./course export --model runs/mine/model.pt --out runs/mine/model.ts

Why TorchScript and not ONNX: torchvision's ``MaskRCNN`` supports ``torch.jit.script`` as it is (its
detection code is written for it), so the exported model is the same program, with the same
variable image sizes, the same post-processing (NMS, mask pasting) and bit-identical outputs, and
it loads with nothing but ``torch`` (``torch.jit.load``). ONNX needs the ``onnx`` packages, traces one
input size unless told otherwise, and moves NMS and mask pasting into operators whose results can
differ slightly from torchvision's. torch 2.x marks ``torch.jit`` as deprecated in favour of
``torch.export`` (a ``FutureWarning``, silenced here); torchvision's detection models are written for
TorchScript, and the equality check below is what shows that the export still holds with the installed
torch. The scripted model returns ``(losses, detections)``; in eval mode
``losses`` is empty. After exporting, the command runs the eager and the exported model on the same
images and refuses (and deletes nothing it did not write) if any output differs.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch

from course_lib.training.model_file import load_model_file
from course_lib.utils.errors import CommandError
from course_lib.utils.files import write_atomic


def parse_args(argv):
    p = argparse.ArgumentParser(prog="course export", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a model file (finetune's model.pt, data/course_maskrcnn.pt)")
    p.add_argument("--out", required=True, help="the TorchScript file to write (e.g. model.ts)")
    p.add_argument("--seed", type=int, default=0, help="seed of the check images")
    return p.parse_args(argv)


def script_model(model):
    """``torch.jit.script`` of a torchvision detection model in eval mode (its warning silenced)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="RCNN always returns")
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit")
        return torch.jit.script(model.eval())


@torch.no_grad()
def compare_outputs(model, scripted, images: list[torch.Tensor]) -> list[str]:
    """Differences between the eager and the scripted model's outputs on ``images``; ``[]`` when equal."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="RCNN always returns")
        eager, (_, exported) = model(images), scripted(images)
    diffs = []
    for i, (a, b) in enumerate(zip(eager, exported, strict=True)):
        for k in a:
            if a[k].shape != b[k].shape or not torch.equal(a[k], b[k]):
                diffs.append(f"image {i}: {k} differs")
    return diffs


def check_images(seed: int = 0) -> list[torch.Tensor]:
    """Two shapes images of different sizes (objects a model finds, so the comparison covers detections),
    as float [0, 1] tensors."""
    from course_lib.data.shapes import render_sample

    return [torch.from_numpy(render_sample(seed, i, size).image).permute(2, 0, 1).float() / 255
            for i, size in enumerate(((128, 128), (96, 160)))]


def main(argv=None) -> int:
    args = parse_args(argv)
    model, classes, _ = load_model_file(args.model)
    scripted = script_model(model)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit")
        out = write_atomic(Path(args.out), lambda f: torch.jit.save(scripted, f))
        reloaded = torch.jit.load(str(out))
    diffs = compare_outputs(model, reloaded, check_images(args.seed))
    if diffs:
        out.unlink()
        raise CommandError(f"the exported model's outputs differ from the eager model's ({'; '.join(diffs)}); "
                           f"{out} removed")
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB, TorchScript; classes {classes[1:]}); "
          "its outputs equal the eager model's. Load it with torch.jit.load(path)")
    return 0
