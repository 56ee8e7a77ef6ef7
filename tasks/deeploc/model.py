"""The geolocation network: a backbone and one softmax output per partitioning.

Pixels go in as 0-255 floats; scaling to [-1, 1] (what ResNetV2 expects) happens inside the model,
so everything that feeds it (training, Spark inference, single-photo prediction) feeds the same thing.
"""

from __future__ import annotations

import os


def _small_cnn(x):
    from keras import layers

    for filters in (32, 64, 96, 128):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    return layers.GlobalAveragePooling2D()(x)


def build(backbone: str, input_size: int, outputs: dict[str, int], weights: str | None = None):
    """``outputs`` maps partitioning name -> number of classes, coarse to fine."""
    import keras
    from keras import layers

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    if backbone == "small_cnn":
        features = _small_cnn(x)
    else:
        app = getattr(keras.applications, backbone, None)
        if app is None:
            raise ValueError(f"unknown backbone {backbone!r}: use small_cnn or a keras.applications model")
        local = weights if weights and os.path.exists(weights) else None
        try:
            net = app(include_top=False, weights="imagenet" if weights == "imagenet" else None,
                      input_shape=(input_size, input_size, 3), pooling="avg")
        except Exception as exc:  # offline machines cannot download ImageNet weights
            raise RuntimeError(f"could not load {backbone} weights {weights!r} ({exc}); pass a local "
                               "weights file with --weights, or --weights none to train from scratch") from exc
        if local:
            net.load_weights(local)
        features = net(x)
    features = layers.Dropout(0.3)(features)
    probs = {name: layers.Dense(n, activation="softmax", name=name)(features) for name, n in outputs.items()}
    return keras.Model(inputs, probs, name=f"deeploc_{backbone}")


def compile_model(model, outputs: list[str], learning_rate: float):
    import keras

    # The report's loss: the mean of the outputs' cross-entropies.
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={o: keras.losses.SparseCategoricalCrossentropy() for o in outputs},
        loss_weights={o: 1.0 / len(outputs) for o in outputs},
        metrics={o: [keras.metrics.SparseCategoricalAccuracy(name="acc")] for o in outputs},
    )
    return model
