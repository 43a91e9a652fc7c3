"""The course's training command: trains the course model on the shapes data and exports it.
Taught in: 06_fine_tuning (the engine); 00_overview uses the checkpoint it made.

    ./course train                        # train, evaluate, export data/course_maskrcnn.pt
    ./course train --epochs 2 --out runs/try --export ''   # a quick try, no export

Checkpoints go to ``<out>/last.pt`` after every epoch; running the same command again resumes after
the last finished epoch (``--fresh``, or ``--no-resume``, starts over). The export is a weights-only file with its
provenance beside it (``.json``): the command, seed, data, time and COCO AP on the val split.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

from course_lib.data.coco_dataset import CocoInstanceDataset, collate_fn, get_transform
from course_lib.data.shapes import shapes_split
from course_lib.detection.course_model import (
    COURSE_SPEC,
    build_course_model,
    load_course_model,
)
from course_lib.detection.model_file import save_model_file, write_provenance
from course_lib.training.cli_args import add_run_args
from course_lib.training.engine import fit, warmup_cosine
from course_lib.training.evaluation import evaluate
from course_lib.training.model_file import rounded_metrics
from course_lib.utils.device import get_device, seed_everything
from course_lib.utils.paths import CHECKPOINT


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="course train", description=__doc__.split("\n\n")[0])
    add_run_args(p, epochs=8, batch_size=8, lr=2e-3, weight_decay=1e-4, warmup_iters=200, out="runs/course",
                 lr_help="AdamW peak learning rate")
    p.add_argument("--train-images", type=int, default=2000)
    p.add_argument("--val-images", type=int, default=200)
    p.add_argument("--export", default=str(CHECKPOINT), help="where to write the final weights ('' = skip)")
    return p.parse_args(argv)


def _repo_relative(path: Path) -> str:
    from course_lib.utils.paths import REPO_ROOT

    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def export_checkpoint(model, path: str | Path, config: dict) -> Path:
    """Weights as float16 (half the size, same predictions to ~1e-3) plus the config to rebuild it:
    the one model-file format (``model_file``), written atomically."""
    return save_model_file(model, path, config=config, half=True)


def evaluate_checkpoint_metrics(model, val_set, device) -> dict:
    """COCO bbox and segm stats of ``model`` on ``val_set``, rounded as the provenance file stores them."""
    return rounded_metrics(evaluate(model, val_set, device, progress=False))


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = get_device(args.device)
    seed_everything(args.seed)
    train_file = shapes_split("train", num_images=args.train_images)
    val_file = shapes_split("val", num_images=args.val_images)
    train_set = CocoInstanceDataset(train_file.parent / "images", train_file, get_transform(train=True))
    val_set = CocoInstanceDataset(val_file.parent / "images", val_file, get_transform(train=False))
    config = COURSE_SPEC.to_config()  # the whole spec: stored in last.pt and in the exported model file
    model = build_course_model(COURSE_SPEC)
    print(f"training the course model on {len(train_set)} shapes images, {device}, seed {args.seed}")
    t0 = time.time()
    history = fit(model, train_set, epochs=args.epochs, batch_size=args.batch_size, device=device,
                  out_dir=args.out, seed=args.seed, resume=not args.fresh, num_workers=args.workers,
                  collate_fn=collate_fn, config=config, stop_after=args.stop_after,
                  optimizer_fn=lambda params: torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay),
                  lr_lambda_fn=lambda total: warmup_cosine(total, args.warmup_iters))
    train_seconds = sum(h["seconds"] for h in history)
    if len(history) < args.epochs:
        print(f"stopped after epoch {history[-1]['epoch']}; run the same command again to resume")
        return {"history": history}
    if args.export:
        # Evaluate what was exported (float16 weights), so the provenance is what a user loads.
        export = export_checkpoint(model.cpu(), args.export, config)
        model = load_course_model(export, device)
    metrics = evaluate_checkpoint_metrics(model, val_set, device)
    print(f"val segm AP {metrics['segm']['AP']:.3f}  AP50 {metrics['segm']['AP50']:.3f}   "
          f"bbox AP {metrics['bbox']['AP']:.3f}  AP50 {metrics['bbox']['AP50']:.3f}")
    if args.export:
        provenance = {
            "command": " ".join(["./course train", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
            "args": {**vars(args), "export": _repo_relative(export)}, "seed": args.seed,
            "data": {"train": {"split": "train", "num_images": args.train_images, "seed": 0},
                     "val": {"split": "val", "num_images": args.val_images, "seed": 1},
                     "generator": "course_lib.data.shapes.shapes_split"},
            "train_seconds": round(train_seconds, 1), "wall_seconds": round(time.time() - t0, 1),
            "device": str(device), "threads": torch.get_num_threads(), "machine": platform.machine(),
            "versions": {"course_lib": metadata.version("maskrcnn-step-by-step"), "torch": torch.__version__,
                         "python": platform.python_version()},
            "val_metrics": metrics,
            "epoch_losses": [{k: round(v, 4) for k, v in h.items() if k.startswith("loss")} for h in history],
            "checkpoint_bytes": export.stat().st_size,
        }
        write_provenance(export, provenance)
        print(f"exported {export} ({export.stat().st_size / 2**20:.1f} MB) with provenance")
    return {"history": history, "metrics": metrics}


if __name__ == "__main__":
    main()
