"""Composition: templates + params + overrides -> DAG specs for one customer.

Pure: everything it needs (the validated fleet, settings, templates, the operator
catalog) is handed in, and every problem becomes a ConfigError naming the customer,
the integration and the field.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import json_merge_patch

from composer.compose import params as layers
from composer.compose.dag_settings import DagSettingsMixin
from composer.compose.dagshape import DagShapes, cron_dag_id, main_dag_id
from composer.compose.dagspec import DagSpec, GroupSpec, TaskSpec
from composer.compose.operators import OperatorCatalog
from composer.compose.rollup import ROLLUP_ID, rollup_dag, rollup_dag_id
from composer.compose.substitution import ParamResolver
from composer.compose.task_args import TaskArgs
from composer.compose.taskgraph import checked_expand, local_refs
from composer.compose.taskshape import expand_override_problem
from composer.compose.typed_values import TypedArgs
from composer.compose.unused_params import unknown_params
from composer.errors import ConfigError, InvalidConfig
from composer.model.fleet import (  # RESERVED_INTEGRATION_IDS: re-exported, checked in model
    RESERVED_INTEGRATION_IDS,  # noqa: F401
    Customer,
    Fleet,
    Integration,
)
from composer.model.settings import FleetSettings
from composer.model.templates import Template, TemplateCatalog, TemplateError, check_tasks
from composer.model.versions import choose, finish, leaves_main, param_view

SETUP_GROUP = ""


class Composer(DagShapes, DagSettingsMixin, TaskArgs, TypedArgs):
    """Builds the DagSpecs of one customer at a time."""

    def __init__(
        self,
        fleet: Fleet,
        settings: FleetSettings,
        templates: TemplateCatalog,
        operators: OperatorCatalog,
    ) -> None:
        self.fleet = fleet
        self.settings = settings
        self.templates = templates
        self.operators = operators
        # Customers that moved in from another Composer environment: their DAGs start
        # after the move (composer/plan/fleetenvs.py), so no tick the old one ran runs again.
        self.start_after: dict[str, dt.datetime] = {}
        self._allowed_operators: frozenset[str] | None = None

    # -- public ---------------------------------------------------------------

    def dag_ids(self, customer: Customer) -> list[tuple[str, str | None]]:
        """(dag_id, integration_id or None for the main DAG) this customer will own,
        known before composing, so collisions are found before any work."""
        ids: list[tuple[str, str | None]] = []
        if not customer.legacy_dag_file:
            ids.append((main_dag_id(customer.customer_id), None))
        ids += [
            (cron_dag_id(customer.customer_id, i.integration_id), i.integration_id)
            for i in customer.integrations
            if i.schedule is not None
        ]
        if self.settings.rollup_template and self.fleet.active_descendants(customer.customer_id):
            ids.append((rollup_dag_id(customer.customer_id), ROLLUP_ID))
        return ids

    def rollup_sources_template(self) -> str:
        """The template the roll-ups read (`rollup.sources`), '' when there is none."""
        try:
            template = self.templates.get(self.settings.rollup_template or "")
        except TemplateError:
            return ""
        return str((template.rollup or {}).get("sources") or "")

    def compose(self, customer: Customer) -> tuple[list[DagSpec], list[ConfigError]]:
        specs: list[DagSpec] = []
        errors: list[ConfigError] = []
        main_blocks: list[tuple[Integration, Template, list[TaskSpec], GroupSpec]] = []
        is_parent = bool(self.fleet.children.get(customer.customer_id))
        unused = unknown_params(
            self.settings, customer, lambda name: param_view(self.templates.get(name)), is_parent
        )
        if unused:  # a typo'd param: the rest would be judged against what was not meant
            return [], unused
        descendants = self.fleet.active_descendants(customer.customer_id)
        for integration in customer.integrations:
            try:
                variant = "main" if integration.schedule is None else "cron"
                if variant == "main" and leaves_main(self.settings, integration):
                    continue  # the kill switch (composer/model/versions.py)
                template = self._template(customer, integration, variant)
                if variant == "main":
                    main_blocks.append(
                        self._block(customer, integration, template, descendants, "main")
                    )
                else:
                    specs.append(
                        self._cron_dag(
                            customer,
                            integration,
                            template,
                            descendants,
                            with_setup=self._needs_setup(customer, integration),
                        )
                    )
            except InvalidConfig as exc:
                errors.append(exc.error)
        if not customer.legacy_dag_file:
            try:
                specs.insert(0, self._main_dag(customer, main_blocks, descendants))
            except InvalidConfig as exc:
                errors.append(exc.error)
        if descendants and self.settings.rollup_template:
            try:
                rollup = rollup_dag(self, customer, descendants)
                if rollup is not None:
                    specs.append(rollup)
            except InvalidConfig as exc:
                errors.append(exc.error)
        specs = finish(self.settings, self.templates, customer, specs)  # versions, kill switch
        # A customer-level mistake is met once per DAG and integration: report it once.
        return specs, list(dict.fromkeys(errors))

    # -- one integration ------------------------------------------------------

    def _template(self, customer: Customer, integration: Integration, variant: str) -> Template:
        try:
            template = self.templates.get(integration.template)
        except TemplateError as exc:
            self._fail(customer, integration, exc.field, str(exc))
        template, _ = choose(self.settings, customer, integration, template)  # its version
        if getattr(template, variant) is None:
            where = (
                "a NULL schedule (main DAG)" if variant == "main" else "a schedule (own cron DAG)"
            )
            self._fail(
                customer,
                integration,
                "schedule",
                f"template {template.name!r} cannot run with {where}",
            )
        return template

    def _block(
        self,
        customer: Customer,
        integration: Integration,
        template: Template,
        descendants: list[str],
        variant: str,
        extra: dict[str, Any] | None = None,
    ) -> tuple[Integration, Template, list[TaskSpec], GroupSpec]:
        """One integration's tasks; `extra` adds values (a roll-up's per-source params)."""
        dag_id = (
            main_dag_id(customer.customer_id)
            if variant == "main"
            else cron_dag_id(customer.customer_id, integration.integration_id)
        )
        params = layers.for_integration(
            self.settings, customer, integration, template, dag_id, descendants
        )
        resolver: Any = params if not extra else (lambda n: extra[n] if n in extra else params(n))
        raw_tasks = self._merged_tasks(customer, integration, template)
        overridden = integration.task_overrides or {}
        tasks = {
            task_id: self._substitute_task(
                customer,
                integration,
                f"{'task_overrides' if task_id in overridden else 'tasks'}.{task_id}",
                task,
                resolver,
            )
            for task_id, task in raw_tasks.items()
        }
        allowed = set(self.settings.imports) | set(template.imports)
        outer = (integration.integration_id,) if variant == "main" else ()
        specs = []
        for task_id, task in tasks.items():
            field = f"{'task_overrides' if integration.task_overrides and task_id in integration.task_overrides else 'tasks'}.{task_id}"
            mapped = checked_expand(self, customer, integration, field, task)
            given = {**(task.get("args") or {}), **mapped}  # mapped ones are checked alike
            args = self._checked_args(
                customer, integration, field, task["operator"], given, allowed
            )
            mapped = {k: args.pop(k) for k in mapped}
            groups = (*outer, *task["group"].split(".")) if task.get("group") else outer
            specs.append(
                TaskSpec(
                    task_id,
                    groups,
                    task["operator"],
                    args,
                    tuple(task.get("upstream", [])),
                    expand=mapped or None,
                )
            )
        specs = local_refs(self, customer, integration, specs, variant)
        group_args = (
            self._default_args(customer, integration, template, resolver)
            if variant == "main"
            else None
        )
        tooltip = str(
            self._substitute(
                customer,
                integration,
                "main.tooltip",
                (template.main or {}).get("tooltip") or template.description,
                resolver,
            )
        )
        return integration, template, specs, GroupSpec(outer, tooltip, group_args or None)

    def _merged_tasks(
        self, customer: Customer, integration: Integration, template: Template
    ) -> dict[str, Any]:
        overrides = integration.task_overrides
        if not overrides:
            return template.tasks
        self._check_names(customer, integration, template, overrides)
        mapped = expand_override_problem(overrides)
        if mapped:
            self._fail(customer, integration, *mapped)
        for task_id, patch in overrides.items():
            if patch is None and task_id not in template.tasks:
                # RFC 7396 would ignore it; a typo'd removal must not pass silently.
                self._fail(
                    customer,
                    integration,
                    f"task_overrides.{task_id}",
                    f"no task {task_id!r} in template {template.name!r} to remove",
                )
            if patch is not None and not isinstance(patch, dict):
                self._fail(
                    customer,
                    integration,
                    f"task_overrides.{task_id}",
                    "must be a task mapping or null",
                )
            for path, key, value in layers.walk(
                patch.get("args") if isinstance(patch, dict) else None,
                f"task_overrides.{task_id}.args",
            ):
                if layers.looks_like_credential(key) and isinstance(value, str | int):
                    self._fail(
                        customer,
                        integration,
                        path,
                        "looks like a credential: pass a connection or secret id (…_conn_id / …_secret_id) instead",
                    )
        overrides = self._inert_overrides(customer, integration, template, overrides)
        merged = json_merge_patch.merge(copy.deepcopy(template.tasks), overrides)
        # Added tasks go last, by id: the JSON column's key order is the backend's, not ours.
        added = sorted(k for k in merged if k not in template.tasks)
        merged = {k: merged[k] for k in [*(k for k in template.tasks if k in merged), *added]}
        try:
            return check_tasks(merged, "task_overrides", cross=True)
        except TemplateError as exc:
            self._fail(customer, integration, exc.field, str(exc))

    def _setup_tasks(self, customer: Customer, resolver: ParamResolver) -> list[TaskSpec]:
        if not self.settings.setup_tasks:
            return []
        tasks = {
            task_id: self._substitute_task(
                customer, None, f"fleet.setup_tasks.{task_id}", task, resolver
            )
            if isinstance(task, dict) and isinstance(task.get("operator"), str)
            else task
            for task_id, task in self.settings.setup_tasks.items()
        }
        try:
            tasks = check_tasks(tasks, "fleet.setup_tasks")
        except TemplateError as exc:
            self._fail(customer, None, exc.field, str(exc))
        allowed = set(self.settings.imports)
        return [
            TaskSpec(
                task_id,
                (task["group"],) if task.get("group") else (),
                task["operator"],
                self._checked_args(
                    customer,
                    None,
                    f"fleet.setup_tasks.{task_id}",
                    task["operator"],
                    task.get("args") or {},
                    allowed,
                ),
                tuple(task.get("upstream", [])),
            )
            for task_id, task in tasks.items()
        ]
