"""The shared image reader: odd formats become RGB, bad data becomes a reason, never a crash."""

import io

import numpy as np
import pytest
from deeploc.learn.predict import crops_of
from deeploc.sources import images
from PIL import Image


def _bytes(img, fmt="JPEG", **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode,fmt", [("L", "JPEG"), ("CMYK", "JPEG"), ("P", "PNG"), ("RGBA", "PNG"), ("RGB", "PNG")])
def test_modes_become_rgb(mode, fmt):
    img = Image.new("RGB", (40, 30), (200, 10, 10)).convert(mode)
    out = images.decode(_bytes(img, fmt))
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    assert images.decode(_bytes(img, exif=exif)).shape == (40, 20, 3)


def test_corrupt_and_truncated_and_bomb():
    good = _bytes(Image.new("RGB", (64, 64), (1, 2, 3)))
    for bad in (b"", b"not an image", b"\xff\xd8\xff\xe0" + bytes(2000), good[: len(good) // 2]):
        with pytest.raises(images.Unreadable) as exc:
            images.decode(bad)
        assert exc.value.reason == "undecodable"
    with pytest.raises(images.Unreadable) as exc:
        images.decode(good, max_pixels=1000)
    assert exc.value.reason == "too_many_pixels"


def test_the_evaluation_transform_keeps_the_centre():
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[:, 90:110] = 255  # a bright bar in the middle survives the centre crops
    out = crops_of(images.resize_square(rgb, images.eval_side(32)), 32, 1)[0]  # side 37 (32 x 256 / 224), centre 32
    assert out.shape == (32, 32, 3) and out[:, 14:18].mean() > 200 and out[:, :8].max() == 0
    # the bar is 20 of 200 columns; after scaling 200 -> 74 it is ~7.4 px wide, centred
    assert 6 <= int((out[0, :, 0] > 127).sum()) <= 9
    assert images.centre_crop(np.arange(25).reshape(5, 5), 3).tolist() == [[6, 7, 8], [11, 12, 13], [16, 17, 18]]
