"""When a cron starts within one UTC day: Airflow's CronTriggerTimetable, recomputed.

A DAG's schedule is a cron in its customer's local time. On a day the zone keeps one UTC
offset, the starts are the cron's wall-clock matches shifted by that offset (fast, and
what Airflow does too). On a day the clocks change, the cron is stepped the way the
timetable steps it: naive local time through croniter, a skipped time moved forward and a
repeated one taken at its second occurrence (pendulum, as Airflow), a cron that runs
every hour stepped in absolute time. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import pendulum
from croniter import croniter


def utc_day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


@lru_cache(maxsize=65536)  # a fleet repeats few (cron, timezone) pairs per day
def start_minutes(schedule: str, timezone: str, day: dt.date) -> tuple[int, ...]:
    """Minutes after 00:00 UTC of every start of `schedule` (local time in `timezone`)
    within the UTC day `day`, in order."""
    zone = ZoneInfo(timezone)
    start, end = utc_day_bounds(day)
    offset = _steady_offset(timezone, day)
    fields = _fields(schedule)
    if offset is not None and fields is not None:
        return _by_wall_clock(fields, offset, start)
    return _by_stepping(schedule, zone, start, end)


@lru_cache(maxsize=4096)
def _steady_offset(timezone: str, day: dt.date) -> dt.timedelta | None:
    """The zone's UTC offset when it is the same from a day before to a day after `day`
    (probed every 3 hours: real zones never change twice within that), else None."""
    zone = ZoneInfo(timezone)
    start, _ = utc_day_bounds(day)
    offsets = {
        (start + dt.timedelta(hours=h)).astimezone(zone).utcoffset() for h in range(-24, 49, 3)
    }
    return offsets.pop() if len(offsets) == 1 else None


@lru_cache(maxsize=4096)
def _fields(schedule: str) -> tuple[frozenset[int] | None, ...] | None:
    """Minute, hour, day-of-month, month and day-of-week sets (None: any), or None for a
    cron with L, W or # (left to croniter itself)."""
    if any(c in schedule.upper() for c in "LW#"):
        return None
    expanded = croniter(schedule).expanded
    return tuple(None if f == ["*"] else frozenset(int(v) for v in f) for f in expanded)


def _by_wall_clock(fields: tuple, offset: dt.timedelta, start: dt.datetime) -> tuple[int, ...]:
    """With one UTC offset all day, a cron's starts are its wall-clock matches, shifted."""
    minutes, hours, doms, months, dows = fields
    local_start = (start + offset).replace(tzinfo=None)
    found = []
    for local_day in (local_start.date(), local_start.date() + dt.timedelta(days=1)):
        if not _day_matches(local_day, doms, months, dows):
            continue
        for hour in sorted(hours) if hours is not None else range(24):
            for minute in sorted(minutes) if minutes is not None else range(60):
                moment = dt.datetime.combine(local_day, dt.time(hour, minute))
                since = int((moment - local_start).total_seconds() // 60)
                if 0 <= since < 24 * 60:
                    found.append(since)
    return tuple(sorted(found))


def _day_matches(day: dt.date, doms, months, dows) -> bool:
    if months is not None and day.month not in months:
        return False
    dom_ok = doms is None or day.day in doms
    dow_ok = dows is None or day.isoweekday() % 7 in dows
    if doms is not None and dows is not None:  # both restricted: either one (cron's rule)
        return dom_ok or dow_ok
    return dom_ok and dow_ok


def _by_stepping(
    schedule: str, zone: ZoneInfo, start: dt.datetime, end: dt.datetime
) -> tuple[int, ...]:
    """Step through the cron as Airflow's CronTriggerTimetable does (used on a day the
    clocks change): naive local time through croniter, a repeated wall-clock time taken
    at its second occurrence, an hourly-or-finer cron stepped in absolute time."""
    hourly = croniter(schedule).expanded[1] == ["*"]
    local = pendulum.timezone(zone.key)
    current = start - dt.timedelta(minutes=1)
    found: list[int] = []
    while current < end:
        naive = current.astimezone(zone).replace(tzinfo=None)
        scheduled = croniter(schedule, start_time=naive).get_next(dt.datetime)
        if hourly:
            nxt = current + (scheduled - naive)
        else:  # pendulum, as Airflow: a skipped time moves forward, a repeated one is the later
            nxt = local.convert(scheduled.replace(fold=1)).astimezone(dt.UTC)
        if nxt <= current:  # never step backwards, whatever a zone's rules do
            current += dt.timedelta(minutes=1)
            continue
        if start <= nxt < end:
            found.append(int((nxt - start).total_seconds() // 60))
        current = nxt
    return tuple(found)
