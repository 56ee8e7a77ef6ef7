"""The Airflow UI as a user meets it: ``./dev ui`` (Airflow's services on loopback) over the demo's state,
driven in headless Chromium. With nothing typed, both DAGs' trigger forms can be submitted; one year is
triggered through the form with its data interval given there, another through the Backfill form, and the
model DAG with one field typed (its epochs) and the rest left at their defaults; each run goes green in
the UI's run list, and the model run's links open its metrics and its web map on the same server."""

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest
from conftest import REPO, current
from playwright.sync_api import expect

from airflow_services import free_port

pytestmark = pytest.mark.slow
SHOTS = os.environ.get("DEEPLOC_SCREENSHOTS") or str(REPO / ".deeploc" / "screenshots")
INGESTION, MODEL = "deeploc_ingestion", "deeploc_model"


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def ui(demo_run, tmp_path_factory):
    """``./dev ui`` over the demo's state folder, on free loopback ports; its address."""
    home, env, _ = demo_run
    port = free_port()
    env = {**env, "AIRFLOW__API__PORT": str(port), "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
           "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()), "DEEPLOC_SPARK_DRIVER_MEMORY": "1g"}
    log = open(tmp_path_factory.mktemp("ui") / "ui.log", "w")
    proc = subprocess.Popen([str(REPO / "dev"), "ui"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if {d["dag_id"] for d in _get(f"{url}/api/v2/dags")["dags"]} >= {INGESTION, MODEL}:
                    break
            except OSError:
                pass
            assert proc.poll() is None, f"./dev ui ended (see {log.name})"
            time.sleep(2)
        else:
            raise AssertionError(f"the UI did not list both DAGs in 4 minutes (see {log.name})")
        yield url, home
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:  # the scheduler would wait for its running tasks
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _dialog(page, url: str, dag: str):
    page.goto(f"{url}/dags/{dag}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.locator("[role=dialog][data-state=open]")
    expect(dialog.get_by_text("Run Parameters")).to_be_visible()
    return dialog


def _pick(page, dialog, field, day: str):
    """Type a date (YYYY/MM/DD) and midnight into one of the form's date-time pickers, as a user would."""
    field.click()
    chooser = page.locator("[data-scope=popover][data-part=content][data-state=open]")
    for placeholder, value in (("YYYY/MM/DD", day), ("HH:mm", "00:00")):
        box = chooser.get_by_placeholder(placeholder)
        box.fill(value)
        box.press("Enter")
    dialog.locator("h2").first.click()  # close the picker
    y, m, d = day.split("/")
    expect(field).to_contain_text(f"{d}, {y} 00:00")


def _submit(page, dialog, button: str) -> None:
    """Press the dialog's button; it closes when the run or backfill was accepted (else: what it said)."""
    dialog.get_by_role("button", name=button).click()
    try:
        expect(page.locator("[role=dialog][data-state=open]")).to_have_count(0, timeout=20_000)
    except AssertionError:
        raise AssertionError(f"the dialog stayed open: {dialog.inner_text()[:1500]}") from None


def _runs(url: str, dag: str) -> dict:
    return {r["dag_run_id"]: r for r in _get(f"{url}/api/v2/dags/{dag}/dagRuns?limit=100")["dag_runs"]}


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _wait_green(url: str, dag: str, since: datetime, starts: list[str], minutes: float) -> dict:
    """Wait until the runs of these data intervals (by start date), queued after ``since``, have ended;
    {interval start: run}. A backfill that reprocesses runs reuses their ids, so runs are found by interval."""
    end = time.monotonic() + minutes * 60
    while True:
        found = {r["data_interval_start"][:10]: r for r in _runs(url, dag).values()
                 if r["data_interval_start"] and r["data_interval_start"][:10] in starts
                 and (_when(r["queued_at"]) or since) >= since}
        if len(found) == len(starts) and all(r["state"] in ("success", "failed") for r in found.values()):
            return found
        if time.monotonic() > end:
            raise AssertionError(f"{dag} runs not finished: {[(k, r['state']) for k, r in found.items()]}")
        time.sleep(5)


def _green_in_the_run_list(page, url: str, dag: str, run_ids) -> None:
    page.goto(f"{url}/dags/{dag}/runs")
    for run_id in run_ids:
        row = page.locator("tr", has_text=run_id)
        expect(row).to_be_visible(timeout=30_000)
        expect(row).to_contain_text("Success")


def test_the_forms_work_with_their_defaults(ui, browser):
    url, _ = ui
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    os.makedirs(SHOTS, exist_ok=True)
    for dag in (INGESTION, MODEL):
        dialog = _dialog(page, url, dag)
        expect(dialog.get_by_role("button", name="Trigger")).to_be_enabled()
        expect(dialog.locator("[data-invalid]")).to_have_count(0)
        page.screenshot(path=os.path.join(SHOTS, f"trigger-form-{dag}.png"))
    page.close()


def test_a_year_a_backfill_and_a_model_run_from_the_forms(ui, browser):
    url, home = ui
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    since = datetime.now(timezone.utc)

    # One year from the Backfill form, first: Airflow creates a backfill in several writes, and on SQLite
    # (./dev ui's database) a run's tasks writing at the same moment can make it fail half-made ("Database is
    # locked ... not supported on SQLite under concurrent access"). The demo ran the year: reprocess all runs.
    dialog = _dialog(page, url, INGESTION)
    dialog.locator("[data-part=item-text]", has_text="Backfill").click()
    start, end = dialog.get_by_test_id("datetime-input").nth(0), dialog.get_by_test_id("datetime-input").nth(1)
    _pick(page, dialog, start, "2008/01/01")
    _pick(page, dialog, end, "2008/12/31")
    dialog.locator("[data-part=item-text]", has_text="All Runs").click()
    expect(dialog.get_by_text("1 run will be triggered")).to_be_visible()
    page.screenshot(path=os.path.join(SHOTS, "backfill-form.png"))
    _submit(page, dialog, "Run Backfill")

    # Another year, its data interval given in the form.
    dialog = _dialog(page, url, INGESTION)
    dialog.locator("[data-part=item-text]", has_text="Single Run").click()
    dialog.locator("[data-part=item-text]", has_text="Specify Manually").click()
    start, end = dialog.get_by_test_id("datetime-input").nth(1), dialog.get_by_test_id("datetime-input").nth(2)
    _pick(page, dialog, start, "2010/01/01")
    _pick(page, dialog, end, "2011/01/01")
    _submit(page, dialog, "Trigger")

    page.goto("about:blank")  # the UI's pages poll the server: while we wait, they would take a core
    runs = _wait_green(url, INGESTION, since, ["2008-01-01", "2010-01-01"], 12)
    assert sorted((r["data_interval_start"][:10], r["data_interval_end"][:10], r["state"]) for r in runs.values()) == [
        ("2008-01-01", "2009-01-01", "success"), ("2010-01-01", "2011-01-01", "success")]
    assert runs["2008-01-01"]["run_type"] == "backfill" and runs["2010-01-01"]["run_type"] == "manual"
    for year in ("2008", "2010"):  # each run replaced exactly its slice, and no other
        written = json.loads((home / "lake" / "_ledgers" / "faces" / f"{year}.json").read_text())["written_at"]
        assert datetime.fromisoformat(written) > since, year
    for year in ("2009", "2011"):
        untouched = json.loads((home / "lake" / "_ledgers" / "faces" / f"{year}.json").read_text())["written_at"]
        assert datetime.fromisoformat(untouched) < since, year

    # Then the model DAG (still paused while the ingestion runs announced the Asset, so they queued no run of
    # it): the deployment's profile (demo) and every image, with the epochs typed into the form's Model section.
    before = set(_runs(url, MODEL))
    dialog = _dialog(page, url, MODEL)
    dialog.get_by_text("Model: training and prediction").click()
    dialog.get_by_role("spinbutton", name="epochs").fill("1")
    _submit(page, dialog, "Trigger")
    deadline = time.monotonic() + 60
    while not set(_runs(url, MODEL)) - before and time.monotonic() < deadline:
        time.sleep(2)
    (run_id,) = set(_runs(url, MODEL)) - before
    assert _runs(url, MODEL)[run_id]["conf"]["epochs"] == 1
    page.goto("about:blank")
    end = time.monotonic() + 600
    while _runs(url, MODEL)[run_id]["state"] not in ("success", "failed") and time.monotonic() < end:
        time.sleep(5)
    assert _runs(url, MODEL)[run_id]["state"] == "success"
    _green_in_the_run_list(page, url, INGESTION, [r["dag_run_id"] for r in runs.values()])
    _green_in_the_run_list(page, url, MODEL, [run_id])
    made = next(p.name for p in (home / "lake" / "models").iterdir() if p.name.startswith("manual__"))
    summary = json.loads((current(home / "lake", f"models/{made}") / "summary.json").read_text())
    assert summary["profile"]["name"] == "demo" and summary["epochs"] == 1

    # The evaluate, removal_effect (paired with the demo's removal run) and publish tasks link to what
    # they made, served by the UI's own server.
    links = {}
    for task in ("evaluate", "removal_effect", "publish"):
        links.update(_get(f"{url}/api/v2/dags/{MODEL}/dagRuns/{run_id}/taskInstances/{task}/links")["extra_links"])
    assert set(links) >= {"Metrics", "Table 4", "Web map"}, links
    for name in ("Metrics", "Table 4"):
        with urllib.request.urlopen(url + links[name], timeout=30) as resp:
            assert b"| hierarchy |" in resp.read(), name
    page.goto(url + links["Web map"])
    page.wait_for_selector("#gallery button")
    assert page.locator("#gallery img").count() > 0
    page.close()


def test_the_results_app_serves_nothing_else(ui):
    url, home = ui
    site = current(home / "lake", "site")  # what /deeploc/lake/site/ serves
    (site / ".hidden").write_text("no")
    os.symlink(home / "lake" / "_ledgers", site / "escape")
    try:
        for rel in ("_ledgers/parse/input.json", "site/.hidden", "site/escape/parse/input.json",
                    "site/%2e%2e/_ledgers/parse/input.json", "metrics/../_ledgers/parse/input.json"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"{url}/deeploc/lake/{rel}", timeout=30)
            assert err.value.code == 404, rel
    finally:
        (site / ".hidden").unlink()
        (site / "escape").unlink()
