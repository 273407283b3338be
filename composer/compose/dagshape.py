"""The shapes of a customer's generated DAGs: the main DAG, the cron DAGs, where setup
tasks go, and the checks on a DAG's task and group ids.

A mixin of composer.compose.composition.Composer (which composes the integration blocks these
DAGs are made of); composer/compose/rollup.py builds the roll-up DAG the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from composer.compose import params as layers
from composer.compose.dagspec import DagSpec, GroupSpec, TaskSpec
from composer.compose.taskgraph import inner_groups, order_integrations
from composer.compose.timetables import is_sub_daily, normalize_schedule, schedule_for, staggered
from composer.model.fleet import Customer, Integration
from composer.model.templates import Template


def main_dag_id(customer_id: str) -> str:
    return f"{customer_id}__main"


def cron_dag_id(customer_id: str, integration_id: str) -> str:
    return f"{customer_id}__{integration_id}"


def main_schedule(customer: Customer, settings: Any) -> str:
    """The main DAG's staggered cron (local time), or its non-cron schedule as written
    (composer/compose/timetables.py). One place, read by composition and by the fleet report,
    which needs every customer's schedule without composing it."""
    cron = normalize_schedule(customer.main_schedule or settings.default_main_schedule)
    return staggered(cron, main_dag_id(customer.customer_id), settings.stagger_minutes)


def cron_schedule(customer: Customer, integration: Integration, settings: Any) -> str:
    """An own-DAG integration's staggered cron (local time); see main_schedule."""
    dag_id = cron_dag_id(customer.customer_id, integration.integration_id)
    return staggered(integration.schedule or "", dag_id, settings.stagger_minutes)


