"""The Cloud Spanner store (production), also used against the Spanner emulator.

URL: ``spanner://projects/PROJECT/instances/INSTANCE/databases/DATABASE``.

With ``SPANNER_EMULATOR_HOST`` set (``host:port``) the official client talks to the
emulator without credentials, and ``init_schema`` also creates the instance and the
database when they are missing. Against real Spanner the instance and the database
come from Terraform; ``init_schema`` only adds the tables that are missing.

Every failure is a ``StoreError`` with a one-line message, and arrives within seconds:
the client's own defaults retry an unreachable endpoint for 30 s per session and
restart a broken result stream without any limit, so every RPC of this store gets a
short gRPC deadline and retry window (``Budget``), and a store operation that runs
out of time stops at its next RPC.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import inspect
import os
import re
from collections.abc import Iterator
from typing import Any

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud.spanner_v1 import Client

from composer.errors import StoreError, StoreUrlError
from composer.store import (
    CustomerRow,
    IntegrationRow,
    Snapshot,
    added_column,
    schema_statements,
    table_columns,
)
from composer.store.spanner_budget import Budget, BudgetedClient, BudgetedDatabase
from composer.store.spanner_rows import mutation_values, row_dict

EMULATOR_ENV = "SPANNER_EMULATOR_HOST"
EMULATOR_INSTANCE_CONFIG = "emulator-config"

URL_FORM = "spanner://projects/PROJECT/instances/INSTANCE/databases/DATABASE"
# Google Cloud's own id rules: project ids (optionally domain-scoped, "example.com:p"),
# instance ids, database ids.
_PROJECT_RE = re.compile(r"(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
_INSTANCE_RE = re.compile(r"[a-z][a-z0-9-]{0,62}[a-z0-9]")
_DATABASE_RE = re.compile(r"[a-z][a-z0-9_-]{0,28}[a-z0-9]")
_URL_RE = re.compile(
    r"spanner://projects/(?P<project>[^/]+)/instances/(?P<instance>[^/]+)"
    r"/databases/(?P<database>[^/]+)"
)

CUSTOMER_COLUMNS = (
    "customer_id",
    "name",
    "timezone",
    "parent_customer_id",
    "active",
    "main_schedule",
    "legacy_dag_file",
    "params",
    "environment",
)
INTEGRATION_COLUMNS = (
    "customer_id",
    "integration_id",
    "template",
    "schedule",
    "params",
    "task_overrides",
    "enabled",
    "template_version",
)
# The two queries of read_snapshot, public so that tests can answer them on the client's
# own mock server (tests/spanner_mock_support.py) without copying them.
CUSTOMERS_SQL = f"SELECT {', '.join(CUSTOMER_COLUMNS)} FROM customers ORDER BY customer_id"
INTEGRATIONS_SQL = (
    f"SELECT {', '.join(INTEGRATION_COLUMNS)} FROM integrations "
    "ORDER BY customer_id, integration_id"
)

# How long one RPC may take (gRPC deadline), how long a transient UNAVAILABLE /
# RESOURCE_EXHAUSTED is retried, how long a whole store operation may take, and how
# long a schema change may run (real Spanner schema changes can take minutes).
RPC_TIMEOUT_SECONDS = 10.0
RETRY_SECONDS = 4.0
OPERATION_SECONDS = 30.0
DDL_SECONDS = 600.0
_ADMIN_OPERATION_SECONDS = 60.0


def parse_url(url: str) -> tuple[str, str, str]:
    """(project, instance, database) of a spanner:// URL, or StoreError."""
    match = _URL_RE.fullmatch(url)
    if match is None:
        raise StoreUrlError(f"malformed Spanner store URL {_redact(url)!r}: expected {URL_FORM}")
    parts = match.group("project", "instance", "database")
    for kind, value, pattern in zip(
        ("project", "instance", "database"),
        parts,
        (_PROJECT_RE, _INSTANCE_RE, _DATABASE_RE),
        strict=True,
    ):
        if not pattern.fullmatch(value):
            raise StoreUrlError(
                f"malformed Spanner store URL {_redact(url)!r}: {value!r} is not a valid "
                f"{kind} id; expected {URL_FORM}"
            )
    return parts


