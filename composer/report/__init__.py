"""The fleet report: one HTML page of when the fleet's DAGs start, per template and
environment, and which customers are invalid, computed from the same plan as `fleet plan`.

Schedules come from the model, not from the built files: a plan builds only changed
customers, and composing the rest just for their schedules would cost ~10 ms each. A
DAG's schedule is a function of its customer's row and the fleet settings alone
(`dagshape.main_schedule` / `cron_schedule`, which composition itself uses), so the
whole fleet's timing costs microseconds a customer and cannot disagree with the files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import TYPE_CHECKING

from composer.compose.dagshape import cron_schedule, main_schedule
from composer.compose.timetables import is_cron, uncharted_reason
from composer.plan.changes import REPORT
from composer.report.figures import (
    DEFAULT_ENVIRONMENT,
    DagTiming,
    District,
    Environment,
    FleetFacts,
    compute,
)
from composer.report.html import render

if TYPE_CHECKING:
    from composer.pipeline import FleetPlan


def tomorrow_utc() -> dt.date:
    return dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)


def environments(fleet_plan: FleetPlan, only: str | None = None) -> tuple[Environment, ...]:
    """The fleet's environments (fleet.yaml `environments:`; `only`: that one). Without
    them there is one, the target, with no capacity set."""
    configured = fleet_plan.builder.settings.environments
    if not configured:
        return (Environment(DEFAULT_ENVIRONMENT, fleet_plan.target.url, None),)
    return tuple(
        Environment(e.name, e.target, e.capacity) for e in configured if only in (None, e.name)
    )


def _homes(fleet_plan: FleetPlan) -> dict[str, str]:
    """Each customer's environment (composer/plan/environments.py), or the default one."""
    if not fleet_plan.builder.settings.environments:
        return {}
    from composer.plan.fleetenvs import assignment_of

    return assignment_of(fleet_plan.builder).environment


def facts(fleet_plan: FleetPlan, day: dt.date, only: str | None = None) -> FleetFacts:
    """What the plan publishes, as the report's input: every DAG of every customer that
    the plan keeps or builds (invalid customers are listed with their errors instead),
    in every environment, or `only` that one."""
    builder = fleet_plan.builder
    fleet, settings = builder.fleet, builder.settings
    invalid = set(fleet_plan.invalid_customers)
    timings: list[DagTiming] = []
    districts: list[District] = []
    uncharted: list[tuple[str, str]] = []
    homes = _homes(fleet_plan)
    for customer_id in builder.customer_ids():
        if customer_id in invalid:
            continue
        home = homes.get(customer_id, DEFAULT_ENVIRONMENT)
        if homes and only not in (None, home):
            continue
        customer = fleet.customers[customer_id]
        integrations = {i.integration_id: i for i in customer.integrations}
        off = set(settings.disabled_templates)  # the kill switch (composer/model/versions.py)
        main = {i.template for i in customer.integrations if i.schedule is None} - off
        used: set[str] = set()
        for dag_id, integration_id in builder.composer.dag_ids(customer):
            if integration_id is None:
                schedule, variant, templates = main_schedule(customer, settings), "main", main
            elif integration_id not in integrations:  # the roll-up: started by its assets
                uncharted.append(
                    (customer_id, f"{dag_id}: starts when its descendants' data has loaded")
                )
                continue
            elif integrations[integration_id].template in off:
                uncharted.append((customer_id, f"{dag_id}: disabled (manual runs only)"))
                continue
            else:
                integration = integrations[integration_id]
                schedule = cron_schedule(customer, integration, settings)
                variant, templates = "cron", {integration.template}
            if not is_cron(schedule):  # manual, @once, @continuous, a timetable
                uncharted.append((customer_id, f"{dag_id}: {uncharted_reason(schedule)}"))
                continue
            used |= templates
            timings.append(
                DagTiming(
                    dag_id,
                    customer_id,
                    variant,
                    schedule,
                    customer.timezone,
                    tuple(sorted(templates)),
                    home,
                )
            )
        if customer.legacy_dag_file:
            uncharted.append(
                (
                    customer_id,
                    f"legacy file {customer.legacy_dag_file}: its schedule is its own code",
                )
            )
        districts.append(District(customer_id, customer.timezone, tuple(sorted(used)), home))
    return FleetFacts(
        day=day,
        environments=environments(fleet_plan, only),
        timings=tuple(timings),
        districts=tuple(districts),
        uncharted=tuple(uncharted),
        errors=tuple((e.customer_id, str(e)) for e in fleet_plan.errors),
    )


def report_html(
    fleet_plan: FleetPlan, day: dt.date | None = None, environment: str | None = None
) -> str:
    """The report page for `day` (default: tomorrow, UTC), of every environment or one."""
    if environment == DEFAULT_ENVIRONMENT and not fleet_plan.builder.settings.environments:
        environment = None
    figures = compute(facts(fleet_plan, day or tomorrow_utc(), environment))
    return render(figures, source=fleet_plan.target.url)


def publish_report(fleet_plan: FleetPlan, day: dt.date | None = None) -> str:
    """Write the report beside the manifest (unless it is unchanged); says what it did.
    The write is conditional on what the plan listed, like every other file."""
    share = fleet_plan.share.environment if fleet_plan.share else None  # its own environment
    data = report_html(fleet_plan, day, share.name if share else None).encode()
    state = fleet_plan.objects.get(REPORT)
    if state is not None and state.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest():
        return f"report unchanged: {REPORT}"
    fleet_plan.target.write(REPORT, data, state)
    return f"report written: {REPORT} ({len(data):,} bytes)"
