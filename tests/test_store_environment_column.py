"""customers.environment, added to the one schema file by ALTER TABLE: a store made
before it is read as unpinned (SQLite) or told to migrate (Spanner), and `fleet store
init` adds it in both."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from composer.errors import StoreError
from composer.store import added_column, open_store, schema_statements
from composer.store.spanner import SpannerStore
from composer.store.sqlite import sqlite_ddl
from tests.spanner_emulator import SpannerEmulator
from tests.test_store_spanner import (
    PROJECT,
    _create_database,
    _create_instance,
    _ddl,
    _official_database,
    _unique,
)

CREATES = [s for s in schema_statements() if not added_column(s)]


def test_the_column_is_appended_by_alter_table_never_by_editing_create_table():
    assert ("customers", "environment", "STRING(64)") in map(added_column, schema_statements())
    assert all("environment" not in s for s in CREATES)


def old_sqlite_store(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        for statement in CREATES:
            conn.execute(sqlite_ddl(statement))
        conn.execute(
            "INSERT INTO customers (customer_id, name, timezone, active) "
            "VALUES ('d1', 'D', 'UTC', 1)"
        )
    return f"sqlite:///{path}"


def test_an_sqlite_store_made_before_the_column_reads_as_unpinned(tmp_path):
    url = old_sqlite_store(tmp_path / "old.db")
    assert [c.environment for c in open_store(url).read_snapshot().customers] == [None]


def test_store_init_adds_the_column_to_an_existing_sqlite_store_once(tmp_path, fleet_cli):
    url = old_sqlite_store(tmp_path / "old.db")
    for _ in range(2):  # idempotent
        code, _, err = fleet_cli("store", "init", "--store", url)
        assert code == 0, err
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("UPDATE customers SET environment = 'east' WHERE customer_id = 'd1'")
    assert [c.environment for c in open_store(url).read_snapshot().customers] == ["east"]


def test_store_init_adds_the_column_to_an_existing_spanner_database(emulator: SpannerEmulator):
    instance_id = _unique("fleet")
    _create_instance(instance_id)
    database_id = _unique("db")
    _create_database(instance_id, database_id, CREATES)
    with _official_database(instance_id, database_id).batch() as batch:
        batch.insert(
            "customers", ("customer_id", "name", "timezone", "active"), [["d1", "D", "UTC", True]]
        )
    store = SpannerStore(emulator.url(PROJECT, instance_id, database_id))
    with pytest.raises(StoreError, match=r"column customers\.environment not found.*store init"):
        store.read_snapshot()

    store.init_schema()
    store.init_schema()  # nothing left to add: no second ALTER

    assert [c.environment for c in store.read_snapshot().customers] == [None]
    assert sum("environment" in s for s in _ddl(instance_id, database_id)) == 1
