"""Fine-tuning a Mask R-CNN on new classes: the command line. Taught in: 06_fine_tuning.

    ./course finetune                       # course checkpoint -> shapes new_train, eval on new_val
    ./course finetune --data-train my/train.json --data-val my/val.json --epochs 10 --out runs/mine
    torchrun --nproc_per_node=2 -m course_lib.training.finetune --epochs 10    # DistributedDataParallel, 2 processes

Crowd regions (``iscrowd=1``: COCO's crowds, VOC's difficult objects as ``coco build`` keeps them) are set
aside in training, as torchvision's reference scripts do (``drop_crowd=True``), and the command says how many.

The model's box and mask predictors are replaced for ``1 + the largest category id`` classes (index 0 is
background) and the whole model is trained with torchvision's recipe: SGD (lr 0.005, momentum 0.9,
weight decay 0.0005), a linear warm-up, then the LR times 0.1 at ``--lr-steps`` (``StepLR``; by default after 3/4 of the epochs);
``--schedule cosine`` decays it smoothly instead. ``<out>/last.pt`` is written after every epoch and the
same command resumes after the last finished epoch. Resuming never lies: if the data (the train file's
content), the model or an optimiser/schedule setting differs from the run in ``--out``, the command
refuses and lists the differences; ``--fresh`` starts over, ``--accept-changes`` continues with the new
settings (recorded in the stored config under ``changes``). Before training, the train and val files
are validated (``validate_coco``, images included) and must agree on their categories. At the end, rank 0
evaluates on the val set (COCO bbox and segm AP) and writes ``<out>/model.pt`` (weights-only, float32,
with the config and class names: ``load_finetuned`` reads it) and ``<out>/metrics.json``. Each file is
read once per run (``model_file.read_once``): the starting model file, and ``last.pt`` when resuming
(checked for changed settings, then resumed from).

Images live in the file's ``info["image_root"]`` (what ``./course coco build`` records), else in
``<annotations dir>/images`` (the shapes layout), else ``<annotations dir>/../images`` (the usual
``annotations/`` + ``images/`` export), unless ``--train-root``/``--val-root`` say otherwise.

Small-data defaults: the warm-up lasts min(50, 10 % of all iterations); ``--no-progress`` hides the bars
but keeps one line per epoch; ``--image-size`` (default: the model's own, 128 for the course model)
is the size every image is resized to.

Under ``torchrun`` every process trains on its share of the data (``DistributedSampler``;
``--batch-size`` is per process) in ``DistributedDataParallel``: NCCL on CUDA (one GPU per process),
gloo on the CPU. Only rank 0 prints, checkpoints, evaluates and exports.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
from pathlib import Path

import torch

from course_lib.data.coco_dataset import CocoInstanceDataset, collate_fn, get_transform
from course_lib.data.coco_meta import categories_of, image_root_of
from course_lib.detection.course_model import (
    CourseModelSpec,
    get_instance_segmentation_model,
    load_maskrcnn_resnet50_fpn,
)
from course_lib.detection.model_file import COURSE_ARCH, R50_ARCH, forget, read_once, save_model_file
from course_lib.training.checkpoint import load_checkpoint
from course_lib.training.cli_args import add_run_args
from course_lib.training.data_checks import check_categories, check_crowds, check_data
from course_lib.training.engine import (
    data_wait,
    distributed_info,
    fit,
    make_sgd,
    warmup_cosine,
    warmup_step,
)
from course_lib.training.evaluation import evaluate, format_report
from course_lib.training.model_file import load_model_file, rounded_metrics, set_image_size
from course_lib.utils.device import get_device, seed_everything
from course_lib.utils.errors import CommandError
from course_lib.utils.files import write_json_atomic
from course_lib.utils.paths import CHECKPOINT

LR_STEP_FRACTION = 0.75  # the default LR drop, as a fraction of the epochs


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="course finetune", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-train", default=None,
                   help="COCO annotation file to train on (default: the shapes split new_train)")
    p.add_argument("--data-val", default=None, help="COCO annotation file to evaluate on (default: new_val)")
    p.add_argument("--train-root", default=None, help="image folder of --data-train (default: its info image_root, <its dir>/images "
                        "or <its dir>/../images)")
    p.add_argument("--val-root", default=None, help="image folder of --data-val (default: as --train-root)")
    p.add_argument("--model", default="course",
                   help="'course' (the course checkpoint), 'resnet50' (torchvision's maskrcnn_resnet50_fpn, "
                        "COCO weights when cached), or a course-format .pt file")
    add_run_args(p, epochs=4, batch_size=4, lr=0.005, weight_decay=0.0005, warmup_iters=None, out="runs/finetune",
                 lr_help="SGD learning rate",
                 warmup_help="linear warm-up length in iterations (default: min(50, 10%% of all iterations))")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--image-size", type=int, default=None,
                   help="resize images to this many pixels (default: the model's, 128 for the course model)")
    p.add_argument("--schedule", choices=["step", "cosine"], default="step")
    p.add_argument("--lr-steps", type=float, nargs="*", default=None,
                   help="epochs (fractions allowed: 1.5) after which the LR is multiplied by --gamma (schedule 'step'; "
                        "default: after 3/4 of --epochs, so the last quarter runs at the lower LR)")
    p.add_argument("--gamma", type=float, default=0.1)
    p.add_argument("--train-images", type=int, default=0, help="train on the first N images only (0: all)")
    p.add_argument("--val-images", type=int, default=0, help="evaluate on the first N images only (0: all)")
    p.add_argument("--accept-changes", action="store_true",
                   help="resume a run in --out although its data, model or optimiser settings differ")
    p.add_argument("--no-eval", action="store_true", help="skip the final evaluation")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (one line per epoch stays)")
    args = p.parse_args(argv)
    if args.lr_steps is None:  # scales with --epochs: 4 epochs drop at 3, 10 epochs at 7.5
        args.lr_steps = [LR_STEP_FRACTION * args.epochs]
    return args


def setup_distributed(device_arg: str | None) -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)``; under ``torchrun`` (``WORLD_SIZE`` > 1) also joins the process group.

    NCCL with one GPU per process (``LOCAL_RANK``) on CUDA, gloo on the CPU.
    """
    device = get_device(device_arg)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank, world = distributed_info()
    return rank, world, device


