"""The shard cache with real files: every file comes back whole and in order, the folder stays within
its limit (plus the files a reader may still hold), a large enough cache downloads each file once, and
the training pipeline reads records through it."""

import os

import numpy as np

from deeploc.storage.lake import Lake
from deeploc.storage.shard_cache import ShardCache


def _lake_with_files(tmp_path, n=12, size=1000):
    lake = Lake(str(tmp_path / "lake"))
    rng = np.random.default_rng(0)
    contents = {}
    for i in range(n):
        rel = f"shards/part-{i:02d}.bin"
        contents[rel] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        lake.write_bytes(lake.path(rel), contents[rel])
    return lake, contents


def test_files_come_back_whole_and_the_folder_stays_bounded(tmp_path):
    lake, contents = _lake_with_files(tmp_path)
    cache = ShardCache(lake, str(tmp_path / "cache"), max_bytes=3000, ahead=2, protect=2)
    order = [lake.path(r) for r in reversed(list(contents))]
    seen = []
    for path, rel in zip(cache.paths(order), reversed(list(contents))):
        assert open(path, "rb").read() == contents[rel]
        held = [f for f in os.listdir(tmp_path / "cache") if not f.endswith(".part")]
        # the limit (3 files) plus the files being fetched ahead (2), never the whole set (12)
        assert len(held) <= 3 + 2, held
        seen.append(path)
    assert len(seen) == 12 and cache.downloads == 12


def test_a_cache_as_large_as_the_shards_downloads_each_file_once(tmp_path):
    lake, contents = _lake_with_files(tmp_path)
    cache = ShardCache(lake, str(tmp_path / "cache"), max_bytes=10**9)
    order = [lake.path(r) for r in contents]
    for _ in range(3):  # three epochs
        assert [open(p, "rb").read() for p in cache.paths(order)] == list(contents.values())
    assert cache.downloads == 12


def test_training_records_stream_through_the_cache(tmp_path):
    import tensorflow as tf

    from deeploc.learn import training_data
    from deeploc.learn.tfrecord import example

    lake = Lake(str(tmp_path / "lake"))
    ids = []
    for f in range(40):
        local = tmp_path / f"s{f}.tfrecord"
        with tf.io.TFRecordWriter(str(local)) as w:
            for i in range(3):
                ids.append(f * 10 + i)
                w.write(example(b"jpeg", f * 10 + i, {"fine": i}))
        lake.put_file(str(local), lake.path(f"shards/train/part-{f:02d}.tfrecord"))
    cache = ShardCache(lake, str(tmp_path / "cache"), max_bytes=1)  # everything past the reader's window goes
    source = training_data.Source(["fine"], files=[lake.path(f"shards/train/part-{f:02d}.tfrecord") for f in range(40)],
                                  cache=cache)
    got = [int(pid) for _, pid, _ in source.records()]
    assert sorted(got) == ids and cache.downloads == 40  # interleaved: every record once
    assert len(os.listdir(tmp_path / "cache")) <= cache.protect + cache.ahead < 40
