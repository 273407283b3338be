"""Provider model classes an operator takes as typed objects, built from plain data.

An operator argument annotated with a class in MODEL_CLASSES (the allow-list: a store
value can never name a class) receives the template's mapping as that class's
constructor call, with literal arguments. Nested mappings become nested calls by the
class's own field types, read from the class (proto-plus `meta.fields` for Google Cloud
client messages), so a class reached that way is allowed because its parent's schema
names it, never because a value does. Unknown keys are refused with a "did you mean".

Adding a class is one entry: its qualified name (`module.QualName`, as
`annotation_classes` reports it) -> its family. Families: `proto` (proto-plus messages:
google-cloud-* clients). The Kubernetes client's models (`openapi_types`, for
cncf.kubernetes' `volumes`, `env_vars`, ...) would be a second family; that provider is
not installed here, so it is not built (README: Typed values).
"""

from __future__ import annotations

import importlib
from typing import Any

from composer.compose.dagspec import Call, CodeRef
from composer.compose.operator_cache import FactCache
from composer.compose.operators import _defining_files
from composer.model.keys import did_you_mean

MODEL_CLASSES: dict[str, str] = {
    # CloudBatchSubmitJobOperator(job: dict | Job)
    "google.cloud.batch_v1.types.job.Job": "proto",
}
_DURATION = "google.protobuf.duration_pb2.Duration"


def _import_class(qualified: str) -> type:
    """The class for `module.Outer.Inner`, trying the longest importable module."""
    parts = qualified.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(qualified)


def _import_path(cls: type) -> str:
    """The shortest public path of the class (`google.cloud.batch_v1.Job`); a nested
    class is `module:Outer.Inner` (the renderer imports Outer and writes the rest)."""
    outer, _, inner = cls.__qualname__.partition(".")
    module_parts = cls.__module__.split(".")
    module = cls.__module__
    for cut in range(2, len(module_parts)):
        candidate = ".".join(module_parts[:cut])
        try:
            found = getattr(importlib.import_module(candidate), outer, None)
        except ImportError:
            continue
        if found is not None and found is getattr(importlib.import_module(module), outer):
            module = candidate
            break
    return f"{module}:{cls.__qualname__}" if inner else f"{module}.{outer}"


def _field_kind(field: Any) -> list[Any]:
    """[kind, class, repeated] of a proto-plus field: a nested message, a duration, or
    plain (a map is a plain dict)."""
    message = getattr(field, "message", None)
    repeated = bool(getattr(field, "repeated", False))
    if not isinstance(message, type):
        return ["plain", None, repeated]
    qualified = f"{message.__module__}.{message.__qualname__}"
    if qualified == _DURATION:
        return ["duration", None, repeated]
    fields = getattr(getattr(message, "meta", None), "fields", None)
    if fields is None:
        return ["plain", None, repeated]
    if set(fields) == {"key", "value"}:  # a map's entry: the map is one plain dict
        return ["plain", None, False]
    return ["message", qualified, repeated]


def model_schema(qualified: str, facts: FactCache) -> dict[str, Any]:
    """{"import": path, "fields": {name: [kind, class, repeated]}}, cached as JSON."""
    key = f"model:{qualified}"
    known = facts.get(key)
    if isinstance(known, dict):
        return known
    cls = _import_class(qualified)
    fields = {}
    for name, field in cls.meta.fields.items():  # type: ignore[attr-defined]
        fields[name] = _field_kind(field)
    schema = {"import": _import_path(cls), "fields": fields}
    facts.put(key, schema, _defining_files(qualified.rsplit(".", 1)[0], cls))
    return schema


def model_value(qualified: str, value: Any, facts: FactCache) -> Any:
    """The template's mapping as a Call of the class (a value already of another shape,
    e.g. a Jinja string the operator renders, is refused: the class needs a mapping)."""
    from composer.compose.typed_values import TypedValueError, duration

    if not isinstance(value, dict):
        raise TypedValueError("", f"must be a mapping of {qualified.rsplit('.', 1)[-1]} fields")
    schema = model_schema(qualified, facts)
    known = schema["fields"]
    kwargs: dict[str, Any] = {}
    for name, item in value.items():
        if name not in known:
            raise TypedValueError(str(name), f"unknown key {name!r}{did_you_mean(name, known)}")
        kind, nested, repeated = known[name]
        items = item if repeated else [item]
        if repeated and not isinstance(item, list):
            raise TypedValueError(str(name), "must be a list")
        converted = []
        for index, one in enumerate(items):
            where = f"{name}[{index}]" if repeated else str(name)
            try:
                if kind == "message" and nested:
                    one = model_value(nested, one, facts)
                elif kind == "duration":
                    one = duration(one)
            except TypedValueError as exc:
                sub = exc.path
                path = (
                    f"{where}{sub}" if sub.startswith("[") else f"{where}.{sub}" if sub else where
                )
                raise TypedValueError(path, str(exc)) from None
            converted.append(one)
        kwargs[str(name)] = converted if repeated else converted[0]
    return Call(CodeRef(schema["import"]), kwargs=kwargs)
