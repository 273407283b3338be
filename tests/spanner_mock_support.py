"""The Spanner store's read path against google-cloud-spanner's own in-process gRPC mock
server (`google.cloud.spanner_v1.testing.mock_spanner`), for machines without the
emulator: the real client, sessions, transactions and row decoding, talking gRPC to a
server that answers the store's exact queries with rows we register.

    with MockSpannerServer() as server:
        os.environ["SPANNER_EMULATOR_HOST"] = server.host   # the store then dials it
        server.serve(snapshot)
        SpannerStore(server.url()).read_snapshot()          # == snapshot, key-ordered

`start_mock_server()` itself binds every interface (`[::]:0`), so the server is built
here with the same servicers on 127.0.0.1. The queries are the store's own constants
(CUSTOMERS_SQL, INTEGRATIONS_SQL) and the column types come from the one schema file, so
the mock cannot drift from either. It has no DDL and no mutations: init_schema and
insert stay the emulator's to prove (tests/test_store_spanner.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from concurrent import futures
from typing import Any

import google.cloud.spanner_v1.testing.spanner_database_admin_pb2_grpc as admin_grpc
import google.cloud.spanner_v1.testing.spanner_pb2_grpc as spanner_grpc
import grpc
from google.cloud.spanner_v1 import (
    ExecuteSqlRequest,
    ResultSet,
    ResultSetMetadata,
    StructType,
    TransactionOptions,
    Type,
    TypeCode,
)
from google.cloud.spanner_v1.testing.mock_database_admin import DatabaseAdminServicer
from google.cloud.spanner_v1.testing.mock_spanner import MockSpanner, SpannerServicer
from google.protobuf import struct_pb2
from grpc_status.rpc_status import _Status

from composer.store import CustomerRow, IntegrationRow, Snapshot, added_column, schema_statements
from composer.store.spanner import (
    CUSTOMER_COLUMNS,
    CUSTOMERS_SQL,
    INTEGRATION_COLUMNS,
    INTEGRATIONS_SQL,
)

PROJECT = "test-project"
INSTANCE = "fleet"
DATABASE = "fleet"

_TYPE_CODES = {
    "STRING": TypeCode.STRING,
    "BOOL": TypeCode.BOOL,
    "JSON": TypeCode.JSON,
    "INT64": TypeCode.INT64,
}
_CREATE_TABLE_RE = re.compile(r"CREATE TABLE (\w+) \((.*)\) PRIMARY KEY", re.IGNORECASE)
_COLUMN_RE = re.compile(r"(\w+) ([A-Z0-9_]+)(?:\([^)]*\))?( NOT NULL)?", re.IGNORECASE)


class MockSpannerServer:
    """The client's mock Spanner (data API and database admin) on 127.0.0.1:<free
    port>; `.host` is what SPANNER_EMULATOR_HOST must be set to."""

    bind_host = "127.0.0.1"

    def __init__(self) -> None:
        self.spanner = SpannerServicer()
        self.database_admin = DatabaseAdminServicer()
        self.port: int | None = None
        self._server: grpc.Server | None = None

    @property
    def mock(self) -> MockSpanner:
        """Where results and errors are registered."""
        return self.spanner.mock_spanner

    @property
    def host(self) -> str:
        if self.port is None:
            raise RuntimeError("the mock Spanner server is not started")
        return f"{self.bind_host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def url(
        self, project: str = PROJECT, instance: str = INSTANCE, database: str = DATABASE
    ) -> str:
        return f"spanner://projects/{project}/instances/{instance}/databases/{database}"

    def env(self) -> dict[str, str]:
        return {"SPANNER_EMULATOR_HOST": self.host}

    def start(self) -> MockSpannerServer:
        """Serve on a free loopback port (gRPC picks it atomically: no race)."""
        if self._server is not None:
            return self
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
        spanner_grpc.add_SpannerServicer_to_server(self.spanner, server)
        admin_grpc.add_DatabaseAdminServicer_to_server(self.database_admin, server)
        port = server.add_insecure_port(f"{self.bind_host}:0")
        if not port:
            raise RuntimeError(f"the mock Spanner server could not bind {self.bind_host}")
        server.start()
        self._server, self.port = server, port
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop serving and wait until the port is released; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait(timeout=10)

    def __enter__(self) -> MockSpannerServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- answers --------------------------------------------------------------------

    def serve(self, snapshot: Snapshot) -> None:
        """Answer the store's two read queries with these rows (replacing earlier ones)."""
        for sql, result in result_sets(snapshot).items():
            self.mock.add_result(sql, result)

    def fail(self, method: str, code: grpc.StatusCode, details: str, times: int = 1) -> None:
        """Make the next `times` calls of the gRPC `method` (e.g. "ExecuteStreamingSql")
        end with this status."""
        for _ in range(times):
            self.mock.add_error(method, _Status(code=code, details=details, trailing_metadata=()))

    # -- what the client sent -------------------------------------------------------

    def queries(self) -> list[ExecuteSqlRequest]:
        """The SQL requests received, in order."""
        return [r for r in self.spanner.requests if isinstance(r, ExecuteSqlRequest)]


