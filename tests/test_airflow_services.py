"""A deployed Airflow as docker-compose.yaml configures it: api-server, scheduler, dag-processor and
triggerer as processes on loopback with PostgreSQL (``airflow_services.py``), over the demo's lake. In
headless Chromium, a user signs in on the login page with the compose file's user, asks for one year of
deeploc_ingestion from the trigger form with its data interval given there, and sees the run green in the
run list; the run replaced exactly its slice. The Backfill form, the model DAG's form and the results'
links, on ``./dev ui``, are in ``test_airflow_ui.py``."""

import os
import time
from datetime import datetime, timezone

import pytest
from conftest import REPO

from airflow_services import Services, postgres_bin
from airflow_ui_pages import (green_in_the_run_list, log_in, pick, slice_written_at, submit, trigger_dialog,
                             wait_green)

pytestmark = pytest.mark.slow
DAG = "deeploc_ingestion"


@pytest.fixture(scope="module")
def deployment(demo_run, tmp_path_factory):
    """The deployment over the demo's lake, bucket and metadata (its Airflow database is new)."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
    home, _, _ = demo_run
    work = tmp_path_factory.mktemp("deployment")
    s = Services(work, {"DEEPLOC_LAKE": str(home / "lake"), "DEEPLOC_BUCKET": str(home / "demo" / "bucket"),
                        "DEEPLOC_METADATA": str(home / "demo" / "metadata" / "*.bz2"), "DEEPLOC_TARGET": "local",
                        "DEEPLOC_LOGS": str(work / "deeploc-logs"), "DEEPLOC_SPARK_DRIVER_MEMORY": "1g",
                        "DEEPLOC_SPARK_MASTER": os.environ["DEEPLOC_SPARK_MASTER"]})  # the suite's (conftest)
    yield s, home
    s.stop()


def _wait_for_dag(s, deadline_s=240):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            return s.api("GET", f"/dags/{DAG}")
        except Exception:  # noqa: BLE001 - not parsed yet (404)
            time.sleep(1)
    raise AssertionError(f"the dag-processor never registered {DAG}")


def test_a_year_from_the_trigger_form_goes_green(deployment, browser):
    s, home = deployment
    url, get = f"http://127.0.0.1:{s.port}", lambda path: s.api("GET", path)
    _wait_for_dag(s)
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    log_in(page, url, "airflow", s.password())
    since = datetime.now(timezone.utc)

    dialog = trigger_dialog(page, url, DAG)
    dialog.locator("[data-part=item-text]", has_text="Single Run").click()
    dialog.locator("[data-part=item-text]", has_text="Specify Manually").click()
    start, end = dialog.get_by_test_id("datetime-input").nth(1), dialog.get_by_test_id("datetime-input").nth(2)
    pick(page, dialog, start, "2010/01/01")
    pick(page, dialog, end, "2011/01/01")
    submit(page, dialog, "Trigger")

    page.goto("about:blank")  # the UI's pages poll the server: while we wait, they would take a core
    run = wait_green(get, DAG, since, ["2010-01-01"], 12)["2010-01-01"]
    assert (run["data_interval_end"][:10], run["state"], run["run_type"]) == ("2011-01-01", "success", "manual")
    written = {year: slice_written_at(home / "lake", year) for year in ("2009", "2010", "2011")}
    assert written["2010"] > since and written["2009"] < since and written["2011"] < since
    green_in_the_run_list(page, url, DAG, [run["dag_run_id"]])
    page.close()
    # The deferred waits have their service, and the DAGs came from the repository's folder.
    assert "triggerer" in (s.work / "service-logs" / "triggerer.log").read_text().lower()
    assert str(REPO / "dags") in s.env["AIRFLOW__CORE__DAGS_FOLDER"]