class SpannerStore:
    """customers and integrations in a Cloud Spanner (or emulator) database."""

    def __init__(
        self,
        url: str,
        *,
        create_missing: bool | None = None,
        rpc_timeout: float = RPC_TIMEOUT_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
        operation_seconds: float = OPERATION_SECONDS,
    ) -> None:
        """Parse the URL; nothing is contacted until the first operation.

        `create_missing`: whether `init_schema` creates a missing instance and database;
        by default only when SPANNER_EMULATOR_HOST is set (real Spanner: Terraform).
        """
        self.project, self.instance_id, self.database_id = parse_url(url)
        self.url = url
        self.database_path = (
            f"projects/{self.project}/instances/{self.instance_id}/databases/{self.database_id}"
        )
        self._create_missing = create_missing
        self._budget = Budget(rpc_timeout, retry_seconds)
        self._operation_seconds = operation_seconds
        self._client: BudgetedClient | None = None
        self._database: BudgetedDatabase | None = None
        self._endpoint = "spanner.googleapis.com"

    # -- the Store protocol ---------------------------------------------------------

    def read_snapshot(self) -> Snapshot:
        """Both tables in one read-only snapshot, each ordered by primary key."""
        with self._operation("read"):
            database = self._connect()
            with database.snapshot(multi_use=True) as snapshot:
                customer_rows = list(snapshot.execute_sql(CUSTOMERS_SQL))
                integration_rows = list(snapshot.execute_sql(INTEGRATIONS_SQL))
        customers = tuple(CustomerRow(**row_dict(CUSTOMER_COLUMNS, row)) for row in customer_rows)
        integrations = tuple(
            IntegrationRow(**row_dict(INTEGRATION_COLUMNS, row)) for row in integration_rows
        )
        return Snapshot(customers=customers, integrations=integrations)

    def init_schema(self) -> None:
        """Create what is missing: on the emulator the instance and the database, then
        the tables of the one schema file that the database does not have yet."""
        statements = schema_statements()
        with self._operation("schema init", _ADMIN_OPERATION_SECONDS):
            database = self._connect()
            if self._creates_missing():
                self._ensure_emulator_instance_and_database(database)
            existing = self._existing_objects(database)
            missing = [s for s in statements if _ddl_object(s) not in existing]
            if not missing:
                return
            operation = database.update_ddl(missing)
            self._wait(operation, DDL_SECONDS, "applying the schema")

    def insert(self, snapshot: Snapshot) -> None:
        """All rows in one commit (customers first, then their integrations)."""
        customers = [mutation_values(CUSTOMER_COLUMNS, row) for row in snapshot.customers]
        integrations = [mutation_values(INTEGRATION_COLUMNS, row) for row in snapshot.integrations]
        if not customers and not integrations:
            return
        with self._operation("insert"):
            database = self._connect()
            with database.batch() as batch:
                if customers:
                    batch.insert("customers", CUSTOMER_COLUMNS, customers)
                if integrations:
                    batch.insert("integrations", INTEGRATION_COLUMNS, integrations)

    # -- connection and errors ------------------------------------------------------

    def _creates_missing(self) -> bool:
        if self._create_missing is not None:
            return self._create_missing
        return bool(os.environ.get(EMULATOR_ENV))

    def _connect(self) -> BudgetedDatabase:
        if self._database is not None:
            return self._database
        emulator_host = os.environ.get(EMULATOR_ENV)
        if emulator_host:
            self._endpoint = emulator_host
        kwargs: dict[str, Any] = {"project": self.project}
        if "disable_builtin_metrics" in inspect.signature(Client.__init__).parameters:
            # Built-in metrics export to Cloud Monitoring from a background thread.
            kwargs["disable_builtin_metrics"] = True
        client = BudgetedClient(budget=self._budget, **kwargs)
        instance = client.instance(
            self.instance_id,
            configuration_name=(
                f"projects/{self.project}/instanceConfigs/{EMULATOR_INSTANCE_CONFIG}"
            ),
            display_name=self.instance_id[:30].ljust(4, "-"),
            node_count=1,
        )
        self._client = client
        self._database = BudgetedDatabase(self.database_id, instance, budget=self._budget)
        return self._database

    @contextlib.contextmanager
    def _operation(self, action: str, seconds: float | None = None) -> Iterator[None]:
        """Run one store operation within its time budget; every failure becomes a
        one-line StoreError naming the store."""
        self._budget.start(self._operation_seconds if seconds is None else seconds)
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(self._describe(exc, action)) from exc
        finally:
            self._budget.stop()

    def _describe(self, exc: BaseException, action: str) -> str:
        where = f"Spanner store {self.database_path} ({self._endpoint}), {action}"
        while isinstance(exc, gexc.RetryError) and exc.cause is not None:
            exc = exc.cause
        detail = _detail(exc)
        if isinstance(exc, auth_exc.DefaultCredentialsError):
            return (
                f"{where}: no Google Cloud credentials found; use Application Default "
                f"Credentials (gcloud auth application-default login, or an attached "
                f"service account), or set {EMULATOR_ENV} for the emulator"
            )
        if isinstance(exc, auth_exc.GoogleAuthError):
            return f"{where}: Google Cloud authentication failed ({type(exc).__name__})"
        if isinstance(exc, gexc.RetryError | gexc.ServiceUnavailable | gexc.DeadlineExceeded):
            return f"{where}: Spanner is unreachable or not answering: {detail}"
        if isinstance(exc, gexc.Unauthenticated):
            return f"{where}: the credentials were rejected: {detail}"
        if isinstance(exc, gexc.PermissionDenied):
            return f"{where}: permission denied: {detail}"
        if isinstance(exc, gexc.NotFound):
            text = detail.lower()
            if "instance" in text and "database" not in text:
                what = f"instance projects/{self.project}/instances/{self.instance_id}"
            else:
                what = f"database {self.database_path}"
            return f"{where}: {what} not found ({detail}); {self._creation_hint()}"
        missing_column = re.search(
            r"Unrecognized name: (environment|template_version)", detail, re.IGNORECASE
        )
        if isinstance(exc, gexc.InvalidArgument) and missing_column:
            column = missing_column.group(1).lower()
            table = "customers" if column == "environment" else "integrations"
            return (
                f"{where}: column {table}.{column} not found (a store made "
                f"before it); add it with `fleet store init --store {self.url}` or terraform apply"
            )
        missing_table = re.search(r"Table not found: ([\w.]+)", detail, re.IGNORECASE)
        if isinstance(exc, gexc.InvalidArgument) and missing_table:
            return (
                f"{where}: table {missing_table.group(1)} not found; apply the schema with "
                f"`fleet store init --store {self.url}`"
            )
        if isinstance(exc, gexc.AlreadyExists):
            return f"{where}: row already exists: {detail}"
        if isinstance(exc, gexc.GoogleAPICallError):
            return f"{where}: {type(exc).__name__}: {detail}"
        if isinstance(exc, concurrent.futures.TimeoutError):
            return f"{where}: timed out waiting for Spanner"
        return f"{where}: {type(exc).__name__}: {detail}"

    def _creation_hint(self) -> str:
        if self._creates_missing():
            return f"create it with `fleet store init --store {self.url}`"
        return (
            "fleet store init creates instances and databases only on the Spanner emulator "
            f"({EMULATOR_ENV}); in production Terraform creates them (terraform/)"
        )

    # -- schema helpers -------------------------------------------------------------

    def _ensure_emulator_instance_and_database(self, database: BudgetedDatabase) -> None:
        instance = database._instance
        if not instance.exists():
            with contextlib.suppress(gexc.AlreadyExists):
                self._wait(instance.create(), _ADMIN_OPERATION_SECONDS, "creating the instance")
        if not database.exists():
            with contextlib.suppress(gexc.AlreadyExists):
                self._wait(database.create(), _ADMIN_OPERATION_SECONDS, "creating the database")

    def _existing_objects(self, database: BudgetedDatabase) -> set[tuple[str, str]]:
        api = self._client.database_admin_api  # type: ignore[union-attr]
        response = api.get_database_ddl(database=database.name)
        found = set()
        for statement in response.statements:
            found.add(_ddl_object(statement))
            table = table_columns(statement)
            if table:  # Spanner answers the current tables, added columns included
                found.update(("COLUMN", f"{table[0]}.{column}") for column in table[1])
        return found

    def _wait(self, operation: Any, seconds: float, what: str) -> Any:
        try:
            return operation.result(timeout=seconds)
        except concurrent.futures.TimeoutError:
            raise StoreError(
                f"Spanner store {self.database_path} ({self._endpoint}): {what} did not "
                f"finish within {seconds:g}s; it may still be running, check the "
                "database's operations and retry"
            ) from None


