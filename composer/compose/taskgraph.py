"""The task graph beyond one flat template: nested task groups with their own settings,
dynamic task mapping, and order between the integrations of one main DAG.

Shapes are checked when a template is loaded (composer/compose/taskshape.py, called from
templates.py); this module's part runs in composition: one integration's tasks
(composition.py) and the main DAG's order (dagshape.py); rendering/mapped.py writes a
mapped task. Decisions (README, "Task graph"):

- Groups: `group: quality.checks` is a dotted path of group ids; a template's `groups:`
  maps such a path to `tooltip` and `default_args`. Group ids are always prefixed
  (`prefix_group_id: false` is refused): two integrations of one template share a main
  DAG, and unprefixed ids would collide there.
- Mapping: `expand: {arg: "{list_param}"}` maps one of the operator's own arguments over
  a list; `args` are the partial arguments. BaseOperator's arguments (task_id, pool,
  retries, queue, callbacks, ...) are refused, as Airflow refuses most of them. An empty
  list is allowed: Airflow then skips the task (a district with no school that day).
  An override cannot set `expand`: what a task maps over is the template's decision,
  the list comes from a (typed, inert) param.
- Order: a template's `main: {after: [template, template.task_id]}` puts each of its
  integrations in a main DAG after every integration of that template there (after
  their last tasks, or after that one task); a task override's
  `upstream: ["<integration_id>.<task_id>"]` puts that task after one task of another
  integration of the customer. Both only inside the main DAG: an integration with a
  schedule has its own DAG, and dagfleet does not generate cross-DAG waits
  (ExternalTaskSensor); order across DAGs is for assets.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from typing import Any

from composer.compose.dagspec import GroupSpec, TaskSpec
from composer.compose.operators import RESERVED_ARGS, UnknownOperator
from composer.model.keys import did_you_mean

BASE_OPERATOR = "airflow.sdk.BaseOperator"
MAX_MAP_LENGTH = 1024  # Airflow's [core] max_map_length default: a longer list fails the run


# -- one integration's tasks, in composition -----------------------------------------


def checked_expand(
    composer: Any, customer: Any, integration: Any, field: str, task: Mapping[str, Any]
) -> dict[str, Any]:
    """A substituted task's `expand` (arg -> list), or {} for a task that is not mapped."""
    mapped = task.get("expand")
    if not mapped:
        return {}
    operator = task["operator"]
    name = operator.rsplit(".", 1)[-1]
    args = task.get("args") or {}
    try:
        not_base = set(composer.operators.unknown_arguments(BASE_OPERATOR, set(mapped)))
        unknown = composer.operators.unknown_arguments(operator, set(mapped))
        own = sorted(set(composer.operators._signature(operator)[0]) - set(args))
    except UnknownOperator as exc:
        composer._fail(
            customer, integration, f"{field}.operator", f"unknown operator {operator}: {exc}"
        )
    for key, value in sorted(mapped.items()):
        where = f"{field}.expand.{key}"
        if key in RESERVED_ARGS or key not in not_base:
            composer._fail(
                customer,
                integration,
                where,
                f"{key!r} is an argument of every operator (BaseOperator): Airflow maps only "
                f"the operator's own arguments",
            )
        if key in unknown:
            composer._fail(
                customer,
                integration,
                where,
                f"{name} takes no argument {key!r}{did_you_mean(key, own)}",
            )
        if not isinstance(value, list):
            composer._fail(
                customer,
                integration,
                where,
                f"must be a list to map over (one task instance per item), not "
                f"{type(value).__name__} {value!r}"[:200],
            )
        if len(value) > MAX_MAP_LENGTH:
            composer._fail(
                customer,
                integration,
                where,
                f"maps over {len(value)} items; Airflow refuses more than {MAX_MAP_LENGTH} "
                "([core] max_map_length)",
            )
    return dict(mapped)


def local_refs(
    composer: Any, customer: Any, integration: Any, specs: list[TaskSpec], variant: str
) -> list[TaskSpec]:
    """Upstream task ids as refs; `<integration>.<task>` entries are kept for the main
    DAG to resolve (order_integrations), and refused anywhere else."""
    refs = {s.task_id: s.ref for s in specs}
    overrides = integration.task_overrides or {}
    out = []
    for spec in specs:
        ups = []
        for up in spec.upstream:
            if up in refs:
                ups.append(refs[up])
                continue
            if variant != "main":
                where = "task_overrides" if spec.task_id in overrides else "tasks"
                composer._fail(
                    customer,
                    integration,
                    f"{where}.{spec.task_id}.upstream",
                    f"{up!r} names another integration's task, but "
                    f"{integration.integration_id!r} runs in its own DAG (schedule "
                    f"{integration.schedule!r}): only integrations of the main DAG can be "
                    "ordered (dagfleet generates no cross-DAG ExternalTaskSensor; order "
                    "across DAGs with assets)",
                )
            ups.append(up)
        out.append(dataclasses.replace(spec, upstream=tuple(ups)))
    return out


