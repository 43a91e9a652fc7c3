"""Benchmark: notebook 06's learning-rate schedules, the table in its section 4.

Fine-tunes the course checkpoint on the new shapes exactly as notebook 06 does on a CPU (200 images, 2 epochs of
batches of 4 = 100 iterations, SGD momentum 0.9, weight decay 0.0005, a 20-iteration linear warm-up, seed 0) with
each schedule after the warm-up, then prints segm AP and AP50 on the 100 validation images, one row per schedule.
A different CPU (AVX2 or AVX-512) or thread count moves the figures by a few hundredths.

Run:  python benchmarks/bench_schedules.py [--threads 2]      (about a minute per schedule on 2 idle cores)
"""

from __future__ import annotations

import argparse
import math
import tempfile

import torch

from course_lib import (
    CocoInstanceDataset,
    categories_of,
    collate_fn,
    evaluate,
    fit,
    get_instance_segmentation_model,
    get_transform,
    load_course_model,
    make_sgd,
    shapes_split,
    warmup_cosine,
    warmup_step,
)

TRAIN_IMAGES, EPOCHS, BATCH, WARMUP = 200, 2, 4, 20


def schedules(total: int) -> dict[str, tuple[float, object]]:
    """name -> (peak lr, lr_lambda_fn), as notebook 06's table lists them."""
    return {
        "lr 0.005, x0.1 after 75 % of the iterations": (0.005, lambda t: warmup_step(t, WARMUP, [int(0.75 * t)], 0.1)),
        "lr 0.005, x0.1 after 90 %": (0.005, lambda t: warmup_step(t, WARMUP, [int(0.9 * t)], 0.1)),
        "lr 0.005, cosine decay to 0": (0.005, lambda t: warmup_cosine(t, WARMUP, min_factor=0.0)),
        "lr 0.005, constant": (0.005, lambda t: warmup_step(t, WARMUP, [], 0.1)),
        "lr 0.01, x0.1 after 75 %": (0.01, lambda t: warmup_step(t, WARMUP, [int(0.75 * t)], 0.1)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train_file, val_file = shapes_split("new_train"), shapes_split("new_val")
    train_full = CocoInstanceDataset(train_file.parent / "images", train_file, get_transform(train=True))
    val_set = CocoInstanceDataset(val_file.parent / "images", val_file, get_transform(train=False))
    class_names = categories_of(train_file)
    train_set = torch.utils.data.Subset(train_full, range(TRAIN_IMAGES))
    total = EPOCHS * math.ceil(TRAIN_IMAGES / BATCH)
    print(f"| schedule after the warm-up ({total} iterations, torch threads {torch.get_num_threads()}) "
          "| segm AP | segm AP50 |\n|---|---|---|")
    for name, (lr, lr_lambda_fn) in schedules(total).items():
        torch.manual_seed(0)  # the new predictors' random start, as in the notebook
        model = get_instance_segmentation_model(len(class_names), load_course_model())
        with tempfile.TemporaryDirectory() as out:
            fit(model, train_set, epochs=EPOCHS, batch_size=BATCH, device=torch.device("cpu"), out_dir=out, seed=0,
                collate_fn=collate_fn, resume=False, config={"classes": class_names}, progress=False,
                optimizer_fn=lambda params, lr=lr: make_sgd(params, lr=lr, momentum=0.9, weight_decay=0.0005),
                lr_lambda_fn=lr_lambda_fn)
        segm = evaluate(model, val_set, torch.device("cpu"), progress=False)["segm"]
        print(f"| {name} | {segm['AP']:.3f} | {segm['AP50']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
