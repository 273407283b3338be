"""Templates: one YAML file per integration type, loaded and checked for shape.

A template is checked on its own (keys, task graph, placeholders it uses) when it is
loaded; what depends on a customer (param values, overrides, operator arguments after
the merge) is checked in composition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer.compose.dag_settings import section_problem, static_problem
from composer.compose.substitution import placeholders
from composer.compose.taskshape import (
    GraphError,
    check_task_graph,
    parse_after,
    parse_groups,
    upstream_problem,
)
from composer.model.keys import did_you_mean
from composer.model.param_types import SPEC_KEYS, ParamType, ParamTypeError, parse_param_type
from composer.model.yamlio import load_yaml

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
TASK_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}\Z")
DOTTED_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\Z")
TASK_KEYS = frozenset({"operator", "args", "upstream", "group", "expand"})
TEMPLATE_KEYS = frozenset(
    {
        "template",
        "description",
        "params",
        "imports",
        "default_args",
        "tasks",
        "main",
        "cron",
        "rollup",
        "groups",
        # The file's version and the others as merge patches: composer/model/versions.py takes
        # them off before the body (and each version) is parsed here.
        "version",
        "versions",
    }
)
ROLLUP_KEYS = frozenset({"sources", "deadline", "description", "per_source"})
# Keys of `main:` and `cron:` besides the DAG settings (composer/compose/dag_settings.py).
MAIN_KEYS = frozenset({"tooltip", "after"})  # after: composer/compose/taskgraph.py
CRON_KEYS = frozenset({"description"})
IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
PARAM_KEYS = frozenset({"required", "default", "description"}) | SPEC_KEYS
BUILTINS = frozenset(
    {
        "customer_id",
        "customer_key",
        "customer_name",
        "timezone",
        "integration_id",
        "template",
        "dag_id",
        "descendant_ids",
        "descendant_count",
    }
)
# Known in a roll-up template's tasks besides its per_source names (composer/compose/rollup.py).
ROLLUP_BUILTINS = frozenset({"source_ids", "source_count"})


class TemplateError(ValueError):
    """A template file is unusable; `field` locates the problem inside it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ParamSpec:
    name: str
    required: bool = False
    default: Any = None
    type: ParamType | None = None  # declared type (composer/model/param_types.py); None: any value


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    params: dict[str, ParamSpec]
    imports: tuple[str, ...]
    default_args: dict[str, Any]
    tasks: dict[str, dict[str, Any]]
    main: dict[str, Any] | None  # None: this template cannot run inside a main DAG
    cron: dict[str, Any] | None  # None: this template cannot have its own cron DAG
    source: Path | None = field(default=None, compare=False)
    # A roll-up template (fleet.yaml rollup_template): which template's loads it rolls
    # up, its deadline and its per-source params (see composer/compose/rollup.py).
    rollup: dict[str, Any] | None = None
    # Settings of the task groups inside an integration, by dotted path (composer/compose/taskgraph.py).
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The file's version (`version:`) and every version it carries, by number, the
    # default included (composer/model/versions.py); None and {} for an unversioned file.
    version: int | None = None
    versions: dict[int, Template] = field(default_factory=dict, compare=False, repr=False)


def check_tasks(tasks: Any, prefix: str, cross: bool = False) -> dict[str, dict[str, Any]]:
    """Shape of a `tasks` map (template or template after overrides) and its graph;
    `cross`: upstreams may name another integration's task (overrides in a main DAG)."""
    if not isinstance(tasks, dict) or not tasks:
        raise TemplateError(prefix, "must be a non-empty mapping of task id to task")
    for task_id, task in tasks.items():
        where = f"{prefix}.{task_id}"
        if not isinstance(task_id, str) or not TASK_ID_RE.match(task_id):
            raise TemplateError(where, "task id must match [A-Za-z0-9_][A-Za-z0-9_-]*")
        if not isinstance(task, dict):
            raise TemplateError(where, "a task must be a mapping")
        unknown = sorted(str(k) for k in set(task) - TASK_KEYS)
        if unknown:
            raise TemplateError(
                f"{where}.{unknown[0]}",
                f"unknown task key {unknown[0]!r}{did_you_mean(unknown[0], TASK_KEYS)}"
                f" (use {', '.join(sorted(TASK_KEYS))})",
            )
        operator = task.get("operator")
        if not isinstance(operator, str) or not DOTTED_RE.match(operator):
            raise TemplateError(f"{where}.operator", "must be the operator's dotted import path")
        if not isinstance(task.get("args", {}), dict):
            raise TemplateError(f"{where}.args", "must be a mapping")
        upstream = task.get("upstream", [])
        if not isinstance(upstream, list) or not all(isinstance(u, str) for u in upstream):
            raise TemplateError(f"{where}.upstream", "must be a list of task ids")
        for up in upstream:
            problem = upstream_problem(up, tasks, cross)
            if problem:
                raise TemplateError(f"{where}.upstream", problem)
    try:
        check_task_graph(tasks, prefix)
    except GraphError as exc:
        raise TemplateError(exc.field, str(exc)) from None
    cycle = find_cycle({tid: t.get("upstream", []) for tid, t in tasks.items()})
    if cycle:
        raise TemplateError(
            f"{prefix}.{cycle[0]}.upstream", "dependency cycle " + " -> ".join(cycle)
        )
    return tasks


