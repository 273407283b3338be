"""The embedded store: SQLite, with tables derived from the one Spanner schema file."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from composer.errors import StoreError
from composer.store import (
    CustomerRow,
    IntegrationRow,
    Snapshot,
    added_column,
    schema_statements,
)

_TYPES = [
    (re.compile(r"\bSTRING\(\w+\)"), "TEXT"),
    (re.compile(r"\bBOOL\b"), "INTEGER"),
    (re.compile(r"\bJSON\b"), "TEXT"),
    (re.compile(r"\bINT64\b"), "INTEGER"),
]
CUSTOMER_COLUMNS = "customer_id, name, timezone, parent_customer_id, active, main_schedule, legacy_dag_file, params"
# Columns added after the first release (ALTER TABLE in the schema file): a store made
# before them is read as if they were all NULL until `fleet store init` adds them.
LATE_CUSTOMER_COLUMNS = ("environment",)
INTEGRATION_COLUMNS = (
    "customer_id, integration_id, template, schedule, params, task_overrides, enabled"
)
LATE_INTEGRATION_COLUMNS = ("template_version",)


def sqlite_ddl(statement: str) -> str:
    """Spanner CREATE TABLE -> SQLite: types mapped, PRIMARY KEY moved inside the
    column list, INTERLEAVE turned into a cascading foreign key. ALTER TABLE ADD COLUMN
    keeps its form (the caller applies it only where the column is missing)."""
    for pattern, replacement in _TYPES:
        statement = pattern.sub(replacement, statement)
    if added_column(statement):
        return statement
    match = re.match(r"CREATE TABLE (\w+) \((.*)\) PRIMARY KEY \(([^)]*)\)(.*)", statement, re.S)
    if not match:
        raise StoreError(f"schema statement not understood: {statement[:60]}...")
    table, columns, key, rest = match.groups()
    parts = [columns.strip().rstrip(","), f"PRIMARY KEY ({key})"]
    parent = re.search(r"INTERLEAVE IN PARENT (\w+)", rest)
    if parent:
        first_key = key.split(",")[0].strip()
        parts.append(
            f"FOREIGN KEY ({first_key}) REFERENCES {parent.group(1)} ({first_key}) ON DELETE CASCADE"
        )
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(parts)})"


class SqliteStore:
    """`sqlite:///fleet.db` is relative to the working directory and
    `sqlite:////abs/fleet.db` absolute (as SQLAlchemy and Airflow read them); every error
    names the file that was actually opened."""

    def __init__(self, url: str, *, create: bool = False) -> None:
        self.url = url
        self.path = Path(url.removeprefix("sqlite:///")).absolute()
        self.relative = not url.removeprefix("sqlite:///").startswith("/")
        # "store sqlite:///x.db (/cwd/x.db)": the URL as given, and the file it means
        self.where = f"store {url} ({self.path})" if self.relative else f"store {url}"
        if not create and not self.path.is_file():
            raise StoreError(self._missing())

    def _missing(self) -> str:
        hint = ""
        if self.relative:
            absolute = "/" + self.url.removeprefix("sqlite:///")
            hint = (
                f"; sqlite:/// with three slashes is relative to the working directory, "
                f"for {absolute} write sqlite:///{absolute}"
            )
        return (
            f"{self.where}: no such SQLite file{hint}; create it with "
            f"`fleet store init --store sqlite:///{self.path}`"
        )

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10)
            conn.execute("PRAGMA foreign_keys = ON")
            return conn
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{self.where}: cannot open: {exc}") from exc

    def init_schema(self) -> None:
        conn = self._connect()
        try:
            with conn:
                for statement in schema_statements():
                    added = added_column(statement)
                    if added and added[1] in _columns(conn, added[0]):
                        continue  # migrated already
                    conn.execute(sqlite_ddl(statement))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.where}: cannot apply the schema: {exc}") from exc
        finally:
            conn.close()

    def read_snapshot(self) -> Snapshot:
        conn = self._connect()
        try:
            # One read transaction: both SELECTs see the same state of the file.
            conn.execute("BEGIN")
            present = _columns(conn, "customers")
            late = ", ".join(c if c in present else f"NULL AS {c}" for c in LATE_CUSTOMER_COLUMNS)
            customers = conn.execute(
                f"SELECT {CUSTOMER_COLUMNS}, {late} FROM customers ORDER BY customer_id"
            ).fetchall()
            present = _columns(conn, "integrations")
            late_i = ", ".join(
                c if c in present else f"NULL AS {c}" for c in LATE_INTEGRATION_COLUMNS
            )
            integrations = conn.execute(
                f"SELECT {INTEGRATION_COLUMNS}, {late_i} FROM integrations "
                "ORDER BY customer_id, integration_id"
            ).fetchall()
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.where}: cannot read: {exc}") from exc
        finally:
            conn.close()
        return Snapshot(
            tuple(
                CustomerRow(
                    customer_id=r[0],
                    name=r[1],
                    timezone=r[2],
                    parent_customer_id=r[3],
                    active=bool(r[4]),
                    main_schedule=r[5],
                    legacy_dag_file=r[6],
                    params=r[7],
                    environment=r[8],
                )
                for r in customers
            ),
            tuple(
                IntegrationRow(
                    customer_id=r[0],
                    integration_id=r[1],
                    template=r[2],
                    schedule=r[3],
                    params=r[4],
                    task_overrides=r[5],
                    enabled=bool(r[6]),
                    template_version=r[7],
                )
                for r in integrations
            ),
        )

    def insert(self, snapshot: Snapshot) -> None:
        conn = self._connect()
        try:
            with conn:
                conn.executemany(
                    f"INSERT INTO customers ({CUSTOMER_COLUMNS}, environment) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            c.customer_id,
                            c.name,
                            c.timezone,
                            c.parent_customer_id,
                            bool(c.active),
                            c.main_schedule,
                            c.legacy_dag_file,
                            _text(c.params),
                            c.environment,
                        )
                        for c in snapshot.customers
                    ],
                )
                conn.executemany(
                    f"INSERT INTO integrations ({INTEGRATION_COLUMNS}, template_version) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            i.customer_id,
                            i.integration_id,
                            i.template,
                            i.schedule,
                            _text(i.params),
                            _text(i.task_overrides),
                            bool(i.enabled),
                            i.template_version,
                        )
                        for i in snapshot.integrations
                    ],
                )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.where}: cannot insert: {exc}") from exc
        finally:
            conn.close()


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1].lower() for row in conn.execute(f"PRAGMA table_info({table})")}


def _text(value: object) -> str | None:
    import json

    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)