def inner_groups(
    composer: Any,
    customer: Any,
    integration: Any,
    template: Any,
    tasks: list[TaskSpec],
    outer: tuple[str, ...],
    resolver: Any,
) -> list[GroupSpec]:
    """The task groups inside an integration (every level), with the template's
    `groups:` settings (params substituted, default_args checked like a template's)."""
    paths = sorted(
        {t.groups[:depth] for t in tasks for depth in range(len(outer) + 1, len(t.groups) + 1)}
    )
    settings = getattr(template, "groups", None) or {}
    out = []
    for path in paths:
        key = ".".join(path[len(outer) :])
        found = settings.get(key)
        if not found:
            out.append(GroupSpec(path))
            continue
        where = f"groups.{key}"
        tooltip = composer._substitute(
            customer, integration, f"{where}.tooltip", found.get("tooltip") or "", resolver
        )
        args = composer._substitute(
            customer,
            integration,
            f"{where}.default_args",
            found.get("default_args") or {},
            resolver,
        )
        for arg, why in composer.operators.value_problems(args):
            composer._fail(customer, integration, f"{where}.default_args.{arg}", why)
        allowed = set(composer.settings.imports) | set(template.imports)
        args = composer._callbacks(customer, integration, f"{where}.default_args", args, allowed)
        out.append(GroupSpec(path, str(tooltip), args or None))
    return out


# -- the main DAG: order between integrations ---------------------------------------


def order_integrations(composer: Any, customer: Any, blocks: list) -> list:
    """Resolve `<integration>.<task>` upstreams and templates' `main.after` into task
    edges across the blocks of one main DAG; refuse unknown names and cycles."""
    by_id = {b[0].integration_id: b for b in blocks}
    if not any(
        (b[1].main or {}).get("after") or _has_cross(b[2]) for b in blocks
    ):  # the common case: nothing to do
        return blocks
    origin: dict[tuple[str, str], tuple[Any, str]] = {}  # (down, up) -> (integration, field)
    out = []
    for integration, template, tasks, group in blocks:
        own = {t.ref for t in tasks}
        overrides = integration.task_overrides or {}
        new_tasks = []
        for task in tasks:
            where = f"{'task_overrides' if task.task_id in overrides else 'tasks'}.{task.task_id}"
            ups = []
            for up in task.upstream:
                if up in own:
                    ups.append(up)
                    continue
                ref = _resolve(composer, customer, integration, f"{where}.upstream", up, by_id)
                if ref is None:
                    continue  # that integration is invalid already: reported on its own
                ups.append(ref)
                origin.setdefault((task.ref, ref), (integration, f"{where}.upstream"))
            new_tasks.append(dataclasses.replace(task, upstream=tuple(dict.fromkeys(ups))))
        after = _after_refs(composer, customer, integration, template, blocks)
        if after:
            roots = {t.ref for t in tasks if not any(u in own for u in t.upstream)}
            new_tasks = [
                dataclasses.replace(t, upstream=tuple(dict.fromkeys((*t.upstream, *after))))
                if t.ref in roots
                else t
                for t in new_tasks
            ]
            for root in roots:
                for up in after:
                    origin.setdefault((root, up), (integration, "main.after"))
        out.append((integration, template, new_tasks, group))
    _refuse_cycle(composer, customer, out, origin)
    return out


def _has_cross(tasks: list[TaskSpec]) -> bool:
    own = {t.ref for t in tasks}
    return any(u not in own for t in tasks for u in t.upstream)


def _resolve(
    composer: Any, customer: Any, integration: Any, field: str, up: str, by_id: dict
) -> str | None:
    other_id, _, task_id = up.partition(".")
    block = by_id.get(other_id)
    if block is None:
        known = {i.integration_id: i for i in customer.integrations}
        other = known.get(other_id)
        if other is not None and other.schedule is not None:
            composer._fail(
                customer,
                integration,
                field,
                f"integration {other_id!r} runs in its own DAG (schedule {other.schedule!r}), "
                "not in the main DAG: only integrations of the main DAG can be ordered "
                "(dagfleet generates no cross-DAG ExternalTaskSensor; order across DAGs "
                "with assets)",
            )
        if other is not None:
            return None
        composer._fail(
            customer,
            integration,
            field,
            f"unknown integration {other_id!r} in upstream {up!r}{did_you_mean(other_id, known)}",
        )
    tasks = {t.task_id: t.ref for t in block[2]}
    if task_id not in tasks:
        composer._fail(
            customer,
            integration,
            field,
            f"integration {other_id!r} has no task {task_id!r}{did_you_mean(task_id, tasks)}",
        )
    return tasks[task_id]


def _after_refs(
    composer: Any, customer: Any, integration: Any, template: Any, blocks: list
) -> list[str]:
    """The refs `main.after` puts this integration's first tasks after."""
    refs: list[str] = []
    for entry in (template.main or {}).get("after") or []:
        name, _, task_id = entry.partition(".")
        for other, other_template, tasks, _ in blocks:
            if other_template.name != name or other is integration:
                continue
            if task_id:
                found = [t.ref for t in tasks if t.task_id == task_id]
                if not found:
                    composer._fail(
                        customer,
                        integration,
                        "main.after",
                        f"{entry!r}: integration {other.integration_id!r} ({name}) has no "
                        f"task {task_id!r}" + did_you_mean(task_id, [t.task_id for t in tasks]),
                    )
                refs.extend(found)
            else:
                ups = {u for t in tasks for u in t.upstream}
                refs.extend(t.ref for t in tasks if t.ref not in ups)
    return list(dict.fromkeys(refs))


def _refuse_cycle(composer: Any, customer: Any, blocks: list, origin: dict) -> None:
    from composer.model.templates import find_cycle  # templates imports this module

    graph = {t.ref: list(t.upstream) for _, _, tasks, _ in blocks for t in tasks}
    cycle = find_cycle(graph)
    if not cycle:
        return
    integration, field = next(
        (origin[(a, b)] for a, b in itertools.pairwise(cycle) if (a, b) in origin),
        (blocks[0][0], "main.after"),
    )
    composer._fail(
        customer,
        integration,
        field,
        "dependency cycle across integrations: " + " -> ".join(cycle),
    )
