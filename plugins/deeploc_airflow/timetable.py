"""The ingestion DAG's schedule: slices of upload time on a cron expression, with two rules of its own.

- Airflow gives a manual run of a cron data-interval schedule the last whole interval *before* its
  logical date, while scheduled and backfill runs have the interval that *starts* at it: logical date
  2010-01-01 would mean 2009 for a run triggered by hand and 2010 for a backfill, and a backfill over
  2010 would reprocess a manual run of 2009 (backfills find existing runs by logical date). Here a
  manual run processes the interval that contains its logical date, so a logical date names one slice
  however the run was made.
- The schedule ends with the data (``until``), not the DAG: a DAG ``end_date`` would also give a manual
  run whose logical date lies after it (the trigger form's default, now) no task at all, a silent
  "success" that processed nothing.

Registered by the plugin (``plugins/deeploc_plugin.py``) so that the scheduler and the API server can
read it back.
"""

from __future__ import annotations

from datetime import datetime

from airflow.timetables.base import DataInterval
from airflow.timetables.interval import CronDataIntervalTimetable


class SliceTimetable(CronDataIntervalTimetable):
    """Cron data intervals up to ``until``; a manual run gets the interval that contains its logical date."""

    description = "one slice of upload time per run; a manual run processes the slice containing its logical date"

    def __init__(self, cron: str, timezone, until: datetime | None = None):
        super().__init__(cron, timezone)
        self._until = until

    def infer_manual_data_interval(self, *, run_after) -> DataInterval:
        start = self._align_to_prev(run_after)
        return DataInterval(start=start, end=self._get_next(start))

    def next_dagrun_info(self, *, last_automated_data_interval, restriction):
        info = super().next_dagrun_info(last_automated_data_interval=last_automated_data_interval,
                                        restriction=restriction)
        return None if info is None or (self._until and info.data_interval.end > self._until) else info

    def serialize(self) -> dict:
        return {**super().serialize(), "until": self._until.isoformat() if self._until else None}

    @classmethod
    def deserialize(cls, data: dict) -> "SliceTimetable":
        from airflow._shared.timezones.timezone import parse_timezone

        until = datetime.fromisoformat(data["until"]) if data.get("until") else None
        return cls(data["expression"], parse_timezone(data["timezone"]), until)
