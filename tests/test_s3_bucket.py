"""The image stages against an S3 bucket served by moto: listing, per-object HEAD, throttling."""

import os

import boto3
import pytest
from conftest import share, table

import moto_s3
from deeploc.sources.bucket import Bucket, ListingFailed
from deeploc.stages import availability, faces


@pytest.fixture(scope="module")
def s3(demo_set):
    """A moto S3 server holding the demo bucket, public-read like multimedia-commons."""
    server, url = moto_s3.start()
    client = boto3.client("s3", endpoint_url=url, region_name="us-west-2",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="mmc", CreateBucketConfiguration={"LocationConstraint": "us-west-2"},
                         ACL="public-read")
    root = demo_set[0] / "bucket"
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                client.put_object(Bucket="mmc", Key=os.path.relpath(path, root), Body=f.read(), ACL="public-read")
    yield url
    server.stop()


@pytest.fixture(scope="module")
def meta_lake(ingested, tmp_path_factory):
    """A lake of its own holding the ingested metadata table (the availability runs here rewrite images)."""
    lake = tmp_path_factory.mktemp("s3lake")
    share(ingested[0], lake, "metadata")
    return str(lake)


@pytest.mark.slow  # Spark over moto: a minute for both
@pytest.mark.parametrize("check", ["list", "head"])
def test_availability_and_faces_on_s3(s3, meta_lake, demo_set, check):
    e = demo_set[1]["expected"]
    bucket = Bucket("s3://mmc", unsigned=True, endpoint_url=s3)
    ledger = availability.run(meta_lake, bucket, check=check)
    assert ledger["check"] == check
    assert ledger["out"] == e["availability_out"] and ledger["rejects"] == e["availability_rejects"]
    if check == "list":  # a later run (another slice, a rerun) reuses the listing kept in the lake
        assert ledger["prefixes_listed_now"] == ledger["prefixes"] > 0
        again = availability.run(meta_lake, bucket, check=check)
        assert again["prefixes_listed_now"] == 0 and again["out"] == ledger["out"]
        assert again["rejects"] == ledger["rejects"]
        fresh = availability.run(meta_lake, bucket, check=check, listing_max_age=0)
        assert fresh["prefixes_listed_now"] == ledger["prefixes"] and fresh["out"] == ledger["out"]
    if check == "head":
        ledger = faces.run(meta_lake, bucket)
        assert ledger["out"] == e["faces_out"] and ledger["rejects"] == e["faces_rejects"]
        assert len(table(meta_lake, "faces")) == e["faces_out"]


def test_choose_check_rule():
    s3_bucket, local = Bucket("s3://b"), Bucket("/tmp/b")
    assert availability.choose_check(s3_bucket, keys=10_000, prefixes=3_700) == "head"     # sparse slice
    assert availability.choose_check(s3_bucket, keys=1_000_000, prefixes=4_096) == "list"  # full data
    assert availability.choose_check(local, keys=10, prefixes=10) == "list"


def _throttle(client, times):
    """Answer the next ``times`` ListObjectsV2 calls with 503 SlowDown, as S3 does under load."""
    from botocore.awsrequest import AWSResponse

    calls = {"n": 0}

    class Raw:
        def stream(self, **_):
            yield b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"

    def handler(request, **_):
        calls["n"] += 1
        if calls["n"] <= times:
            return AWSResponse(request.url, 503, {}, Raw())
        return None

    client.meta.events.register("before-send.s3.ListObjectsV2", handler)
    return calls


@pytest.mark.slow  # a moto server and Spark
def test_throttling_is_retried_then_fails_clearly(s3, demo_set):
    prefix = next(p for p in os.listdir(demo_set[0] / "bucket" / "data" / "images"))
    patient = Bucket("s3://mmc", unsigned=True, endpoint_url=s3, max_attempts=4)
    calls = _throttle(patient.client(), times=2)
    exists, objects = patient.list_prefix(prefix)
    assert exists and objects and calls["n"] >= 3

    hopeless = Bucket("s3://mmc", unsigned=True, endpoint_url=s3, max_attempts=2)
    _throttle(hopeless.client(), times=100)
    with pytest.raises(ListingFailed, match=f"data/images/{prefix}/ failed after 2 attempts"):
        hopeless.list_prefix(prefix)
