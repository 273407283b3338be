"""Shared fixtures. Airflow is pointed at a throw-away home before anything imports it."""

from __future__ import annotations

import os
import tempfile

os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="dagfleet-airflow-home-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "300")
# The operator-signature cache lives with this run, not in the user's ~/.cache.
os.environ["FLEET_CACHE_DIR"] = tempfile.mkdtemp(prefix="dagfleet-cache-")

import dataclasses
import itertools
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from composer.store import CustomerRow, IntegrationRow, Snapshot, open_store
from composer.store.demo import snapshot_from_yaml
from tests.gcs_emulator import GcsEmulator
from tests.spanner_emulator import EmulatorError, SpannerEmulator, find_emulator_binary

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"


@pytest.fixture(scope="session")
def templates_dir() -> Path:
    return TEMPLATES


@pytest.fixture(scope="session")
def demo_snapshot() -> Snapshot:
    return snapshot_from_yaml()


def make_store(path: Path, snapshot: Snapshot) -> str:
    """A fresh SQLite store holding `snapshot`; returns its URL."""
    url = f"sqlite:///{path}"
    store = open_store(url, create=True)
    store.init_schema()
    store.insert(snapshot)
    return url


@pytest.fixture
def demo_store(tmp_path: Path, demo_snapshot: Snapshot) -> str:
    return make_store(tmp_path / "fleet.db", demo_snapshot)


@pytest.fixture
def target_dir(tmp_path: Path) -> Path:
    return tmp_path / "dags"


def add_customer(
    snapshot: Snapshot, customer: CustomerRow, *integrations: IntegrationRow
) -> Snapshot:
    return Snapshot((*snapshot.customers, customer), snapshot.integrations + integrations)


def replace_customer(snapshot: Snapshot, customer_id: str, **changes) -> Snapshot:
    return Snapshot(
        tuple(
            dataclasses.replace(c, **changes) if c.customer_id == customer_id else c
            for c in snapshot.customers
        ),
        snapshot.integrations,
    )


def replace_integration(
    snapshot: Snapshot, customer_id: str, integration_id: str, **changes
) -> Snapshot:
    return Snapshot(
        snapshot.customers,
        tuple(
            dataclasses.replace(i, **changes)
            if (i.customer_id, i.integration_id) == (customer_id, integration_id)
            else i
            for i in snapshot.integrations
        ),
    )


def assert_serves_on_loopback_then_releases_its_port(server) -> None:
    """A test server (`running`, `host`, `port`, a context manager) binds 127.0.0.1 while
    it runs and frees its port once stopped."""
    with server:
        assert server.running and server.host.startswith("127.0.0.1:")
        port = server.port
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    assert not server.running
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def remove_customer(snapshot: Snapshot, customer_id: str) -> Snapshot:
    return Snapshot(
        tuple(c for c in snapshot.customers if c.customer_id != customer_id),
        tuple(i for i in snapshot.integrations if i.customer_id != customer_id),
    )


@pytest.fixture(scope="session")
def emulator_binary() -> Path:
    try:
        binary = find_emulator_binary()
    except EmulatorError as exc:
        pytest.fail(str(exc))
    if binary is None:
        reason = (
            "Spanner emulator binary emulator_main not found (install the Debian package "
            "google-cloud-cli-spanner-emulator or set SPANNER_EMULATOR_BIN)"
        )
        if os.environ.get("CI"):
            pytest.skip(
                "Spanner emulator binary emulator_main is absent on this CI machine; the "
                "store's read path runs against google-cloud-spanner's mock_spanner in "
                "tests/test_store_spanner_mock.py instead"
            )
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="session")
def emulator(emulator_binary: Path) -> Iterator[SpannerEmulator]:
    """One emulator for the module, with SPANNER_EMULATOR_HOST pointing at it (restored
    afterwards)."""
    with SpannerEmulator(emulator_binary) as running, pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPANNER_EMULATOR_HOST", running.host)
        yield running


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """One gcp-storage-emulator (in memory, 127.0.0.1) for the session."""
    with GcsEmulator() as running:
        yield running


_bucket_names = itertools.count()


def fresh_bucket_name(prefix: str) -> str:
    """A bucket name no earlier test of the session used (the emulator lives for the session;
    an object's id() can come back once the object is freed, a counter cannot)."""
    return f"{prefix}-{next(_bucket_names)}"


@pytest.fixture
def bucket(gcs_emulator: GcsEmulator, monkeypatch) -> str:
    """A fresh bucket; the storage client of the code under test talks to the emulator."""
    name = fresh_bucket_name("fleet-bucket")
    gcs_emulator.create_bucket(name)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    return name


@pytest.fixture
def fleet_cli(capsys) -> Callable[..., tuple[int, str, str]]:
    """Run `fleet ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from composer.cli.main import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def published(target: Path) -> dict:
    """The manifest of a local target: each customer's shard file, part digest and DAGs."""
    import json

    from composer.plan.changes import MANIFEST

    return json.loads((target / MANIFEST).read_text())


def dag_file(target: Path, customer_id: str) -> str:
    """The file (relative to the target) that holds the customer's DAGs."""
    return published(target)["customers"][customer_id]["file"]


def customer_part(target: Path, customer_id: str) -> str:
    """The customer's part (its builders, markers included), from its published module."""
    from composer.render import layout

    return layout.split((target / layout.part_path(customer_id)).read_bytes())[customer_id]
