"""Roll-ups: a parent org's `<customer_id>__rollup` DAG, composed from its descendants.

The roll-up template (fleet.yaml `rollup_template`) names, under `rollup:`, the template
whose loads it rolls up (`sources`). Every enabled integration of that template of every
active descendant (children, grandchildren, ..., through inactive intermediates) is one
source, composed here exactly as its own DAG is, so the roll-up

- is scheduled on the assets the source's tasks emit (their `outlets`, which name the
  source's own resolved tables), or at the deadline tick, whichever comes first;
- reads each source through values resolved with that source's own params
  (`per_source`), so a child that renames its table or dataset is followed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from composer.compose import params as layers
from composer.compose.dagspec import AssetRef, DagSpec
from composer.compose.schedule import normalize_cron, stagger
from composer.compose.substitution import UnknownPlaceholder, substitute
from composer.compose.taskgraph import inner_groups
from composer.errors import InvalidConfig
from composer.model.fleet import Customer, Integration
from composer.model.templates import Template, TemplateError

if TYPE_CHECKING:
    from composer.compose.composition import Composer

ROLLUP_ID = "rollup"


def rollup_dag_id(customer_id: str) -> str:
    return f"{customer_id}__rollup"


@dataclass(frozen=True)
class Source:
    """One descendant's integration whose loads the roll-up waits for and reads."""

    customer_id: str
    integration_id: str
    assets: tuple[AssetRef, ...]
    values: dict[str, Any]  # per_source name -> this source's value


def rollup_dag(composer: Composer, customer: Customer, descendants: list[str]) -> DagSpec | None:
    """The roll-up DAG of a customer with active descendants; None when none of them has
    an integration of the source template (there is nothing to roll up)."""
    integration = Integration(
        customer.customer_id, ROLLUP_ID, composer.settings.rollup_template or "", None, {}, None
    )
    template = _rollup_template(composer, customer, integration)
    spec = template.rollup or {}
    sources: list[Source] = []
    without: list[str] = []
    for descendant in descendants:
        found = _sources(composer, customer, integration, descendant, spec)
        sources.extend(found)
        if not found:
            without.append(descendant)
    if not sources:
        return None
    extra: dict[str, Any] = {
        "source_ids": [s.customer_id for s in sources],
        "source_count": len(sources),
    }
    for name, value in spec["per_source"].items():
        values = [s.values[name] for s in sources]
        extra[name] = (
            str(value["join"]).join(map(str, values)) if isinstance(value, dict) else values
        )
    dag_id = rollup_dag_id(customer.customer_id)
    _, _, block_tasks, _ = composer._block(
        customer, integration, template, descendants, "rollup", extra=extra
    )
    params = layers.for_customer(composer.settings, customer, dag_id, descendants)
    setup = composer._setup_tasks(customer, params)
    composer._check_unique_nodes(customer, setup, [(integration, block_tasks, None)])
    resolver = layers.for_integration(
        composer.settings, customer, integration, template, dag_id, descendants
    )

    def lookup(name: str) -> Any:
        return extra[name] if name in extra else resolver(name)

    deadline = composer._substitute(
        customer, integration, "rollup.deadline", spec["deadline"], lookup
    )
    try:
        deadline = normalize_cron(deadline)
    except ValueError as exc:
        composer._fail(customer, integration, "rollup.deadline", str(exc))
    default_args = dict(composer._dag_default_args(customer, integration, params))
    default_args.update(composer._default_args(customer, integration, template, resolver))
    description = str(
        composer._substitute(
            customer,
            integration,
            "rollup.description",
            spec.get("description") or template.description,
            lookup,
        )
    )
    if without:
        description += f" (no {spec['sources']} to roll up: {', '.join(without)})"
    assets = tuple(dict.fromkeys(a for s in sources for a in s.assets))
    return DagSpec(
        dag_id=dag_id,
        customer_id=customer.customer_id,
        variant="rollup",
        schedule=stagger(deadline, dag_id, composer.settings.stagger_minutes),
        timezone=customer.timezone,
        start_date=composer.start_after.get(customer.customer_id, composer.settings.start_date),
        description=description,
        tags=composer._tags(customer, [template.name], "rollup"),
        default_args=default_args,
        groups=tuple(
            inner_groups(composer, customer, integration, template, block_tasks, (), lookup)
        ),
        tasks=tuple([*setup, *composer._after(setup, block_tasks)]),
        templates=(template.name,),
        paused_at_creation=composer.settings.paused_at_creation,
        assets=assets,
        settings=composer._dag_settings(customer, "rollup", [], params),
    )


def _rollup_template(composer: Composer, customer: Customer, integration: Integration) -> Template:
    try:
        template = composer.templates.get(integration.template)
    except TemplateError as exc:
        composer._fail(customer, integration, "fleet.rollup_template", str(exc))
    if template.rollup is None:
        composer._fail(
            customer,
            integration,
            "fleet.rollup_template",
            f"template {template.name!r} has no `rollup:` section",
        )
    return template


def _sources(
    composer: Composer,
    parent: Customer,
    rollup: Integration,
    descendant_id: str,
    spec: dict[str, Any],
) -> list[Source]:
    """The descendant's integrations of the source template that get a DAG, each composed
    as in its own DAG; a descendant whose config cannot be composed fails the roll-up
    (its tables are unknown), so the roll-up stays as published until it is fixed."""
    field = f"descendants.{descendant_id}"
    child = composer.fleet.customers.get(descendant_id)
    if child is None:
        composer._fail(parent, rollup, field, "is invalid, so the tables it loads are unknown")
    found = []
    descendants = composer.fleet.active_descendants(descendant_id)
    for integration in child.integrations:
        if integration.template != spec["sources"]:
            continue
        variant = "main" if integration.schedule is None else "cron"
        if variant == "main" and child.legacy_dag_file:
            continue  # its main DAG is the legacy file: nothing generated emits an asset
        try:
            template = composer._template(child, integration, variant)
            _, _, tasks, _ = composer._block(child, integration, template, descendants, variant)
        except InvalidConfig as exc:
            composer._fail(
                parent, rollup, field, f"is invalid ({exc.error}), so its tables are unknown"
            )
        assets = tuple(
            a for t in tasks for a in t.args.get("outlets") or () if isinstance(a, AssetRef)
        )
        where = f"{field}.{integration.integration_id}"
        if not assets:
            composer._fail(
                parent,
                rollup,
                where,
                f"no task of {template.name} has outlets: the roll-up has no asset to wait for",
            )
        dag_id = (
            f"{child.customer_id}__main"
            if variant == "main"
            else f"{child.customer_id}__{integration.integration_id}"
        )
        resolver = layers.for_integration(
            composer.settings, child, integration, template, dag_id, descendants
        )
        values = {}
        for name, value in spec["per_source"].items():
            expression = value["each"] if isinstance(value, dict) else value
            try:
                values[name] = substitute(expression, resolver)
            except UnknownPlaceholder as exc:
                composer._fail(
                    parent,
                    rollup,
                    f"rollup.per_source.{name}",
                    f"unknown placeholder {{{exc.name}}} for source {descendant_id}",
                )
        found.append(Source(child.customer_id, integration.integration_id, assets, values))
    return found
