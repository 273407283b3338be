"""Shapes of the task graph features (composer/compose/taskgraph.py says what they are and why),
checked when a template, or a task map after overrides, is loaded: group paths, a
template's `groups:` settings, `expand`, `main.after`, and upstreams that name another
integration's task."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from composer.model.keys import did_you_mean, unknown_keys

GROUP_SETTING_KEYS = frozenset({"tooltip", "default_args", "prefix_group_id"})
SEGMENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}\Z")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class GraphError(ValueError):
    """A shape problem; `field` locates it (relative to the section checked)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def group_path(value: Any) -> tuple[str, ...] | None:
    """`quality.checks` -> ("quality", "checks"); None when it is not a group path."""
    if not isinstance(value, str):
        return None
    parts = tuple(value.split("."))
    return parts if all(SEGMENT_RE.match(p) for p in parts) else None


def upstream_problem(up: str, tasks: Mapping[str, Any], cross: bool) -> str | None:
    """Why an upstream entry is refused: a task id of the same map, or (in an override,
    `cross`) `<integration_id>.<task_id>` of another integration, resolved later."""
    if up in tasks:
        return None
    integration, dot, task_id = up.partition(".")
    if dot and NAME_RE.match(integration) and SEGMENT_RE.match(task_id):
        if cross:
            return None
        return (
            f"unknown upstream task {up!r}: a template orders integrations by template "
            "name under `main: {after: [...]}`"
        )
    return f"unknown upstream task {up!r}{did_you_mean(up, tasks)}"


def check_task_graph(tasks: Mapping[str, Any], prefix: str) -> None:
    """Groups, expand and ids of a checked `tasks` map: group paths, a mapped task's
    shape, and no task id equal to a group id of the same DAG level."""
    groups: set[tuple[str, ...]] = set()
    refs: dict[tuple[str, ...], str] = {}
    setup = prefix.endswith("setup_tasks")  # fleet.yaml's: one group level, never mapped
    for task_id, task in tasks.items():
        where = f"{prefix}.{task_id}"
        if setup and ("expand" in task or "." in str(task.get("group") or "")):
            key = "expand" if "expand" in task else "group"
            raise GraphError(f"{where}.{key}", "setup tasks take no expand and no nested group")
        path: tuple[str, ...] = ()
        if task.get("group") is not None:
            found = group_path(task["group"])
            if found is None:
                raise GraphError(
                    f"{where}.group", "must be a task group id, or a dotted path of them"
                )
            path = found
            groups.update(path[: d + 1] for d in range(len(path)))
        refs[(*path, task_id)] = where
        _check_expand(task, where)
    for path in sorted(groups & set(refs)):
        raise GraphError(f"{refs[path]}.group", f"group {'.'.join(path)!r} has the id of a task")


def _check_expand(task: Mapping[str, Any], where: str) -> None:
    if "expand" not in task:
        return
    mapped = task["expand"]
    if not isinstance(mapped, dict) or not mapped:
        raise GraphError(
            f"{where}.expand", "must map one operator argument to the list it maps over"
        )
    args = task.get("args") or {}
    for key in mapped:
        if not isinstance(key, str) or not IDENT_RE.match(key):
            raise GraphError(f"{where}.expand", f"{key!r} is not an argument name")
        if key in args:
            raise GraphError(
                f"{where}.expand.{key}",
                "is also under args: an argument is either partial (args) or mapped (expand)",
            )


def parse_groups(raw: Any, tasks: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A template's `groups:`: path -> {tooltip, default_args}; every path must be a
    group its tasks use (a typo'd path must not silently apply to nothing)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise GraphError("groups", "must map a group path to its settings")
    used = {
        ".".join(path[: d + 1])
        for task in tasks.values()
        if (path := group_path(task.get("group"))) is not None
        for d in range(len(path))
    }
    out: dict[str, dict[str, Any]] = {}
    for name, settings in raw.items():
        where = f"groups.{name}"
        if group_path(name) is None:
            raise GraphError(where, "must be a task group id, or a dotted path of them")
        if name not in used:
            raise GraphError(where, f"no task is in group {name!r}{did_you_mean(name, used)}")
        if not isinstance(settings, dict):
            raise GraphError(where, "must be a mapping (tooltip, default_args)")
        for key, message in unknown_keys(settings, GROUP_SETTING_KEYS):
            raise GraphError(f"{where}.{key}", message)
        if settings.get("prefix_group_id", True) is not True:
            raise GraphError(
                f"{where}.prefix_group_id",
                "group ids are always prefixed: two integrations of one template share a "
                "main DAG, and unprefixed task ids would collide there",
            )
        if not isinstance(settings.get("tooltip", ""), str):
            raise GraphError(f"{where}.tooltip", "must be a string")
        if not isinstance(settings.get("default_args") or {}, dict):
            raise GraphError(f"{where}.default_args", "must be a mapping")
        out[name] = {k: v for k, v in settings.items() if k != "prefix_group_id"}
    return out


def parse_after(main: Mapping[str, Any] | None, name: str, templates: list[str]) -> None:
    """`main.after`: template names (or `template.task_id`) that exist, not this one."""
    if not main or "after" not in main:
        return
    after = main["after"]
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise GraphError("main.after", "must be a list of template names")
    for entry in after:
        other, _, task_id = entry.partition(".")
        if other == name:
            raise GraphError(
                "main.after", f"{entry!r} is this template: an integration cannot follow itself"
            )
        if other not in templates:
            raise GraphError(
                "main.after", f"unknown template {other!r}{did_you_mean(other, templates)}"
            )
        if task_id and not SEGMENT_RE.match(task_id):
            raise GraphError("main.after", f"{entry!r}: {task_id!r} is not a task id")


def expand_override_problem(overrides: Mapping[str, Any]) -> tuple[str, str] | None:
    """(field, why) when a task override sets `expand`."""
    for task_id, patch in sorted(overrides.items()):
        if isinstance(patch, dict) and "expand" in patch:
            return (
                f"task_overrides.{task_id}.expand",
                "an override cannot map a task: what a task maps over is the template's "
                "(set the list through its param)",
            )
    return None