def mode(options: TransactionOptions) -> str | None:
    """What a transaction is: "read_only", "read_write", "partitioned_dml" or None."""
    return TransactionOptions.pb(options).WhichOneof("mode")


# -- rows into result sets --------------------------------------------------------------


def schema_columns() -> dict[str, dict[str, tuple[str, bool]]]:
    """{table: {column: (Spanner type, NOT NULL)}} from the one schema file."""
    tables: dict[str, dict[str, tuple[str, bool]]] = {}
    for statement in schema_statements():
        match = _CREATE_TABLE_RE.match(statement)
        if match is None:
            continue
        columns: dict[str, tuple[str, bool]] = {}
        for definition in match.group(2).split(","):
            column = _COLUMN_RE.fullmatch(definition.strip())
            if column:
                columns[column.group(1)] = (column.group(2).upper(), bool(column.group(3)))
        tables[match.group(1).lower()] = columns
    for statement in schema_statements():  # columns added later (ALTER TABLE ... ADD COLUMN)
        added = added_column(statement)
        if added:
            column = _COLUMN_RE.fullmatch(f"{added[1]} {added[2]}")
            if column:
                tables[added[0]][added[1]] = (column.group(2).upper(), bool(column.group(3)))
    return tables


def result_sets(snapshot: Snapshot) -> dict[str, ResultSet]:
    """What Spanner answers to the store's queries for these rows: the queries' columns,
    typed as the schema file declares them, rows in primary-key order (their ORDER BY).
    Raises ValueError, naming the customer, integration and field, for a value the
    column could not hold."""
    schema = schema_columns()
    customers = sorted(snapshot.customers, key=lambda c: c.customer_id)
    integrations = sorted(snapshot.integrations, key=lambda i: (i.customer_id, i.integration_id))
    return {
        CUSTOMERS_SQL: _result_set(schema["customers"], CUSTOMER_COLUMNS, customers),
        INTEGRATIONS_SQL: _result_set(schema["integrations"], INTEGRATION_COLUMNS, integrations),
    }


def _result_set(
    table: dict[str, tuple[str, bool]],
    columns: Sequence[str],
    rows: Sequence[CustomerRow | IntegrationRow],
) -> ResultSet:
    types = {}
    for column in columns:
        if column not in table:
            raise ValueError(f"column {column}: not in its table in the schema file")
        spanner_type = table[column][0]
        if spanner_type not in _TYPE_CODES:
            raise ValueError(
                f"column {column}: type {spanner_type} is not encoded by spanner_mock_support"
            )
        types[column] = _TYPE_CODES[spanner_type]
    fields = [StructType.Field(name=c, type_=Type(code=types[c])) for c in columns]
    result = ResultSet(metadata=ResultSetMetadata(row_type=StructType(fields=fields)))
    for row in rows:
        values = struct_pb2.ListValue()
        for column in columns:
            value = getattr(row, column)
            where = f"{_row_name(row)}, field {column}"
            if value is None and table[column][1]:
                raise ValueError(f"{where}: NULL in a NOT NULL column")
            values.values.append(_value(types[column], value, where))
        result.rows.append(values)
    return result


def _value(code: TypeCode, value: Any, where: str) -> struct_pb2.Value:
    """One cell as Spanner sends it: NULL, a bool, or text (STRING, JSON and INT64 alike)."""
    if value is None:
        return struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)
    if code == TypeCode.BOOL:
        if not isinstance(value, int) or value not in (0, 1):
            raise ValueError(f"{where}: not a boolean: {value!r}")
        return struct_pb2.Value(bool_value=bool(value))
    if code == TypeCode.JSON:
        if isinstance(value, str):  # JSON text, as SQLite and the demo rows hold it
            try:
                json.loads(value)
            except ValueError as exc:
                raise ValueError(f"{where}: not JSON: {exc}") from None
            return struct_pb2.Value(string_value=value)
        return struct_pb2.Value(string_value=json.dumps(value, ensure_ascii=False, allow_nan=False))
    if code == TypeCode.INT64:  # Spanner sends INT64 as decimal text
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: not an integer: {value!r}")
        return struct_pb2.Value(string_value=str(value))
    if not isinstance(value, str):
        raise ValueError(f"{where}: not a string: {value!r}")
    return struct_pb2.Value(string_value=value)


def _row_name(row: CustomerRow | IntegrationRow) -> str:
    if isinstance(row, IntegrationRow):
        return f"customer {row.customer_id}, integration {row.integration_id}"
    return f"customer {row.customer_id}"
