"""Params: the layered values one DAG is composed with.

Precedence, lowest first: fleet defaults (templates/fleet.yaml), template defaults,
customer params, integration params; built-ins are fixed and cannot be set. Every
param is resolved up front, so a cycle or an unknown placeholder is reported against
the param that holds it, once, and never hangs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from composer.compose.inert import inert_value
from composer.compose.substitution import (
    ParamCycle,
    ParamResolver,
    ParamTooDeep,
    UnknownPlaceholder,
    substitute,
)
from composer.errors import invalid
from composer.model.fleet import Customer, Integration
from composer.model.param_types import ParamType, namespace_problem, shown, type_problem
from composer.model.settings import FleetSettings
from composer.model.templates import BUILTINS, Template

# `passw(or)?d` anywhere (db_password, password_plain, PASSWD); a bare `pass` or `pwd`
# only as a whole word, so `passthrough`, `bypass_cache` and `compass` are not flagged.
CREDENTIAL_RE = re.compile(
    r"passw(or)?d|passphrase|(^|[_-])(pass|pwd)([_-]|$)|secret|token|api[_-]?key"
    r"|private[_-]?key|credential|access[_-]?key|auth[_-]?key",
    re.IGNORECASE,
)
REFERENCE_SUFFIXES = ("_conn_id", "_secret_id")
CREDENTIAL_HINT = (
    "looks like a credential: store it in Secret Manager and pass its …_conn_id or …_secret_id"
)


def looks_like_credential(name: str) -> bool:
    if name.endswith(REFERENCE_SUFFIXES) or name in ("conn_id", "secret_id"):
        return False
    return bool(CREDENTIAL_RE.search(name))


def walk(value: Any, prefix: str) -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) of every mapping entry, at any depth, through lists too."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{prefix}.{key}", str(key), item
            yield from walk(item, f"{prefix}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{prefix}[{index}]")


def builtins(
    customer: Customer, integration: Integration | None, dag_id: str, descendants: list[str]
) -> dict[str, Any]:
    values = {
        "customer_id": customer.customer_id,
        # customer_id as a BigQuery dataset/table name may be spelled ('-' is not allowed)
        "customer_key": customer.customer_id.replace("-", "_"),
        "customer_name": customer.name,
        "timezone": customer.timezone,
        "dag_id": dag_id,
        "descendant_ids": list(descendants),
        "descendant_count": len(descendants),
    }
    if integration is not None:
        values["integration_id"] = integration.integration_id
        values["template"] = integration.template
    return values


def check_names(customer: Customer, integration: Integration | None) -> None:
    """No built-in can be set, and no credential can be stored as a param."""
    layers: list[tuple[Mapping[str, Any], Integration | None]] = [(customer.params, None)]
    if integration is not None:
        layers.append((integration.params, integration))
    for params, owner in layers:
        where = (customer.customer_id, owner.integration_id if owner else None)
        for name in params:
            if name in BUILTINS:
                raise invalid(*where, f"params.{name}", "is a built-in param and cannot be set")
        # Nested keys too: {"sis": {"password": "..."}} is as much a credential.
        for path, key, _value in walk(params, "params"):
            if looks_like_credential(key):
                raise invalid(*where, path, CREDENTIAL_HINT)


def for_integration(
    settings: FleetSettings,
    customer: Customer,
    integration: Integration,
    template: Template,
    dag_id: str,
    descendants: list[str],
) -> ParamResolver:
    """All four layers, every param resolved; required template params must be set."""
    check_names(customer, integration)
    raw: dict[str, Any] = dict(settings.params)
    raw.update({name: spec.default for name, spec in template.params.items() if not spec.required})
    raw.update(customer.params)
    raw.update(integration.params)
    for name, spec in template.params.items():
        given = (customer.params, integration.params, settings.params)
        if spec.required and not any(name in layer for layer in given):
            raise invalid(
                customer.customer_id,
                integration.integration_id,
                f"params.{name}",
                f"required by template {template.name!r} but not set",
            )
    resolver = LayeredResolver(
        raw,
        builtins(customer, integration, dag_id, descendants),
        _store_layers(customer, integration),
        frozenset(n for n, spec in template.params.items() if spec.type and spec.type.runtime),
    )
    _resolve_all(customer, integration, raw, resolver)
    check_values(settings, customer, integration, template, raw, resolver)
    return resolver


def for_customer(
    settings: FleetSettings, customer: Customer, dag_id: str, descendants: list[str]
) -> ParamResolver:
    """Fleet and customer layers only: for what belongs to no integration (setup tasks,
    DAG-level default_args)."""
    check_names(customer, None)
    raw = {**settings.params, **customer.params}
    resolver = LayeredResolver(
        raw, builtins(customer, None, dag_id, descendants), _store_layers(customer, None)
    )
    _resolve_all(customer, None, raw, resolver)
    check_values(settings, customer, None, None, raw, resolver)
    return resolver


def _resolve_all(
    customer: Customer,
    integration: Integration | None,
    raw: Mapping[str, Any],
    resolver: ParamResolver,
) -> None:
    for name in raw:
        # Blame the layer that set the value: a customer param is reported once,
        # without an integration, however many integrations meet it.
        owner = integration.integration_id if integration and name in integration.params else None
        try:
            resolver(name)
        except UnknownPlaceholder as exc:
            raise invalid(
                customer.customer_id, owner, f"params.{name}", f"unknown placeholder {{{exc.name}}}"
            ) from None
        except ParamCycle as exc:
            raise invalid(
                customer.customer_id, owner, f"params.{name}", f"param reference cycle {exc}"
            ) from None
        except ParamTooDeep as exc:
            raise invalid(customer.customer_id, owner, f"params.{name}", str(exc)) from None


# -- store values: inert for Jinja, of their declared type, in the tenant's namespace --

# Built-ins that come from a store column as free text (ids, timezone and template
# names are checked against their charsets in composer/model/fleet.py).
_STORE_BUILTINS = ("customer_name",)


def _store_layers(customer: Customer, integration: Integration | None) -> dict[str, Any]:
    """The params whose value a store row set (the later layer wins, as in raw)."""
    return {**customer.params, **(integration.params if integration else {})}


class LayeredResolver(ParamResolver):
    """The resolver composition uses; `inert()` resolves the same params with every
    store-set text made inert for Jinja (composer/compose/inert.py), for templated fields."""

    def __init__(
        self,
        raw: Mapping[str, Any],
        fixed: Mapping[str, Any],
        store: Mapping[str, Any],
        runtime: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(raw, fixed)
        self._layers = (raw, dict(fixed), store, runtime)
        self._inert: dict[tuple[str, ...], ParamResolver] = {}

    def inert(self, template_ext: tuple[str, ...] = ()) -> ParamResolver:
        """Itself when no store text needs changing (the common case: nothing is
        resolved twice)."""
        if template_ext not in self._inert:
            raw, fixed, store, runtime = self._layers
            changed = {
                n: safe
                for n, v in store.items()
                if n not in runtime and (safe := inert_value(v, template_ext)) != v
            }
            changed_fixed = {
                n: safe
                for n in _STORE_BUILTINS
                if n in fixed and (safe := inert_value(fixed[n], template_ext)) != fixed[n]
            }
            self._inert[template_ext] = (
                ParamResolver({**raw, **changed}, {**fixed, **changed_fixed})
                if changed or changed_fixed
                else self
            )
        return self._inert[template_ext]


def declared_type(
    settings: FleetSettings, template: Template | None, name: str
) -> ParamType | None:
    """The template's declaration wins over fleet.yaml `param_types`."""
    spec = template.params.get(name) if template else None
    if spec is not None and spec.type is not None:
        return spec.type
    return settings.param_types.get(name)


