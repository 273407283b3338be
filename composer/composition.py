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

from composer import params as layers
from composer.dagspec import CodeRef, DagSpec, GroupSpec, TaskSpec
from composer.errors import ConfigError, InvalidConfig, invalid
from composer.model import (  # RESERVED_INTEGRATION_IDS: re-exported, checked in model
    RESERVED_INTEGRATION_IDS,  # noqa: F401
    Customer,
    Fleet,
    Integration,
)
from composer.operators import OperatorCatalog, UnknownOperator
from composer.schedule import stagger
from composer.settings import FleetSettings
from composer.substitution import (
    ParamResolver,
    UnknownPlaceholder,
    placeholders,
    substitute,
)
from composer.templates import Template, TemplateCatalog, TemplateError, check_tasks

CALLBACK_KEYS = frozenset(
    {
        "on_failure_callback",
        "on_success_callback",
        "on_retry_callback",
        "on_execute_callback",
        "on_skipped_callback",
        "sla_miss_callback",
    }
)
ROLLUP_ID = "rollup"
SETUP_GROUP = ""


def main_dag_id(customer_id: str) -> str:
    return f"{customer_id}__main"


def cron_dag_id(customer_id: str, integration_id: str) -> str:
    return f"{customer_id}__{integration_id}"


def main_schedule(customer: Customer, settings: FleetSettings) -> str:
    """The main DAG's staggered cron (local time). One place, read by composition and by
    the fleet report, which needs every customer's schedule without composing it."""
    from composer.schedule import normalize_cron

    cron = normalize_cron(customer.main_schedule or settings.default_main_schedule)
    return stagger(cron, main_dag_id(customer.customer_id), settings.stagger_minutes)


def cron_schedule(customer: Customer, integration: Integration, settings: FleetSettings) -> str:
    """An own-DAG integration's staggered cron (local time); see main_schedule."""
    dag_id = cron_dag_id(customer.customer_id, integration.integration_id)
    return stagger(integration.schedule or "", dag_id, settings.stagger_minutes)


