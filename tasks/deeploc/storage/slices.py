"""Upload-time slices: the half-open interval [start, end) of upload time that one ingestion run
processes, in whole months (UTC); either bound may be open.

A slice is named for what it covers: ``2004`` for a calendar year, ``2004-03`` for one month,
``2004-03..2004-08`` for other runs of months (last month included), ``2004-03..`` or ``..2004-08``
with an open bound, ``all`` with none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


def _utc(value: str | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def month_of(d: datetime) -> str:
    return d.strftime("%Y-%m")


def _month_before(d: datetime) -> str:
    return month_of(d.replace(year=d.year - (d.month == 1), month=(d.month - 2) % 12 + 1))


@dataclass(frozen=True)
class Slice:
    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def of(cls, start: str | datetime | None = None, end: str | datetime | None = None) -> "Slice":
        s = cls(_utc(start), _utc(end))
        for bound in (s.start, s.end):
            if bound and (bound.day, bound.hour, bound.minute, bound.second, bound.microsecond) != (1, 0, 0, 0, 0):
                raise ValueError(f"slice bounds must be month starts (UTC), got {bound.isoformat()}")
        if s.start and s.end and s.start >= s.end:
            raise ValueError(f"empty slice: {s.start.isoformat()} >= {s.end.isoformat()}")
        return s

    def covers(self, month: str) -> bool:
        """Whether the month ``YYYY-MM`` lies in the slice."""
        return (self.start is None or month >= month_of(self.start)) and (self.end is None or month < month_of(self.end))

    @property
    def name(self) -> str:
        first = month_of(self.start) if self.start else ""
        last = _month_before(self.end) if self.end else ""
        if self.start and self.end and self.start.month == 1 and self.end == self.start.replace(year=self.start.year + 1):
            return str(self.start.year)
        if first and first == last:
            return first
        return f"{first}..{last}" if first or last else "all"
