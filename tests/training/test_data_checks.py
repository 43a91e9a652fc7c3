"""course_lib.training.data_checks: the crowd regions training sets aside, counted over the images it reads,
and a train file with nothing but crowds refused."""

import json

import pytest
import torch

from course_lib.data.coco_dataset import CocoInstanceDataset
from course_lib.data.shapes import make_shapes_dataset
from course_lib.training.data_checks import check_crowds, crowd_regions
from course_lib.utils.errors import CommandError


@pytest.fixture(scope="module")
def shapes3(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("crowds"), 3, seed=5, progress=False)


def with_crowds(ann_file, which):
    """A copy of ``ann_file`` beside it whose annotations ``which(annotation)`` picks are crowd regions."""
    data = json.loads(ann_file.read_text())
    for a in data["annotations"]:
        a["iscrowd"] = int(which(a))
    out = ann_file.with_name(f"crowds_{len(list(ann_file.parent.glob('crowds_*')))}.json")
    out.write_text(json.dumps(data))
    return out


def test_crowd_regions_counts_over_the_images_a_dataset_or_subset_reads(shapes3):
    ann = with_crowds(shapes3, lambda a: a["id"] % 2 == 0)
    data = json.loads(ann.read_text())
    ds = CocoInstanceDataset(shapes3.parent / "images", ann, drop_crowd=True)
    crowds = sum(a["iscrowd"] for a in data["annotations"])
    assert crowd_regions(ds) == (crowds, len(data["annotations"]) - crowds) and crowds > 0
    first = [a for a in data["annotations"] if a["image_id"] == ds.ids[0]]
    assert crowd_regions(torch.utils.data.Subset(ds, [0])) == (sum(a["iscrowd"] for a in first),
                                                               sum(1 - a["iscrowd"] for a in first))
    line = check_crowds(ds, ann)
    assert line.startswith(f"set aside {crowds} crowd region(s) (iscrowd=1) of {len(data['annotations'])} annotations")


def test_no_crowds_say_nothing_and_only_crowds_are_refused(shapes3):
    assert check_crowds(CocoInstanceDataset(shapes3.parent / "images", shapes3), shapes3) == ""
    ann = with_crowds(shapes3, lambda a: True)
    with pytest.raises(CommandError, match=r"all \d+ annotation\(s\) are crowd regions .* --crowd-as-objects"):
        check_crowds(CocoInstanceDataset(shapes3.parent / "images", ann), ann)