class Composer:
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
        # after the move (composer/fleetenvs.py), so no tick the old one ran runs again.
        self.start_after: dict[str, dt.datetime] = {}

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
        return ids

    def compose(self, customer: Customer) -> tuple[list[DagSpec], list[ConfigError]]:
        specs: list[DagSpec] = []
        errors: list[ConfigError] = []
        main_blocks: list[tuple[Integration, Template, list[TaskSpec], GroupSpec]] = []
        is_parent = bool(self.fleet.children.get(customer.customer_id))
        unused = layers.unknown_params(self.settings, customer, self.templates.get, is_parent)
        if unused:  # a typo'd param: the rest would be judged against what was not meant
            return [], unused
        descendants = self.fleet.active_descendants(customer.customer_id)
        for integration in customer.integrations:
            try:
                variant = "main" if integration.schedule is None else "cron"
                template = self._template(customer, integration, variant)
                if variant == "main":
                    main_blocks.append(
                        self._block(customer, integration, template, descendants, "main")
                    )
                else:
                    specs.append(self._cron_dag(customer, integration, template, descendants))
            except InvalidConfig as exc:
                errors.append(exc.error)
        if not customer.legacy_dag_file:
            try:
                if descendants and self.settings.rollup_template:
                    rollup = Integration(
                        customer.customer_id,
                        ROLLUP_ID,
                        self.settings.rollup_template,
                        None,
                        {},
                        None,
                    )
                    template = self._template(customer, rollup, "main")
                    main_blocks.append(self._block(customer, rollup, template, descendants, "main"))
                specs.insert(0, self._main_dag(customer, main_blocks, descendants))
            except InvalidConfig as exc:
                errors.append(exc.error)
        # A customer-level mistake is met once per DAG and integration: report it once.
        return specs, list(dict.fromkeys(errors))

    # -- DAGs -----------------------------------------------------------------

    def _main_dag(self, customer: Customer, blocks: list, descendants: list[str]) -> DagSpec:
        dag_id = main_dag_id(customer.customer_id)
        params = layers.for_customer(self.settings, customer, dag_id, descendants)
        setup = self._setup_tasks(customer, params)
        tasks = list(setup)
        groups: list[GroupSpec] = []
        for _integration, _template, block_tasks, group in blocks:
            groups.append(group)
            groups.extend(self._inner_groups(block_tasks, group.path))
            tasks.extend(self._after(setup, block_tasks))
        self._check_unique_nodes(customer, setup, [(i, b, g) for i, _, b, g in blocks])
        return DagSpec(
            dag_id=dag_id,
            customer_id=customer.customer_id,
            variant="main",
            schedule=main_schedule(customer, self.settings),
            timezone=customer.timezone,
            start_date=self.start_after.get(customer.customer_id, self.settings.start_date),
            description=f"{customer.name}: nightly main DAG",
            tags=self._tags(customer, [t.name for _, t, _, _ in blocks], "main"),
            default_args=self._dag_default_args(customer, None, params),
            groups=tuple(groups),
            tasks=tuple(tasks),
            templates=tuple(sorted({t.name for _, t, _, _ in blocks})),
        )

    def _cron_dag(
        self,
        customer: Customer,
        integration: Integration,
        template: Template,
        descendants: list[str],
    ) -> DagSpec:
        dag_id = cron_dag_id(customer.customer_id, integration.integration_id)
        _, _, block_tasks, _ = self._block(customer, integration, template, descendants, "cron")
        params = layers.for_customer(self.settings, customer, dag_id, descendants)
        setup = self._setup_tasks(customer, params)
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
        return DagSpec(
            dag_id=dag_id,
            customer_id=customer.customer_id,
            variant="cron",
            schedule=cron_schedule(customer, integration, self.settings),
            timezone=customer.timezone,
            start_date=self.start_after.get(customer.customer_id, self.settings.start_date),
            description=str(
                description or f"{customer.name}: {integration.integration_id} ({template.name})"
            ),
            tags=self._tags(customer, [template.name], "cron"),
            default_args=default_args,
            groups=tuple(self._inner_groups(block_tasks, ())),
            tasks=tuple([*setup, *self._after(setup, block_tasks)]),
            templates=(template.name,),
        )

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
        return [
            TaskSpec(t.task_id, t.groups, t.operator, t.args, t.upstream or leaves)
            if not t.upstream
            else t
            for t in block
        ]

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

    @staticmethod
    def _inner_groups(tasks: list[TaskSpec], outer: tuple[str, ...]) -> list[GroupSpec]:
        paths = sorted({t.groups for t in tasks if len(t.groups) > len(outer)})
        return [GroupSpec(path) for path in paths]

    def _tags(self, customer: Customer, templates: list[str], variant: str) -> tuple[str, ...]:
        return (
            f"customer:{customer.customer_id}",
            *(f"template:{name}" for name in sorted(set(templates))),
            f"variant:{variant}",
        )

    # -- one integration ------------------------------------------------------

    def _template(self, customer: Customer, integration: Integration, variant: str) -> Template:
        try:
            template = self.templates.get(integration.template)
        except TemplateError as exc:
            self._fail(customer, integration, exc.field, str(exc))
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
    ) -> tuple[Integration, Template, list[TaskSpec], GroupSpec]:
        dag_id = (
            main_dag_id(customer.customer_id)
            if variant == "main"
            else cron_dag_id(customer.customer_id, integration.integration_id)
        )
        resolver = layers.for_integration(
            self.settings, customer, integration, template, dag_id, descendants
        )
        raw_tasks = self._merged_tasks(customer, integration, template)
        overridden = integration.task_overrides or {}
        tasks = {
            task_id: self._substitute(
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
            args = self._checked_args(
                customer, integration, field, task["operator"], task.get("args") or {}, allowed
            )
            groups = (*outer, task["group"]) if task.get("group") else outer
            specs.append(
                TaskSpec(task_id, groups, task["operator"], args, tuple(task.get("upstream", [])))
            )
        refs = {s.task_id: s.ref for s in specs}
        specs = [
            TaskSpec(s.task_id, s.groups, s.operator, s.args, tuple(refs[u] for u in s.upstream))
            for s in specs
        ]
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
        merged = json_merge_patch.merge(copy.deepcopy(template.tasks), copy.deepcopy(overrides))
        # Added tasks go last, by id: the JSON column's key order is the backend's, not ours.
        added = sorted(k for k in merged if k not in template.tasks)
        merged = {k: merged[k] for k in [*(k for k in template.tasks if k in merged), *added]}
        try:
            return check_tasks(merged, "task_overrides")
        except TemplateError as exc:
            self._fail(customer, integration, exc.field, str(exc))

    def _checked_args(
        self,
        customer: Customer,
        integration: Integration,
        field: str,
        operator: str,
        args: dict,
        allowed: set[str],
    ) -> dict[str, Any]:
        try:
            unknown = self.operators.unknown_arguments(operator, set(args))
        except UnknownOperator as exc:
            self._fail(
                customer, integration, f"{field}.operator", f"unknown operator {operator}: {exc}"
            )
        name = operator.rsplit(".", 1)[-1]
        if unknown:
            self._fail(
                customer,
                integration,
                f"{field}.args.{unknown[0]}",
                f"{name} takes no argument {unknown[0]!r}",
            )
        for missing in self.operators.missing_arguments(operator, set(args)):
            self._fail(customer, integration, f"{field}.args.{missing}", f"is required by {name}")
        for arg, why in self.operators.value_problems(args):
            self._fail(customer, integration, f"{field}.args.{arg}", why)
        return self._callbacks(customer, integration, f"{field}.args", args, allowed)

    def _callbacks(
        self,
        customer: Customer,
        integration: Integration | None,
        field: str,
        args: dict,
        allowed: set[str],
    ) -> dict[str, Any]:
        out = dict(args)
        for key in CALLBACK_KEYS & set(args):
            value = args[key]
            paths = value if isinstance(value, list) else [value]
            refs = []
            for path in paths:
                if not isinstance(path, str) or path not in allowed:
                    self._fail(
                        customer,
                        integration,
                        f"{field}.{key}",
                        f"{path!r} is not a callable listed under the template's or fleet's imports",
                    )
                try:
                    self.operators.check_callable(path)
                except UnknownOperator as exc:
                    self._fail(customer, integration, f"{field}.{key}", str(exc))
                refs.append(CodeRef(path))
            out[key] = refs if isinstance(value, list) else refs[0]
        return out

    def _substitute(
        self,
        customer: Customer,
        integration: Integration | None,
        field: str,
        value: Any,
        resolver: ParamResolver,
    ) -> Any:
        """Substitute the whole value; only on failure walk it again to name the field
        (building a path for every node of every customer is the slow way)."""
        try:
            return substitute(value, resolver)
        except UnknownPlaceholder as exc:
            self._fail(
                customer,
                integration,
                _locate(value, field, exc.name),
                f"unknown placeholder {{{exc.name}}}",
            )

    def _default_args(
        self,
        customer: Customer,
        integration: Integration,
        template: Template,
        resolver: ParamResolver,
    ) -> dict[str, Any]:
        args = self._substitute(
            customer, integration, "default_args", template.default_args, resolver
        )
        allowed = set(self.settings.imports) | set(template.imports)
        for arg, why in self.operators.value_problems(args):
            self._fail(customer, integration, f"default_args.{arg}", why)
        return self._callbacks(customer, integration, "default_args", args, allowed)

    def _dag_default_args(
        self, customer: Customer, integration: Integration | None, resolver: ParamResolver
    ) -> dict[str, Any]:
        args = self._substitute(
            customer, None, "fleet.default_args", self.settings.default_args, resolver
        )
        for arg, why in self.operators.value_problems(args):
            self._fail(customer, None, f"fleet.default_args.{arg}", why)
        return self._callbacks(
            customer, None, "fleet.default_args", args, set(self.settings.imports)
        )

    def _setup_tasks(self, customer: Customer, resolver: ParamResolver) -> list[TaskSpec]:
        if not self.settings.setup_tasks:
            return []
        tasks = self._substitute(
            customer, None, "fleet.setup_tasks", self.settings.setup_tasks, resolver
        )
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

    @staticmethod
    def _fail(customer: Customer, integration: Integration | None, field: str, message: str):
        raise invalid(
            customer.customer_id,
            integration.integration_id if integration else None,
            field,
            message,
        )


def _locate(value: Any, field: str, name: str) -> str:
    """The path of the first string in `value` that uses placeholder `name`."""
    if isinstance(value, dict):
        items: Any = ((f"{field}.{k}", v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{field}[{i}]", v) for i, v in enumerate(value))
    else:
        return field
    for path, item in items:
        if name in placeholders(item):
            return _locate(item, path, name)
    return field
