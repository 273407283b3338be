"""Cron schedules: presets expanded, validated, and staggered per DAG.

The stagger offset is a hash of the dag_id alone, so it is deterministic and no
customer's schedule depends on which other customers exist.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


def normalize_cron(expr: object) -> str:
    """A recurring 5-field cron expression, or ValueError saying why not."""
    if not isinstance(expr, str):
        raise ValueError(f"expected a cron expression or preset, got {expr!r}")
    return _normalize_cron(expr)


@lru_cache(maxsize=4096)  # a fleet repeats a handful of schedules; croniter is slow
def _normalize_cron(expr: str) -> str:
    if not expr.strip():
        raise ValueError(f"expected a cron expression or preset, got {expr!r}")
    text = PRESETS.get(expr.strip(), expr.strip())
    if text.startswith("@"):
        raise ValueError(f"{expr!r} is not a recurring preset (use one of {', '.join(PRESETS)})")
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"{expr!r} is not a 5-field cron expression")
    if not croniter.is_valid(text):
        raise ValueError(f"{expr!r} is not a valid cron expression")
    try:  # valid syntax can still name a day that never comes (`0 0 30 2 *`)
        croniter(text, _NEVER_FIRES_PROBE).get_next(float)
    except CroniterBadDateError:
        raise ValueError(f"{expr!r} never fires (no such date)") from None
    return " ".join(fields)


_NEVER_FIRES_PROBE = dt.datetime(2024, 1, 1)


def stagger_offset(key: str, window_minutes: int) -> int:
    if window_minutes <= 0:
        return 0
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % window_minutes


def is_sub_daily(cron: str) -> bool:
    """Runs more than once a day: its hour field is not one literal hour (`*`, `*/2`,
    `8-17`, `0,12`), or its minute field is not one literal minute."""
    minute, hour, *_ = cron.split()
    return not (minute.isdigit() and hour.isdigit())


def stagger(cron: str, key: str, window_minutes: int) -> str:
    """Shift a normalized cron's start by a per-key offset.

    A DAG with a literal minute and hour (daily, weekly, ...) moves by 0..window-1
    minutes, carried into the hour but never past midnight (that would move the run to
    another day). A sub-daily DAG with a literal minute (hourly, every 2 hours) is spread
    over the whole hour: its minute moves by 0..59, whatever the window. Anything else
    (`*/15 * * * *`) is left as it is. The offset depends on the key (the dag_id) alone.
    """
    minute, hour, *rest = cron.split()
    if not minute.isdigit():
        return cron
    m = int(minute)
    if not hour.isdigit():
        offset = stagger_offset(key, 60)
        return " ".join([str((m + offset) % 60), hour, *rest])
    offset = stagger_offset(key, window_minutes)
    if not offset:
        return cron
    total = int(hour) * 60 + m + offset
    if total < 24 * 60:
        return " ".join([str(total % 60), str(total // 60), *rest])
    return " ".join([str((m + offset) % 60), hour, *rest])


def dst_trouble(cron: str, timezone: str, years: tuple[int, ...] = (2025, 2026)) -> str | None:
    """'gap' or 'overlap' when a once-a-day start (literal minute and hour) is a local
    time that does not exist or exists twice on a DST change day of `timezone`.

    Airflow's CronTriggerTimetable still runs such a DAG once that day (an hour later in
    the gap; at the second 01:30 in the overlap); this is what keeps defaults clear of it.
    """
    minute, hour, *_ = cron.split()
    if not (minute.isdigit() and hour.isdigit()):
        return None
    zone = ZoneInfo(timezone)
    for year in years:
        day = dt.date(year, 1, 1)
        while day.year == year:
            start = dt.datetime.combine(day, dt.time(0), zone).utcoffset()
            end = dt.datetime.combine(day, dt.time(23, 59), zone).utcoffset()
            if start != end:
                local = dt.datetime.combine(day, dt.time(int(hour), int(minute)), zone)
                if local.replace(fold=1).utcoffset() != local.utcoffset():
                    return "gap" if end > start else "overlap"  # clocks forward: a gap
            day += dt.timedelta(days=1)
    return None
