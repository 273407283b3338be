"""integrations.template_version, appended to the one schema file by ALTER TABLE: a store
made before it reads as unpinned (SQLite) or is told to migrate (Spanner), and `fleet
store init` adds it in both, once."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from composer.errors import StoreError
from composer.model.fleet import build_fleet
from composer.store import IntegrationRow, Snapshot, added_column, open_store, schema_statements
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

COLUMN = ("integrations", "template_version", "INT64")
BEFORE = [s for s in schema_statements() if added_column(s) != COLUMN]


def test_the_column_is_appended_by_alter_table_never_by_editing_create_table():
    assert added_column(schema_statements()[-1]) == COLUMN
    assert all("template_version" not in s for s in BEFORE)


def old_sqlite_store(path: Path) -> str:
    """An SQLite store as `fleet store init` made it before the column existed."""
    with sqlite3.connect(path) as conn:
        for statement in BEFORE:
            conn.execute(sqlite_ddl(statement))
        conn.execute(
            "INSERT INTO customers (customer_id, name, timezone, active) "
            "VALUES ('d1', 'D', 'UTC', 1)"
        )
        conn.execute(
            "INSERT INTO integrations (customer_id, integration_id, template, enabled) "
            "VALUES ('d1', 'grades', 'powerschool_grades', 1)"
        )
    return f"sqlite:///{path}"


def test_an_sqlite_store_made_before_the_column_reads_as_unpinned(tmp_path):
    url = old_sqlite_store(tmp_path / "old.db")
    assert [i.template_version for i in open_store(url).read_snapshot().integrations] == [None]


def test_store_init_adds_the_column_to_an_existing_sqlite_store_once(tmp_path, fleet_cli):
    url = old_sqlite_store(tmp_path / "old.db")
    for _ in range(2):  # idempotent
        code, _, err = fleet_cli("store", "init", "--store", url)
        assert code == 0, err
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("UPDATE integrations SET template_version = 2")
    snapshot = open_store(url).read_snapshot()
    assert [i.template_version for i in snapshot.integrations] == [2]
    fleet = build_fleet(snapshot)
    assert fleet.customers["d1"].integrations[0].template_version == 2


def test_an_sqlite_insert_round_trips_the_pin(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'new.db'}", create=True)
    store.init_schema()
    old = old_sqlite_store(tmp_path / "scratch.db")  # borrow its customer row
    (customer,) = open_store(old).read_snapshot().customers
    row = IntegrationRow("d1", "grades", "powerschool_grades", True, template_version=3)
    store.insert(Snapshot((customer,), (row,)))
    assert store.read_snapshot().integrations == (row,)


@pytest.mark.parametrize("pin", ["3", 0, -1, 2.5, True])
def test_a_pin_that_is_not_a_positive_integer_is_an_error_naming_the_field(pin):
    from composer.store import CustomerRow

    snapshot = Snapshot(
        (CustomerRow("d1", "D", "UTC", True),),
        (IntegrationRow("d1", "grades", "powerschool_grades", True, template_version=pin),),
    )
    fleet = build_fleet(snapshot)
    (error,) = fleet.errors
    assert (error.customer_id, error.integration_id, error.field) == (
        "d1",
        "grades",
        "template_version",
    )
    assert "positive integer" in error.message


def test_store_init_adds_the_column_to_an_existing_spanner_database(emulator: SpannerEmulator):
    instance_id = _unique("fleet")
    _create_instance(instance_id)
    database_id = _unique("db")
    _create_database(instance_id, database_id, BEFORE)
    with _official_database(instance_id, database_id).batch() as batch:
        batch.insert(
            "customers", ("customer_id", "name", "timezone", "active"), [["d1", "D", "UTC", True]]
        )
        batch.insert(
            "integrations",
            ("customer_id", "integration_id", "template", "enabled"),
            [["d1", "grades", "powerschool_grades", True]],
        )
    store = SpannerStore(emulator.url(PROJECT, instance_id, database_id))
    with pytest.raises(
        StoreError, match=r"column integrations\.template_version not found.*store init"
    ):
        store.read_snapshot()

    store.init_schema()
    store.init_schema()  # nothing left to add: no second ALTER

    assert [i.template_version for i in store.read_snapshot().integrations] == [None]
    assert sum("template_version" in s for s in _ddl(instance_id, database_id)) == 1
    with _official_database(instance_id, database_id).batch() as batch:
        batch.update(
            "integrations",
            ("customer_id", "integration_id", "template_version"),
            [["d1", "grades", 4]],
        )
    assert [i.template_version for i in store.read_snapshot().integrations] == [4]
    # The store's own insert writes the pin too (INT64 through the client's mutations).
    customer = store.read_snapshot().customers[0]
    row = IntegrationRow("d1", "other", "attendance", False, template_version=2)
    store.insert(
        Snapshot(
            (dataclasses.replace(customer, customer_id="d2"),),
            (dataclasses.replace(row, customer_id="d2"),),
        )
    )
    pins = {(i.customer_id, i.template_version) for i in store.read_snapshot().integrations}
    assert pins == {("d1", 4), ("d2", 2)}
