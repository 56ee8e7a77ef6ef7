"""The partition stage on a small faces table: data set choice, labels, report, atomic output."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from deeploc.demo.places import sample_locations
from deeploc.stages import partition


@pytest.fixture
def lake(tmp_path):
    lat, lon, _ = sample_locations(np.random.default_rng(3), 3000)
    faces = pd.DataFrame({"photo_id": np.arange(10_000, 13_000), "object_key": "k", "latitude": lat,
                          "longitude": lon, "face_ratio": np.where(np.arange(3000) % 10 == 0, 0.2, 0.0),
                          "title": "t", "page_url": "http://x/", "license_name": "l"})
    for month, part in faces.groupby(np.arange(3000) % 2):
        folder = tmp_path / "faces" / f"upload_month=2010-0{month + 1}"
        folder.mkdir(parents=True)
        part.to_parquet(folder / "part-0.parquet", index=False)
    return tmp_path


def test_full_and_removal(lake):
    spec = "coarse:5:400,fine:5:100"
    full = partition.run(str(lake), "full", spec)
    removal = partition.run(str(lake), "removal", spec)
    assert full["images"] == 3000 and removal["images"] == 2700 and removal["removed_by_faces"] == 300
    labels = pd.read_parquet(lake / "partitions" / "removal" / "labels.parquet")
    assert (labels["face_ratio"] <= 0.035).all()
    train = labels[labels["split"] == "train"]
    assert ((train["label_fine"] >= 0).sum() + removal["partitionings"][1]["unassigned_train"]) == len(train)
    report = json.load(open(lake / "partitions" / "full" / "report.json"))
    assert report["order"] == ["coarse", "fine"] and report["hierarchy_unresolved"] == 0
    assert "| fine | 5 | 100 |" in (lake / "partitions" / "full" / "report.md").read_text()
    assert not [d for d in os.listdir(lake / "partitions") if ".tmp-" in d or ".old-" in d]


def test_split_does_not_move_on_rerun(lake):
    partition.run(str(lake), "full", "coarse:5:400,fine:5:100")
    first = pd.read_parquet(lake / "partitions" / "full" / "labels.parquet").set_index("photo_id")["split"]
    partition.run(str(lake), "full", "coarse:5:300,fine:5:50")
    again = pd.read_parquet(lake / "partitions" / "full" / "labels.parquet").set_index("photo_id")["split"]
    assert (first.sort_index() == again.sort_index()).all()


def test_unknown_dataset_and_missing_input(tmp_path, lake):
    with pytest.raises(ValueError, match="dataset"):
        partition.run(str(lake), "most")
    with pytest.raises(FileNotFoundError, match="ingestion DAG"):
        partition.run(str(tmp_path / "empty"))
