"""Where settings come from: the run's param, then the Airflow Variable, then the environment, then the
embedded default; and the aws settings merged key by key."""

from deeploc_airflow.settings import DEFAULTS, resolve


def test_precedence(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_DEEPLOC_LAKE", "/from-variable")  # how Airflow reads Variables from the env
    monkeypatch.setenv("DEEPLOC_LAKE", "/from-env")
    assert resolve("lake", {"lake": "/from-param"}) == "/from-param"
    assert resolve("lake", {"lake": ""}) == "/from-variable"  # an empty param means "not given"
    monkeypatch.delenv("AIRFLOW_VAR_DEEPLOC_LAKE")
    assert resolve("lake", {}) == "/from-env"
    monkeypatch.delenv("DEEPLOC_LAKE")
    assert resolve("lake", None) == DEFAULTS["lake"] and DEFAULTS["lake"].endswith("/.deeploc/lake")
    monkeypatch.setenv("AIRFLOW_VAR_DEEPLOC_PROFILE", "yfcc")  # what Asset-triggered model runs train
    assert resolve("profile", {"profile": ""}) == "yfcc"
