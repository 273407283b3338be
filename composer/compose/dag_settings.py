"""DAG-level settings: an allow-list of `DAG(...)` arguments a template (`main:`,
`cron:`) or the fleet (fleet.yaml `dag_settings:`) may set.

Precedence is fleet < template. A main DAG holds several integrations, so the templates'
settings are combined (README: DAG-level settings): `dagrun_timeout` and
`max_active_tasks` take the largest; `doc_md` joins one section per integration;
callbacks are the union; mappings (`params`, `access_control`, `user_defined_macros`,
`owner_links`) merge key by key, and one key set to two different values by two
templates is an error naming both. What the fleet owns (tags, catchup, max_active_runs,
schedule, is_paused_upon_creation, ...) is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from composer.compose.dagspec import Call, CodeRef
from composer.compose.typed_values import TypedValueError, duration
from composer.model.keys import unknown_keys

DAG_SETTING_KEYS = frozenset(
    {
        "doc_md",
        "dagrun_timeout",
        "max_active_tasks",
        "access_control",
        "on_failure_callback",
        "on_success_callback",
        "params",
        "user_defined_macros",
        "owner_links",
    }
)
FLEET_OWNED = {
    "tags": "the fleet sets them (customer:, template:, variant:)",
    "catchup": "always False in the fleet (a new DAG runs once, then on schedule)",
    "max_active_runs": "always 1 in the fleet",
    "schedule": "it comes from the store (integrations.schedule, customers.main_schedule)",
    "is_paused_upon_creation": "it is fleet.yaml's paused_at_creation",
    "start_date": "it is fleet.yaml's start_date",
    "dag_id": "it is <customer_id>__<integration_id> (or __main)",
    "default_args": "set default_args at the template's top level",
    "timezone": "it is the customer's timezone",
}
CALLBACKS = ("on_failure_callback", "on_success_callback")
MERGED = ("params", "access_control", "user_defined_macros", "owner_links")
PARAM_SCHEMA_KEYS = frozenset(
    {
        "type",
        "enum",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "items",
        "title",
        "examples",
        "const",
        "values_display",
        "section",
    }
)
PARAM_KEYS = frozenset({"default", "description"}) | PARAM_SCHEMA_KEYS
JSON_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "object", "null"})
PARAM_CLASS = {3: "airflow.sdk.Param", 2: "airflow.models.param.Param"}


class DagSettingError(ValueError):
    """A setting that is refused; `field` is its path below the section."""

    def __init__(self, field: str, message: str, integration_id: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.integration_id = integration_id  # set by `combine`: the later of two templates


def section_problem(section: dict[str, Any], own_keys: frozenset[str]) -> DagSettingError | None:
    """The first key of a `main:`/`cron:`/`dag_settings:` section that is not allowed."""
    for key in sorted(str(k) for k in section):
        if key in FLEET_OWNED and key not in own_keys:
            return DagSettingError(key, f"cannot be set here: {FLEET_OWNED[key]}")
    for key, message in unknown_keys(section, own_keys | DAG_SETTING_KEYS):
        return DagSettingError(key, message)
    return None


def static_problem(
    section: dict[str, Any], imports: frozenset[str] | None, airflow_target: int = 2
) -> DagSettingError | None:
    """The first bad value among those with no placeholder, checked once when the file
    is loaded rather than once per customer (callbacks against `imports`, when given;
    nothing is imported). A template does not know its fleet's target: 2 is the more
    permissive, and composition checks again against the real one."""
    from composer.compose.allowlist import callable_problem
    from composer.compose.substitution import placeholders

    plain = {k: v for k, v in section.items() if k in DAG_SETTING_KEYS and not placeholders(v)}

    def callable_ref(key: str, paths: Any) -> None:
        for path in paths if isinstance(paths, list) else [paths]:
            problem = callable_problem(path, imports) if imports is not None else None
            if problem:
                raise DagSettingError(key, problem)

    try:
        typed_settings(plain, airflow_target, callable_ref)
    except DagSettingError as exc:
        return exc
    return None


def typed_settings(
    raw: dict[str, Any],
    airflow_target: int,
    callable_ref: Callable[[str, Any], Any],
) -> dict[str, Any]:
    """The DAG settings of one section, after substitution, as DAG(...) arguments:
    durations, Params and callables typed, the rest checked plain data.
    `callable_ref(field, value)` checks a callback against the allow-list (CodeRef)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in DAG_SETTING_KEYS or value is None:
            continue
        try:
            out[key] = _one(key, value, airflow_target, callable_ref)
        except TypedValueError as exc:
            raise DagSettingError(f"{key}.{exc.path}" if exc.path else key, str(exc)) from None
    return out


