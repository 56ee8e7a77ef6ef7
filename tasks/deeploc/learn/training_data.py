"""Input pipelines for training: from the prepared shards (``stages/shards.py``: each photo as JPEG, its
shorter side resized once), or straight from the images for tiny sets (turned into the same JPEG
records on the fly). Both give (uint8 pixels, {partitioning: class}, {partitioning: weight}); the
network normalises the pixels itself, by its backbone's rule (``deeploc.learn.model``). A photo in no cell
of a partitioning keeps class -1: the loss ignores it there (``ignore_class``) and its weight 0 keeps
it out of that output's accuracy.

Training applies the reference augmentation: a random crop of 66-100 % of the photo's area with an
aspect ratio between 3/4 and 4/3, resized to the input, flipped left-right half the time; the JPEG is
decoded only inside the crop. Each photo's crop and flip come from (seed, epoch, photo id) and each
epoch's order from (seed, epoch), so epoch k is the same whether or not the run was resumed before it.
Validation and the kNN and calibration passes apply the evaluation transform (as ``Predictor.prepare``:
the centre square of 224/256 of the shorter side, resized to the input).
"""

from __future__ import annotations

import hashlib

import numpy as np

from deeploc.sources import images

AREA = (0.66, 1.0)                 # RandomResizedCrop's scale: share of the photo's area
ASPECT = (3 / 4, 4 / 3)
SHUFFLE_RECORDS = 8192             # JPEG records held for shuffling (~40 KB each at 320 px)
READ_BUFFER_BYTES = 8 << 20


def _mapped(ds, fn):
    """``ds.map(fn)`` in parallel, traced as written (as is the shard reader's ``interleave``). These
    functions have no Python control flow on tensors, so autograph has nothing to convert; each function
    it converts becomes a source file in the temporary folder, which a process that is killed or ends by
    ``os._exit`` (a Spark worker, an Airflow task) leaves there."""
    import tensorflow as tf

    return ds.map(tf.autograph.experimental.do_not_convert(fn), num_parallel_calls=tf.data.AUTOTUNE)


def _targets(classes: dict):
    """(the classes as they are, -1 included, {output: 1.0, or 0.0 where the class is -1})."""
    import tensorflow as tf

    return classes, {o: tf.cast(c >= 0, tf.float32) for o, c in classes.items()}


def _resized(pixels, input_size: int):
    import tensorflow as tf

    out = tf.image.resize(pixels, (input_size, input_size), method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)


def augment(jpeg, seeds, input_size: int):
    """The reference training transform of one JPEG, decided by ``seeds`` (int64 [2])."""
    import tensorflow as tf

    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.io.extract_jpeg_shape(jpeg), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seeds, min_object_covered=0.0,
        aspect_ratio_range=ASPECT, area_range=AREA, max_attempts=10, use_image_if_no_bounding_boxes=True)
    crop = tf.io.decode_and_crop_jpeg(jpeg, tf.stack([begin[0], begin[1], size[0], size[1]]), channels=3)
    return tf.image.stateless_random_flip_left_right(_resized(crop, input_size), seed=seeds + tf.constant([0, 1], tf.int64))