def build_model(model: str, *, num_classes: int, classes: list[str], verbose: bool = True):
    """``(model, config)``: the starting model (``'course'``, ``'resnet50'`` or a model file) with new
    predictors for ``num_classes`` (background included); ``config`` is what its model file will hold
    (the course model's whole spec, with the new classes)."""
    if model == "resnet50":
        net, source = load_maskrcnn_resnet50_fpn(verbose=verbose)
        config = {"arch": R50_ARCH, "source": source, "num_classes": num_classes, "classes": classes}
    else:
        path = CHECKPOINT if model == "course" else Path(model)
        net, _, stored = load_model_file(path)
        forget(path)  # its only reader: no need to keep it in read_once's memory
        arch = stored.get("arch", COURSE_ARCH)
        if arch == COURSE_ARCH:
            spec = CourseModelSpec.from_config(stored, strict=False).replace(num_classes=num_classes,
                                                                               classes=tuple(classes))
            config = {**spec.to_config(), "arch": arch}
        else:
            config = {**stored, "arch": arch, "num_classes": num_classes, "classes": classes}
    return get_instance_segmentation_model(num_classes, net).train(), config


def load_finetuned(path: str | Path, device: torch.device | str = "cpu"):
    """``(model in eval mode, class names)`` from a ``model.pt`` this command wrote (``weights_only=True``);
    ``training.model_file.load_model_file`` reads it, as every model file."""
    model, classes, _ = load_model_file(path, device)
    return model, classes


def _default_split(split: str, rank: int, world: int) -> Path:
    from course_lib.data.shapes import shapes_split

    if rank == 0:
        path = shapes_split(split, progress=False)
    if world > 1:  # rank 0 writes the images once; the others wait, then read
        torch.distributed.barrier()
    return path if rank == 0 else shapes_split(split, progress=False)


def _dataset(ann_file: Path, *, root: str | None, train: bool, limit: int):
    ds = CocoInstanceDataset(root=Path(root) if root else image_root_of(ann_file), ann_file=ann_file,
                             transforms=get_transform(train=train), drop_crowd=train)
    return torch.utils.data.Subset(ds, range(min(limit, len(ds)))) if limit else ds


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


# Settings that shape a run: resuming with another value of any of them would mix two runs.
RUN_KEYS = ("model", "epochs", "batch_size", "lr", "momentum", "weight_decay", "warmup_iters", "schedule",
            "lr_steps", "gamma", "train_images", "seed", "image_size")


def run_settings(args, *, train_file: Path, train_root: Path, warmup_iters: int) -> dict:
    settings = {k: getattr(args, k) for k in RUN_KEYS}
    settings.update(warmup_iters=warmup_iters, data_train=str(train_file.resolve()),
                    data_train_sha256=file_digest(train_file), train_root=str(train_root.resolve()))
    return settings


def setting_differences(old: dict, new: dict) -> list[str]:
    return [f"{k}: {old.get(k)!r} in the run, {new[k]!r} now" for k in new if old.get(k) != new[k]]


def main(argv=None) -> dict:
    args = parse_args(argv)
    rank, world, device = setup_distributed(args.device)
    try:
        with read_once():  # every file of the run is read from disk once
            return _run(args, rank, world, device)
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


