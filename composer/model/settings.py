"""Fleet settings: templates/fleet.yaml, the knobs that apply to every customer."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer.compose.dag_settings import DagSettingError, section_problem, static_problem
from composer.errors import SettingsError
from composer.model.fleet import Limits
from composer.model.keys import unknown_keys
from composer.model.param_types import ParamType, ParamTypeError, parse_param_type
from composer.model.templates import DOTTED_RE, TemplateError, check_tasks
from composer.model.versions import Rollout, rollout_settings
from composer.model.yamlio import load_yaml
from composer.plan.environments import NAME_RE, Environment
from composer.render.layout import MAX_SHARDS

SETTINGS_FILE = "fleet.yaml"
# fleet.yaml's top-level keys (the loader and the JSON Schema read this one set).
FLEET_KEYS = {
    "airflow_target",
    "default_main_schedule",
    "stagger_minutes",
    "start_date",
    "params",
    "default_args",
    "imports",
    "setup_tasks",
    "rollup_template",
    "limits",
    "environments",
    "shards",
    "paused_at_creation",
    "operators",
    "param_types",
    "tenant_namespaces",
    "tenant_exceptions",
    "legacy_files",
    "timetables",
    "dag_settings",
    "rollout",
    "disabled_templates",
}


@dataclass(frozen=True)
class FleetSettings:
    airflow_target: int = 3
    default_main_schedule: str = "0 2 * * *"
    stagger_minutes: int = 30
    start_date: dt.date = dt.date(2024, 1, 1)
    params: dict[str, Any] = field(default_factory=dict)
    default_args: dict[str, Any] = field(default_factory=dict)
    imports: tuple[str, ...] = ()
    # Tasks placed first in every generated DAG (e.g. make sure the dataset exists).
    setup_tasks: dict[str, Any] = field(default_factory=dict)
    rollup_template: str | None = None
    limits: Limits = field(default_factory=Limits)
    # Composer environments the fleet is spread over; empty: one, the --target.
    environments: tuple[Environment, ...] = ()
    # DAG files the fleet is spread over (composer/render/layout.py); None: sized by the fleet.
    shards: int | None = None
    # Unpaused by default: an onboarded district runs with no human step (SPEC 4).
    paused_at_creation: bool = False
    # What a store value may name beyond what the templates use (composer/compose/allowlist.py).
    operators: tuple[str, ...] = ()
    # Declared types of fleet params (composer/model/param_types.py).
    param_types: dict[str, ParamType] = field(default_factory=dict)
    # Param -> the namespace its value must lie in, e.g. dataset: "district_{customer_key}".
    tenant_namespaces: dict[str, str] = field(default_factory=dict)
    # customer_id -> {param: the one value outside its namespace it is granted}.
    tenant_exceptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Legacy file name -> the one customer_id that may publish it.
    legacy_files: dict[str, str] = field(default_factory=dict)
    # Named timetables a store schedule may pick (`timetable:<name>`; composer/compose/timetables.py).
    timetables: dict[str, Any] = field(default_factory=dict)
    # DAG(...) arguments every generated DAG gets (composer/compose/dag_settings.py).
    dag_settings: dict[str, Any] = field(default_factory=dict)
    # Template versions: staged rollout and the kill switch (composer/model/versions.py).
    rollout: dict[str, Rollout] = field(default_factory=dict)
    disabled_templates: tuple[str, ...] = ()


def _strings(value: Any) -> frozenset[str]:
    return (
        frozenset(v for v in value if isinstance(v, str))
        if isinstance(value, list)
        else frozenset()
    )


def _check_setup_tasks(path: Path, setup_tasks: Any) -> None:
    """A broken task graph here would fail every customer: it is a settings error,
    reported once. (Placeholders are not checked here: fleet values may name params
    that customers set.)"""
    if setup_tasks:
        try:
            check_tasks(setup_tasks, "setup_tasks")
        except TemplateError as exc:
            raise SettingsError(f"{path}: {exc.field}: {exc}") from exc


def _limits(path: Path, raw: Any) -> Limits:
    """`limits:` may raise (or lower) the size caps; each a positive number of bytes."""
    if raw is None:
        return Limits()
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: limits must be a mapping")
    known = {f.name for f in dataclasses.fields(Limits)}
    for key, message in unknown_keys(raw, known):
        raise SettingsError(f"{path}: limits.{key}: {message} (use {', '.join(sorted(known))})")
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise SettingsError(f"{path}: limits.{key} must be a positive number of bytes")
    return Limits(**raw)


def _environments(path: Path, raw: Any) -> tuple[Environment, ...]:
    """`environments:` NAME -> {target: URL, capacity: DAGs}; names and targets unique."""
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise SettingsError(
            f"{path}: environments must be a mapping of name to target and capacity"
        )
    found: list[Environment] = []
    targets: dict[str, str] = {}
    for name, spec in raw.items():
        where = f"{path}: environments.{name}"
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise SettingsError(f"{where}: the name must match {NAME_RE.pattern}")
        if not isinstance(spec, dict):
            raise SettingsError(f"{where}: expected {{target: URL, capacity: DAGs}}")
        for key, message in unknown_keys(spec, ("target", "capacity")):
            raise SettingsError(f"{where}.{key}: {message}")
        target, capacity = spec.get("target"), spec.get("capacity")
        if not isinstance(target, str) or not target.startswith(("file://", "gs://")):
            raise SettingsError(f"{where}.target: a file:// or gs:// URL is required")
        if target.rstrip("/") in targets:
            raise SettingsError(
                f"{where}.target: {target} is also environments.{targets[target.rstrip('/')]}'s"
            )
        targets[target.rstrip("/")] = name
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise SettingsError(
                f"{where}.capacity: a number of DAGs is required (0: draining, gets no customers)"
            )
        found.append(Environment(name, target, capacity))
    if not any(e.capacity for e in found):
        raise SettingsError(f"{path}: environments: every capacity is 0; one must take customers")
    return tuple(found)


def load_settings(templates_dir: Path) -> FleetSettings:
    path = templates_dir / SETTINGS_FILE
    if not path.is_file():
        raise SettingsError(f"{path}: fleet settings file is missing")
    try:
        raw = load_yaml(path) or {}
    except Exception as exc:  # yaml.YAMLError, OSError
        raise SettingsError(f"{path}: cannot read: {exc}".replace("\n", " ")) from exc
    if not isinstance(raw, dict):
        raise SettingsError(f"{path}: expected a mapping at the top level")
    for key, message in unknown_keys(raw, FLEET_KEYS):
        raise SettingsError(f"{path}: {key}: {message}")
    dag_settings = raw.get("dag_settings") or {}
    problem = (
        section_problem(dag_settings, frozenset())
        or static_problem(
            dag_settings, _strings(raw.get("imports")), 3 if raw.get("airflow_target") != 2 else 2
        )
        if isinstance(dag_settings, dict)
        else DagSettingError("", "must be a mapping")
    )
    if problem:
        raise SettingsError(f"{path}: dag_settings.{problem.field}: {problem}".replace(".:", ":"))
    target = raw.get("airflow_target", 3)
    if target not in (2, 3):
        raise SettingsError(f"{path}: airflow_target must be 2 or 3, not {target!r}")
    stagger = raw.get("stagger_minutes", 30)
    if isinstance(stagger, bool) or not isinstance(stagger, int) or not 0 <= stagger <= 59:
        raise SettingsError(f"{path}: stagger_minutes must be an integer from 0 to 59")
    start = raw.get("start_date", dt.date(2024, 1, 1))
    if isinstance(start, str):
        try:
            start = dt.date.fromisoformat(start)
        except ValueError as exc:
            raise SettingsError(f"{path}: start_date must be YYYY-MM-DD") from exc
    if not isinstance(start, dt.date):
        raise SettingsError(f"{path}: start_date must be YYYY-MM-DD")
    for key in ("params", "default_args", "setup_tasks"):
        if not isinstance(raw.get(key) or {}, dict):
            raise SettingsError(f"{path}: {key} must be a mapping")
    imports = raw.get("imports") or []
    if not isinstance(imports, list) or not all(
        isinstance(i, str) and DOTTED_RE.match(i) for i in imports
    ):
        raise SettingsError(f"{path}: imports must be a list of dotted paths")
    shards = raw.get("shards", "auto")
    if shards == "auto":
        shards = None
    elif isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise SettingsError(f"{path}: shards must be auto or an integer from 1 to {MAX_SHARDS}")
    paused = raw.get("paused_at_creation", False)
    if not isinstance(paused, bool):
        raise SettingsError(f"{path}: paused_at_creation must be true or false")
    _check_setup_tasks(path, raw.get("setup_tasks"))
    security = _security_settings(path, raw)
    from composer.compose.schedule import normalize_cron

    default_schedule = raw.get("default_main_schedule", "0 2 * * *")
    try:
        normalize_cron(default_schedule)
    except ValueError as exc:
        raise SettingsError(f"{path}: default_main_schedule: {exc}") from exc
    return FleetSettings(
        airflow_target=target,
        default_main_schedule=default_schedule,
        stagger_minutes=stagger,
        start_date=start,
        params=raw.get("params") or {},
        default_args=raw.get("default_args") or {},
        imports=tuple(imports),
        setup_tasks=raw.get("setup_tasks") or {},
        rollup_template=raw.get("rollup_template"),
        limits=_limits(path, raw.get("limits")),
        environments=_environments(path, raw.get("environments")),
        shards=shards,
        paused_at_creation=paused,
        timetables=_timetables(path, raw.get("timetables"), target),
        dag_settings=dag_settings,
        **security,
        **rollout_settings(path, raw),
    )


def _timetables(path: Path, raw: Any, airflow_target: int) -> dict[str, Any]:
    """`timetables:` is checked once here, the target's classes included (one error,
    not one per customer that uses it)."""
    from composer.compose.timetables import check_named_timetables

    try:
        return check_named_timetables(raw, airflow_target)
    except ValueError as exc:
        raise SettingsError(f"{path}: {exc}") from exc


def _security_settings(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """The allow-lists and tenant rules (README: Templates, What we decided)."""
    operators = raw.get("operators") or []
    if not isinstance(operators, list) or not all(
        isinstance(o, str) and DOTTED_RE.match(o) for o in operators
    ):
        raise SettingsError(f"{path}: operators must be a list of dotted paths")
    param_types = {}
    for name, spec in (raw.get("param_types") or {}).items():
        try:
            if not isinstance(spec, dict):
                raise ParamTypeError("declare a type as {type: ..., enum/pattern/...}")
            param_types[name] = parse_param_type(spec)
        except ParamTypeError as exc:
            raise SettingsError(f"{path}: param_types.{name}: {exc}") from None
    namespaces = raw.get("tenant_namespaces") or {}
    if not isinstance(namespaces, dict) or not all(
        isinstance(v, str) and v for v in namespaces.values()
    ):
        raise SettingsError(f"{path}: tenant_namespaces must map a param to a namespace")
    exceptions = raw.get("tenant_exceptions") or {}
    if not isinstance(exceptions, dict) or not all(
        isinstance(v, dict) and all(p in namespaces for p in v) for v in exceptions.values()
    ):
        raise SettingsError(
            f"{path}: tenant_exceptions must map a customer_id to {{param: value}} "
            "for params listed under tenant_namespaces"
        )
    legacy = raw.get("legacy_files") or {}
    if not isinstance(legacy, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in legacy.items()
    ):
        raise SettingsError(f"{path}: legacy_files must map a file name to a customer_id")
    return {
        "operators": tuple(operators),
        "param_types": {k: v for k, v in param_types.items() if v is not None},
        "tenant_namespaces": dict(namespaces),
        "tenant_exceptions": {k: dict(v) for k, v in exceptions.items()},
        "legacy_files": dict(legacy),
    }
