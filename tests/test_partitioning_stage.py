"""The partitioning stage on a small faces table: image set choice, classes, report, atomic output."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import current, put_table

from deeploc.demo.places import sample_locations
from deeploc.stages import partitioning

N = 3000


@pytest.fixture
def lake(tmp_path):
    lat, lon, _ = sample_locations(np.random.default_rng(3), N)
    faces = pd.DataFrame({"photo_id": np.arange(10_000, 10_000 + N), "object_key": "k", "latitude": lat,
                          "longitude": lon, "face_ratio": np.where(np.arange(N) % 10 == 0, 0.2, 0.0),
                          "title": "t", "page_url": "http://x/", "license_name": "l", "license_url": "http://l/",
                          "user_nsid": [f"u{i % 300}" for i in range(N)], "user_nickname": "n",
                          "upload_month": np.where(np.arange(N) % 2 == 0, "2010-01", "2010-02")})
    put_table(tmp_path, "faces", faces)
    # Another run's files in the table's folder, not committed (yet): never read.
    pd.DataFrame({"photo_id": [1]}).to_parquet(tmp_path / "faces" / "data" / "x.parquet")
    return tmp_path


def test_full_and_removal(lake):
    spec = "coarse:5:400,fine:5:100"
    full = partitioning.run(str(lake), "full", partitionings=spec)
    removal = partitioning.run(str(lake), "removal", partitionings=spec)
    # every 10th photo carries a face ratio of 0.2 (planted above)
    assert full["images"] == N and removal["images"] == N - N // 10 and removal["removed_by_faces"] == N // 10
    photos = pd.read_parquet(current(lake, "partitionings/removal") / "photos.parquet")
    assert (photos["face_ratio"] <= 0.035).all()
    cells = pd.read_parquet(current(lake, "partitionings/removal") / "cells.parquet")
    train = photos[photos["split"] == "train"]
    for name in ("coarse", "fine"):  # each cell counts exactly the training photos given its class
        counted = cells[cells["partitioning"] == name].set_index("class")["count"].sort_index()
        given = train[f"class_{name}"][train[f"class_{name}"] >= 0].value_counts().sort_index()
        assert given.to_dict() == counted.to_dict()
    report = json.load(open(current(lake, "partitionings/full") / "report.json"))
    assert report["order"] == ["coarse", "fine"] and report["hierarchy_unresolved"] == 0
    assert "| fine | 5 | 100 |" in (current(lake, "partitionings/full") / "report.md").read_text()


def test_a_photos_split_does_not_move_when_photos_are_added(lake):
    partitioning.run(str(lake), "full", partitionings="coarse:5:400,fine:5:100", split_by="photo")
    first = pd.read_parquet(current(lake, "partitionings/full") / "photos.parquet").set_index("photo_id")["split"]
    lat, lon, _ = sample_locations(np.random.default_rng(9), 500)  # a new month arrives
    more = pd.DataFrame({"photo_id": np.arange(90_000, 90_500), "object_key": "k", "latitude": lat, "longitude": lon,
                         "face_ratio": 0.0, "title": "t", "page_url": "http://x/", "license_name": "l",
                         "license_url": "http://l/", "user_nsid": "u9", "user_nickname": "n", "upload_month": "2010-03"})
    put_table(lake, "faces", more)
    partitioning.run(str(lake), "full", partitionings="coarse:5:400,fine:5:100", split_by="photo")
    again = pd.read_parquet(current(lake, "partitionings/full") / "photos.parquet").set_index("photo_id")["split"]
    assert len(again) == len(first) + 500 and (again.loc[first.index] == first).all()


def test_unknown_image_set_and_missing_input(tmp_path, lake):
    with pytest.raises(ValueError, match="image set"):
        partitioning.run(str(lake), "most")
    with pytest.raises(FileNotFoundError, match="ingestion DAG"):
        partitioning.run(str(tmp_path / "empty"))
