"""Predictions on hand-built probabilities: the hierarchy's product, renormalised; top-k; test-time crops."""

import numpy as np
import pandas as pd
import pytest

from deeploc.earth.partitioning import Partitionings
from deeploc.learn.predict import crops_of, HIERARCHY, hierarchy_scores, Predictor


def _predictor(raw, temperature=None):
    """A Predictor whose network answers ``raw`` (name -> array): cells, hierarchy and temperatures by hand."""
    cells = pd.DataFrame({"partitioning": ["coarse"] * 2 + ["fine"] * 3, "class": [1, 0, 0, 1, 2],
                          "mean_lat": [-30.0, 10.0, 11.0, 9.0, -31.0], "mean_lon": [140.0, 20.0, 21.0, 19.0, 141.0],
                          "token": ["b", "a", "a1", "a2", "b1"]})
    parts = Partitionings(("coarse", "fine"), cells, pd.DataFrame({"fine": [0, 1, 2], "coarse": [0, 0, 1]}))
    net = type("Net", (), {"predict": staticmethod(lambda batch, **kw: raw)})()
    return Predictor({"order": ["coarse", "fine"], "profile": {"input_size": 4}}, net, parts, temperature)


def test_hierarchy_is_the_product_renormalised():
    probs = {"coarse": np.array([[0.8, 0.2]]), "fine": np.array([[0.5, 0.2, 0.3]])}
    got = hierarchy_scores(probs, ["coarse", "fine"], pd.DataFrame({"fine": [0, 1, 2], "coarse": [0, 0, 1]}))
    product = np.array([0.8 * 0.5, 0.8 * 0.2, 0.2 * 0.3])  # 0.40, 0.16, 0.06: by hand
    assert got[0] == pytest.approx(product / product.sum())
    orphan = hierarchy_scores(probs, ["coarse", "fine"], pd.DataFrame({"fine": [0, 1, 2], "coarse": [0, -1, 1]}))
    assert orphan[0][1] == 0.0 and orphan[0].sum() == pytest.approx(1.0)


def test_top_k_are_probabilities_and_the_argmax_is_the_products():
    rng = np.random.default_rng(1)
    coarse, fine = rng.dirichlet(np.ones(2), 50), rng.dirichlet(np.ones(3), 50)
    p = _predictor({"coarse": coarse, "fine": fine})
    locs = p.locations(p.probabilities(np.zeros((50, 4, 4, 3))), k=2)
    h = locs[HIERARCHY]
    assert (h["topk_prob"].sum(axis=1) <= 1 + 1e-12).all() and (np.diff(h["topk_prob"], axis=1) <= 0).all()
    product = fine * coarse[:, [0, 0, 1]]
    assert (h["class"] == product.argmax(axis=1)).all()
    assert (locs["fine"]["lat"] == np.array([11.0, 9.0, -31.0])[fine.argmax(axis=1)]).all()
    assert (h["topk_lat"][:, 0] == h["lat"]).all()


def test_crops_are_combined_by_their_maximum():
    # two photos x five crops; photo 0's crops disagree, photo 1's agree
    fine = np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]]
                    + [[0.1, 0.1, 0.8]] * 5)
    coarse = np.tile([[0.5, 0.5]], (10, 1))
    probs = _predictor({"coarse": coarse, "fine": fine}).probabilities(np.zeros((10, 4, 4, 3)), crops=5)
    best = np.array([0.6, 0.8, 0.6])  # the element-wise maximum over photo 0's crops
    assert probs["fine"][0] == pytest.approx(best / best.sum())
    assert probs["fine"][1] == pytest.approx([0.1, 0.1, 0.8])


def test_the_runs_temperature_is_applied():
    fine, coarse = np.array([[0.5, 0.2, 0.3]]), np.array([[0.8, 0.2]])
    probs = _predictor({"coarse": coarse, "fine": fine}, {"fine": 2.0}).probabilities(np.zeros((1, 4, 4, 3)))
    root = np.sqrt([0.5, 0.2, 0.3])  # p ** (1 / T), renormalised: 0.7071, 0.4472, 0.5477 over 1.7020
    assert probs["fine"][0] == pytest.approx(root / root.sum()) and probs["coarse"][0] == pytest.approx([0.8, 0.2])


def test_crop_positions():
    square = np.arange(36).reshape(6, 6)
    centre, *corners = crops_of(square, 4, 5)
    assert centre.tolist() == square[1:5, 1:5].tolist()
    assert [c[0, 0] for c in corners] == [0, 2, 12, 14]
