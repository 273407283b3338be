"""Cron schedules: presets expanded, validated, and staggered per DAG.

The stagger offset is a hash of the dag_id alone, so it is deterministic and no
customer's schedule depends on which other customers exist.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from functools import lru_cache

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


def stagger(cron: str, key: str, window_minutes: int) -> str:
    """Shift a normalized cron's start by a per-key offset of 0..window-1 minutes.

    Only a literal minute is shifted; with a literal hour the shift carries into
    the hour but never past midnight (that would move the run to another day).
    """
    minute, hour, *rest = cron.split()
    offset = stagger_offset(key, window_minutes)
    if not offset or not minute.isdigit():
        return cron
    m = int(minute)
    if hour.isdigit():
        total = int(hour) * 60 + m + offset
        if total < 24 * 60:
            return " ".join([str(total % 60), str(total // 60), *rest])
    return " ".join([str((m + offset) % 60), hour, *rest])
