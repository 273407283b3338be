"""Operator catalog: which classes exist and which arguments they take.

Checked at generation time by importing the operator class, the same import the
generated file does, so a typo fails the sync instead of a customer's DAG.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import warnings
from functools import cache

from composer.compose.operator_cache import FactCache

# Set by the generated code itself, never by a template.
RESERVED_ARGS = frozenset({"task_id", "dag", "task_group"})


class UnknownOperator(LookupError):
    pass


@cache
def import_object(dotted: str) -> object:
    module_name, _, attr = dotted.rpartition(".")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # moved paths warn on attribute access too
            module = importlib.import_module(module_name)
            return getattr(module, attr)
    except AttributeError as exc:
        raise UnknownOperator(f"{module_name} has no {attr}") from exc
    except Exception as exc:  # ImportError, or the module failed at import
        raise UnknownOperator(f"cannot import {module_name} ({type(exc).__name__}: {exc})") from exc


@cache
def operator_arguments(dotted: str) -> frozenset[str]:
    """Names every __init__ along the operator's MRO accepts (BaseOperator's included)."""
    cls = import_object(dotted)
    base = _base_operator()
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise UnknownOperator(f"{dotted} is not an Airflow operator")
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for param in inspect.signature(init).parameters.values():
            if (
                param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
                and param.name != "self"
            ):
                names.add(param.name)
    return frozenset(names - RESERVED_ARGS)


def _base_operator() -> type:
    try:
        from airflow.sdk import BaseOperator  # Airflow 3
    except ImportError:  # pragma: no cover - Airflow 2
        from airflow.models.baseoperator import BaseOperator
    return BaseOperator


@cache
def required_arguments(dotted: str) -> frozenset[str]:
    """Arguments the operator's own __init__ needs a value for (no default)."""
    cls = import_object(dotted)
    init = next(k.__dict__["__init__"] for k in cls.__mro__ if "__init__" in k.__dict__)
    return frozenset(
        p.name
        for p in inspect.signature(init).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.default is p.empty
        and p.name not in RESERVED_ARGS | {"self"}
    )


def _trigger_rule_enum() -> type:
    try:
        from airflow.sdk import TriggerRule  # Airflow 3
    except ImportError:  # pragma: no cover - Airflow 2
        from airflow.utils.trigger_rule import TriggerRule
    return TriggerRule


@cache
def trigger_rules() -> frozenset[str]:
    return frozenset(rule.value for rule in _trigger_rule_enum())


# BaseOperator arguments Airflow checks by type when it parses the DAG file.
_INTEGER_ARGS = frozenset({"retries", "priority_weight", "pool_slots", "max_active_tis_per_dag"})
_BOOLEAN_ARGS = frozenset({"depends_on_past", "wait_for_downstream", "do_xcom_push", "deferrable"})


# Arguments one Airflow major has and the other refuses (or warns about) at parse time.
_ONLY_IN = {
    2: frozenset({"sla", "sla_miss_callback", "task_concurrency"}),
    3: frozenset({"retry_policy", "render_template_as_native_obj"}),
}


def value_problem(
    name: str, value: object, airflow_target: int = 3, rules: frozenset[str] | None = None
) -> str | None:
    """Why Airflow would refuse this value at parse time, for the arguments it checks
    (`rules`: the valid trigger rules, when the caller already knows them)."""
    for major, names in _ONLY_IN.items():
        if name in names and major != airflow_target:
            return f"exists only in Airflow {major}; the fleet targets Airflow {airflow_target}"
    if name == "retry_exponential_backoff" and airflow_target == 2 and not isinstance(value, bool):
        return f"must be true or false in Airflow 2, not {value!r}"
    if name == "trigger_rule":
        rules = rules if rules is not None else trigger_rules()
        if value not in rules:
            return f"{value!r} is not a valid trigger_rule ({', '.join(sorted(rules))})"
    if name in _INTEGER_ARGS and (isinstance(value, bool) or not isinstance(value, int)):
        return f"must be an int, not {value!r}"
    if name in _BOOLEAN_ARGS and not isinstance(value, bool):
        return f"must be true or false, not {value!r}"
    return None


