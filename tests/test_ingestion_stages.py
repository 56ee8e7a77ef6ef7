"""Availability and faces on the generated demo set: every planted defect found, counts exact."""

import os

import numpy as np
import pandas as pd
import pytest
from deeploc import facedetect
from deeploc.demo.render import paste_face, render_scene
from deeploc.stages import availability, faces, metadata


@pytest.fixture(scope="module")
def ingested(spark, demo_set, tmp_path_factory):
    out, manifest = demo_set
    lake = str(tmp_path_factory.mktemp("lake"))
    inputs = sorted(str(p) for p in (out / "metadata").glob("*.bz2"))
    ledgers = {"metadata": metadata.run(inputs, lake),
               "availability": availability.run(lake, str(out / "bucket")),
               "faces": faces.run(lake, str(out / "bucket"))}
    return lake, manifest["expected"], ledgers


def test_counts_match_the_manifest(ingested):
    lake, e, ledgers = ingested
    assert ledgers["metadata"]["out"] == e["metadata_out"]
    assert ledgers["metadata"]["rejects"] == e["metadata_rejects"]
    assert ledgers["availability"]["in"] == e["metadata_out"]
    assert ledgers["availability"]["out"] == e["availability_out"]
    assert ledgers["availability"]["rejects"] == e["availability_rejects"]
    assert ledgers["faces"]["out"] == e["faces_out"]
    assert ledgers["faces"]["rejects"] == e["faces_rejects"]


def test_faces_found_exactly_where_planted(ingested, demo_set):
    lake, e, _ = ingested
    got = pd.read_parquet(os.path.join(lake, "faces"))
    planted = pd.read_csv(demo_set[0] / "expected.csv")
    with_face = set(planted.loc[planted["face"] == 1, "photo_id"])
    assert set(got.loc[got["face_ratio"] > 0, "photo_id"]) == with_face
    assert (got.loc[got["photo_id"].isin(with_face), "face_ratio"] > 0.035).all()
    removal = got.query(faces.removal_filter())
    assert len(removal) == len(got) - len(with_face)


def test_rejects_carry_reasons_and_keys(ingested):
    lake, _, _ = ingested
    rej = pd.read_parquet(os.path.join(lake, "rejects", "faces"))
    assert set(rej["reject_reason"]) == {"undecodable"} and rej["detail"].str.len().gt(0).all()
    rej = pd.read_parquet(os.path.join(lake, "rejects", "availability"))
    assert rej["object_key"].str.startswith("data/images/").all()


def test_real_face_and_landscape():
    from skimage import data

    ratio, n = facedetect.face_ratio(data.astronaut())
    assert n >= 1 and ratio > 0.02
    rng = np.random.default_rng(0)
    assert facedetect.face_ratio(render_scene(40.0, 10.0, rng))[0] == 0.0
    assert facedetect.face_ratio(paste_face(render_scene(40.0, 10.0, rng), rng))[0] > 0.035
