"""The Spanner store's read path against google-cloud-spanner's own mock server: rows read
back exactly, the fleet from them is byte-identical to SQLite's, both tables come from
one read-only transaction, and a Spanner error fails the run in one line, changing
nothing. Always runs, emulator or not (tests/spanner_mock_support.py says why)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.cloud.spanner_v1 import BeginTransactionRequest, CommitRequest, TransactionSelector
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer.errors import StoreError
from composer.store import CustomerRow, IntegrationRow, Snapshot
from composer.store.spanner import CUSTOMERS_SQL, INTEGRATIONS_SQL, SpannerStore
from tests.conftest import assert_serves_on_loopback_then_releases_its_port, make_store
from tests.spanner_mock_support import MockSpannerServer, mode, result_sets
from tests.test_publish_local import snapshot_files

NESTED = {
    "sis": {"base_url": "https://sis.example.org", "ports": [443, 8443]},
    "weights": [0.5, -1.25, 1e-3, 0, 9007199254740991],
    "label": "Écoles de Montréal — 学区 ✓",
    "flags": {"on": True, "off": False, "unset": None},
    "empty": {},
    "none": [],
}

# Out of key order on purpose; JSON both as text (as SQLite holds it) and decoded.
ROWS = Snapshot(
    customers=(
        CustomerRow("d2", "Dos", "America/Chicago", False, params={"a": {"b": [1, {"c": 2}]}}),
        CustomerRow("d1", "Uno — 学区", "America/New_York", True, params=json.dumps(NESTED)),
        CustomerRow("d3", "Tres", "UTC", True, legacy_dag_file="d3.py", params="null"),
        CustomerRow(
            "d4", "Cuatro", "UTC", True, parent_customer_id="d1", main_schedule="0 3 * * *"
        ),
    ),
    integrations=(
        IntegrationRow("d2", "x", "state_assessments", True, task_overrides='{"t": {"k": [{}]}}'),
        IntegrationRow("d1", "sis", "powerschool_grades", True, "@hourly", '{"n": 3}', {"f": None}),
        IntegrationRow("d1", "cls", "google_classroom", False, params=[1, 2, 3]),
        IntegrationRow("d1", "scalar", "t", True, params='"text"', task_overrides=4.5),
    ),
)


def decoded(snapshot: Snapshot) -> Snapshot:
    """What the store must return for served rows: key order, JSON as plain data (text
    parsed; JSON null and SQL NULL alike None)."""

    def plain(row: Any, fields: tuple[str, ...]) -> Any:
        changes = {}
        for name in fields:
            value = getattr(row, name)
            changes[name] = json.loads(value) if isinstance(value, str) else value
        return dataclasses.replace(row, **changes)

    return Snapshot(
        customers=tuple(
            plain(c, ("params",)) for c in sorted(snapshot.customers, key=lambda c: c.customer_id)
        ),
        integrations=tuple(
            plain(i, ("params", "task_overrides"))
            for i in sorted(snapshot.integrations, key=lambda i: (i.customer_id, i.integration_id))
        ),
    )


@pytest.fixture
def mock_spanner(monkeypatch: pytest.MonkeyPatch) -> Iterator[MockSpannerServer]:
    """A fresh mock server per test (queued errors do not leak), with the store pointed at
    it through SPANNER_EMULATOR_HOST."""
    with MockSpannerServer() as server:
        monkeypatch.setenv("SPANNER_EMULATOR_HOST", server.host)
        yield server


# -- the fake itself --------------------------------------------------------------------


def test_mock_server_listens_on_loopback_at_a_free_port_and_stop_releases_it() -> None:
    assert_serves_on_loopback_then_releases_its_port(MockSpannerServer())


def test_serving_a_row_its_column_cannot_hold_names_customer_integration_and_field() -> None:
    with pytest.raises(ValueError, match=r"^customer d1, field name: NULL in a NOT NULL"):
        result_sets(Snapshot(customers=(CustomerRow("d1", None, "UTC", True),)))  # type: ignore[arg-type]
    bad_json = IntegrationRow("d1", "sis", "t", True, task_overrides="{not json")
    with pytest.raises(ValueError, match=r"^customer d1, integration sis, field task_overrides"):
        result_sets(Snapshot(integrations=(bad_json,)))


# -- reading ----------------------------------------------------------------------------


def test_store_reads_back_exactly_the_rows_served_in_key_order_with_json_decoded(
    mock_spanner: MockSpannerServer,
) -> None:
    mock_spanner.serve(ROWS)

    snapshot = SpannerStore(mock_spanner.url()).read_snapshot()

    assert snapshot == decoded(ROWS)
    d1, d2, d3, d4 = snapshot.customers
    assert d1.params == NESTED and d1.params["weights"][4] == 9007199254740991
    assert d3.params is None  # JSON null
    assert d4.params is None and d4.parent_customer_id == "d1"  # SQL NULL
    assert d2.active is False
    cls, scalar, sis, _ = snapshot.integrations
    assert cls.enabled is False and cls.params == [1, 2, 3]
    assert scalar.params == "text" and scalar.task_overrides == 4.5
    assert sis.task_overrides == {"f": None}  # a null inside JSON stays a key
    for row in (*snapshot.customers, *snapshot.integrations):
        for value in (row.params, getattr(row, "task_overrides", None)):
            assert "JsonObject" not in repr(type(value)), row


def test_store_reads_an_empty_fleet_as_an_empty_snapshot(
    mock_spanner: MockSpannerServer,
) -> None:
    mock_spanner.serve(Snapshot())
    assert SpannerStore(mock_spanner.url()).read_snapshot() == Snapshot()


_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}", fullmatch=True)
_TEXT = st.text(max_size=20)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
# SQL NULL, JSON text, or decoded JSON (a row's str is JSON text, so decoded values that
# are a str at the top level can only come as text).
_JSON_CELL = st.none() | _JSON.map(json.dumps) | _JSON.filter(lambda v: not isinstance(v, str))


@st.composite
def _snapshots(draw: st.DrawFn) -> Snapshot:
    customers = draw(
        st.lists(
            st.builds(
                CustomerRow,
                customer_id=_IDS,
                name=_TEXT,
                timezone=_TEXT,
                active=st.booleans(),
                parent_customer_id=st.none() | _IDS,
                main_schedule=st.none() | _TEXT,
                legacy_dag_file=st.none() | _TEXT,
                params=_JSON_CELL,
            ),
            max_size=4,
            unique_by=lambda c: c.customer_id,
        )
    )
    if not customers:
        return Snapshot()
    integrations = draw(
        st.lists(
            st.builds(
                IntegrationRow,
                customer_id=st.sampled_from([c.customer_id for c in customers]),
                integration_id=_IDS,
                template=_TEXT,
                enabled=st.booleans(),
                schedule=st.none() | _TEXT,
                params=_JSON_CELL,
                task_overrides=_JSON_CELL,
            ),
            max_size=6,
            unique_by=lambda i: (i.customer_id, i.integration_id),
        )
    )
    return Snapshot(tuple(customers), tuple(integrations))


# One server for all examples: serve() replaces the answers, and nothing else carries over.
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=_snapshots())
def test_any_rows_the_schema_allows_read_back_exactly_as_served(
    mock_spanner: MockSpannerServer, rows: Snapshot
) -> None:
    mock_spanner.serve(rows)
    assert SpannerStore(mock_spanner.url()).read_snapshot() == decoded(rows)


def test_both_tables_are_read_in_one_read_only_transaction_that_writes_nothing(
    mock_spanner: MockSpannerServer,
) -> None:
    mock_spanner.serve(ROWS)

    SpannerStore(mock_spanner.url()).read_snapshot()

    queries = mock_spanner.queries()
    assert [q.sql for q in queries] == [CUSTOMERS_SQL, INTEGRATIONS_SQL]
    assert len({q.session for q in queries}) == 1
    # Exactly one transaction was started, read-only, and every query ran inside it
    # (began it inline, or named it); none ran as a single-use read of its own.
    ((transaction_id, options),) = mock_spanner.spanner.transactions.items()
    assert mode(options) == "read_only"
    explicit_begins = [
        r for r in mock_spanner.spanner.requests if isinstance(r, BeginTransactionRequest)
    ]
    selectors = [TransactionSelector.pb(q.transaction).WhichOneof("selector") for q in queries]
    assert selectors.count("begin") + len(explicit_begins) == 1
    for query, selector in zip(queries, selectors, strict=True):
        assert selector in ("begin", "id"), selector
        if selector == "id":
            assert query.transaction.id == transaction_id
    assert not [r for r in mock_spanner.spanner.requests if isinstance(r, CommitRequest)]
    assert mock_spanner.database_admin.requests == []


# -- the fleet --------------------------------------------------------------------------


def test_same_rows_through_mock_spanner_and_sqlite_give_byte_identical_fleets(
    mock_spanner: MockSpannerServer, tmp_path, demo_snapshot: Snapshot, fleet_cli
) -> None:
    mock_spanner.serve(demo_snapshot)

    code, out, err = fleet_cli(
        "sync", "--store", mock_spanner.url(), "--target", f"file://{tmp_path}/spanner"
    )

    assert code == 0, err
    assert "17 added" in out  # 15 modules, their shard file (28 DAGs), the legacy file
    sqlite = make_store(tmp_path / "fleet.db", demo_snapshot)
    assert fleet_cli("sync", "--store", sqlite, "--target", f"file://{tmp_path}/sqlite")[0] == 0
    assert snapshot_files(tmp_path / "spanner") == snapshot_files(tmp_path / "sqlite")


# -- failures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        (
            grpc.StatusCode.NOT_FOUND,
            "Database not found: projects/test-project/instances/fleet/databases/fleet",
            "database projects/test-project/instances/fleet/databases/fleet not found",
        ),
        (
            grpc.StatusCode.PERMISSION_DENIED,
            "Caller is missing IAM permission spanner.sessions.create",
            "permission denied: Caller is missing IAM permission spanner.sessions.create",
        ),
    ],
)
def test_a_spanner_error_on_the_read_fails_the_sync_with_exit_3_in_one_line_changing_nothing(
    mock_spanner: MockSpannerServer,
    tmp_path,
    demo_snapshot: Snapshot,
    fleet_cli,
    code: grpc.StatusCode,
    details: str,
    expected: str,
) -> None:
    target = tmp_path / "dags"
    mock_spanner.serve(demo_snapshot)
    assert fleet_cli("sync", "--store", mock_spanner.url(), "--target", f"file://{target}")[0] == 0
    before = snapshot_files(target)
    queries_before = len(mock_spanner.queries())
    mock_spanner.fail("ExecuteStreamingSql", code, details)

    exit_code, out, err = fleet_cli(
        "sync", "--store", mock_spanner.url(), "--target", f"file://{target}"
    )

    assert exit_code == 3
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(
        f"error: Spanner store projects/test-project/instances/fleet/databases/fleet "
        f"({mock_spanner.host}), read: "
    )
    assert expected in err
    assert out == ""
    assert snapshot_files(target) == before
    # The sync hit the injected error on its first query and sent nothing after it.
    assert [q.sql for q in mock_spanner.queries()[queries_before:]] == [CUSTOMERS_SQL]


@pytest.mark.timeout(60)  # a regression must fail, not hang
def test_spanner_unavailable_on_every_try_fails_the_read_in_one_line_within_its_budget(
    mock_spanner: MockSpannerServer,
) -> None:
    mock_spanner.serve(ROWS)
    mock_spanner.fail("ExecuteStreamingSql", grpc.StatusCode.UNAVAILABLE, "down", times=500)
    store = SpannerStore(mock_spanner.url(), retry_seconds=0.5, operation_seconds=3)

    began = time.monotonic()
    with pytest.raises(StoreError) as raised:
        store.read_snapshot()
    elapsed = time.monotonic() - began

    message = str(raised.value)
    assert "\n" not in message
    assert message.endswith("read: Spanner is unreachable or not answering: down")
    assert mock_spanner.host in message
    assert elapsed < 3, f"took {elapsed:.1f}s"
    assert len(mock_spanner.queries()) > 1  # it did retry before giving up


def test_one_transient_unavailable_is_retried_and_the_read_succeeds(
    mock_spanner: MockSpannerServer,
) -> None:
    mock_spanner.serve(ROWS)
    mock_spanner.fail("ExecuteStreamingSql", grpc.StatusCode.UNAVAILABLE, "blip")

    snapshot = SpannerStore(mock_spanner.url()).read_snapshot()

    assert snapshot == decoded(ROWS)
    assert [q.sql for q in mock_spanner.queries()] == [
        CUSTOMERS_SQL,
        CUSTOMERS_SQL,
        INTEGRATIONS_SQL,
    ]
