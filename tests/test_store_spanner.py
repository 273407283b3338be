"""The Spanner store against the real Cloud Spanner emulator (no mocks of the client).

Skipped when the emulator binary is absent (on CI too: there the read path runs against
the client's mock server instead, tests/test_store_spanner_mock.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc
from google.cloud.spanner_v1 import Client
from google.cloud.spanner_v1.data_types import JsonObject

from composer.errors import StoreError
from composer.store import (
    CustomerRow,
    IntegrationRow,
    Snapshot,
    open_store,
    schema_statements,
)
from composer.store.spanner import SpannerStore
from composer.store.spanner_rows import plain_json
from tests.conftest import assert_serves_on_loopback_then_releases_its_port
from tests.spanner_emulator import SpannerEmulator
from tests.test_store_spanner_mock import NESTED

PROJECT = "test-project"
EMULATOR_CONFIG = f"projects/{PROJECT}/instanceConfigs/emulator-config"
QUICK = 10.0  # seconds within which an unreachable store must fail


# -- fixtures -------------------------------------------------------------------------


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _client() -> Client:
    """The official client, on whatever SPANNER_EMULATOR_HOST says."""
    assert os.environ.get("SPANNER_EMULATOR_HOST")
    return Client(project=PROJECT)


def _create_instance(instance_id: str) -> None:
    instance = _client().instance(
        instance_id, configuration_name=EMULATOR_CONFIG, display_name=instance_id, node_count=1
    )
    instance.create().result(30)


def _create_database(instance_id: str, database_id: str, ddl: list[str]) -> None:
    database = _client().instance(instance_id).database(database_id, ddl_statements=ddl)
    database.create().result(30)


def _official_database(instance_id: str, database_id: str):
    return _client().instance(instance_id).database(database_id)


@pytest.fixture(scope="module")
def instance_id(emulator: SpannerEmulator) -> str:
    instance_id = _unique("fleet")
    _create_instance(instance_id)
    return instance_id


@pytest.fixture
def schema_db(emulator: SpannerEmulator, instance_id: str) -> str:
    """A fresh database holding the schema, created with the official client; its URL."""
    database_id = _unique("db")
    _create_database(instance_id, database_id, schema_statements())
    return emulator.url(PROJECT, instance_id, database_id)


def _ddl(instance_id: str, database_id: str) -> list[str]:
    database = _official_database(instance_id, database_id)
    database.reload()
    return list(database.ddl_statements)


def _table_names(statements: list[str]) -> list[str]:
    return sorted(
        s.split()[2].strip("`").lower() for s in statements if s.startswith("CREATE TABLE")
    )


def _assert_plain(value: object, where: str = "value") -> None:
    """Only plain JSON data: no JsonObject (a dict subclass) anywhere."""
    if value is None or type(value) in (str, int, float, bool):
        return
    if type(value) is dict:
        for key, item in value.items():
            assert type(key) is str, f"{where}: key {key!r}"
            _assert_plain(item, f"{where}.{key}")
        return
    if type(value) is list:
        for index, item in enumerate(value):
            _assert_plain(item, f"{where}[{index}]")
        return
    raise AssertionError(f"{where} is a {type(value).__name__}, not plain JSON data: {value!r}")


# -- init_schema ----------------------------------------------------------------------


def test_init_schema_creates_instance_database_and_tables_on_empty_emulator_and_is_idempotent(
    emulator_binary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SpannerEmulator(emulator_binary) as empty:
        monkeypatch.setenv("SPANNER_EMULATOR_HOST", empty.host)
        url = empty.url(PROJECT, "fresh", "fleet")
        assert not _client().instance("fresh").exists()

        SpannerStore(url).init_schema()

        assert _client().instance("fresh").exists()
        assert _official_database("fresh", "fleet").exists()
        first = _ddl("fresh", "fleet")
        assert _table_names(first) == ["customers", "integrations"]
        assert any("INTERLEAVE IN PARENT customers ON DELETE CASCADE" in s for s in first)

        store = SpannerStore(url)
        store.insert(Snapshot(customers=(CustomerRow("d1", "District 1", "UTC", True),)))
        store.init_schema()  # a second run: nothing to do, nothing lost
        SpannerStore(url).init_schema()

        assert _ddl("fresh", "fleet") == first
        assert [c.customer_id for c in store.read_snapshot().customers] == ["d1"]


def test_init_schema_adds_only_the_missing_tables(
    emulator: SpannerEmulator, instance_id: str
) -> None:
    database_id = _unique("db")
    customers_ddl = next(s for s in schema_statements() if "TABLE customers" in s)
    _create_database(instance_id, database_id, [customers_ddl])
    with _official_database(instance_id, database_id).batch() as batch:
        batch.insert(
            "customers", ("customer_id", "name", "timezone", "active"), [["d1", "D", "UTC", True]]
        )

    store = SpannerStore(emulator.url(PROJECT, instance_id, database_id))
    store.init_schema()

    assert _table_names(_ddl(instance_id, database_id)) == ["customers", "integrations"]
    assert store.read_snapshot().customers == (CustomerRow("d1", "D", "UTC", True),)


def test_init_schema_without_emulator_creation_names_terraform_and_creates_nothing(
    emulator: SpannerEmulator,
) -> None:
    instance_id = _unique("absent")
    store = SpannerStore(emulator.url(PROJECT, instance_id, "fleet"), create_missing=False)

    with pytest.raises(StoreError, match="Terraform") as raised:
        store.init_schema()

    assert f"projects/{PROJECT}/instances/{instance_id}" in str(raised.value)
    assert not _client().instance(instance_id).exists()


# -- read_snapshot --------------------------------------------------------------------


def test_read_snapshot_reads_official_client_rows_with_json_as_plain_data(
    schema_db: str,
) -> None:
    nested = NESTED  # the same values the mock-server tests read back
    store = SpannerStore(schema_db)
    database = _official_database(store.instance_id, store.database_id)
    with database.batch() as batch:
        # Out of key order on purpose; params written as JSON text and as JsonObject.
        batch.insert(
            "customers",
            ("customer_id", "name", "timezone", "active", "params"),
            [
                ["d2", "Dos", "America/Chicago", False, JsonObject({"a": {"b": [1, {"c": 2}]}})],
                ["d1", "Uno", "America/New_York", True, json.dumps(nested)],
                ["d3", "Tres", "UTC", True, "null"],  # a JSON null, not SQL NULL
            ],
        )
        # d4: params column not written at all (SQL NULL)
        batch.insert(
            "customers",
            ("customer_id", "name", "timezone", "active", "parent_customer_id", "main_schedule"),
            [["d4", "Cuatro", "UTC", True, "d1", "0 3 * * *"]],
        )
        batch.insert(
            "integrations",
            ("customer_id", "integration_id", "template", "enabled", "params", "task_overrides"),
            [
                ["d1", "sis", "powerschool_grades", True, '{"n": 3}', '{"fetch": null}'],
                ["d1", "cls", "google_classroom", False, "[1, 2, 3]", None],
                ["d2", "x", "state_assessments", True, None, '{"t": {"args": {"k": [{}]}}}'],
            ],
        )

    snapshot = store.read_snapshot()

    assert [c.customer_id for c in snapshot.customers] == ["d1", "d2", "d3", "d4"]
    assert [(i.customer_id, i.integration_id) for i in snapshot.integrations] == [
        ("d1", "cls"),
        ("d1", "sis"),
        ("d2", "x"),
    ]
    d1, d2, d3, d4 = snapshot.customers
    assert d1.params == nested
    assert d1.params["weights"][4] == 9007199254740991
    assert d2.params == {"a": {"b": [1, {"c": 2}]}}
    assert d3.params is None
    assert d4.params is None
    assert (d1.active, d2.active) == (True, False)
    assert d4 == CustomerRow(
        "d4", "Cuatro", "UTC", True, parent_customer_id="d1", main_schedule="0 3 * * *"
    )
    cls, sis, x = snapshot.integrations
    assert cls.params == [1, 2, 3]
    assert cls.task_overrides is None
    assert cls.enabled is False
    assert sis.params == {"n": 3}
    assert sis.task_overrides == {"fetch": None}  # a null inside JSON stays a key
    assert x.params is None
    assert x.task_overrides == {"t": {"args": {"k": [{}]}}}
    for row in (*snapshot.customers, *snapshot.integrations):
        _assert_plain(row.params, f"{row}.params")
        _assert_plain(getattr(row, "task_overrides", None), f"{row}.task_overrides")


def test_plain_json_unwraps_every_json_object_shape() -> None:
    cases = {
        '{"a": {"b": [1, {"c": null}]}}': {"a": {"b": [1, {"c": None}]}},
        "[1, [2, {}]]": [1, [2, {}]],
        '"text"': "text",
        "4.5": 4.5,
        "true": True,
        "null": None,
        "{}": {},
        "[]": [],
    }
    for text, expected in cases.items():
        value = plain_json(JsonObject.from_str(text))
        assert value == expected, text
        _assert_plain(value, text)
    assert plain_json(None) is None


# -- insert ---------------------------------------------------------------------------


def _sample_snapshot() -> Snapshot:
    return Snapshot(
        customers=(
            CustomerRow(
                "austin-isd",
                "Austin ISD",
                "America/Chicago",
                True,
                params={"dataset": "district_austin", "grades": [9, 10, 11, 12], "ratio": 0.25},
            ),
            CustomerRow("legacy_1", "Legacy One", "UTC", False, legacy_dag_file="legacy_1.py"),
            CustomerRow(
                "region-7",
                "Région 7 — 学区",
                "America/Denver",
                True,
                parent_customer_id="austin-isd",
                main_schedule="30 2 * * *",
                params={"nested": {"deep": {"list": [{"x": None}, "ü"]}}},
            ),
        ),
        integrations=(
            IntegrationRow(
                "austin-isd",
                "classroom",
                "google_classroom",
                True,
                schedule="@hourly",
                params={"domain": "austinisd.org"},
                task_overrides={"load": {"args": {"location": "US"}}, "notify": None},
            ),
            IntegrationRow("austin-isd", "sis", "powerschool_grades", False),
            IntegrationRow("region-7", "assess", "state_assessments", True, params=[1, "two"]),
        ),
    )


def test_insert_round_trips_a_snapshot_exactly(schema_db: str) -> None:
    store = SpannerStore(schema_db)
    snapshot = _sample_snapshot()

    store.insert(snapshot)

    assert SpannerStore(schema_db).read_snapshot() == snapshot


def test_demo_fleet_json_text_rows_read_back_decoded(
    schema_db: str, demo_snapshot: Snapshot
) -> None:
    # composer.store.demo (like SQLite) holds JSON columns as text; Spanner stores them as JSON.
    def decoded(row):
        fields = ("params", "task_overrides") if isinstance(row, IntegrationRow) else ("params",)
        changes = {
            f: None if getattr(row, f) is None else json.loads(getattr(row, f)) for f in fields
        }
        return dataclasses.replace(row, **changes)

    SpannerStore(schema_db).insert(demo_snapshot)
    snapshot = SpannerStore(schema_db).read_snapshot()

    assert snapshot.customers == tuple(
        sorted((decoded(c) for c in demo_snapshot.customers), key=lambda c: c.customer_id)
    )
    assert snapshot.integrations == tuple(
        sorted(
            (decoded(i) for i in demo_snapshot.integrations),
            key=lambda i: (i.customer_id, i.integration_id),
        )
    )
    assert len(snapshot.customers) == len(demo_snapshot.customers) > 0


def test_insert_writes_json_columns_as_json_not_strings(schema_db: str) -> None:
    store = SpannerStore(schema_db)
    store.insert(
        Snapshot(
            customers=(CustomerRow("d1", "D", "UTC", True, params='{"a": {"b": 2}}'),),
            integrations=(IntegrationRow("d1", "i", "t", True, task_overrides={"x": [1]}),),
        )
    )
    with _official_database(store.instance_id, store.database_id).snapshot(multi_use=True) as snap:
        (customer,) = snap.execute_sql("SELECT JSON_VALUE(params, '$.a.b') FROM customers")
        (integration,) = snap.execute_sql(
            "SELECT JSON_QUERY(task_overrides, '$.x') FROM integrations"
        )
    assert customer == ["2"]
    assert integration[0] == [1]
    assert store.read_snapshot().customers[0].params == {"a": {"b": 2}}


def test_insert_is_one_transaction_a_failing_row_writes_nothing(schema_db: str) -> None:
    store = SpannerStore(schema_db)
    store.insert(Snapshot(customers=(CustomerRow("taken", "T", "UTC", True),)))

    with pytest.raises(StoreError, match="already exists"):
        store.insert(
            Snapshot(
                customers=(
                    CustomerRow("new", "N", "UTC", True),
                    CustomerRow("taken", "T again", "UTC", True),
                ),
                integrations=(IntegrationRow("new", "i", "t", True),),
            )
        )

    snapshot = store.read_snapshot()
    assert snapshot.customers == (CustomerRow("taken", "T", "UTC", True),)
    assert snapshot.integrations == ()


def test_insert_rejects_a_non_json_value_naming_the_field(schema_db: str) -> None:
    store = SpannerStore(schema_db)
    bad = Snapshot(integrations=(IntegrationRow("d1", "sis", "t", True, params="{not json"),))
    with pytest.raises(StoreError, match="customer d1, integration sis, field params"):
        store.insert(bad)


# -- failures -------------------------------------------------------------------------


def _assert_one_line(error: StoreError) -> str:
    message = str(error)
    assert message and "\n" not in message
    return message


@pytest.mark.timeout(60)  # a regression must fail, not hang
def test_read_from_stopped_emulator_raises_store_error_quickly(
    emulator_binary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    second = SpannerEmulator(emulator_binary).start()
    try:
        host = second.host
        url = second.url(PROJECT, "fleet", "fleet")
    finally:
        second.stop()
    monkeypatch.setenv("SPANNER_EMULATOR_HOST", host)

    began = time.monotonic()
    with pytest.raises(StoreError) as raised:
        SpannerStore(url).read_snapshot()
    elapsed = time.monotonic() - began

    assert elapsed < QUICK, f"took {elapsed:.1f}s"
    message = _assert_one_line(raised.value)
    assert "unreachable" in message and host in message


@pytest.mark.timeout(60)  # a regression must fail, not hang
def test_store_that_read_before_fails_quickly_once_its_emulator_stops(
    emulator_binary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client caches a session; with it, its own stream-restart loop would retry
    # UNAVAILABLE forever. The store must still give up within seconds.
    second = SpannerEmulator(emulator_binary).start()
    try:
        monkeypatch.setenv("SPANNER_EMULATOR_HOST", second.host)
        store = SpannerStore(second.url(PROJECT, "fleet", "fleet"))
        store.init_schema()
        store.insert(Snapshot(customers=(CustomerRow("d1", "D", "UTC", True),)))
        assert len(store.read_snapshot().customers) == 1
    finally:
        second.stop()

    for operation in (store.read_snapshot, lambda: store.insert(_sample_snapshot())):
        began = time.monotonic()
        with pytest.raises(StoreError, match="unreachable") as raised:
            operation()
        elapsed = time.monotonic() - began
        assert elapsed < QUICK, f"took {elapsed:.1f}s"
        _assert_one_line(raised.value)


def test_missing_database_raises_store_error_naming_it(
    emulator: SpannerEmulator, instance_id: str
) -> None:
    url = emulator.url(PROJECT, instance_id, "no-such-db")
    with pytest.raises(StoreError) as raised:
        SpannerStore(url).read_snapshot()
    message = _assert_one_line(raised.value)
    assert f"projects/{PROJECT}/instances/{instance_id}/databases/no-such-db" in message
    assert "not found" in message


def test_missing_instance_raises_store_error_naming_it(emulator: SpannerEmulator) -> None:
    with pytest.raises(StoreError) as raised:
        SpannerStore(emulator.url(PROJECT, "no-such-instance", "fleet")).read_snapshot()
    message = _assert_one_line(raised.value)
    assert f"instance projects/{PROJECT}/instances/no-such-instance not found" in message


def test_missing_table_raises_store_error_naming_it(
    emulator: SpannerEmulator, instance_id: str
) -> None:
    database_id = _unique("db")
    _create_database(instance_id, database_id, [])
    url = emulator.url(PROJECT, instance_id, database_id)
    with pytest.raises(StoreError) as raised:
        SpannerStore(url).read_snapshot()
    message = _assert_one_line(raised.value)
    assert "table customers not found" in message and "fleet store init" in message


@pytest.mark.parametrize(
    "url",
    [
        "spanner://",
        "spanner://projects/p-roject/instances/i/databases",
        "spanner://projects/test-project/instances/inst/databases/db/",
        "spanner://projects/test-project/instances/inst/databases/db?x=1",
        "spanner://project/test-project/instances/inst/databases/db",
        "spanner:///projects/test-project/instances/inst/databases/db",
        "spanner://projects/Test_Project/instances/inst/databases/db",
        "spanner://projects/test-project/instances/-inst/databases/db",
        "spanner://projects/test-project/instances/inst/databases/1db",
        "spanner://projects/test-project/instances/inst/databases/" + "d" * 31,
    ],
)
def test_malformed_url_raises_store_error_naming_the_expected_form(url: str) -> None:
    with pytest.raises(StoreError) as raised:
        open_store(url)
    message = _assert_one_line(raised.value)
    assert "spanner://projects/PROJECT/instances/INSTANCE/databases/DATABASE" in message


def test_valid_url_parses_without_contacting_spanner() -> None:
    store = open_store("spanner://projects/example.com:my-proj/instances/prod-1/databases/fleet_db")
    assert isinstance(store, SpannerStore)
    assert (store.project, store.instance_id, store.database_id) == (
        "example.com:my-proj",
        "prod-1",
        "fleet_db",
    )
    assert store.url == "spanner://projects/example.com:my-proj/instances/prod-1/databases/fleet_db"


def test_error_messages_are_one_line_without_credentials() -> None:
    store = SpannerStore("spanner://projects/test-project/instances/i1/databases/db1")
    leaky = gexc.PermissionDenied(
        "Caller is missing IAM permission spanner.sessions.create\n"
        "Authorization: Bearer ya29.a0SECRETTOKEN123 access_token=abcDEF123"
    )
    message = store._describe(leaky, "read")
    assert "\n" not in message
    assert "permission denied" in message and "spanner.sessions.create" in message
    assert "SECRETTOKEN" not in message and "abcDEF123" not in message
    with pytest.raises(StoreError) as raised:
        SpannerStore("spanner://user:hunter2@projects/p/instances/i/databases/d")
    assert "hunter2" not in str(raised.value)


def test_emulator_helper_stops_what_it_starts(emulator_binary: Path) -> None:
    assert_serves_on_loopback_then_releases_its_port(SpannerEmulator(emulator_binary))
