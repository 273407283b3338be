"""Schedules beyond a cron: manual only, @once, @continuous, and Airflow's own timetables.

A store `schedule` / `main_schedule` is a string: a cron or preset (staggered, as
before), `none` (manual only: `schedule=None`), `@once`, `@continuous`,
`timetable:<name>` (a timetable fleet.yaml declares under `timetables:`), or a JSON
object text of one timetable (`{"timetable": "delta", "delta": "PT30M"}`). A timetable
is plain data whose keys mirror the Airflow class's arguments; it becomes a `Call` of
an allow-listed class with literal arguments, in the customer's timezone. Nothing here
names code a store value chose: the classes are this module's constants.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from composer.compose.dagspec import Call, CodeRef
from composer.compose.schedule import is_sub_daily as _cron_is_sub_daily
from composer.compose.schedule import normalize_cron, stagger
from composer.model.keys import did_you_mean, unknown_keys

MANUAL = "none"  # the store's spelling of `schedule=None`
PRESETS = frozenset({"@once", "@continuous"})
NAMED_PREFIX = "timetable:"
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,47}\Z")

# kind -> (required keys, optional keys); the keys are the Airflow class's arguments.
KINDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "cron": (frozenset({"cron"}), frozenset({"interval", "run_immediately"})),
    "multiple_cron": (frozenset({"crons"}), frozenset({"interval", "run_immediately"})),
    "delta": (frozenset({"delta"}), frozenset({"interval"})),
    "events": (frozenset({"event_dates"}), frozenset({"restrict_to_events", "description"})),
}
_CLASSES = {
    "cron": "CronTriggerTimetable",
    "multiple_cron": "MultipleCronTriggerTimetable",
    "delta": "DeltaTriggerTimetable",
    "events": "EventsTimetable",
}
# Where each target imports them from (Airflow 2.11 has no MultipleCronTriggerTimetable).
# Airflow 3.3.2's airflow.sdk.EventsTimetable cannot be serialized (the DAG processor's
# decoder wants a `_summary` its encoder never writes: "Failed to serialize DAG ...:
# '_summary'"); the core class, which the encoder handles, imports without a warning.
_MODULES = {
    3: {
        **dict.fromkeys(_CLASSES.values(), "airflow.sdk"),
        "EventsTimetable": "airflow.timetables.events",
    },
    2: {
        "CronTriggerTimetable": "airflow.timetables.trigger",
        "DeltaTriggerTimetable": "airflow.timetables.trigger",
        "EventsTimetable": "airflow.timetables.events",
    },
}
TIMEDELTA = CodeRef("datetime.timedelta")
LOCAL_DATETIME = CodeRef("pendulum.datetime")
_DURATION_RE = re.compile(
    r"P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?\Z"
)


@dataclass(frozen=True)
class Schedule:
    """A DAG's `schedule=` when it is not the staggered cron: None (manual only),
    "@once", "@continuous" or a timetable `Call`."""

    value: str | Call | None


def is_cron(schedule: str | None) -> bool:
    """A normalized store schedule that is a (staggered, charted) cron."""
    return bool(schedule) and not (
        schedule == MANUAL or schedule in PRESETS or schedule.startswith((NAMED_PREFIX, "{"))  # type: ignore[union-attr]
    )


def normalize_schedule(value: object) -> str:
    """A store schedule as kept in the model, or ValueError saying why it is none."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == MANUAL:
            return MANUAL
        if text in PRESETS:
            return text
        if text.startswith(NAMED_PREFIX):
            name = text[len(NAMED_PREFIX) :]
            if not NAME_RE.match(name):
                raise ValueError(f"{text!r}: a timetable name matches {NAME_RE.pattern[:-2]}")
            return text
        if text.startswith("{"):
            try:
                spec = json.loads(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a JSON timetable object") from None
            check_timetable(spec)
            return json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return normalize_cron(value)


def uncharted_reason(schedule: str) -> str:
    """Why the fleet report does not chart a non-cron schedule, in a few words."""
    if schedule == MANUAL:
        return "manual only (schedule=None): runs when triggered"
    if schedule == "@once":
        return "@once: runs one time"
    if schedule == "@continuous":
        return "@continuous: a new run as soon as the last one ends"
    if schedule.startswith(NAMED_PREFIX):
        return f"timetable {schedule[len(NAMED_PREFIX) :]} (fleet.yaml timetables)"
    return f"timetable {schedule}"


def staggered(schedule: str, key: str, window_minutes: int) -> str:
    """Stagger a cron; anything else is left as written (a timetable says its times)."""
    return stagger(schedule, key, window_minutes) if is_cron(schedule) else schedule


def is_sub_daily(schedule: str) -> bool:
    """schedule.is_sub_daily for any store schedule: @continuous runs all the time;
    manual, @once and timetables count as at most daily (setup tasks run every run)."""
    if is_cron(schedule):
        return _cron_is_sub_daily(schedule)
    return schedule == "@continuous"


def check_timetable(spec: object, where: str = "") -> None:
    """ValueError naming the first problem of a timetable written as plain data."""
    at = f"{where}: " if where else ""
    if not isinstance(spec, dict):
        raise ValueError(f"{at}a timetable is a mapping with a `timetable:` kind")
    kind = spec.get("timetable")
    if kind not in KINDS:
        hint = did_you_mean(str(kind), KINDS) if isinstance(kind, str) else ""
        raise ValueError(f"{at}timetable {kind!r} is not one of {', '.join(sorted(KINDS))}{hint}")
    required, optional = KINDS[kind]
    unknown = unknown_keys({k: v for k, v in spec.items() if k != "timetable"}, required | optional)
    if unknown:
        raise ValueError(f"{at}{unknown[0][1]}")
    missing = sorted(required - set(spec))
    if missing:
        raise ValueError(f"{at}a {kind} timetable needs {missing[0]!r}")
    if kind == "multiple_cron" and (not isinstance(spec["crons"], list) or not spec["crons"]):
        raise ValueError(f"{at}crons must be a non-empty list of cron expressions")
    if kind == "events" and (not isinstance(spec["event_dates"], list) or not spec["event_dates"]):
        raise ValueError(f"{at}event_dates must be a non-empty list of local date-times")
    for cron in spec["crons"] if kind == "multiple_cron" else [spec.get("cron")] * (kind == "cron"):
        try:
            normalize_cron(cron)
        except ValueError as exc:
            raise ValueError(f"{at}{exc}") from None
    try:
        if "delta" in spec and _seconds(spec["delta"], "delta") <= 0:
            raise ValueError("delta must be longer than zero")
        if "interval" in spec:
            _seconds(spec["interval"], "interval")
        for value in spec["event_dates"] if kind == "events" else ():
            _local_datetime(value)
    except ValueError as exc:
        raise ValueError(f"{at}{exc}") from None
    for key in ("run_immediately", "restrict_to_events"):
        if key in spec and not isinstance(spec[key], bool):
            raise ValueError(f"{at}{key} must be true or false")
    if "description" in spec and not isinstance(spec["description"], str):
        raise ValueError(f"{at}description must be a string")


def check_named_timetables(raw: object, airflow_target: int = 3) -> dict[str, dict[str, Any]]:
    """fleet.yaml `timetables:` NAME -> timetable; ValueError naming the bad one."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("timetables must map a name to a timetable")
    for name, spec in raw.items():
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ValueError(f"timetables.{name}: a name matches {NAME_RE.pattern[:-2]}")
        check_timetable(spec, f"timetables.{name}")
        try:
            timetable_call(spec, "UTC", airflow_target)
        except ValueError as exc:
            raise ValueError(f"timetables.{name}: {exc}") from None
    return {name: dict(spec) for name, spec in raw.items()}


def schedule_for(
    schedule: str, timezone: str, named: dict[str, dict[str, Any]], airflow_target: int
) -> Schedule | None:
    """What the DAG's `schedule=` is, or None for the staggered cron the renderer
    writes; ValueError for a timetable name fleet.yaml does not declare, or a class
    the target's Airflow does not have."""
    if is_cron(schedule):
        return None
    if schedule == MANUAL:
        return Schedule(None)
    if schedule in PRESETS:
        return Schedule(schedule)
    if schedule.startswith(NAMED_PREFIX):
        name = schedule[len(NAMED_PREFIX) :]
        if name not in named:
            hint = did_you_mean(name, named)
            raise ValueError(f"no timetable {name!r} under timetables in fleet.yaml{hint}")
        spec = named[name]
    else:
        spec = json.loads(schedule)
    return Schedule(timetable_call(spec, timezone, airflow_target))


def timetable_call(spec: dict[str, Any], timezone: str, airflow_target: int) -> Call:
    """The checked timetable as a constructor call with literal arguments."""
    check_timetable(spec)
    kind = spec["timetable"]
    module = _MODULES[airflow_target].get(_CLASSES[kind])
    if module is None:
        raise ValueError(
            f"a {kind} timetable needs Airflow 3 ({_CLASSES[kind]}); the fleet targets "
            f"Airflow {airflow_target}"
        )
    callee = CodeRef(f"{module}.{_CLASSES[kind]}")
    kwargs: dict[str, Any] = {}
    if "interval" in spec:
        kwargs["interval"] = _timedelta(spec["interval"], "interval")
    if "run_immediately" in spec:
        kwargs["run_immediately"] = spec["run_immediately"]
    if kind == "cron":
        kwargs["timezone"] = timezone
        return Call(callee, (normalize_cron(spec["cron"]),), kwargs)
    if kind == "multiple_cron":
        kwargs["timezone"] = timezone
        return Call(callee, tuple(normalize_cron(c) for c in spec["crons"]), kwargs)
    if kind == "delta":
        return Call(callee, (_timedelta(spec["delta"], "delta"),), kwargs)
    moments = sorted({_local_datetime(v) for v in spec["event_dates"]})
    dates = [
        Call(
            LOCAL_DATETIME,
            (m.year, m.month, m.day, m.hour, m.minute),
            {"tz": timezone},
        )
        for m in moments
    ]
    kwargs.update({k: spec[k] for k in ("restrict_to_events", "description") if k in spec})
    return Call(callee, (dates,), kwargs)


def _seconds(value: object, key: str) -> int:
    """A duration as whole seconds: an int, or ISO 8601 `P[nD][T[nH][nM][nS]]`."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _DURATION_RE.match(value) if isinstance(value, str) else None
    if not match or value in ("P", "PT") or str(value).endswith("T"):
        raise ValueError(
            f"{key} must be seconds or an ISO 8601 duration (PT30M, P1D), not {value!r}"
        )
    parts = {k: int(v or 0) for k, v in match.groupdict().items()}
    return ((parts["days"] * 24 + parts["hours"]) * 60 + parts["minutes"]) * 60 + parts["seconds"]


def _timedelta(value: object, key: str) -> Call:
    return Call(TIMEDELTA, (), {"seconds": _seconds(value, key)})


def _local_datetime(value: object) -> dt.datetime:
    """An event's wall-clock time in the customer's zone: `2026-12-01T06:00` (a date
    alone is midnight). An offset is refused: the customer's timezone says it."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time())
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"event date {value!r} is not an ISO date-time (2026-12-01T06:00)"
            ) from None
    else:
        raise ValueError(f"event date {value!r} is not an ISO date-time (2026-12-01T06:00)")
    if moment.tzinfo is not None:
        raise ValueError(
            f"event date {value!r} has an offset: write local time (the customer's timezone)"
        )
    if moment.second or moment.microsecond:
        raise ValueError(f"event date {value!r}: events start on a whole minute")
    return moment
