"""What code a store value may name: operators, callables and legacy files.

A row in the store is written by people and tools that must not gain more than their
district's data, so a name it holds is only ever looked up in these lists, before
anything is imported (importing a module runs it: `antigravity` opens a browser):
- operators: those the templates and fleet.yaml `setup_tasks` use, plus fleet.yaml
  `operators:` (templates and fleet.yaml are reviewed code; the store is not);
- callables (`*_callback`, `python_callable`, any argument that takes a callable):
  fleet.yaml and the template's `imports:`; operators that run a Python callable count
  for overrides only when fleet.yaml `operators:` lists them (composer/compose/callables.py);
- legacy files: fleet.yaml `legacy_files:` names the one customer that may publish
  each file, so no customer can publish (and run) another's legacy DAG.
An override also cannot choose the credentials or the place a task runs with: see
`override_arg_problem`.
"""

from __future__ import annotations

import re

from composer.compose.callables import CALLABLE_ARG_NAMES, code_running_override_problem, runs_code
from composer.model.fleet import Customer
from composer.model.settings import FleetSettings
from composer.model.templates import DOTTED_RE, TemplateCatalog, TemplateError

CALLBACK_KEYS = frozenset(
    {
        "on_failure_callback",
        "on_success_callback",
        "on_retry_callback",
        "on_execute_callback",
        "on_skipped_callback",
        "sla_miss_callback",
    }
)


def is_callback(arg: str) -> bool:
    """Arguments whose value names a callable by dotted path (written as an import)."""
    return arg in CALLBACK_KEYS or arg.endswith("_callback")


# BaseOperator arguments that choose the unix user, executor settings or worker queue a
# task runs with: the templates and fleet settings set them, never a store row.
EXECUTION_ARGS = frozenset({"run_as_user", "executor_config", "queue"})
_ONE_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


def override_arg_problem(arg: str, value: object) -> str | None:
    """Why an override may not set this argument to this value. Removing it (null) is
    always fine; a connection may only be a `{param}` reference, so it goes through
    the param's type and tenant namespace (fleet.yaml pins `gcp_conn_id`)."""
    if value is None:
        return None
    if arg in EXECUTION_ARGS:
        return "is set by the templates and fleet settings only, not by a task override"
    if arg.endswith("conn_id") or arg == "impersonation_chain":
        if isinstance(value, str) and _ONE_PLACEHOLDER.fullmatch(value):
            return None
        return (
            "chooses credentials: an override may only remove it (null) or name a "
            "param ({gcp_conn_id}), whose value is checked against the tenant's namespace"
        )
    return None


def allowed_operators(settings: FleetSettings, templates: TemplateCatalog) -> frozenset[str]:
    """Every operator path the reviewed files use, plus fleet.yaml's explicit list. A
    template that does not load adds nothing (its customers fail on it anyway); one that
    runs Python code counts only when fleet.yaml lists it (composer/compose/callables.py)."""
    found: set[str] = set()
    tasks = list((settings.setup_tasks or {}).values())
    for name in templates.names():
        try:
            template = templates.get(name)
            for one in (template.versions or {0: template}).values():  # composer/model/versions.py
                tasks.extend(one.tasks.values())
        except TemplateError:
            continue
    found.update(t["operator"] for t in tasks if isinstance(t, dict) and "operator" in t)
    used = {o for o in found if isinstance(o, str)}
    allowed = AllowedOperators({o for o in used if not runs_code(o)} | set(settings.operators))
    allowed.code_runners = frozenset(o for o in used if runs_code(o)) - allowed
    return allowed


class AllowedOperators(frozenset):
    """The operators a store value may name; `code_runners`: those the templates use
    that run the code they are given, refused to overrides unless fleet.yaml lists them
    (so the refusal can say why)."""

    code_runners: frozenset[str] = frozenset()


def operator_problem(operator: object, allowed: frozenset[str]) -> str | None:
    if isinstance(operator, str) and operator in allowed:
        return None
    used_by_templates = {o.rsplit(".", 1)[-1] for o in getattr(allowed, "code_runners", ())}
    if isinstance(operator, str) and operator.rsplit(".", 1)[-1] in used_by_templates:
        return code_running_override_problem(operator, ())  # either path of the class
    return (
        f"operator {operator!r} is not allowed: a store value may name only an operator "
        "that the templates use or fleet.yaml lists under operators"
    )


def callable_problem(path: object, allowed: set[str] | frozenset[str]) -> str | None:
    if isinstance(path, str) and path in allowed:
        return None
    return f"{path!r} is not a callable listed under the template's or fleet's imports"


def callables_problem(value: object, allowed: set[str] | frozenset[str]) -> str | None:
    """The first callable a `*_callback` value (a path, a list of them, or null to
    remove it) names that is not allowed."""
    paths = [] if value is None else value if isinstance(value, list) else [value]
    problems = (callable_problem(path, allowed) for path in paths)
    return next((problem for problem in problems if problem), None)


def legacy_problem(settings: FleetSettings, customer: Customer) -> str | None:
    """Whether this customer may publish the legacy file it names (no file is read)."""
    name = customer.legacy_dag_file
    if not name:
        return None
    owner = settings.legacy_files.get(name)
    if owner == customer.customer_id:
        return None
    if owner is None:
        return f"{name} is not listed under legacy_files in fleet.yaml"
    return f"{name} is the legacy file of customer {owner} (fleet.yaml legacy_files)"


def override_problem(
    overrides: dict, operators: frozenset[str], callables: set[str]
) -> tuple[str, str] | None:
    """(field, why) of the first name in a task_overrides column that is not allowed:
    an operator, an argument an override may not set, a callable. Pure: nothing is
    imported, so it runs before anything is."""
    for task_id, patch in overrides.items():
        if not isinstance(patch, dict):
            continue
        where = f"task_overrides.{task_id}"
        operator = patch.get("operator")
        # A non-dotted name is refused by the shape check, also before any import.
        if isinstance(operator, str) and DOTTED_RE.match(operator):
            problem = operator_problem(operator, operators)
            if problem:
                return f"{where}.operator", problem
        args = patch.get("args") if isinstance(patch.get("args"), dict) else {}
        for key in sorted(args):
            problem = override_arg_problem(key, args[key]) or (
                callables_problem(args[key], callables)
                if is_callback(key) or key in CALLABLE_ARG_NAMES
                else None
            )
            if problem:
                return f"{where}.args.{key}", problem
    return None
