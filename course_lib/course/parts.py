"""Your Mask R-CNN's parts: which saved exercises (``course_lib.course.saved``) become which stage functions of
notebook 07's model, and the table of whose each part is (yours, or the course's and why).
"""

from __future__ import annotations

from pathlib import Path

from course_lib.course.saved import read_index, saved_dir

#: Which saved exercise becomes which part of notebook 07's model: ``plug_in`` name -> (notebook, checker).
PARTS = {
    "box_iou": ("02_anchors_rpn", "check_box_iou"),
    "nms": ("02_anchors_rpn", "check_nms"),
    "encode_boxes": ("02_anchors_rpn", "check_encode_boxes"),
    "decode_boxes": ("02_anchors_rpn", "check_decode_boxes"),
    "rpn_loss": ("02_anchors_rpn", "check_rpn_loss"),
    "assign_fpn_levels": ("03_roi_align", "check_assign_fpn_levels"),
    "roi_align": ("03_roi_align", "check_roi_align_one_box"),  # the batch built on your one-box function
    "fastrcnn_loss": ("04_heads_mask_branch", "check_fastrcnn_loss"),
    "maskrcnn_loss": ("04_heads_mask_branch", "check_maskrcnn_loss"),
    "paste_mask": ("04_heads_mask_branch", "check_paste_mask"),
}


def load_module(folder: Path, notebook: str) -> dict:
    """The namespace of a saved module (its functions and imports), run on its own."""
    path = folder / f"{notebook}.py"
    namespace: dict = {"__name__": f"saved_{notebook}"}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
    return namespace


def your_parts(folder: Path | None = None) -> tuple[dict, list[tuple[str, str, str]]]:
    """({plug_in name: your function}, one row per part: (part, whose, why)) from the saved functions."""
    from course_lib.course.progress import load as load_progress
    from course_lib.detection.mask_rcnn import roi_align_from_one_box

    folder = folder or saved_dir()
    index = read_index(folder) if folder else {}
    progress = load_progress()
    functions, rows, modules = {}, [], {}
    for part, (notebook, checker) in PARTS.items():
        entry = index.get(notebook, {}).get(checker)
        if entry is None:
            tried = progress.get(notebook, {}).get(f"exercise:{checker}")
            why = "not done yet" if tried is None else "not passing yet" if not tried.get("passed") else \
                "passed outside your workspace: run it in ./course lab to save it"
            rows.append((part, "the course's", f"{checker} ({notebook}): {why}"))
            continue
        try:
            namespace = modules.setdefault(notebook, load_module(folder, notebook))
            fn = namespace[entry["function"]]
        except Exception as exc:  # a saved module that no longer runs on its own
            rows.append((part, "the course's", f"saved/{notebook}.py does not load: {type(exc).__name__}: {exc}"))
            continue
        functions[part] = roi_align_from_one_box(fn) if part == "roi_align" else fn
        rows.append((part, "yours", f"{entry['function']} from {notebook}, saved {entry['saved']}"))
    return functions, rows
