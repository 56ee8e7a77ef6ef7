"""A real Airflow deployment, configured as docker-compose.yaml configures it: api-server, scheduler,
dag-processor and triggerer as processes on loopback with PostgreSQL. Through the REST API, as the UI
does: create a backfill of deeploc_ingestion over two years and wait for green. Each run asks for
exactly its interval, and only the last run of a batch announces the Asset."""

import time

import pytest
from conftest import REPO

from airflow_services import Services, postgres_bin

pytestmark = pytest.mark.slow
DAG = "deeploc_ingestion"


@pytest.fixture(scope="module")
def services(demo_set, tmp_path_factory):
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
    data, _ = demo_set
    work = tmp_path_factory.mktemp("deployment")
    lake = work / "lake"
    s = Services(work, {"DEEPLOC_LAKE": str(lake), "DEEPLOC_BUCKET": str(data / "bucket"),
                        "DEEPLOC_METADATA": str(data / "metadata" / "*.bz2"), "DEEPLOC_TARGET": "local",
                        "DEEPLOC_SPARK_DRIVER_MEMORY": "1g"})
    s.lake = lake
    yield s
    s.stop()


def _wait_for_dag(s, deadline_s=240):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            return s.api("GET", f"/dags/{DAG}")
        except Exception:  # noqa: BLE001 - not parsed yet (404)
            time.sleep(3)
    raise AssertionError(f"the dag-processor never registered {DAG}")


def _runs(s):
    return {r["dag_run_id"]: r for r in s.api("GET", f"/dags/{DAG}/dagRuns?limit=100")["dag_runs"]}


def _wait_for_runs(s, count, deadline_s=900):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        runs = _runs(s)
        if len(runs) >= count and all(r["state"] in ("success", "failed") for r in runs.values()):
            return runs
        time.sleep(5)
    raise AssertionError(f"runs not finished: {[(r['dag_run_id'], r['state']) for r in _runs(s).values()]}")


def test_a_backfill_from_the_api_goes_green(services):
    s = services
    _wait_for_dag(s)
    s.api("PATCH", f"/dags/{DAG}", {"is_paused": False})
    # (A single run asked for by its interval goes through the same API from the trigger form: see
    # test_airflow_ui.py.)
    s.api("POST", "/backfills", {"dag_id": DAG, "from_date": "2010-01-01T00:00:00Z", "to_date": "2011-12-31T00:00:00Z",
                                 "max_active_runs": 2, "reprocess_behavior": "none", "dag_run_conf": {}})
    runs = _wait_for_runs(s, 2)
    assert sorted((r["data_interval_start"][:10], r["data_interval_end"][:10], r["state"]) for r in runs.values()) == [
        ("2010-01-01", "2011-01-01", "success"), ("2011-01-01", "2012-01-01", "success")]
    for year in ("2010", "2011"):  # each run processed exactly its slice
        assert (s.lake / "_ledgers" / "faces" / f"{year}.json").exists(), year
    assert not (s.lake / "_ledgers" / "faces" / "2009.json").exists()
    assert not (s.lake / "_ledgers" / "faces" / "2012.json").exists()
    backfill = [rid for rid, r in runs.items() if r["run_type"] == "backfill"]
    assert len(backfill) == 2
    states = s.api("GET", f"/dags/{DAG}/dagRuns/~/taskInstances?task_id=announce_faces&limit=100")["task_instances"]
    announced = {t["dag_run_id"]: t["state"] for t in states if t["dag_run_id"] in backfill}
    assert sorted(announced.values()) in (["skipped", "success"], ["success", "success"]), announced
    log = (s.work / "service-logs" / "triggerer.log").read_text()
    assert "Starting the triggerer" in log or "triggerer" in log.lower()
    assert str(REPO / "dags") in s.env["AIRFLOW__CORE__DAGS_FOLDER"]
