"""Params: the layered values one DAG is composed with.

Precedence, lowest first: fleet defaults (templates/fleet.yaml), template defaults,
customer params, integration params; built-ins are fixed and cannot be set. Every
param is resolved up front, so a cycle or an unknown placeholder is reported against
the param that holds it, once, and never hangs.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from composer.errors import ConfigError, invalid, one_line
from composer.inert import inert_value
from composer.model import Customer, Integration
from composer.param_types import ParamType, namespace_problem, shown, type_problem
from composer.settings import FleetSettings
from composer.substitution import (
    ParamCycle,
    ParamResolver,
    ParamTooDeep,
    UnknownPlaceholder,
    placeholders,
    substitute,
)
from composer.templates import BUILTINS, Template, TemplateError

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


# -- params nothing uses ------------------------------------------------------------------


# Walking a template's strings costs ~1 ms; every customer meets the same few template
# and settings objects, so what they reference is kept per object (the entry keeps the
# object alive, so its id cannot be reused while cached).
_CACHE: dict[tuple[tuple[int, ...], str], tuple[tuple[object, ...], Any]] = {}


def _cached(owners: object | tuple[object, ...], what: str, compute: Callable[[], Any]) -> Any:
    objects = owners if isinstance(owners, tuple) else (owners,)
    key = (tuple(id(o) for o in objects), what)
    hit = _CACHE.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], objects, strict=True)):
        return hit[1]
    if len(_CACHE) > 1024:
        _CACHE.clear()
    value = compute()
    _CACHE[key] = (objects, value)
    return value


def _refs(layer: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    return {name: frozenset(placeholders(value)) for name, value in layer.items()}


def template_uses(template: Template) -> frozenset[str]:
    """Every param a template declares or references anywhere it substitutes."""

    def compute() -> frozenset[str]:
        used = set(template.params)
        for value in (
            [spec.default for spec in template.params.values()],
            template.default_args,
            template.tasks,
            template.main,
            template.cron,
            template.description,
        ):
            used |= placeholders(value)
        return frozenset(used)

    return _cached(template, "uses", compute)


def _template_refs(template: Template) -> dict[str, frozenset[str]]:
    """What each of the template's param defaults references."""
    return _cached(
        template,
        "refs",
        lambda: _refs({name: spec.default for name, spec in template.params.items()}),
    )


def _fleet_uses(settings: FleetSettings) -> frozenset[str]:
    """The fleet params, and what setup tasks and fleet default_args reference."""
    return _cached(
        settings,
        "uses",
        lambda: frozenset(
            set(settings.params) | placeholders([settings.setup_tasks, settings.default_args])
        ),
    )


def _fleet_refs(settings: FleetSettings) -> dict[str, frozenset[str]]:
    return _cached(settings, "refs", lambda: _refs(settings.params))


def _template_known(
    settings: FleetSettings, template: Template, static: list[Mapping[str, frozenset[str]]]
) -> frozenset[str]:
    """What a template uses, closed over the fleet's and its own param defaults."""
    return _cached(
        (settings, template),
        "known",
        lambda: frozenset(_closure(template_uses(template), static, [])),
    )


def _closure(
    seed: Iterable[str],
    static: list[Mapping[str, frozenset[str]]],
    rows: list[Mapping[str, Any]],
    base: frozenset[str] = frozenset(),
) -> set[str]:
    """The seed plus every param a used param's value references, in any layer:
    `static` (fleet and template defaults, precomputed) or `rows` (the store's params).
    `base` is already closed over `static`: only its names the rows set are walked."""
    used = set(base) | set(seed)
    todo = [n for n in used if n not in base]
    todo += [n for layer in rows for n in layer if n in base]
    while todo:
        name = todo.pop()
        for refs in static:
            found = refs.get(name)
            if found and not found <= used:
                new = found - used
                used |= new
                todo.extend(new)
        for layer in rows:
            if name in layer:
                new = placeholders(layer[name]) - used
                used |= new
                todo.extend(new)
    return used


