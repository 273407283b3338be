"""Python literals for config values: the only way a value reaches generated code.

Every value is written as a literal of plain data (repr of str/int/float/bool/None,
recursively for lists and dicts), so no config value can ever become code. The one
exception, CodeRef, is a name the renderer itself imported from an allow-list; an
AssetRef is that target's asset class called with the URI as a string literal, and a
Call is such an imported name called with literal arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from composer.compose.dagspec import AssetRef, Call, CodeRef

INDENT = "    "
WIDTH = 96
# Stands for the target's asset class (airflow.sdk.Asset / airflow.datasets.Dataset):
# the renderer's name_of maps it to the class it imports.
ASSET_CLASS = CodeRef("<asset>")


class NotALiteral(TypeError):
    pass


def literal(value: Any, name_of: Callable[[CodeRef], str], indent: int = 0) -> str:
    """A deterministic Python expression for `value`: dict keys sorted, long
    containers split one item per line."""
    return _layout(value, name_of, indent)[1]


def _layout(value: Any, name_of: Callable[[CodeRef], str], indent: int) -> tuple[str, str]:
    """(one-line form, chosen form at this indent), each node visited once."""
    if isinstance(value, dict):
        keys_and_children = [
            (_flat(k, name_of), _layout(v, name_of, indent + 1)) for k, v in _sorted_items(value)
        ]
        flat = "{" + ", ".join(f"{k}: {child[0]}" for k, child in keys_and_children) + "}"
        lines = [f"{k}: {child[1]}" for k, child in keys_and_children]
        brackets = "{}"
    elif isinstance(value, list | tuple):
        children = [_layout(v, name_of, indent + 1) for v in value]
        flat = "[" + ", ".join(child[0] for child in children) + "]"
        lines = [child[1] for child in children]
        brackets = "[]"
    elif isinstance(value, Call):
        callee = name_of(value.callee)
        children = [_layout(v, name_of, indent + 1) for v in value.args]
        named = [(_keyword(k), _layout(v, name_of, indent + 1)) for k, v in _call_items(value)]
        flat = (
            f"{callee}("
            + ", ".join([*(c[0] for c in children), *(f"{k}={c[0]}" for k, c in named)])
            + ")"
        )
        lines = [*(c[1] for c in children), *(f"{k}={c[1]}" for k, c in named)]
        brackets = f"{callee}(", ")"
    else:
        flat = _flat(value, name_of)
        return flat, flat
    if len(flat) + len(INDENT) * indent <= WIDTH:
        return flat, flat
    pad, inner = INDENT * indent, INDENT * (indent + 1)
    body = "\n".join(f"{inner}{line}," for line in lines)
    return flat, f"{brackets[0]}\n{body}\n{pad}{brackets[1]}"


def _keyword(name: Any) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise NotALiteral(f"keyword argument name {name!r} is not an identifier")
    return name


def _call_items(call: Call) -> list[tuple[str, Any]]:
    return sorted(call.kwargs.items())


def _sorted_items(value: dict) -> list[tuple[Any, Any]]:
    for key in value:
        if not isinstance(key, str | int | float | bool) or key is None:
            raise NotALiteral(f"mapping key {key!r} is not a string or number")
    return sorted(value.items(), key=lambda kv: (type(kv[0]).__name__, kv[0]))


def _flat(value: Any, name_of: Callable[[CodeRef], str]) -> str:
    if value is None or isinstance(value, bool | int | str):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotALiteral(f"{value!r} is not a finite number")
        return repr(value)
    if isinstance(value, CodeRef):
        return name_of(value)
    if isinstance(value, AssetRef):
        return f"{name_of(ASSET_CLASS)}({value.uri!r})"
    if isinstance(value, Call):
        return _layout(value, name_of, 0)[0]
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flat(v, name_of) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(
                f"{_flat(k, name_of)}: {_flat(v, name_of)}" for k, v in _sorted_items(value)
            )
            + "}"
        )
    raise NotALiteral(f"{type(value).__name__} value {value!r} cannot be written as a literal")
