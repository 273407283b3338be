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
from composer.allowlist import (
    allowed_operators,
    callable_problem,
    callables_problem,
    is_callback,
    override_problem,
)
from composer.callables import callable_arguments
from composer.dag_settings import DagSettingsMixin
from composer.dagshape import DagShapes, cron_dag_id, main_dag_id
from composer.dagspec import CodeRef, DagSpec, GroupSpec, TaskSpec
from composer.errors import ConfigError, InvalidConfig, invalid
from composer.inert import inert_overrides
from composer.model import (  # RESERVED_INTEGRATION_IDS: re-exported, checked in model
    RESERVED_INTEGRATION_IDS,  # noqa: F401
    Customer,
    Fleet,
    Integration,
)
from composer.operators import OperatorCatalog, UnknownOperator
from composer.rollup import ROLLUP_ID, rollup_dag, rollup_dag_id
from composer.settings import FleetSettings
from composer.substitution import (
    ParamResolver,
    UnknownPlaceholder,
    placeholders,
    substitute,
)
from composer.taskgraph import checked_expand, local_refs
from composer.taskshape import expand_override_problem
from composer.templates import Template, TemplateCatalog, TemplateError, check_tasks
from composer.typed_values import TypedArgs
from composer.versions import choose, finish, leaves_main, param_view

SETUP_GROUP = ""


class Composer(DagShapes, DagSettingsMixin, TypedArgs):
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
        unused = layers.unknown_params(
            self.settings, customer, lambda name: param_view(self.templates.get(name)), is_parent
        )
        if unused:  # a typo'd param: the rest would be judged against what was not meant
            return [], unused
        descendants = self.fleet.active_descendants(customer.customer_id)
        for integration in customer.integrations:
            try:
                variant = "main" if integration.schedule is None else "cron"
                if variant == "main" and leaves_main(self.settings, integration):
                    continue  # the kill switch (composer/versions.py)
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

    def operator_allow_list(self) -> frozenset[str]:
        """The operators a store value may name (every template's, setup tasks',
        fleet.yaml `operators:`): a customer with overrides depends on all of them."""
        if self._allowed_operators is None:
            self._allowed_operators = allowed_operators(self.settings, self.templates)
        return self._allowed_operators

    def _check_names(
        self, customer: Customer, integration: Integration, template: Template, overrides: dict
    ) -> None:
        """Every operator and callable an override names is on the allow-lists, checked
        before anything is imported (composer/allowlist.py)."""
        callables = set(self.settings.imports) | set(template.imports)
        found = override_problem(overrides, self.operator_allow_list(), callables)
        if found:
            self._fail(customer, integration, *found)

    def _inert_overrides(
        self, customer: Customer, integration: Integration, template: Template, overrides: dict
    ) -> dict:
        """An override is a store value: its text is made inert for Jinja where it lands
        in a templated field (composer/inert.py)."""

        def templated(task_id: str, operator: str) -> tuple[frozenset[str], tuple[str, ...]]:
            where = f"task_overrides.{task_id}"
            return self._templated(customer, integration, where, operator)

        return inert_overrides(overrides, template.tasks, templated)

    def _templated(
        self, customer: Customer, integration: Integration | None, field: str, operator: str
    ) -> tuple[frozenset[str], tuple[str, ...]]:
        try:
            return self.operators.templated(operator)
        except UnknownOperator as exc:
            self._fail(
                customer, integration, f"{field}.operator", f"unknown operator {operator}: {exc}"
            )

    def _substitute_task(
        self,
        customer: Customer,
        integration: Integration | None,
        field: str,
        task: dict[str, Any],
        resolver: ParamResolver,
    ) -> dict[str, Any]:
        """Substitute a task; arguments that land in the operator's templated fields get
        the params with their store text made inert for Jinja (composer/params.py)."""
        args = task.get("args") or {}
        mapped = task.get("expand") or {}  # mapped arguments land in the same fields
        inert = getattr(resolver, "inert", None)
        if not (args or mapped) or inert is None:
            return self._substitute(customer, integration, field, task, resolver)
        fields, ext = self._templated(customer, integration, field, task["operator"])
        if inert(ext) is resolver:  # no store text to make inert: one pass
            return self._substitute(customer, integration, field, task, resolver)
        out = self._substitute(
            customer,
            integration,
            field,
            {k: v for k, v in task.items() if k not in ("args", "expand")},
            resolver,
        )
        for section, values in (("args", args), ("expand", mapped)):
            if section not in task:
                continue
            out[section] = {
                key: self._substitute(
                    customer,
                    integration,
                    f"{field}.{section}.{key}",
                    value,
                    inert(ext) if key in fields else resolver,
                )
                for key, value in values.items()
            }
        return out

    def _checked_args(
        self,
        customer: Customer,
        integration: Integration,
        field: str,
        operator: str,
        args: dict,
        allowed: set[str],
    ) -> dict[str, Any]:
        for key in sorted(a for a in args if is_callback(a)):  # before anything is imported
            problem = callables_problem(args[key], allowed)
            if problem:
                self._fail(customer, integration, f"{field}.args.{key}", problem)
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
        takes = callable_arguments(self.operators, operator)  # python_callable, ...
        args = self._callbacks(customer, integration, f"{field}.args", args, allowed, takes)
        return self._typed(customer, integration, f"{field}.args", operator, args)

    def _callbacks(
        self,
        customer: Customer,
        integration: Integration | None,
        field: str,
        args: dict,
        allowed: set[str],
        takes: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        out = dict(args)
        for key in sorted(a for a in args if is_callback(a) or a in takes):
            value = args[key]
            paths = value if isinstance(value, list) else [value]
            refs = []
            for path in paths:
                problem = callable_problem(path, allowed)
                if problem:  # checked before the import below
                    self._fail(customer, integration, f"{field}.{key}", problem)
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
        args = self._callbacks(customer, integration, "default_args", args, allowed)
        return self._typed(customer, integration, "default_args", None, args)

    def _dag_default_args(
        self, customer: Customer, integration: Integration | None, resolver: ParamResolver
    ) -> dict[str, Any]:
        args = self._substitute(
            customer, None, "fleet.default_args", self.settings.default_args, resolver
        )
        for arg, why in self.operators.value_problems(args):
            self._fail(customer, None, f"fleet.default_args.{arg}", why)
        args = self._callbacks(
            customer, None, "fleet.default_args", args, set(self.settings.imports)
        )
        return self._typed(customer, None, "fleet.default_args", None, args)

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