def check_values(
    settings: FleetSettings,
    customer: Customer,
    integration: Integration | None,
    template: Template | None,
    raw: Mapping[str, Any],
    resolver: ParamResolver,
) -> None:
    """Every resolved param against its declared type, and every tenant-scoped param
    against the customer's namespace (unless fleet.yaml grants this customer that
    exact value). Namespaces bind the values a store row sets: what a template derives
    from them (`export_prefix` from `landing_bucket`) follows from reviewed text."""
    store = _store_layers(customer, integration)
    for name in raw:
        owner = integration.integration_id if integration and name in integration.params else None
        ptype = declared_type(settings, template, name)
        problem = type_problem(ptype, resolver(name)) if ptype is not None else None
        if problem:
            value = shown(resolver(name))
            raise invalid(customer.customer_id, owner, f"params.{name}", f"{value} {problem}")
        if name in settings.tenant_namespaces and name in store:
            _check_namespace(settings, customer, owner, name, resolver(name))


def _check_namespace(
    settings: FleetSettings, customer: Customer, owner: str | None, name: str, value: Any
) -> None:
    granted = settings.tenant_exceptions.get(customer.customer_id, {})
    if name in granted and granted[name] == value:
        return
    # Resolved from fleet params and built-ins only: a customer must not move its own fence.
    trusted = ParamResolver(settings.params, builtins(customer, None, "", []))
    try:
        namespace = str(substitute(settings.tenant_namespaces[name], trusted))
    except (UnknownPlaceholder, ParamCycle, ParamTooDeep) as exc:
        raise invalid(
            customer.customer_id,
            None,
            f"fleet.tenant_namespaces.{name}",
            f"cannot be resolved from fleet params and built-ins ({type(exc).__name__}: {exc})",
        ) from None
    problem = namespace_problem(namespace, value)
    if problem:
        raise invalid(customer.customer_id, owner, f"params.{name}", f"{shown(value)} {problem}")
