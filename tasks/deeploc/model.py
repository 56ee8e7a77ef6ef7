"""The geolocation network: a backbone and one softmax output per partitioning, and how it learns.

Pixels go in as 0-255 floats; scaling to [-1, 1] (what ResNetV2 expects) happens inside the model,
so everything that feeds it (training, Spark inference, single-photo prediction) feeds the same thing.
On a GPU the network computes in float16 (mixed precision) and its outputs stay float32.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)
SCHEDULES = ("cosine", "constant")
SMALL_CNN_FILTERS = (32, 64, 96, 128)   # the demo backbone's conv widths (the plan counts its parameters)


def configure_devices() -> dict:
    """Log the devices TensorFlow sees; on a GPU grow memory as needed and compute in mixed precision."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass
    keras.mixed_precision.set_global_policy("mixed_float16" if gpus else "float32")
    found = {"gpus": [g.name for g in gpus], "cpus": len(tf.config.list_physical_devices("CPU")),
             "mixed_precision": bool(gpus)}
    log.info("devices: %s", found if gpus else f"no GPU; {found['cpus']} CPU device(s), float32")
    return found


def _small_cnn(x):
    from keras import layers

    for filters in SMALL_CNN_FILTERS:
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    return layers.GlobalAveragePooling2D()(x)


def build(backbone: str, input_size: int, outputs: dict[str, int], weights: str | None = None):
    """``outputs`` maps partitioning name -> number of classes, coarse to fine. ``weights``: None,
    "imagenet" (downloaded by Keras), or a local weights file for the backbone."""
    import keras
    from keras import layers

    if weights and weights != "imagenet" and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file {weights} does not exist (use imagenet, none, or a local file)")
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    if backbone == "small_cnn":
        if weights:
            raise ValueError("small_cnn has no pretrained weights: use --weights none")
        features = _small_cnn(x)
    else:
        app = getattr(keras.applications, backbone, None)
        if app is None:
            raise ValueError(f"unknown backbone {backbone!r}: use small_cnn or a keras.applications model")
        try:
            net = app(include_top=False, weights="imagenet" if weights == "imagenet" else None,
                      input_shape=(input_size, input_size, 3), pooling="avg")
        except Exception as exc:  # offline machines cannot download ImageNet weights
            raise RuntimeError(f"could not load {backbone} weights {weights!r} ({exc}); pass a local "
                               "weights file with --weights, or --weights none to train from scratch") from exc
        if weights and weights != "imagenet":
            net.load_weights(weights)
        features = net(x)
    features = layers.Dropout(0.3)(features)
    probs = {name: layers.Dense(n, activation="softmax", dtype="float32", name=name)(features)
             for name, n in outputs.items()}
    return keras.Model(inputs, probs, name=f"deeploc_{backbone}")


def learning_rate(peak: float, schedule: str, steps_per_epoch: int, epochs: int, warmup_epochs: float):
    """Linear warm-up to ``peak`` over ``warmup_epochs``, then cosine decay to zero by the last step: the
    warm-up keeps the first large updates from wrecking pretrained features, and cosine needs no step
    boundaries tuned to the run's length. ``constant``: ``peak`` throughout. Keyed by the optimizer's step
    count, so a resumed run continues where it stopped."""
    import keras

    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "constant":
        return peak
    total = max(1, steps_per_epoch * epochs)
    warmup = min(total - 1, int(round(warmup_epochs * steps_per_epoch)))
    return keras.optimizers.schedules.CosineDecay(0.0 if warmup else peak, decay_steps=max(1, total - warmup),
                                                  warmup_target=peak if warmup else None, warmup_steps=warmup)


def compile_model(model, outputs: list[str], lr):
    import keras

    # The report's loss: the mean of the outputs' cross-entropies.
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss={o: keras.losses.SparseCategoricalCrossentropy() for o in outputs},
        loss_weights={o: 1.0 / len(outputs) for o in outputs},
        weighted_metrics={o: [keras.metrics.SparseCategoricalAccuracy(name="acc")] for o in outputs},
    )
    return model