def find_cycle(upstream: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for up in upstream.get(node, []):
            if state.get(up) == 1:
                return [*path[path.index(up) :], up]
            if up not in state:
                found = visit(up)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(upstream):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def parse_template(
    raw: Any, name: str, known_params: frozenset[str], source: Path | None = None
) -> Template:
    if not isinstance(raw, dict):
        raise TemplateError("template", "a template file must be a mapping")
    unknown = sorted(str(k) for k in set(raw) - TEMPLATE_KEYS)
    if unknown:
        raise TemplateError(
            unknown[0],
            f"unknown template key {unknown[0]!r}{did_you_mean(unknown[0], TEMPLATE_KEYS)}",
        )
    for key in ("version", "versions"):  # one version's body only: never silently ignored
        if key in raw:
            raise TemplateError(
                key, "a versioned file is read by composer.model.versions.load_versioned"
            )
    if raw.get("template") != name:
        raise TemplateError("template", f"must be {name!r}, the file's name")
    params: dict[str, ParamSpec] = {}
    for pname, spec in (raw.get("params") or {}).items():
        if isinstance(spec, dict) and set(spec) - PARAM_KEYS:
            key = sorted(str(k) for k in set(spec) - PARAM_KEYS)[0]
            raise TemplateError(
                f"params.{pname}.{key}", f"unknown key {key!r}{did_you_mean(key, PARAM_KEYS)}"
            )
        if not isinstance(spec, dict):
            raise TemplateError(
                f"params.{pname}",
                "declare a param as {required: true} or {default: value}, with an optional "
                "type, enum, pattern, min_length, max_length or runtime",
            )
        if pname in BUILTINS:
            raise TemplateError(f"params.{pname}", "is a built-in param and cannot be declared")
        required = bool(spec.get("required", False))
        if required and "default" in spec:
            raise TemplateError(f"params.{pname}", "a required param cannot have a default")
        try:
            ptype = parse_param_type(spec)
        except ParamTypeError as exc:
            raise TemplateError(f"params.{pname}", str(exc)) from None
        params[pname] = ParamSpec(pname, required, spec.get("default"), ptype)
    imports = raw.get("imports") or []
    if not isinstance(imports, list) or not all(
        isinstance(i, str) and DOTTED_RE.match(i) for i in imports
    ):
        raise TemplateError("imports", "must be a list of dotted import paths")
    default_args = raw.get("default_args") or {}
    if not isinstance(default_args, dict):
        raise TemplateError("default_args", "must be a mapping")
    tasks = check_tasks(raw.get("tasks"), "tasks")
    variants = {}
    for variant in ("main", "cron"):
        value = raw.get(variant, None)
        if variant in raw and not isinstance(value or {}, dict):
            raise TemplateError(variant, "must be a mapping")
        own = MAIN_KEYS if variant == "main" else CRON_KEYS
        problem = (
            section_problem(value or {}, own) or static_problem(value or {}, None)
            if variant in raw
            else None
        )
        if problem:
            raise TemplateError(f"{variant}.{problem.field}", str(problem))
        variants[variant] = (value or {}) if variant in raw else None
    rollup = _check_rollup(raw.get("rollup"), params) if "rollup" in raw else None
    try:
        groups = parse_groups(raw.get("groups"), tasks)
    except GraphError as exc:
        raise TemplateError(exc.field, str(exc)) from None
    if variants["main"] is None and variants["cron"] is None and rollup is None:
        raise TemplateError("main", "a template must declare `main:`, `cron:` or both")
    known = known_params | BUILTINS | set(params)
    per_source = set((rollup or {}).get("per_source") or {}) | (
        ROLLUP_BUILTINS if rollup else set()
    )
    defaults = {pname: spec.default for pname, spec in params.items()}
    checked = (
        ("params", defaults, known),
        ("default_args", default_args, known | per_source),
        ("tasks", tasks, known | per_source),
        ("groups", groups, known),
        ("main", variants["main"] or {}, known),
        ("cron", variants["cron"] or {}, known),
        ("rollup.deadline", (rollup or {}).get("deadline"), known),
        ("rollup.description", (rollup or {}).get("description"), known | per_source),
    )
    for where, value, names in checked:
        missing = sorted(placeholders(value) - names)
        if missing:
            raise TemplateError(
                where, f"unknown placeholder {{{missing[0]}}} (declare it under params)"
            )
    return Template(
        name=name,
        description=str(raw.get("description") or ""),
        params=params,
        imports=tuple(imports),
        default_args=default_args,
        tasks=tasks,
        main=variants["main"],
        cron=variants["cron"],
        source=source,
        rollup=rollup,
        groups=groups,
    )


def _check_rollup(raw: Any, params: dict[str, ParamSpec]) -> dict[str, Any]:
    """Shape of a roll-up section; `per_source` values name the source template's params,
    so their placeholders are checked per source, in composition."""
    if not isinstance(raw, dict):
        raise TemplateError("rollup", "must be a mapping")
    unknown = sorted(str(k) for k in set(raw) - ROLLUP_KEYS)
    if unknown:
        raise TemplateError(
            f"rollup.{unknown[0]}",
            f"unknown roll-up key {unknown[0]!r}{did_you_mean(unknown[0], ROLLUP_KEYS)}",
        )
    if not isinstance(raw.get("sources"), str) or not NAME_RE.match(raw["sources"]):
        raise TemplateError("rollup.sources", "must name the template whose loads it rolls up")
    if not isinstance(raw.get("deadline"), str):
        raise TemplateError("rollup.deadline", "must be a cron expression (or a placeholder)")
    per_source = raw.get("per_source") or {}
    if not isinstance(per_source, dict):
        raise TemplateError("rollup.per_source", "must be a mapping of name to value")
    for name, value in per_source.items():
        where = f"rollup.per_source.{name}"
        if not isinstance(name, str) or not IDENTIFIER_RE.match(name):
            raise TemplateError(where, "must be an identifier")
        if name in BUILTINS or name in ROLLUP_BUILTINS or name in params:
            raise TemplateError(where, "has the name of a built-in or declared param")
        joined = isinstance(value, dict) and set(value) == {"each", "join"}
        if not (isinstance(value, str) or joined) or (
            joined and not all(isinstance(v, str) for v in value.values())
        ):
            raise TemplateError(where, "must be a string, or {each: string, join: string}")
    return {**raw, "per_source": per_source}


class TemplateCatalog:
    """Templates by name from a folder, loaded on first use and cached."""

    def __init__(self, directory: Path, known_params: frozenset[str]) -> None:
        self.directory = directory
        self._known = known_params
        self._cache: dict[str, Template | TemplateError] = {}

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.yaml") if p.stem != "fleet")

    def get(self, name: str) -> Template:
        """The template, or TemplateError (field `template` when it does not exist)."""
        if name not in self._cache:
            self._cache[name] = self._load(name)
        found = self._cache[name]
        if isinstance(found, TemplateError):
            raise found
        return found

    def _load(self, name: str) -> Template | TemplateError:
        if not NAME_RE.match(name) or name == "fleet":
            return TemplateError("template", f"invalid template name {name!r}")
        path = self.directory / f"{name}.yaml"
        if not path.is_file():
            return TemplateError(
                "template", f"unknown template {name!r} (no {path.name} in {self.directory})"
            )
        from composer.model.versions import load_versioned

        try:
            template = load_versioned(load_yaml(path), name, self._known, path)
            for one in (template.versions or {0: template}).values():  # every version's
                parse_after(one.main, name, self.names())
            return template
        except GraphError as exc:
            return TemplateError("template", f"{path.name}: {exc.field}: {exc}")
        except TemplateError as exc:
            return TemplateError("template", f"{path.name}: {exc.field}: {exc}")
        except Exception as exc:  # YAML syntax, unreadable file
            return TemplateError("template", f"{path.name}: {exc}".replace("\n", " "))
