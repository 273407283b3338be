"""`fleet lint`: every template of a folder checked alone, without a store.

A template author wants to know that a new or edited file works before any district
uses it, and a reviewer wants that in CI, where there is no store. Lint runs what
the loader and composition check of a template by itself: its shape, that every
placeholder is declared (a template param, a fleet param or a built-in), that each
operator imports, is an Airflow operator and takes the arguments given, and that each
callable is listed under the template's or the fleet's `imports:` and imports. It stops
at a file's first problem, as the loader does, so a broken file is one error. What
depends on a customer (param values, overrides) is left to validate/plan/sync.
Nothing here imports Airflow's DagBag or parses a generated DAG file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer.compose.allowlist import callable_problem, is_callback
from composer.compose.operator_cache import FactCache
from composer.compose.operators import OperatorCatalog, UnknownOperator
from composer.compose.substitution import placeholders
from composer.error_lines import split_template_message
from composer.errors import SettingsError
from composer.model.settings import SETTINGS_FILE, FleetSettings, load_settings
from composer.model.templates import Template, TemplateCatalog, TemplateError
from composer.model.yamlio import load_yaml


class LintProblem(Exception):
    """The first problem of one file: where, and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class LintResult:
    directory: Path
    checked: list[str] = field(default_factory=list)  # file names, fleet.yaml first
    problems: list[str] = field(default_factory=list)  # one line per broken file

    def summary(self) -> str:
        templates = len(self.checked) - 1
        if self.problems:
            return (
                f"Linted {templates} templates and {SETTINGS_FILE} in {self.directory}: "
                f"{len(self.problems)} with problems"
            )
        return f"Linted {templates} templates and {SETTINGS_FILE} in {self.directory}: all valid"


def lint_templates(directory: Path) -> LintResult:
    """One line per broken file of `directory` (fleet.yaml and every template)."""
    result = LintResult(directory, [SETTINGS_FILE])
    settings_path = directory / SETTINGS_FILE
    try:
        settings = load_settings(directory)
    except SettingsError as exc:
        result.problems.append(str(exc))
        settings = None
    if settings is not None:
        known, fleet_imports = frozenset(settings.params), set(settings.imports)
    else:
        known, fleet_imports = _raw_names(settings_path)
    catalog = TemplateCatalog(directory, known)
    operators = OperatorCatalog(settings.airflow_target if settings else 3, FactCache.default())
    if settings is not None:
        try:
            _check_settings(settings, catalog, operators)
        except LintProblem as exc:
            result.problems.append(f"{settings_path}: {exc.field}: {exc}")
    for name in catalog.names():
        result.checked.append(f"{name}.yaml")
        try:
            template = catalog.get(name)
            _check_template(template, catalog, operators, fleet_imports)
            for number, version in template.versions.items():  # composer/model/versions.py
                if version is not template:
                    try:
                        _check_template(version, catalog, operators, fleet_imports)
                    except LintProblem as exc:
                        raise LintProblem(f"versions.{number}.{exc.field}", str(exc)) from None
        except TemplateError as exc:
            split = split_template_message(str(exc))
            where = f"{split[1]}: {split[2]}" if split else str(exc)
            result.problems.append(f"{directory / f'{name}.yaml'}: {where}")
        except LintProblem as exc:
            result.problems.append(f"{directory / f'{name}.yaml'}: {exc.field}: {exc}")
    return result


def _raw_names(path: Path) -> tuple[frozenset[str], set[str]]:
    """Fleet param names and imports from a fleet.yaml that does not load, so its
    templates are still checked without a cascade of errors (an unreadable one: none)."""
    try:
        raw = load_yaml(path)
    except Exception:  # the settings error already says why
        return frozenset(), set()
    raw = raw if isinstance(raw, dict) else {}
    params, imports = raw.get("params"), raw.get("imports")
    return (
        frozenset(params) if isinstance(params, dict) else frozenset(),
        {i for i in imports if isinstance(i, str)} if isinstance(imports, list) else set(),
    )