def _one(key: str, value: Any, target: int, callable_ref: Callable[[str, Any], Any]) -> Any:
    if key == "dagrun_timeout":
        return duration(value)
    if key == "max_active_tasks":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DagSettingError(key, f"must be a positive integer, not {value!r}")
        return value
    if key == "doc_md":
        if not isinstance(value, str):
            raise DagSettingError(key, "must be a string (Markdown)")
        if value.rstrip().endswith(".md"):  # Airflow would read (and render) that file
            raise DagSettingError(key, "must be the Markdown itself, not a .md file's name")
        return value
    if key in CALLBACKS:
        return callable_ref(key, value)
    if key == "params":
        return _params(value, target)
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise DagSettingError(key, "must be a mapping with string keys")
    if key == "owner_links" and not all(isinstance(v, str) for v in value.values()):
        raise DagSettingError(key, "must map an owner to a URL (or mailto:) string")
    if key == "access_control":
        if target == 3:
            raise DagSettingError(
                key,
                "is deprecated in Airflow 3 (RemovedInAirflow4Warning): grant DAG access "
                "in the auth manager instead; it is allowed with airflow_target: 2",
            )
        for role, perms in value.items():
            if isinstance(perms, dict):
                ok = all(_strings(v) for v in perms.values())
            else:
                ok = _strings(perms)
            if not ok:
                raise DagSettingError(
                    f"{key}.{role}",
                    "must be a list of permissions, or {resource: [permissions]}",
                )
    return value


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _params(value: Any, target: int) -> dict[str, Call]:
    """`{name: {default, type, description, enum/minimum/...}}` -> Param(...) calls; the
    default is checked against the schema here, as Airflow would when the DAG runs."""
    import jsonschema

    if not isinstance(value, dict):
        raise DagSettingError("params", "must be a mapping of param name to its spec")
    out = {}
    for name, spec in value.items():
        where = f"params.{name}"
        if not isinstance(spec, dict):
            raise DagSettingError(where, "must be {default: ..., type: ..., description: ...}")
        for key, message in unknown_keys(spec, PARAM_KEYS):
            raise DagSettingError(f"{where}.{key}", message)
        if "default" not in spec:
            raise DagSettingError(
                f"{where}.default", "is required: a scheduled run has no one to supply it"
            )
        kind = spec.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        if kind is not None and not all(k in JSON_TYPES for k in kinds):
            raise DagSettingError(
                f"{where}.type",
                f"{kind!r} is not a JSON Schema type ({', '.join(sorted(JSON_TYPES))})",
            )
        schema = {k: v for k, v in spec.items() if k in PARAM_SCHEMA_KEYS}
        try:
            jsonschema.Draft7Validator.check_schema(schema)
            jsonschema.validate(spec["default"], schema)
        except jsonschema.SchemaError as exc:
            raise DagSettingError(where, f"invalid schema: {exc.message}") from None
        except jsonschema.ValidationError as exc:
            raise DagSettingError(f"{where}.default", exc.message) from None
        kwargs = {k: v for k, v in spec.items() if k != "default"}
        out[str(name)] = Call(CodeRef(PARAM_CLASS[target]), (spec["default"],), kwargs)
    return out


