"""Countries and continents of hand-labelled points, asked the way a user asks (``deeploc where`` from a
plain shell): coasts a little off the 1:50m outlines, islands, both sides of 180°, transcontinental
countries; and outlines that no longer wrap round the globe."""

import json
import subprocess
import sys

import pytest
from deeploc.earth import geography

# (lat, lon, country, ISO alpha-3, continent): labels written by hand from an atlas, not computed.
LABELLED = [
    (40.7401, -73.9855, "United States of America", "USA", "North America"),  # Manhattan, off the 1:50m coast
    (45.4394, 12.3334, "Italy", "ITA", "Europe"),                   # Venice, in its lagoon
    (24.5506, -81.8049, "United States of America", "USA", "North America"),  # Key West
    (37.7808, -122.5123, "United States of America", "USA", "North America"),  # San Francisco, Ocean Beach
    (25.7740, -80.1900, "United States of America", "USA", "North America"),   # downtown Miami
    (41.0060, 28.9770, "Turkey", "TUR", "Europe"),                  # Istanbul, Sultanahmet (west of the Bosporus)
    (40.9900, 29.0300, "Turkey", "TUR", "Asia"),                    # Istanbul, Kadıköy (east of the Bosporus)
    (41.6800, 26.5600, "Turkey", "TUR", "Europe"),                  # Edirne, Thrace
    (39.9300, 32.8600, "Turkey", "TUR", "Asia"),                    # Ankara
    (55.7560, 37.6170, "Russia", "RUS", "Europe"),                  # Moscow
    (56.8400, 60.6100, "Russia", "RUS", "Asia"),                    # Yekaterinburg, east of the Urals
    (43.1150, 131.8850, "Russia", "RUS", "Asia"),                   # Vladivostok
    (64.7300, 177.5100, "Russia", "RUS", "Asia"),                   # Anadyr, west of 180°
    (66.1600, -169.8100, "Russia", "RUS", "Asia"),                  # Uelen, Chukotka, east of 180°
    (43.2400, 76.8900, "Kazakhstan", "KAZ", "Asia"),                # Almaty
    (49.4200, 46.8500, "Kazakhstan", "KAZ", "Europe"),              # Zhanibek, west of the Ural River
    (30.0400, 31.2400, "Egypt", "EGY", "Africa"),                   # Cairo
    (27.9150, 34.3300, "Egypt", "EGY", "Asia"),                     # Sharm el-Sheikh, Sinai
    (21.3070, -157.8580, "United States of America", "USA", "Oceania"),  # Honolulu
    (28.1000, -15.4100, "Spain", "ESP", "Africa"),                  # Las Palmas, Canary Islands
    (4.9200, -52.3300, "France", "FRA", "South America"),          # Cayenne, French Guiana
    (-2.5300, 140.7000, "Indonesia", "IDN", "Oceania"),             # Jayapura, New Guinea
    (-6.2000, 106.8500, "Indonesia", "IDN", "Asia"),                # Jakarta
    (-18.1400, 178.4400, "Fiji", "FJI", "Oceania"),                 # Suva, west of 180°
    (-16.8500, -179.9700, "Fiji", "FJI", "Oceania"),                # Taveuni, east of 180°
    (64.1460, -21.9400, "Iceland", "ISL", "Europe"),                # Reykjavík
    (-77.8500, 166.6700, "Antarctica", "ATA", "Antarctica"),        # McMurdo Station
    (38.7800, -9.5600, "Portugal", "PRT", "Europe"),                # ~5 km off Cabo da Roca: within 10 km
    (38.7800, -9.7500, None, None, None),                           # ~22 km off it: at sea
    (0.0, -30.0, None, None, None),                                 # mid-Atlantic
]


def test_where_from_a_plain_shell_answers_the_hand_labels():
    args = [f"{lat},{lon}" for lat, lon, *_ in LABELLED]
    res = subprocess.run([sys.executable, "-m", "deeploc.cli", "-q", "where", *args], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout)
    assert [(g["lat"], g["lon"]) for g in got] == [(lat, lon) for lat, lon, *_ in LABELLED]
    wrong = [(want, (g["country"], g["iso_a3"], g["continent"])) for want, g in zip(LABELLED, got)
             if (g["country"], g["iso_a3"], g["continent"]) != want[2:]]
    assert not wrong, wrong


def test_a_bad_point_is_a_one_line_error():
    res = subprocess.run([sys.executable, "-m", "deeploc.cli", "where", "48.85;2.35"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2 and "is not LAT,LON" in res.stderr and "Traceback" not in res.stderr


def _parts(shape):
    return list(shape.geoms) if hasattr(shape, "geoms") else [shape]


def test_outlines_no_longer_wrap_round_the_globe():
    world = geography.countries()
    for name, shape in zip(world["name"], world.geometry):
        for part in _parts(shape):
            west, south, east, north = part.bounds
            if name != "Antarctica":  # a band across the map spans most of it
                assert east - west < 180, (name, part.bounds)
    antarctica = world.loc[world["name"] == "Antarctica"].geometry.iloc[0]
    assert antarctica.bounds == pytest.approx((-180, -90, 180, -60.5), abs=0.1)  # closed along the pole
    russia = world.loc[world["name"] == "Russia"].geometry.iloc[0]
    assert russia.bounds[0] == pytest.approx(-180) and russia.bounds[2] == pytest.approx(180)  # cut, both sides
    features = geography.outlines_geojson()["features"]  # what the web map draws
    assert len(features) == len(world)
    for f in features:
        polygons = f["geometry"]["coordinates"] if f["geometry"]["type"] == "MultiPolygon" else [f["geometry"]["coordinates"]]
        for polygon in polygons:
            lons = [p[0] for p in polygon[0]]
            assert f["properties"]["name"] == "Antarctica" or max(lons) - min(lons) < 180, f["properties"]["name"]