def _check_settings(
    settings: FleetSettings, catalog: TemplateCatalog, operators: OperatorCatalog
) -> None:
    """What fleet.yaml names: callables, allow-listed operators, setup tasks, roll-up."""
    for index, path in enumerate(settings.imports):
        _importable_callable(operators, path, f"imports[{index}]")
    for index, dotted in enumerate(settings.operators):
        try:
            operators.unknown_arguments(dotted, set())
        except UnknownOperator as exc:
            raise LintProblem(f"operators[{index}]", f"unknown operator {dotted}: {exc}") from None
    _check_args(settings.default_args, "default_args", operators, set(settings.imports))
    for task_id, task in settings.setup_tasks.items():
        _check_task(task, f"setup_tasks.{task_id}", operators, set(settings.imports))
    if settings.rollup_template:
        template = _named_template(catalog, settings.rollup_template, "rollup_template")
        if template is not None and template.rollup is None:
            raise LintProblem(
                "rollup_template", f"template {template.name!r} has no `rollup:` section"
            )


def _check_template(
    template: Template,
    catalog: TemplateCatalog,
    operators: OperatorCatalog,
    fleet_imports: set[str],
) -> None:
    allowed = fleet_imports | set(template.imports)
    for index, path in enumerate(template.imports):
        _importable_callable(operators, path, f"imports[{index}]")
    _check_args(template.default_args, "default_args", operators, allowed)
    for task_id, task in template.tasks.items():
        _check_task(task, f"tasks.{task_id}", operators, allowed)
    sources = (template.rollup or {}).get("sources")
    if sources:
        _named_template(catalog, sources, "rollup.sources")


def _named_template(catalog: TemplateCatalog, name: str, where: str) -> Template | None:
    """The template another file names; a problem when there is no such file. A file
    that exists but does not load is its own error line, not this one's (None)."""
    if not (catalog.directory / f"{name}.yaml").is_file() or name == "fleet":
        raise LintProblem(where, f"no template {name!r} (no {name}.yaml in {catalog.directory})")
    try:
        return catalog.get(name)
    except TemplateError:
        return None


def _check_task(
    task: dict[str, Any], where: str, operators: OperatorCatalog, allowed: set[str]
) -> None:
    operator = task["operator"]
    args = task.get("args") or {}
    _check_callbacks(args, f"{where}.args", operators, allowed)  # before any import
    try:
        unknown = operators.unknown_arguments(operator, set(args))
    except UnknownOperator as exc:
        raise LintProblem(f"{where}.operator", f"unknown operator {operator}: {exc}") from None
    if unknown:
        name = operator.rsplit(".", 1)[-1]
        raise LintProblem(f"{where}.args.{unknown[0]}", f"{name} takes no argument {unknown[0]!r}")
    _check_args(args, f"{where}.args", operators, allowed)


def _check_args(
    args: dict[str, Any], where: str, operators: OperatorCatalog, allowed: set[str]
) -> None:
    """Callables allow-listed and importable; values Airflow checks at parse time, where
    they hold no placeholder (those are checked per customer, once substituted)."""
    _check_callbacks(args, where, operators, allowed)
    literal = {k: v for k, v in args.items() if not placeholders(v) and not is_callback(k)}
    for arg, why in operators.value_problems(literal):
        raise LintProblem(f"{where}.{arg}", why)


def _check_callbacks(
    args: dict[str, Any], where: str, operators: OperatorCatalog, allowed: set[str]
) -> None:
    for key in sorted(k for k in args if is_callback(k)):
        value = args[key]
        for path in value if isinstance(value, list) else [value]:
            if path is None:
                continue
            problem = callable_problem(path, allowed)
            if problem:
                raise LintProblem(f"{where}.{key}", problem)
            _importable_callable(operators, path, f"{where}.{key}")


def _importable_callable(operators: OperatorCatalog, path: str, where: str) -> None:
    try:
        operators.check_callable(path)
    except UnknownOperator as exc:
        raise LintProblem(where, str(exc)) from None