def combine(
    fleet: dict[str, Any], templates: list[tuple[str, str, dict[str, Any]]]
) -> dict[str, Any]:
    """Fleet settings overlaid by the templates' (integration_id, template, settings),
    combined as the module docstring says; DagSettingError on a conflict."""
    out = dict(fleet)
    if not templates:
        return out
    if len(templates) == 1:
        _, _, only = templates[0]
        for key, value in only.items():
            out[key] = {**out[key], **value} if key in MERGED and key in out else value
        return out
    started: set[str] = set()  # keys a template has set already
    largest: dict[str, float] = {}
    owner_of: dict[tuple[str, str], tuple[str, Any]] = {}  # (key, name) -> (template, value)
    docs = []
    for integration_id, template, settings in templates:
        for key, value in settings.items():
            first = key not in started
            started.add(key)
            if key in ("dagrun_timeout", "max_active_tasks"):
                size = value.kwargs["seconds"] if key == "dagrun_timeout" else value
                if first or size > largest[key]:
                    largest[key], out[key] = size, value
            elif key == "doc_md":
                docs.append(f"## {integration_id} ({template})\n\n{value}")
            elif key in CALLBACKS:
                refs = value if isinstance(value, list) else [value]
                out[key] = list(dict.fromkeys([*([] if first else out[key]), *refs]))
            elif key in MERGED:
                merged = dict(fleet.get(key) or {}) if first else out[key]
                for name, item in value.items():
                    other = owner_of.get((key, name))
                    if other is not None and other[1] != item:
                        raise DagSettingError(
                            f"{key}.{name}",
                            f"set differently by templates {other[0]!r} and {template!r} "
                            "in one main DAG",
                            integration_id,
                        )
                    owner_of[(key, name)] = (template, item)
                    merged[name] = item
                out[key] = merged
    if docs:
        out["doc_md"] = "\n\n".join(docs)
    for key in CALLBACKS:
        if isinstance(out.get(key), list) and len(out[key]) == 1:
            out[key] = out[key][0]
    return out


class DagSettingsMixin:
    """Composer's part: each section substituted with its own params, typed, combined."""

    settings: Any
    operators: Any

    def _dag_settings(
        self,
        customer: Any,
        variant: str,
        blocks: list[tuple[Any, Any, Any]],
        customer_params: Any,
    ) -> dict[str, Any]:
        """DAG(...) settings of one DAG: fleet.yaml `dag_settings`, then each
        (integration, template, resolver)'s `main:` or `cron:` section."""
        fleet = self._section(
            customer,
            None,
            "fleet.dag_settings",
            self.settings.dag_settings,
            customer_params,
            set(self.settings.imports),
        )
        found = []
        for integration, template, resolver in blocks:
            section = getattr(template, variant, None) or {}
            raw = {k: v for k, v in section.items() if k in DAG_SETTING_KEYS}
            if raw:
                allowed = set(self.settings.imports) | set(template.imports)
                typed = self._section(customer, integration, variant, raw, resolver, allowed)
                found.append((integration.integration_id, template.name, typed))
        try:
            return combine(fleet, found)
        except DagSettingError as exc:
            integration = next(
                (b[0] for b in blocks if b[0].integration_id == exc.integration_id), None
            )
            self._fail(customer, integration, f"{variant}.{exc.field}", str(exc))  # type: ignore[attr-defined]

    def _section(
        self,
        customer: Any,
        integration: Any,
        where: str,
        raw: dict[str, Any],
        resolver: Any,
        allowed: set[str],
    ) -> dict[str, Any]:
        from composer.compose.allowlist import callable_problem
        from composer.compose.operators import UnknownOperator

        if not raw:
            return {}
        value = self._substitute(customer, integration, where, raw, resolver)  # type: ignore[attr-defined]

        def callable_ref(key: str, paths: Any) -> Any:
            refs = []
            for path in paths if isinstance(paths, list) else [paths]:
                problem = callable_problem(path, allowed)  # before anything is imported
                if problem:
                    raise DagSettingError(key, problem)
                try:
                    self.operators.check_callable(path)
                except UnknownOperator as exc:
                    raise DagSettingError(key, str(exc)) from None
                refs.append(CodeRef(path))
            return refs if isinstance(paths, list) else refs[0]

        try:
            return typed_settings(value, self.settings.airflow_target, callable_ref)
        except DagSettingError as exc:
            self._fail(customer, integration, f"{where}.{exc.field}", str(exc))  # type: ignore[attr-defined]