class OperatorCatalog:
    """The check composition runs on every task; a seam for tests of pure composition.

    Classes and signatures come from the Airflow this process runs (3.x); the
    differences that matter for an Airflow-2 fleet are listed in `_ONLY_IN`. Answers
    are kept in a FactCache, so a run whose operators were all seen before imports
    neither Airflow nor the providers."""

    def __init__(self, airflow_target: int = 3, facts: FactCache | None = None) -> None:
        self.airflow_target = airflow_target
        self.facts = facts if facts is not None else FactCache.default()

    def unknown_arguments(self, dotted: str, args: set[str]) -> list[str]:
        """Argument names the operator does not take; UnknownOperator when it does not exist."""
        return sorted(args - self._signature(dotted)[0])

    def missing_arguments(self, dotted: str, args: set[str]) -> list[str]:
        return sorted(self._signature(dotted)[1] - args)

    def value_problems(self, args: dict) -> list[tuple[str, str]]:
        """(argument, why) for values Airflow would refuse when parsing the file."""
        rules = self._trigger_rules() if "trigger_rule" in args else None
        found = (
            (name, value_problem(name, value, self.airflow_target, rules))
            for name, value in sorted(args.items())
        )
        return [(name, why) for name, why in found if why]

    def check_callable(self, dotted: str) -> None:
        key = f"callable:{dotted}"
        if self.facts.get(key):
            return
        if not callable(import_object(dotted)):
            raise UnknownOperator(f"{dotted} is not callable")
        self.facts.put(key, True, _defining_files(dotted, import_object(dotted)))

    def templated(self, dotted: str) -> tuple[frozenset[str], tuple[str, ...]]:
        """The operator's `template_fields` (what Airflow renders with Jinja at run time)
        and `template_ext` (endings that make a string a template file's name)."""
        facts = self._facts(dotted)
        return frozenset(facts["template_fields"]), tuple(facts["template_ext"])

    def _signature(self, dotted: str) -> tuple[frozenset[str], frozenset[str]]:
        facts = self._facts(dotted)
        return frozenset(facts["arguments"]), frozenset(facts["required"])

    @cache  # noqa: B019 - one catalog per run; the cache dies with it
    def _facts(self, dotted: str) -> dict:
        key = f"operator:{dotted}"
        known = self.facts.get(key)
        if isinstance(known, dict) and "template_fields" in known:
            return known
        arguments, required = operator_arguments(dotted), required_arguments(dotted)
        cls = import_object(dotted)
        facts = {
            "arguments": sorted(arguments),
            "required": sorted(required),
            "template_fields": sorted(_strings(getattr(cls, "template_fields", ()))),
            "template_ext": sorted(_strings(getattr(cls, "template_ext", ()))),
        }
        self.facts.put(key, facts, _defining_files(dotted, cls))
        return facts

    @cache  # noqa: B019
    def _trigger_rules(self) -> frozenset[str]:
        known = self.facts.get("trigger_rules")
        if isinstance(known, list):
            return frozenset(known)
        rules = trigger_rules()
        self.facts.put("trigger_rules", sorted(rules), _defining_files("", _trigger_rule_enum()))
        return rules


def _strings(value: object) -> list[str]:
    """A class attribute Airflow declares as a sequence of names (a lone str is one)."""
    if isinstance(value, str):
        return [value]
    try:
        return [v for v in value if isinstance(v, str)]  # type: ignore[union-attr]
    except TypeError:
        return []


def _defining_files(dotted: str, obj: object) -> list[str]:
    """The module a template names and the files of every class the answer came from."""
    files = []
    module = sys.modules.get(dotted.rpartition(".")[0]) if dotted else None
    if module is not None and getattr(module, "__file__", None):
        files.append(module.__file__)
    for klass in obj.__mro__ if isinstance(obj, type) else (obj,):
        defined_in = sys.modules.get(getattr(klass, "__module__", None) or "")
        if defined_in is not None and getattr(defined_in, "__file__", None):
            files.append(defined_in.__file__)
    return files