class DagShapes:
    """DAG-level assembly; the Composer provides settings, _block, _setup_tasks, ..."""

    settings: Any

    @staticmethod
    def _needs_setup(customer: Customer, integration: Integration) -> bool:
        """Setup tasks (the dataset check) run in the main DAG and in every at-most-daily
        cron DAG; a sub-daily DAG gets them only when no such DAG of its customer runs
        them (a legacy customer with only hourly integrations), not in every hourly run."""
        if not is_sub_daily(integration.schedule or ""):
            return True
        if not customer.legacy_dag_file:
            return False
        return not any(i.schedule and not is_sub_daily(i.schedule) for i in customer.integrations)

    def _main_dag(self, customer: Customer, blocks: list, descendants: list[str]) -> DagSpec:
        dag_id = main_dag_id(customer.customer_id)
        params = layers.for_customer(self.settings, customer, dag_id, descendants)
        setup = self._setup_tasks(customer, params)
        tasks = list(setup)
        groups: list[GroupSpec] = []
        blocks = order_integrations(self, customer, blocks)
        for integration, template, block_tasks, group in blocks:
            groups.append(group)
            resolver = (
                layers.for_integration(
                    self.settings, customer, integration, template, dag_id, descendants
                )
                if template.groups
                else None
            )
            groups.extend(
                inner_groups(
                    self, customer, integration, template, block_tasks, group.path, resolver
                )
            )
            tasks.extend(self._after(setup, block_tasks))
        self._check_unique_nodes(customer, setup, [(i, b, g) for i, _, b, g in blocks])
        schedule = main_schedule(customer, self.settings)
        resolvers = [
            (i, t, layers.for_integration(self.settings, customer, i, t, dag_id, descendants))
            for i, t, _, _ in blocks
        ]
        return DagSpec(
            dag_id=dag_id,
            customer_id=customer.customer_id,
            variant="main",
            schedule=schedule,
            timetable=self._timetable(customer, None, "main_schedule", schedule),
            timezone=customer.timezone,
            start_date=self.start_after.get(customer.customer_id, self.settings.start_date),
            description=f"{customer.name}: nightly main DAG",
            tags=self._tags(customer, [t.name for _, t, _, _ in blocks], "main"),
            default_args=self._dag_default_args(customer, None, params),
            groups=tuple(groups),
            tasks=tuple(tasks),
            templates=tuple(sorted({t.name for _, t, _, _ in blocks})),
            paused_at_creation=self.settings.paused_at_creation,
            settings=self._dag_settings(customer, "main", resolvers, params),
        )

    def _cron_dag(
        self,
        customer: Customer,
        integration: Integration,
        template: Template,
        descendants: list[str],
        *,
        with_setup: bool = True,
    ) -> DagSpec:
        dag_id = cron_dag_id(customer.customer_id, integration.integration_id)
        _, _, block_tasks, _ = self._block(customer, integration, template, descendants, "cron")
        params = layers.for_customer(self.settings, customer, dag_id, descendants)
        setup = self._setup_tasks(customer, params) if with_setup else []
        self._check_unique_nodes(customer, setup, [(integration, block_tasks, None)])
        resolver = layers.for_integration(
            self.settings, customer, integration, template, dag_id, descendants
        )
        default_args = dict(self._dag_default_args(customer, integration, params))
        default_args.update(self._default_args(customer, integration, template, resolver))
        description = self._substitute(
            customer,
            integration,
            "cron.description",
            (template.cron or {}).get("description") or "",
            resolver,
        )
        schedule = cron_schedule(customer, integration, self.settings)
        return DagSpec(
            dag_id=dag_id,
            customer_id=customer.customer_id,
            variant="cron",
            schedule=schedule,
            timetable=self._timetable(customer, integration, "schedule", schedule),
            timezone=customer.timezone,
            start_date=self.start_after.get(customer.customer_id, self.settings.start_date),
            description=str(
                description or f"{customer.name}: {integration.integration_id} ({template.name})"
            ),
            tags=self._tags(customer, [template.name], "cron"),
            default_args=default_args,
            groups=tuple(
                inner_groups(self, customer, integration, template, block_tasks, (), resolver)
            ),
            tasks=tuple([*setup, *self._after(setup, block_tasks)]),
            templates=(template.name,),
            paused_at_creation=self.settings.paused_at_creation,
            settings=self._dag_settings(
                customer, "cron", [(integration, template, resolver)], params
            ),
        )

    def _timetable(
        self, customer: Customer, integration: Integration | None, field: str, schedule: str
    ) -> Any:
        """The DAG's non-cron schedule (composer/compose/timetables.py), or None for the cron."""
        try:
            return schedule_for(
                schedule,
                customer.timezone,
                getattr(self.settings, "timetables", {}),
                self.settings.airflow_target,
            )
        except ValueError as exc:
            self._fail(customer, integration, field, str(exc))

    @staticmethod
    def _after(setup: list[TaskSpec], block: list[TaskSpec]) -> list[TaskSpec]:
        """Make the block's root tasks run after every leaf of the setup tasks."""
        if not setup:
            return block
        setup_refs = {t.ref for t in setup}
        leaves = tuple(
            t.ref
            for t in setup
            if not any(t.ref in s.upstream for s in setup if s.ref in setup_refs)
        )
        return [dataclasses.replace(t, upstream=leaves) if not t.upstream else t for t in block]

    def _check_unique_nodes(
        self,
        customer: Customer,
        setup: list[TaskSpec],
        blocks: list[tuple[Integration, list[TaskSpec], GroupSpec | None]],
    ) -> None:
        """Task and task-group ids share one namespace per DAG in Airflow; a clash (an
        integration id equal to a setup task's, an added task with a setup task's id)
        would be a DuplicateTaskIdFound at parse time, so it is a ConfigError here."""
        owners: dict[str, str] = {}
        for task in setup:
            for node in self._nodes(task):
                owners.setdefault(node, f"fleet.setup_tasks.{task.task_id}")
        for integration, tasks, group in blocks:
            mine = f"integration {integration.integration_id}"
            outer = ".".join(group.path) if group is not None else ""
            if outer and owners.get(outer, mine) != mine:
                self._fail(
                    customer,
                    integration,
                    "integration_id",
                    f"{outer!r} is already the id of a task in this DAG ({owners[outer]})",
                )
            overrides = integration.task_overrides or {}
            for task in tasks:
                for node in self._nodes(task):
                    if owners.setdefault(node, mine) != mine:
                        where = "task_overrides" if task.task_id in overrides else "tasks"
                        self._fail(
                            customer,
                            integration,
                            f"{where}.{task.task_id}",
                            f"{node!r} is already the id of a task or group in this DAG "
                            f"({owners[node]})",
                        )

    @staticmethod
    def _nodes(task: TaskSpec) -> list[str]:
        """The ids a task claims in its DAG: each enclosing group's, then its own."""
        groups = [".".join(task.groups[: depth + 1]) for depth in range(len(task.groups))]
        return [*groups, task.ref]

    def _tags(self, customer: Customer, templates: list[str], variant: str) -> tuple[str, ...]:
        return (
            f"customer:{customer.customer_id}",
            *(f"template:{name}" for name in sorted(set(templates))),
            f"variant:{variant}",
        )