def centre(jpeg, input_size: int):
    """The evaluation transform of one JPEG: the centre square of 1 / EVAL_SCALE of its shorter side."""
    import tensorflow as tf

    shape = tf.io.extract_jpeg_shape(jpeg)
    side = tf.cast(tf.round(tf.cast(tf.reduce_min(shape[:2]), tf.float32) * input_size / images.eval_side(input_size)),
                   tf.int32)
    box = tf.stack([(shape[0] - side) // 2, (shape[1] - side) // 2, side, side])
    return _resized(tf.io.decode_and_crop_jpeg(jpeg, box, channels=3), input_size)


def _shard_records(files: list[str], outputs: list[str], cache=None):
    """Shard files, in the given order, -> (jpeg, photo id, {output: class}). With a ``ShardCache`` the
    files are lake locations, streamed through it."""
    import tensorflow as tf

    spec = {"image": tf.io.FixedLenFeature([], tf.string), "photo_id": tf.io.FixedLenFeature([], tf.int64),
            **{f"class_{o}": tf.io.FixedLenFeature([], tf.int64) for o in outputs}}

    def parse(record):
        ex = tf.io.parse_single_example(record, spec)
        return ex["image"], ex["photo_id"], {o: tf.cast(ex[f"class_{o}"], tf.int32) for o in outputs}

    if cache is None:
        ds = tf.data.Dataset.from_tensor_slices(list(files))
    else:
        ds = tf.data.Dataset.from_generator(lambda: cache.paths(files), output_signature=tf.TensorSpec((), tf.string))
    read = tf.autograph.experimental.do_not_convert(lambda f: tf.data.TFRecordDataset(f, "", READ_BUFFER_BYTES))
    ds = ds.interleave(read,
                       cycle_length=min(8, max(1, len(files))), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _mapped(ds, parse)


def _image_records(photos, outputs: list[str], bucket, short_side: int):
    """Photos (object_key, photo_id, class_<output>) read from the bucket -> the records a shard would hold."""
    import tensorflow as tf

    def load(key):
        rgb = images.read_rgb(bucket, key.decode(), min_side=short_side)
        return images.encode_jpeg(images.resize_short(rgb, short_side))

    classes = {o: photos[f"class_{o}"].to_numpy(np.int32) for o in outputs}
    ds = tf.data.Dataset.from_tensor_slices((photos["object_key"].to_numpy(str), photos["photo_id"].to_numpy(np.int64),
                                             classes))
    return _mapped(ds, lambda key, pid, cls: (tf.ensure_shape(tf.numpy_function(load, [key], tf.string), ()), pid, cls))


class Source:
    """Where the records come from: shard files (local paths, or lake locations streamed through a
    ``ShardCache``), or (tiny sets) the photos themselves."""

    def __init__(self, outputs: list[str], files: list[str] | None = None, photos=None, bucket=None,
                 short_side: int | None = None, cache=None):
        self.outputs, self.files, self.photos, self.bucket, self.short_side = outputs, files, photos, bucket, short_side
        self.cache = cache

    def records(self, rng: np.random.Generator | None = None):
        """All records, in an order drawn from ``rng`` (file order, or photo order), else as stored."""
        if self.files is not None:
            files = list(self.files) if rng is None else [self.files[i] for i in rng.permutation(len(self.files))]
            return _shard_records(files, self.outputs, self.cache)
        photos = self.photos if rng is None else self.photos.iloc[rng.permutation(len(self.photos))]
        return _image_records(photos, self.outputs, self.bucket, self.short_side)


def epoch(source: Source, input_size: int, batch: int, seed: int, k: int):
    """Training epoch ``k`` (from 0): its order and every crop are functions of (seed, k) alone."""
    import tensorflow as tf

    def item(jpeg, pid, classes):
        seeds = tf.stack([tf.constant(seed * 1_000_003 + k, tf.int64), pid])
        y, w = _targets(classes)
        return augment(jpeg, seeds, input_size), y, w

    ds = source.records(np.random.default_rng([seed, k]))
    ds = ds.shuffle(SHUFFLE_RECORDS, seed=seed * 1_000_003 + k, reshuffle_each_iteration=False)
    return _mapped(ds, item).batch(batch)


def training(source: Source, input_size: int, batch: int, seed: int, first: int, epochs: int):
    """Epochs ``first`` .. ``epochs - 1`` one after another (for ``fit`` with ``steps_per_epoch``)."""
    import tensorflow as tf

    ds = epoch(source, input_size, batch, seed, first)
    for k in range(first + 1, epochs):
        ds = ds.concatenate(epoch(source, input_size, batch, seed, k))
    return ds.prefetch(tf.data.AUTOTUNE)


def first_batch_digest(ds) -> str:
    """A short sha256 of a dataset's first batch (pixels and classes). Training logs it for the epoch it
    starts at, so a resumed run can be checked against what an unbroken run fed at that epoch."""
    pixels, targets, _ = next(iter(ds.take(1)))
    digest = hashlib.sha256(pixels.numpy().tobytes())
    for name in sorted(targets):
        digest.update(targets[name].numpy().tobytes())
    return digest.hexdigest()[:16]


def validation(source: Source, input_size: int, batch: int):
    import tensorflow as tf

    def item(jpeg, pid, classes):
        y, w = _targets(classes)
        return centre(jpeg, input_size), y, w

    return _mapped(source.records(), item).batch(batch).prefetch(tf.data.AUTOTUNE)


def ids_and_images(source: Source, input_size: int, batch: int):
    """(evaluation crops, photo ids) batches in stored order: one pass over every photo."""
    import tensorflow as tf

    return (_mapped(source.records(), lambda jpeg, pid, _: (centre(jpeg, input_size), pid))
            .batch(batch).prefetch(tf.data.AUTOTUNE))
