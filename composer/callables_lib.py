"""Python callables templates may hand to PythonOperator, BranchPythonOperator and
ShortCircuitOperator (list them under `imports:` in the template or templates/fleet.yaml).

Shipped with the `composer` package by `fleet deploy`, so workers and the verifier import
them from the DAG folder. Imported by generated DAGs at parse time: stdlib only. Their
arguments come from `op_kwargs` (plain data from the template and its params); Airflow
adds the run's context (`**context`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

log = logging.getLogger("dagfleet.callables")

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def run_moment(context: Mapping[str, Any]) -> dt.datetime:
    """The time the run stands for: its logical date, else (an Airflow 3 run triggered by
    hand or by an asset, which may have none) when it was due, else now."""
    moment = context.get("logical_date")
    if moment is None:
        moment = getattr(context.get("dag_run"), "run_after", None)
    return moment if moment is not None else dt.datetime.now(dt.UTC)


def local_weekday(context: Mapping[str, Any], timezone: str) -> str:
    """`monday` ... `sunday`: the run's weekday in the district's timezone."""
    return WEEKDAYS[run_moment(context).astimezone(ZoneInfo(timezone)).weekday()]


def _task_ids(targets: str | Iterable[str], context: Mapping[str, Any]) -> list[str]:
    """Task ids as the template writes them, made full: a branch inside a task group
    (an integration in a main DAG) names its siblings without the group prefix, and
    each name is looked up from the branching task's group outwards."""
    names = [targets] if isinstance(targets, str) else list(targets)
    task = context.get("task")
    dag = getattr(task, "dag", None)
    known = getattr(dag, "task_dict", {}) or {}
    parts = str(getattr(task, "task_id", "")).split(".")[:-1]
    found = []
    for name in names:
        candidates = [".".join([*parts[:depth], name]) for depth in range(len(parts), -1, -1)]
        found.append(next((c for c in candidates if c in known), name))
    return found


def choose_by_weekday(
    branches: Mapping[str, str | list[str]],
    default: str | list[str] | None = None,
    timezone: str = "UTC",
    **context: Any,
) -> list[str]:
    """BranchPythonOperator: the task(s) to run on the run's local weekday.

    `branches` maps weekday names (`monday`) to a task id or a list of them; any other
    day runs `default` (none: every downstream task is skipped)."""
    unknown = sorted(set(branches) - set(WEEKDAYS))
    if unknown:
        raise ValueError(f"choose_by_weekday: {unknown[0]!r} is not a weekday ({WEEKDAYS})")
    chosen = branches.get(local_weekday(context, timezone), default)
    return [] if chosen is None else _task_ids(chosen, context)


def is_school_day(
    timezone: str = "UTC",
    weekdays: Iterable[str] = WEEKDAYS[:5],
    skip_dates: Iterable[str] = (),
    **context: Any,
) -> bool:
    """ShortCircuitOperator: True on a school day (one of `weekdays`, not one of
    `skip_dates`, YYYY-MM-DD, in the district's timezone); otherwise what follows is
    skipped."""
    moment = run_moment(context).astimezone(ZoneInfo(timezone))
    day_name = WEEKDAYS[moment.weekday()]
    school_day = day_name in set(weekdays) and moment.date().isoformat() not in set(skip_dates)
    log.info("school day %s (%s): %s", moment.date(), day_name, school_day)
    return school_day


def record_run(customer_id: str, integration_id: str, **context: Any) -> dict[str, str]:
    """PythonOperator: one structured log line for the run, returned as its XCom."""
    summary = {
        "customer_id": customer_id,
        "integration_id": integration_id,
        "run_id": str(context.get("run_id", "")),
        "moment": run_moment(context).isoformat(),
    }
    log.info("dagfleet run: %s", summary)
    return summary
