"""The Airflow UI's pages as a user drives them in Chromium (Playwright), the REST reads the tests wait
with, and when a run last replaced a slice. Used by ``test_airflow_ui.py`` (``./dev ui``) and
``test_airflow_services.py`` (the compose deployment); ``get`` is a function of an API path
(``/dags/...``) returning its JSON, with whatever authentication the deployment wants."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

from playwright.sync_api import expect

Get = Callable[[str], dict]


def log_in(page, url: str, user: str, password: str) -> None:
    """Sign in on the simple auth manager's login page, where the UI sends a visitor without a session."""
    page.goto(url)
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Dags").first).to_be_visible(timeout=30_000)


def trigger_dialog(page, url: str, dag: str):
    """The DAG's page, its Trigger button pressed: the open dialog."""
    page.goto(f"{url}/dags/{dag}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.locator("[role=dialog][data-state=open]")
    expect(dialog.get_by_text("Run Parameters")).to_be_visible()
    return dialog


def pick(page, dialog, field, day: str) -> None:
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


def submit(page, dialog, button: str) -> None:
    """Press the dialog's button; it closes when the run or backfill was accepted (else: what it said)."""
    dialog.get_by_role("button", name=button).click()
    try:
        expect(page.locator("[role=dialog][data-state=open]")).to_have_count(0, timeout=20_000)
    except AssertionError:
        raise AssertionError(f"the dialog stayed open: {dialog.inner_text()[:1500]}") from None


def runs(get: Get, dag: str) -> dict:
    return {r["dag_run_id"]: r for r in get(f"/dags/{dag}/dagRuns?limit=100")["dag_runs"]}


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def wait_green(get: Get, dag: str, since: datetime, starts: list[str], minutes: float) -> dict:
    """Wait until the runs of these data intervals (by start date), queued after ``since``, have ended;
    {interval start: run}. A backfill that reprocesses runs reuses their ids, so runs are found by interval."""
    end = time.monotonic() + minutes * 60
    while True:
        found = {r["data_interval_start"][:10]: r for r in runs(get, dag).values()
                 if r["data_interval_start"] and r["data_interval_start"][:10] in starts
                 and (_when(r["queued_at"]) or since) >= since}
        if len(found) == len(starts) and all(r["state"] in ("success", "failed") for r in found.values()):
            return found
        if time.monotonic() > end:
            raise AssertionError(f"{dag} runs not finished: {[(k, r['state']) for k, r in found.items()]}")
        time.sleep(1)


def green_in_the_run_list(page, url: str, dag: str, run_ids) -> None:
    page.goto(f"{url}/dags/{dag}/runs")
    for run_id in run_ids:
        row = page.locator("tr", has_text=run_id)
        expect(row).to_be_visible(timeout=30_000)
        expect(row).to_contain_text("Success")


def slice_written_at(lake: Path, year: str) -> datetime:
    """When the faces stage last replaced a year's slice (its ledger)."""
    return datetime.fromisoformat(json.loads((lake / "_ledgers" / "faces" / f"{year}.json").read_text())["written_at"])
