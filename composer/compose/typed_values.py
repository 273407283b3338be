"""Typed values by the operator's signature, from plain data.

A template writes every value as plain data; Airflow wants some of them typed. Which
ones is read from the operator class's `__init__` annotations (its whole MRO, once per
operator, kept in the FactCache as `{argument: kind}`):

- `duration`: any argument annotated `timedelta` (`execution_timeout`, `retry_delay`,
  `max_retry_delay`, a sensor's `timeout`, ...): an ISO 8601 duration (`PT30M`, `P1D`) or
  a number of seconds, written `timedelta(seconds=N)`;
- `assets`: `outlets` and `inlets`: asset URIs, written `Asset(uri)` (`Dataset(uri)`);
- `model:<class>`: an argument annotated with a provider model class listed in
  composer/compose/typed_models.py (e.g. Cloud Batch's `Job`): a mapping, written as that
  class's constructor call, nested by the class's own field types.

A value that cannot be converted raises TypedValueError naming the path inside the
argument; composition turns it into one line naming customer, integration and field.
"""

from __future__ import annotations

import inspect
import re
import sys
import typing
from functools import cache
from typing import Any

from composer.compose.assets import asset_refs
from composer.compose.dagspec import Call, CodeRef
from composer.compose.operator_cache import FactCache
from composer.compose.operators import _base_operator, _defining_files, import_object

TIMEDELTA = CodeRef("datetime.timedelta")
ASSET_ARGS = frozenset({"outlets", "inlets"})
_ISO_RE = re.compile(
    r"P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?\Z"
)
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_UNIT_SECONDS = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


class TypedValueError(ValueError):
    """A value that cannot be converted; `path` is where inside the argument ('' itself)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


def duration_seconds(value: Any) -> int | float:
    """Seconds for an ISO 8601 duration (weeks, days, hours, minutes, seconds) or a
    non-negative number of seconds. Years and months have no fixed length: refused."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypedValueError("", f"{value!r} is not a duration (ISO 8601, e.g. PT30M, or seconds)")
    if isinstance(value, str):
        match = _ISO_RE.match(value.strip())
        if not match or value.strip() in ("P", "PT") or value.strip().endswith("T"):
            raise TypedValueError("", f"{value!r} is not an ISO 8601 duration (e.g. PT30M, P1D)")
        total = sum(
            float(part) * _UNIT_SECONDS[unit]
            for unit, part in match.groupdict().items()
            if part is not None
        )
    else:
        total = float(value)
    if total < 0 or total != total or total == float("inf"):
        raise TypedValueError("", f"{value!r} is not a non-negative duration")
    return int(total) if total == int(total) else total


def duration(value: Any) -> Call:
    """`timedelta(seconds=N)`: one exact, readable form for every input spelling."""
    return Call(TIMEDELTA, kwargs={"seconds": duration_seconds(value)})


# -- reading the signature ----------------------------------------------------------


def _qualified(obj: Any) -> str | None:
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    return None


def annotation_classes(annotation: Any, module: Any) -> set[str]:
    """Qualified names of the classes an annotation names. String annotations (PEP 563)
    are resolved name by name in the defining module; names it imports only under
    TYPE_CHECKING stay unresolved and count for nothing."""
    found: set[str] = set()
    if isinstance(annotation, str):
        for token in _NAME_RE.findall(annotation):
            head, *rest = token.split(".")
            obj = getattr(module, head, None) if module is not None else None
            for part in rest:
                obj = getattr(obj, part, None)
            name = _qualified(obj)
            if name:
                found.add(name)
        return found
    name = _qualified(annotation)
    if name:
        found.add(name)
    for arg in typing.get_args(annotation):
        found |= annotation_classes(arg, module)
    return found


def argument_kinds(cls: type) -> dict[str, str]:
    """{argument: kind} along the class's MRO (the subclass's annotation wins)."""
    from composer.compose.typed_models import MODEL_CLASSES

    kinds: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        module = sys.modules.get(klass.__module__)
        for param in params:
            if param.annotation is param.empty:
                continue
            classes = annotation_classes(param.annotation, module)
            models = sorted(c for c in classes if c in MODEL_CLASSES)
            if models:
                kinds[param.name] = f"model:{models[0]}"
            elif "datetime.timedelta" in classes:
                kinds[param.name] = "duration"
            else:
                kinds.pop(param.name, None)
    for name in ASSET_ARGS:
        kinds[name] = "assets"
    return kinds


class TypedValues:
    """Converts operator arguments by their kinds; facts cached like the signatures."""

    def __init__(self, facts: FactCache | None = None) -> None:
        self.facts = facts if facts is not None else FactCache.default()

    @cache  # noqa: B019 - one per run
    def kinds(self, dotted: str | None) -> dict[str, str]:
        """{argument: kind} of an operator (None: BaseOperator, for default_args)."""
        key = f"typed:{dotted or 'BaseOperator'}"
        known = self.facts.get(key)
        if isinstance(known, dict):
            return known
        cls = import_object(dotted) if dotted else _base_operator()
        found = argument_kinds(cls)  # type: ignore[arg-type]
        self.facts.put(key, found, _defining_files(dotted or "", cls))
        return found

    def warm(self, dotted: str | None) -> None:
        """Learn an operator's kinds and the schemas of its model classes (nested ones
        too), so a build worker with this cache imports nothing."""
        from composer.compose.typed_models import model_schema

        pending = [
            k[len("model:") :] for k in self.kinds(dotted).values() if k.startswith("model:")
        ]
        seen: set[str] = set()
        while pending:
            qualified = pending.pop()
            if qualified not in seen:
                seen.add(qualified)
                fields = model_schema(qualified, self.facts)["fields"].values()
                pending.extend(nested for kind, nested, _ in fields if kind == "message")

    def convert(self, kinds: dict[str, str], args: dict[str, Any]) -> dict[str, Any]:
        """`args` with every typed argument converted; TypedValueError(path) otherwise,
        the path starting with the argument's name."""
        from composer.compose.typed_models import model_value

        out = dict(args)
        for name, value in args.items():
            kind = kinds.get(name)
            if kind is None or value is None:
                continue
            try:
                if kind == "duration":
                    out[name] = value if isinstance(value, Call) else duration(value)
                elif kind == "assets":
                    out[name] = asset_refs(value)
                elif kind.startswith("model:"):
                    out[name] = model_value(kind[len("model:") :], value, self.facts)
            except TypedValueError as exc:
                raise TypedValueError(_join(name, exc.path), str(exc)) from None
            except ValueError as exc:
                raise TypedValueError(name, str(exc)) from None
        return out


class TypedArgs:
    """Composer's part: converts a task's (or default_args') arguments, failing with
    the field; `op` None stands for BaseOperator (default_args)."""

    operators: Any
    _typed_values: TypedValues | None = None

    @property
    def typed(self) -> TypedValues:
        if self._typed_values is None:
            self._typed_values = TypedValues(getattr(self.operators, "facts", None))
        return self._typed_values

    def _typed(
        self, customer: Any, integration: Any, field: str, op: str | None, args: dict
    ) -> dict[str, Any]:
        try:
            return self.typed.convert(self.typed.kinds(op), args)
        except TypedValueError as exc:
            self._fail(customer, integration, f"{field}.{exc.path}", str(exc))  # type: ignore[attr-defined]


def _join(head: str, tail: str) -> str:
    return f"{head}{tail}" if tail.startswith("[") else f"{head}.{tail}" if tail else head
