"""Operator catalog: which classes exist and which arguments they take.

Checked at generation time by importing the operator class, the same import the
generated file does, so a typo fails the sync instead of a customer's DAG.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from functools import cache

# Set by the generated code itself, never by a template.
RESERVED_ARGS = frozenset({"task_id", "dag", "task_group"})


class UnknownOperator(LookupError):
    pass


@cache
def import_object(dotted: str) -> object:
    module_name, _, attr = dotted.rpartition(".")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module failed at import
        raise UnknownOperator(f"cannot import {module_name} ({type(exc).__name__}: {exc})") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise UnknownOperator(f"{module_name} has no {attr}") from exc


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


class OperatorCatalog:
    """The check composition runs on every task; a seam for tests of pure composition."""

    def unknown_arguments(self, dotted: str, args: set[str]) -> list[str]:
        """Argument names the operator does not take; UnknownOperator when it does not exist."""
        return sorted(args - operator_arguments(dotted))

    def check_callable(self, dotted: str) -> None:
        if not callable(import_object(dotted)):
            raise UnknownOperator(f"{dotted} is not callable")
