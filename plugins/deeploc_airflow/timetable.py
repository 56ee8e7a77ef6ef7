"""The ingestion DAG's schedule: slices of upload time on a cron expression, with one rule changed.

Airflow gives a manual run of a cron data-interval schedule the last whole interval *before* its logical
date, while scheduled and backfill runs have the interval that *starts* at it: so logical date
2010-01-01 would mean 2009 for a run triggered by hand and 2010 for a backfill, and a backfill over
2010 would reprocess a manual run of 2009 (backfills find existing runs by logical date). Here a
manual run processes the interval that contains its logical date, so a logical date names one slice
however the run was made. Registered by the plugin (``plugins/deeploc_plugin.py``) so that the
scheduler and the API server can read it back.
"""

from __future__ import annotations

from airflow.timetables.base import DataInterval
from airflow.timetables.interval import CronDataIntervalTimetable


class SliceTimetable(CronDataIntervalTimetable):
    """Cron data intervals; a manual run gets the interval that contains its logical date."""

    description = "one slice of upload time per run; a manual run processes the slice containing its logical date"

    def infer_manual_data_interval(self, *, run_after) -> DataInterval:
        start = self._align_to_prev(run_after)
        return DataInterval(start=start, end=self._get_next(start))
