"""Which operator arguments take a callable, and which operators run Python code.

Any argument whose signature says it takes a callable (`python_callable`,
`response_check`, `*_callback`: an annotation naming `Callable` or a `...Callback`
alias) is written as an import of a name on the allow-list (template and fleet.yaml
`imports:`), never as a string. The answer comes from the operator's signature, the
same import composition already does for its argument names, and is kept in the
operator FactCache like them.

Operators that run code they are handed (PythonOperator and its branch / short-circuit /
virtualenv kin with whatever arguments, BashOperator with whatever command): a template
(reviewed code) may use them, but a task override (a store value) may add or switch to
one only when fleet.yaml `operators:` lists it. Decided by name, before any import.
"""

from __future__ import annotations

import inspect

from composer.compose.operators import OperatorCatalog, _defining_files, import_object

# Arguments that take a callable whatever their annotation says (checked by name,
# before any import, in a task override).
CALLABLE_ARG_NAMES = frozenset({"python_callable"})

# Class names of the operators that run code they are handed (standard provider and the
# Airflow 2 core paths alike).
CODE_RUNNING_CLASSES = frozenset(
    {
        "PythonOperator",
        "BranchPythonOperator",
        "ShortCircuitOperator",
        "PythonVirtualenvOperator",
        "BranchPythonVirtualenvOperator",
        "ExternalPythonOperator",
        "BranchExternalPythonOperator",
        "PythonSensor",
        "BashOperator",
        "BashSensor",
    }
)


def runs_code(operator: object) -> bool:
    """An operator path whose class runs code it is handed (by name, nothing imported)."""
    return isinstance(operator, str) and operator.rsplit(".", 1)[-1] in CODE_RUNNING_CLASSES


def _annotation_takes_callable(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return "Callable" in text or "Callback" in text


def callable_arguments(catalog: OperatorCatalog, operator: str) -> frozenset[str]:
    """Arguments of `operator` whose annotation takes a callable (every __init__ along
    its MRO), cached like the operator's other facts."""
    key = f"callable_args:{operator}"
    known = catalog.facts.get(key)
    if isinstance(known, list):
        return frozenset(known)
    cls = import_object(operator)
    found: set[str] = set()
    for klass in cls.__mro__ if isinstance(cls, type) else ():
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        found.update(
            p.name
            for p in parameters
            if p.name != "self"
            and (p.name in CALLABLE_ARG_NAMES or _annotation_takes_callable(p.annotation))
        )
    catalog.facts.put(key, sorted(found), _defining_files(operator, cls))
    return frozenset(found)


def code_running_override_problem(
    operator: object, allowed_by_fleet: tuple[str, ...]
) -> str | None:
    """Why a task override may not name this operator, when it runs code it is handed."""
    if not runs_code(operator) or operator in allowed_by_fleet:
        return None
    return (
        f"operator {operator!r} is not allowed: it runs the code it is given; templates "
        "may use it, a task override only when fleet.yaml lists it under operators"
    )
