"""The generated data every notebook reads, written once before notebooks run side by side or read-only.

The test suite calls it before its parallel workers start (they would race to write the same files), and the
grader before it runs students' notebooks in sandboxes where the data folder is read-only.
"""

from __future__ import annotations

NOTEBOOK_SPLITS = ("val", "new_train", "new_val")  # the shapes splits notebooks 04-08 read


def write_notebook_data(progress: bool = False) -> None:
    """Write (or reuse) the shapes splits and the nuclei tiles the notebooks read."""
    from course_lib.data.nuclei import write_nuclei_folders
    from course_lib.data.shapes import shapes_split

    for split in NOTEBOOK_SPLITS:
        shapes_split(split, progress=progress)
    write_nuclei_folders()