def _run(args, rank: int, world: int, device: torch.device) -> dict:
    log = print if rank == 0 else (lambda *a, **k: None)
    seed_everything(args.seed)
    train_file = Path(args.data_train) if args.data_train else _default_split("new_train", rank, world)
    val_file = Path(args.data_val) if args.data_val else _default_split("new_val", rank, world)
    train_root = check_data(train_file, args.train_root, "--data-train")
    if not args.no_eval:
        check_data(val_file, args.val_root, "--data-val")
        check_categories(train_file, val_file)
    classes = categories_of(train_file)
    train_set = _dataset(train_file, root=args.train_root, train=True, limit=args.train_images)
    crowd_line = check_crowds(train_set, train_file)
    model, config = build_model(args.model, num_classes=len(classes), classes=classes, verbose=rank == 0)
    if args.image_size:
        set_image_size(model, args.image_size)
        config["image_size"] = args.image_size
    iters_per_epoch = math.ceil(math.ceil(len(train_set) / world) / args.batch_size)
    warmup = args.warmup_iters if args.warmup_iters is not None else \
        min(50, max(1, round(0.1 * args.epochs * iters_per_epoch)))
    if args.schedule == "step":
        milestones = [round(e * iters_per_epoch) for e in args.lr_steps]
        lr_lambda_fn = lambda total: warmup_step(total, warmup_iters=warmup, milestones=milestones, gamma=args.gamma)
    else:
        lr_lambda_fn = lambda total: warmup_cosine(total, warmup)
    settings = run_settings(args, train_file=train_file, train_root=train_root, warmup_iters=warmup)
    config = {**config, "args": vars(args), "run": settings, "changes": []}
    ckpt_path = Path(args.out) / "last.pt"
    apply_changes = None
    if ckpt_path.exists() and not args.fresh:
        ckpt = load_checkpoint(ckpt_path)  # read once: fit resumes from the same read
        stored = ckpt["config"]
        diffs = setting_differences(stored.get("run", {}), settings)
        if diffs and not args.accept_changes:
            raise CommandError(f"{args.out} holds a run with other settings ({'; '.join(diffs)}): "
                               "--fresh starts over, --accept-changes continues with the new settings")
        config["changes"] = list(stored.get("changes", []))
        if diffs:
            config["changes"].append({"after_epoch": ckpt["epoch"], "differences": diffs})
            log("accepting changed settings: " + "; ".join(diffs))

            def apply_changes(optimizer, scheduler):  # the optimiser state holds the old settings: apply the new
                for g in optimizer.param_groups:
                    g.update(initial_lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
                if scheduler is not None:
                    scheduler.base_lrs = [args.lr] * len(optimizer.param_groups)
                    for g, f in zip(optimizer.param_groups, scheduler.lr_lambdas, strict=True):
                        g["lr"] = args.lr * f(scheduler.last_epoch)
                else:
                    for g in optimizer.param_groups:
                        g["lr"] = args.lr
        del ckpt

    def on_resume(optimizer, scheduler):
        forget(ckpt_path)  # fit has its states: the read checkpoint need not stay in memory
        if apply_changes is not None:
            apply_changes(optimizer, scheduler)

    log(f"fine-tuning {config['arch']} for {len(classes)} classes ({', '.join(classes[1:])} + background) on "
        f"{len(train_set)} images, {world} process(es) on {device}, batch {args.batch_size} per process, "
        f"{iters_per_epoch} iterations per epoch, warm-up {warmup}")
    if crowd_line:
        log(crowd_line)
    t0 = time.time()
    history = fit(model, train_set, epochs=args.epochs, batch_size=args.batch_size, device=device,
                  out_dir=args.out, seed=args.seed, resume=not args.fresh, num_workers=args.workers,
                  collate_fn=collate_fn, config=config, stop_after=args.stop_after,
                  progress=not args.no_progress, epoch_lines=True, on_resume=on_resume,
                  optimizer_fn=lambda params: make_sgd(params, lr=args.lr, momentum=args.momentum,
                                                       weight_decay=args.weight_decay),
                  lr_lambda_fn=lr_lambda_fn)
    config = {k: v for k, v in config.items() if k not in ("args", "run", "changes")}
    result: dict = {"history": history, "classes": classes}
    done = bool(history) and history[-1]["epoch"] == args.epochs - 1
    if rank != 0:
        return result
    if history:
        last = history[-1]
        log(f"training: {sum(h['seconds'] for h in history):.1f} s over {len(history)} epoch(s); last epoch "
            f"waited {data_wait(last):.0%} of its time for data")
    if not done:
        log("stopped early; run the same command again to resume")
        return result
    out = Path(args.out)
    export = out / "model.pt"
    save_model_file(model, export, config=config)
    result["export"] = export
    if not args.no_eval:
        val_set = _dataset(val_file, root=args.val_root, train=False, limit=args.val_images)
        report = evaluate(model, val_set, device, progress=not args.no_progress)
        log(format_report(report))
        metrics = rounded_metrics(report)
        write_json_atomic({"metrics": metrics, "val": str(val_file), "val_images": len(val_set),
                           "train_seconds": round(sum(h["seconds"] for h in history), 1),
                           "wall_seconds": round(time.time() - t0, 1), "world_size": world,
                           "device": str(device)}, out / "metrics.json")
        result["metrics"] = metrics
    log(f"wrote {export}" + ("" if args.no_eval else f" and {out / 'metrics.json'}"))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
