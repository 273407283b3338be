"""Params nothing uses: a typo (`grades_tabel`) must be an error with "did you mean",
never a silent fall back to the default. A param is used when a template, the fleet
settings or an override references it, directly or through another param's value.

Split from composer/compose/params.py (which resolves the layers) because this is a question
about the whole customer (every template it meets), answered once per customer.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from composer.compose.params import looks_like_credential, walk
from composer.compose.substitution import placeholders
from composer.errors import ConfigError, one_line
from composer.model.fleet import Customer
from composer.model.settings import FleetSettings
from composer.model.templates import BUILTINS, Template, TemplateError

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