# -- DDL ------------------------------------------------------------------------------

_DDL_OBJECT_RE = re.compile(
    r"\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:UNIQUE\s+|NULL_FILTERED\s+)*"
    r"(TABLE|INDEX|SEARCH\s+INDEX|VECTOR\s+INDEX|VIEW|CHANGE\s+STREAM|SEQUENCE|ROLE|"
    r"PROPERTY\s+GRAPH|MODEL|SCHEMA|PROTO\s+BUNDLE)\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"`?([A-Za-z_][A-Za-z0-9_.]*)`?",
    re.IGNORECASE,
)


def _ddl_object(statement: str) -> tuple[str, str]:
    """(kind, name) a CREATE statement makes, e.g. ("TABLE", "customers"); names are
    case-insensitive in Spanner. `ALTER TABLE t ADD COLUMN c` makes ("COLUMN", "t.c").
    Other statements cannot be applied idempotently."""
    added = added_column(statement)
    if added:
        return "COLUMN", f"{added[0]}.{added[1]}"
    match = _DDL_OBJECT_RE.match(statement)
    if match is None:
        raise StoreError(
            f"schema statement {statement[:60]!r}... is not a CREATE statement; "
            "the schema file may only create objects and add columns"
        )
    return " ".join(match.group(1).upper().split()), match.group(2).lower()


# -- messages -------------------------------------------------------------------------


def _detail(exc: BaseException) -> str:
    if isinstance(exc, gexc.GoogleAPICallError):
        text = exc.message or str(exc)
        text = re.sub(r",\s*request_id = \S+$", "", text)
    else:
        text = str(exc) or type(exc).__name__
    return _redact(" ".join(text.split()))[:300]


_SECRETS_RE = re.compile(
    r"(?i)(bearer\s+|ya29\.|(?:access_|refresh_|id_)?token[\"'=: ]+|"
    r"(?:private_key|client_secret|password)[\"'=: ]+)[A-Za-z0-9._~+/=-]+"
)


def _redact(text: str) -> str:
    """Drop userinfo from URLs and anything shaped like a token or key."""
    text = re.sub(r"(//)[^/@\s]*@", r"\1", text)
    return _SECRETS_RE.sub(lambda m: m.group(1) + "[redacted]", text)
