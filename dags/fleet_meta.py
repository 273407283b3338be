"""fleet_meta: the nightly meta-DAG that publishes the generated DAG fleet.

sync -> check:
- sync: reads the store (FLEET_STORE) and the target (FLEET_TARGET), builds and verifies
  every changed customer once (with FLEET_ENVIRONMENT: only this environment's share of
  fleet.yaml `environments:`), logs every file it adds (+), changes (~) or removes (-)
  and one line per invalid customer error, then publishes that same plan. Valid
  customers are published even when others are invalid (an invalid customer's files
  stay as they were). A refused prune (more than 10% of the fleet would go) fails here
  with nothing deleted: check the store, then trigger the DAG with {"force_prune": true}
  if the removal is intended.
- check: fails the run when any customer is invalid, after the publish.
The sync task also writes the fleet report (fleet-report.html) beside the manifest.

Schedule: 01:00 UTC, hours before any US district's main DAG (03:00 local by default).
Nothing is read at parse time: the environment is read and the `composer` package
imported inside the tasks, so an unreachable store can never break parsing.
Templates: FLEET_TEMPLATES, else fleet_templates/ beside this file (where
`fleet deploy` puts them), else the package's default.
Alerting: `on_failure_callback` below is the hook point (Slack, PagerDuty, ...).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG, CronTriggerTimetable, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import task
    from airflow.models.dag import DAG
    from airflow.timetables.trigger import CronTriggerTimetable

log = logging.getLogger("airflow.task")
MAX_LOGGED_LINES = 2000  # per section of the plan log; the rest is counted
MAX_XCOM_ERRORS = 200


def on_failure(context: dict[str, Any]) -> None:
    """Alerting hook for every failed task: replace or extend composer.callbacks.log_failure
    (or add a call here) to post to Slack or page through PagerDuty."""
    from composer.callbacks import log_failure

    log_failure(context)


def _config() -> tuple[str, str, Path]:
    """Store, target and templates, read from the environment at run time."""
    store = os.environ.get("FLEET_STORE", "")
    target = os.environ.get("FLEET_TARGET", "")
    missing = [
        name for name, value in (("FLEET_STORE", store), ("FLEET_TARGET", target)) if not value
    ]
    if missing:
        raise RuntimeError(
            f"{' and '.join(missing)} not set: set them in the environment "
            "(Composer: software_config.env_variables, see terraform/main.tf)"
        )
    env = os.environ.get("FLEET_TEMPLATES")
    beside = Path(__file__).resolve().parent / "fleet_templates"
    if env:
        templates = Path(env)
    elif (beside / "fleet.yaml").is_file():
        templates = beside
    else:
        from composer.pipeline import default_templates_dir

        templates = default_templates_dir()
    return store, target, templates


def _environment() -> str | None:
    """FLEET_ENVIRONMENT, when the fleet is spread over several Composer environments."""
    return os.environ.get("FLEET_ENVIRONMENT") or None


def _summary(fleet_plan: Any) -> dict[str, Any]:
    from composer.error_lines import error_lines  # a broken template: one line

    plan = fleet_plan.plan
    return {
        "plan": plan.summary(),
        "prune_refused": plan.prune_refused,
        "invalid": fleet_plan.invalid_customers,
        "errors": error_lines(fleet_plan.errors)[:MAX_XCOM_ERRORS],
        "error_count": len(fleet_plan.errors),
    }


def _log_lines(lines: list[str], level: int = logging.INFO) -> None:
    for line in lines[:MAX_LOGGED_LINES]:
        log.log(level, "%s", line)
    if len(lines) > MAX_LOGGED_LINES:
        log.log(level, "... and %d more", len(lines) - MAX_LOGGED_LINES)


def _fail(message: str) -> Exception:
    """An exception that fails the task without retrying it."""
    try:
        from airflow.sdk.exceptions import AirflowFailException
    except ImportError:  # Airflow 2.11
        from airflow.exceptions import AirflowFailException
    return AirflowFailException(message)


@task(task_id="sync")
def sync_fleet_task(**context: Any) -> dict[str, Any]:
    """Plan once, log the plan, and apply it (valid customers even when some are invalid).

    One task, so the fleet is built once per run: a plan is too large for XCom, and the
    tasks of a run may land on different Composer workers, so it is never handed over."""
    import composer
    from composer.errors import PruneRefused
    from composer.pipeline import apply_fleet, plan_fleet

    force = bool((context.get("params") or {}).get("force_prune", False))
    store, target, templates = _config()
    log.info(
        "fleet sync: store %s, target %s, templates %s, composer package %s",
        store,
        target,
        templates,
        Path(composer.__file__).parent,
    )
    # FLEET_ENVIRONMENT: this environment's name in fleet.yaml `environments:`; its meta-DAG
    # publishes its own share (customers held for a move are written by a later run).
    fleet_plan = plan_fleet(store, target, templates, force_prune=force, environment=_environment())
    plan = fleet_plan.plan
    _log_lines(
        [f"+ {p}" for p in plan.added]
        + [f"~ {p}" for p in plan.changed]
        + [f"- {p}" for p in plan.removed]
    )
    _log_lines([f"warning: {w}" for w in fleet_plan.builder.fleet.warnings], logging.WARNING)
    from composer.model.versions import plan_lines

    _log_lines(plan_lines(fleet_plan.builder))  # who runs which template version
    from composer.error_lines import error_lines

    _log_lines([f"invalid: {e}" for e in error_lines(fleet_plan.errors)], logging.ERROR)
    summary = _summary(fleet_plan)
    log.info(
        "Plan: %s; %d invalid customers%s",
        summary["plan"],
        len(summary["invalid"]),
        f" ({', '.join(summary['invalid'])})" if summary["invalid"] else "",
    )
    try:
        result = apply_fleet(fleet_plan, force_prune=force)
    except PruneRefused as exc:
        raise _fail(
            f"{exc}; nothing was deleted. Check the store; if the removal is intended, "
            'trigger fleet_meta with {"force_prune": true}'
        ) from exc
    summary = _summary(fleet_plan)  # applying may find more (customers built again)
    log.info(
        "Applied to %s: %d written, %d removed; %d invalid customers left untouched",
        target,
        result.written,
        result.deleted,
        len(summary["invalid"]),
    )
    from composer.report import publish_report

    log.info("%s", publish_report(fleet_plan))  # fleet-report.html, beside the manifest
    return summary


@task(task_id="check", retries=0)
def check_fleet_task(applied: dict[str, Any]) -> None:
    """Fail the run when any customer is invalid (the valid ones are already published)."""
    if not applied["invalid"]:
        log.info("every customer is valid")
        return
    _log_lines([f"invalid: {line}" for line in applied["errors"]], logging.ERROR)
    raise _fail(
        f"{len(applied['invalid'])} invalid customers: {', '.join(applied['invalid'])}; "
        "their previously published files were left as they were. Fix their rows "
        "(the errors above and in the sync task log name customer, integration and field), "
        "then clear this run or wait for the next one"
    )


with DAG(
    dag_id="fleet_meta",
    description="Publish the generated DAG fleet from the store (sync, then check)",
    schedule=CronTriggerTimetable("0 1 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,  # publishes from its first night, no human step
    dagrun_timeout=dt.timedelta(hours=2),
    params={"force_prune": False},
    tags=["dagfleet", "variant:meta"],
    doc_md=__doc__,
    default_args={
        "owner": "data-platform",
        "retries": 1,
        "retry_delay": dt.timedelta(minutes=5),
        "on_failure_callback": on_failure,
    },
):
    check_fleet_task(sync_fleet_task())
