"""Rows between Python and Cloud Spanner: JSON columns read back as plain data (the
client's JsonObject keeps arrays, scalars and null outside the dict) and written as
canonical JSON text, booleans checked; a bad value is a StoreError naming the row and
the column."""

from __future__ import annotations

import json
from typing import Any

from google.cloud.spanner_v1.data_types import JsonObject

from composer.errors import StoreError
from composer.store import CustomerRow, IntegrationRow

JSON_COLUMNS = frozenset({"params", "task_overrides"})
BOOL_COLUMNS = frozenset({"active", "enabled"})


def row_dict(columns: tuple[str, ...], row: list[Any]) -> dict[str, Any]:
    return {
        column: plain_json(value) if column in JSON_COLUMNS else value
        for column, value in zip(columns, row, strict=True)
    }


def plain_json(value: Any) -> Any:
    """A JSON value read from Spanner as plain Python data: dict, list, str, int,
    float, bool or None (SQL NULL and JSON null alike).

    The client returns a JSON column as a JsonObject, a dict subclass that keeps a
    top-level array, scalar or JSON null outside the dict (`_array_value`,
    `_simple_value`, `_is_null`); a plain `dict(value)` would lose those.
    """
    if isinstance(value, JsonObject):
        if getattr(value, "_is_null", False):
            return None
        if getattr(value, "_is_array", False):
            return [plain_json(item) for item in value._array_value]
        if getattr(value, "_is_scalar_value", False):
            return plain_json(value._simple_value)
        return {str(key): plain_json(item) for key, item in dict.items(value)}
    if isinstance(value, dict):
        return {str(key): plain_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(item) for item in value]
    return value


def json_text(value: Any) -> str | None:
    """What a mutation writes into a JSON column: None stays SQL NULL; a str is
    taken as JSON text (as the SQLite store keeps it) and must parse; anything else
    is encoded. Raises ValueError."""
    if value is None:
        return None
    if isinstance(value, str):
        json.loads(value)
        return value
    return json.dumps(plain_json(value), ensure_ascii=False, allow_nan=False, sort_keys=True)


def mutation_values(columns: tuple[str, ...], row: CustomerRow | IntegrationRow) -> list[Any]:
    values = []
    for column in columns:
        value = getattr(row, column)
        if column in JSON_COLUMNS:
            try:
                value = json_text(value)
            except (TypeError, ValueError) as exc:
                raise StoreError(f"{row_name(row)}, field {column}: not JSON: {exc}") from None
        elif column in BOOL_COLUMNS:
            if isinstance(value, int) and value in (0, 1):
                value = bool(value)
            else:
                raise StoreError(f"{row_name(row)}, field {column}: not a boolean: {value!r}")
        values.append(value)
    return values


def row_name(row: CustomerRow | IntegrationRow) -> str:
    if isinstance(row, IntegrationRow):
        return f"customer {row.customer_id}, integration {row.integration_id}"
    return f"customer {row.customer_id}"
