"""One task's arguments, from template text to checked values: placeholders substituted
(store text made inert where it lands in a templated field), the allow-lists checked
before anything is imported, the operator's signature and value checks, callables
turned into imports and values into their typed form.

A mixin of composer.compose.composition.Composer, which composes whole DAGs from these; split
out so each module keeps to one job. Every problem is a ConfigError naming customer,
integration and field (`_fail`).
"""

from __future__ import annotations

from typing import Any

from composer.compose.allowlist import (
    allowed_operators,
    callable_problem,
    callables_problem,
    is_callback,
    override_problem,
)
from composer.compose.callables import callable_arguments
from composer.compose.dagspec import CodeRef
from composer.compose.inert import inert_overrides
from composer.compose.operators import OperatorCatalog, UnknownOperator
from composer.compose.substitution import (
    ParamResolver,
    UnknownPlaceholder,
    placeholders,
    substitute,
)
from composer.errors import invalid
from composer.model.fleet import Customer, Integration
from composer.model.settings import FleetSettings
from composer.model.templates import Template, TemplateCatalog


class TaskArgs:
    """Needs `settings`, `templates`, `operators`, `_allowed_operators` and `_typed`
    (composer/compose/typed_values.py) from the class it is mixed into."""

    settings: FleetSettings
    templates: TemplateCatalog
    operators: OperatorCatalog
    _allowed_operators: frozenset[str] | None

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
        before anything is imported (composer/compose/allowlist.py)."""
        callables = set(self.settings.imports) | set(template.imports)
        found = override_problem(overrides, self.operator_allow_list(), callables)
        if found:
            self._fail(customer, integration, *found)

    def _inert_overrides(
        self, customer: Customer, integration: Integration, template: Template, overrides: dict
    ) -> dict:
        """An override is a store value: its text is made inert for Jinja where it lands
        in a templated field (composer/compose/inert.py)."""

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
        the params with their store text made inert for Jinja (composer/compose/params.py)."""
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
