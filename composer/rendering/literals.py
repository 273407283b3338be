"""Python literals for config values: the only way a value reaches generated code.

Every value is written as a literal of plain data (repr of str/int/float/bool/None,
recursively for lists and dicts), so no config value can ever become code. The one
exception, CodeRef, is a name the renderer itself imported from an allow-list.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from composer.dagspec import CodeRef

INDENT = "    "
WIDTH = 96


class NotALiteral(TypeError):
    pass


def literal(value: Any, name_of: Callable[[CodeRef], str], indent: int = 0) -> str:
    """A deterministic Python expression for `value`: dict keys sorted, long
    containers split one item per line."""
    flat = _flat(value, name_of)
    if len(flat) + len(INDENT) * indent <= WIDTH or not isinstance(value, dict | list | tuple):
        return flat
    pad, inner = INDENT * indent, INDENT * (indent + 1)
    if isinstance(value, dict):
        items = [
            f"{inner}{_flat(k, name_of)}: {literal(v, name_of, indent + 1)},"
            for k, v in _sorted_items(value)
        ]
        return "{\n" + "\n".join(items) + f"\n{pad}}}"
    items = [f"{inner}{literal(v, name_of, indent + 1)}," for v in value]
    return "[\n" + "\n".join(items) + f"\n{pad}]"


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
