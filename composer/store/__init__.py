"""Store: read one consistent snapshot of customers and integrations.

Rows are kept raw (JSON columns may be text or already-decoded values) so that
all validation happens in one place, `composer.model.fleet`, whatever the backend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from composer import PACKAGE_DIR
from composer.errors import StoreUrlError

SCHEMA_FILE = PACKAGE_DIR / "schema.sql"


@dataclass(frozen=True)
class CustomerRow:
    customer_id: str
    name: str
    timezone: str
    active: bool
    parent_customer_id: str | None = None
    main_schedule: str | None = None
    legacy_dag_file: str | None = None
    params: Any = None  # JSON text, decoded JSON, or None
    environment: str | None = None  # pinned Composer environment; None = assigned


@dataclass(frozen=True)
class IntegrationRow:
    customer_id: str
    integration_id: str
    template: str
    enabled: bool
    schedule: str | None = None
    params: Any = None
    task_overrides: Any = None
    template_version: Any = None  # pinned template version (composer/model/versions.py); None = not


@dataclass(frozen=True)
class Snapshot:
    """Every row of both tables, read at one point in time."""

    customers: tuple[CustomerRow, ...] = field(default_factory=tuple)
    integrations: tuple[IntegrationRow, ...] = field(default_factory=tuple)


class Store(Protocol):
    url: str

    def read_snapshot(self) -> Snapshot:
        """All rows, in one read-only transaction. Raises StoreError."""
        ...

    def init_schema(self) -> None:
        """Create the tables from SCHEMA_FILE when missing. Raises StoreError."""
        ...

    def insert(self, snapshot: Snapshot) -> None:
        """Insert the rows (customers before their integrations). Raises StoreError."""
        ...


def schema_statements() -> list[str]:
    """The DDL statements of the one schema file, comments removed."""
    lines = [line.split("--", 1)[0] for line in SCHEMA_FILE.read_text().splitlines()]
    text = "\n".join(lines)
    return [" ".join(stmt.split()) for stmt in text.split(";") if stmt.strip()]


_ADD_COLUMN_RE = re.compile(
    r"ALTER TABLE (\w+) ADD COLUMN (?:IF NOT EXISTS )?(\w+)\s+(.*)", re.IGNORECASE | re.S
)


def added_column(statement: str) -> tuple[str, str, str] | None:
    """(table, column, type) of an `ALTER TABLE t ADD COLUMN c TYPE` statement, else None.
    The schema grows only by such statements once a database exists (append-only DDL)."""
    match = _ADD_COLUMN_RE.fullmatch(statement.strip())
    if match is None:
        return None
    return match.group(1).lower(), match.group(2).lower(), match.group(3).strip()


def table_columns(statement: str) -> tuple[str, list[str]] | None:
    """(table, column names) of a `CREATE TABLE` statement, else None."""
    match = re.match(r"\s*CREATE TABLE (\w+) \((.*)\) PRIMARY KEY", statement, re.I | re.S)
    if match is None:
        return None
    depth, part, parts = 0, "", []
    for char in match.group(2):  # split on top-level commas: STRING(64) holds none
        depth += char in "(<"
        depth -= char in ")>"
        if char == "," and depth == 0:
            parts.append(part)
            part = ""
        else:
            part += char
    parts.append(part)
    names = [p.split()[0].strip("`").lower() for p in parts if p.strip()]
    return match.group(1).lower(), [n for n in names if n not in ("constraint", "foreign")]


def open_store(url: str, *, create: bool = False) -> Store:
    """Open a store by URL: sqlite:///path or spanner://projects/P/instances/I/databases/D.

    An SQLite file that does not exist is a StoreError unless `create` is set
    (`fleet store init`, or the default store seeded with the demo fleet).
    """
    if url.startswith("sqlite:///"):
        from composer.store.sqlite import SqliteStore

        return SqliteStore(url, create=create)
    if url.startswith("spanner://"):
        from composer.store.spanner import SpannerStore

        return SpannerStore(url)
    raise StoreUrlError(
        f"unsupported store URL {url!r}: use sqlite:///path/fleet.db or "
        "spanner://projects/P/instances/I/databases/D"
    )