def _suggest(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known - BUILTINS), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _checked_by_others(name: str, value: Any) -> bool:
    """Built-ins and credentials (at any depth) have their own, more useful error."""
    return (
        name in BUILTINS
        or looks_like_credential(name)
        or any(looks_like_credential(key) for _path, key, _value in walk(value, ""))
    )


def unknown_params(
    settings: FleetSettings,
    customer: Customer,
    template: Callable[[str], Template],
    is_parent: bool,
) -> list[ConfigError]:
    """Params that nothing uses: a typo (`grades_tabel`) must never fall back silently
    to the default. An integration param is used when its template declares or
    references it or its task_overrides do; a customer param when the fleet settings,
    one of the customer's templates (disabled integrations' and, for a parent, the
    roll-up's too) or one of its overrides does, directly or through another param.
    A template that does not load is reported by composition; its params are not judged."""
    errors: list[ConfigError] = []
    loaded: dict[str, Template] = {}
    names = [i.template for i in customer.integrations] + list(customer.disabled_templates)
    if is_parent and settings.rollup_template:
        names.append(settings.rollup_template)
    for name in names:
        with contextlib.suppress(TemplateError):
            loaded[name] = template(name)
    # A disabled integration's template may be gone (why it was disabled): it judges nothing.
    needed = set(names) - set(customer.disabled_templates) | {
        i.template for i in customer.integrations
    }
    for integration in customer.integrations:
        found = loaded.get(integration.template)
        if found is None:
            continue
        static = [_fleet_refs(settings), _template_refs(found)]
        base = _template_known(settings, found, static)
        known = _closure(
            placeholders(integration.task_overrides),
            static,
            [customer.params, integration.params],
            base,
        )
        for name, value in integration.params.items():
            if name not in known and not _checked_by_others(name, value):
                errors.append(
                    ConfigError(
                        customer.customer_id,
                        integration.integration_id,
                        one_line(f"params.{name}"),
                        f"is not a param of template {found.name!r} and its task_overrides "
                        f"do not use it{one_line(_suggest(name, known))}",
                    )
                )
    if customer.params and needed <= set(loaded):
        templates = tuple(loaded[name] for name in sorted(loaded))
        static = [_fleet_refs(settings), *(_template_refs(t) for t in templates)]

        def fleet_and_templates() -> frozenset[str]:
            seed = set(_fleet_uses(settings)).union(*(template_uses(t) for t in templates))
            return frozenset(_closure(seed, static, []))

        base = _cached((settings, *templates), "known", fleet_and_templates)
        overrides: set[str] = set()
        rows = [customer.params]
        for integration in customer.integrations:
            overrides |= placeholders(integration.task_overrides)
            rows.append(integration.params)
        known = _closure(overrides, static, rows, base)
        users = ", ".join(sorted(loaded)) or "none"
        for name, value in customer.params.items():
            if name not in known and not _checked_by_others(name, value):
                errors.append(
                    ConfigError(
                        customer.customer_id,
                        None,
                        one_line(f"params.{name}"),
                        f"is used by none of this customer's templates ({users}), "
                        f"task_overrides or the fleet settings{one_line(_suggest(name, known))}",
                    )
                )
    return errors


# -- store values: inert for Jinja, of their declared type, in the tenant's namespace --

# Built-ins that come from a store column as free text (ids, timezone and template
# names are checked against their charsets in composer/model.py).
_STORE_BUILTINS = ("customer_name",)


def _store_layers(customer: Customer, integration: Integration | None) -> dict[str, Any]:
    """The params whose value a store row set (the later layer wins, as in raw)."""
    return {**customer.params, **(integration.params if integration else {})}


class LayeredResolver(ParamResolver):
    """The resolver composition uses; `inert()` resolves the same params with every
    store-set text made inert for Jinja (composer/inert.py), for templated fields."""

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
