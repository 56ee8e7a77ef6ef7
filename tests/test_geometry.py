"""S2 ids, partitionings, hierarchy, splits and distance metrics."""

import numpy as np
import pandas as pd
import pytest
import s2sphere
from deeploc.earth import geo, partitioning, s2
from deeploc.learn import splits


def test_s2_matches_reference_library():
    rng = np.random.default_rng(5)
    lat, lon = rng.uniform(-90, 90, 500), rng.uniform(-180, 180, 500)
    lat[:4], lon[:4] = [90, -90, 0, 0], [0, 0, 180, -180]
    ids = s2.leaf_ids(lat, lon)
    for a, b, cid in zip(lat, lon, ids):
        ref = s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(a, b))
        assert int(cid) == ref.id()
        assert int(s2.parent(np.array([cid], np.uint64), 9)[0]) == ref.parent(9).id()
        assert s2.token(int(cid)) == ref.to_token()
    assert (s2.level_of(s2.parent(ids, 7)) == 7).all()
    assert s2.from_token(s2.token(int(ids[10]))) == int(ids[10])


def _points(n=6000, seed=0):
    from deeploc.demo.places import sample_locations

    lat, lon, _ = sample_locations(np.random.default_rng(seed), n)
    return lat, lon


@pytest.mark.parametrize("tau_min,tau_max", [(5, 100), (10, 300)])
def test_partition_properties(tau_min, tau_max):
    lat, lon = _points()
    table, labels = partitioning.build(lat, lon, partitioning.Spec("p", tau_min, tau_max))
    counts = np.bincount(labels[labels >= 0], minlength=len(table))
    assert (counts == table["count"].to_numpy()).all()  # each image in at most one cell; counts add up
    assert (table["count"] > tau_min).all()
    assert ((table["count"] <= tau_max) | (table["level"] == partitioning.MAX_LEVEL)).all()
    assert table["token"].is_unique
    # located again from the table, every kept image lands in its own class
    assert (partitioning.locate(table, lat, lon)[labels >= 0] == labels[labels >= 0]).all()


@pytest.mark.parametrize("n, distinct", [(0, 1), (1, 1), (5000, 40), (5000, 5000)])
def test_index_of_is_numpys_unique_inverse(n, distinct):
    ids = np.random.default_rng(n).integers(0, 2**63, distinct, dtype=np.int64).astype(np.uint64)
    values = ids[np.random.default_rng(1).integers(0, distinct, n)]
    uniq, inv = partitioning.index_of(values)
    want_uniq, want_inv = np.unique(values, return_inverse=True)
    assert uniq.dtype == np.uint64 and np.array_equal(uniq, want_uniq) and np.array_equal(inv, want_inv)


def test_smaller_tau_max_more_classes_and_single_parents():
    lat, lon = _points()
    specs = partitioning.Spec.parse("coarse:5:500,medium:5:200,fine:5:100")
    tables = {s.name: partitioning.build(lat, lon, s)[0] for s in specs}
    sizes = [len(tables[s.name]) for s in specs]
    assert sizes[0] < sizes[1] < sizes[2]
    hier = partitioning.hierarchy(tables, [s.name for s in specs])
    assert len(hier) == len(tables["fine"]) and (hier.to_numpy() >= 0).all()
    # the parent cell contains the fine cell (its id is an ancestor of the fine cell's id)
    fine = tables["fine"].set_index("class")
    for name in ("coarse", "medium"):
        parents = tables[name].set_index("class").loc[hier[name]]
        anc = s2.parent(fine["cell_id"].to_numpy(np.uint64), parents["level"].to_numpy())
        assert (anc == parents["cell_id"].to_numpy(np.uint64)).all()


def test_mean_across_the_antimeridian():
    lat, lon = geo.group_mean_latlon(np.zeros(2, int), [10.0, 10.0], [179.0, -179.0], 1)
    assert abs(abs(lon[0]) - 180.0) < 1e-6 and abs(lat[0] - 10.0) < 0.01


def test_spec_parsing_errors():
    with pytest.raises(ValueError):
        partitioning.Spec.parse("a:5:5")
    with pytest.raises(ValueError):
        partitioning.Spec.parse("a:1:9,a:1:8")


def test_split_hash_is_splitmix64():
    # SplitMix64 (Steele, Lea, Flood 2014; Vigna's reference code) from state 0 gives 0xE220A8397B1DCDAF;
    # the unit value is its top 53 bits.
    assert splits.unit_hash([0])[0] == (0xE220A8397B1DCDAF >> 11) / 2.0**53


def test_split_of_some_photo_ids_is_pinned():
    """The one place where a hard-coded expectation is right: it pins the rule, so that a change to it
    (which would move photos between train and test) cannot go unnoticed."""
    ids = [1, 2, 3, 42, 1001, 10_000_001, 9_876_543_210, 2**40]
    assert list(splits.assign(ids)) == ["train", "train", "test", "train", "val", "train", "train", "test"]


def test_split_is_stable_when_rows_are_added():
    ids = np.arange(10_000, 20_000)
    first = splits.assign(ids)
    more = splits.assign(np.concatenate([ids, np.arange(50_000, 60_000)]))
    assert (more[: len(ids)] == first).all()
    share = pd.Series(first).value_counts(normalize=True)
    assert abs(share["test"] - 0.2) < 0.02 and abs(share["val"] - 0.16) < 0.02 and abs(share["train"] - 0.64) < 0.02


@pytest.mark.parametrize("a,b,km", [
    ((48.8566, 2.3522), (51.5074, -0.1278), 343.6),      # Paris - London
    ((40.7128, -74.0060), (34.0522, -118.2437), 3935.7),  # New York - Los Angeles
    ((-33.8688, 151.2093), (-41.2865, 174.7762), 2226.0),  # Sydney - Wellington
    ((0.0, 179.5), (0.0, -179.5), 111.2),                 # across the antimeridian
])
def test_haversine_known_pairs(a, b, km):
    assert geo.haversine_km(a[0], a[1], b[0], b[1]) == pytest.approx(km, rel=2e-3)


def test_accuracy_on_hand_made_errors():
    acc = geo.accuracy([0.5, 10, 100, 500, 1000, 3000])
    assert acc["street_1km"] == pytest.approx(1 / 6)
    assert acc["city_25km"] == pytest.approx(2 / 6)
    assert acc["region_200km"] == pytest.approx(3 / 6)
    assert acc["country_750km"] == pytest.approx(4 / 6)
    assert acc["continent_2500km"] == pytest.approx(5 / 6)
    assert acc["median_km"] == pytest.approx(300) and acc["n"] == 6
