"""Input pipelines for training: from the prepared shards (``stages/shards.py``), or straight from the
images for tiny sets. Both give (image as float32 pixels 0-255, {partitioning: class}, {partitioning:
weight}); a photo in no cell of a partitioning (class -1) has weight 0 there, so it teaches nothing to
that output and everything to the others.

Training gets the report's random crop of the evaluation-scale square; validation its centre crop.
"""

from __future__ import annotations

import numpy as np

from deeploc import images

SHUFFLE_BUFFER_BYTES = 512 << 20   # serialized records held for shuffling (raw pixels: ~340 KB each at 224 px)
READ_BUFFER_BYTES = 8 << 20


def _crop(side: int, input_size: int, train: bool, seed: int):
    import tensorflow as tf

    if train:
        return lambda img: tf.image.random_crop(img, (input_size, input_size, 3), seed=seed)
    off = (side - input_size) // 2
    return lambda img: img[off:off + input_size, off:off + input_size, :]


def _targets(classes: dict):
    """({output: class, -1 -> 0}, {output: 1.0, or 0.0 where the class is -1})."""
    import tensorflow as tf

    return ({o: tf.maximum(c, 0) for o, c in classes.items()},
            {o: tf.cast(c >= 0, tf.float32) for o, c in classes.items()})


def from_shards(files: list[str], outputs: list[str], side: int, input_size: int, batch: int, train: bool,
                seed: int):
    """Shard files (local paths) -> batches. Training shuffles the file order every epoch, interleaves
    several files, shuffles serialized records (cheap to hold), and decodes in parallel."""
    import tensorflow as tf

    spec = {"image": tf.io.FixedLenFeature([], tf.string),
            **{f"class_{o}": tf.io.FixedLenFeature([], tf.int64) for o in outputs}}
    crop = _crop(side, input_size, train, seed)

    def decode(record):
        ex = tf.io.parse_single_example(record, spec)
        img = tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8), (side, side, 3))
        y, w = _targets({o: tf.cast(ex[f"class_{o}"], tf.int32) for o in outputs})
        return tf.cast(crop(img), tf.float32), y, w

    ds = tf.data.Dataset.from_tensor_slices(list(files))
    if train:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, "GZIP", READ_BUFFER_BYTES),
                       cycle_length=min(8, max(1, len(files))), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=not train)
    if train:
        ds = ds.shuffle(max(64, SHUFFLE_BUFFER_BYTES // (side * side * 3)), seed=seed, reshuffle_each_iteration=True)
    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(tf.data.AUTOTUNE)


def ids_and_images(files: list[str], side: int, input_size: int, batch: int):
    """Shard files -> (centre crops, photo ids) batches, in file order: for one pass over every photo."""
    import tensorflow as tf

    spec = {"image": tf.io.FixedLenFeature([], tf.string), "photo_id": tf.io.FixedLenFeature([], tf.int64)}
    crop = _crop(side, input_size, False, 0)

    def decode(record):
        ex = tf.io.parse_single_example(record, spec)
        return tf.cast(crop(tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8), (side, side, 3))), tf.float32), ex["photo_id"]

    return (tf.data.TFRecordDataset(list(files), "GZIP", READ_BUFFER_BYTES)
            .map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(tf.data.AUTOTUNE))


def from_images(photos, outputs: list[str], bucket, input_size: int, batch: int, train: bool, seed: int):
    """Photos (object_key, class_<output>) read from the bucket every epoch: for tiny sets only."""
    import tensorflow as tf

    side = images.eval_side(input_size)
    keys = photos["object_key"].to_numpy(str)
    classes = {o: photos[f"class_{o}"].to_numpy(np.int32) for o in outputs}
    crop = _crop(side, input_size, train, seed)

    def load(key):
        return images.resize_square(images.read_rgb(bucket, key.decode(), min_side=side), side)

    ds = tf.data.Dataset.from_tensor_slices((keys, classes))
    if train:
        ds = ds.shuffle(len(keys), seed=seed, reshuffle_each_iteration=True)  # keys and classes only: cheap

    def item(key, cls):
        img = tf.ensure_shape(tf.numpy_function(load, [key], tf.uint8), (side, side, 3))
        y, w = _targets(cls)
        return tf.cast(crop(img), tf.float32), y, w

    return ds.map(item, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(tf.data.AUTOTUNE)
