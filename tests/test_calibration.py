"""Temperature scaling on planted probabilities: labels drawn from softmax(z / 2) while the model says
softmax(z) (overconfident by construction) give back a temperature of 2, and the calibration error falls;
the error and the expected distance on cases worked out by hand."""

import numpy as np
import pytest
from deeploc.learn import calibration


def test_an_overconfident_model_gets_its_temperature_back():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (20_000, 12))
    said = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    true = np.exp(z / 2) / np.exp(z / 2).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(12, p=p) for p in true])
    fitted = calibration.fit({"fine": said}, {"fine": np.r_[labels[:-1], -1]})["fine"]  # the last: in no cell
    assert fitted["temperature"] == pytest.approx(2.0, rel=0.08) and fitted["photos"] == 19_999
    assert fitted["ece_before"] > 0.1 and fitted["ece_after"] < 0.02
    assert calibration.scaled(said, 1.0) is said  # T = 1 changes nothing, not even by rounding


def test_ece_and_expected_km_by_hand():
    # two bins: 0.9 said, right 1 of 2 (gap 0.4); 0.3 said, right 1 of 2 (gap 0.2) -> (2 * 0.4 + 2 * 0.2) / 4
    assert calibration.ece(np.array([0.9, 0.9, 0.3, 0.3]), np.array([1, 0, 1, 0], bool)) == pytest.approx(0.3)
    # top cells at the predicted place (p 0.6, radius 30 km) and one degree of longitude east on the
    # equator (p 0.2, radius 0): (0.6 * 30 + 0.2 * 111.19) / 0.8
    km = calibration.expected_km([0.0], [0.0], [[0.6, 0.2]], [[0.0, 0.0]], [[0.0, 1.0]], [[30.0, 0.0]])
    assert km[0] == pytest.approx((0.6 * 30 + 0.2 * 111.19) / 0.8, rel=1e-3)
