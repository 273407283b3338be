"""Publishing to GCS through a network that fails (SPEC section 5): refused, reset and
lost connections and 503s are retried with backoff, and nothing is lost or duplicated.
The faults are injected by `GenerationGate` (tests/gcs_emulator.py), a loopback proxy
in front of the real emulator that also enforces `ifGenerationMatch` as GCS does."""

from __future__ import annotations

import socket
import threading

import pytest

import composer.targets.gcs as gcs
from tests.gcs_emulator import GenerationGate
from tests.test_target_gcs import PREFIX, errors, fleet_objects, local_files


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    """The production backoff (0.5 s doubling to 8 s) scaled down, to keep the tests short."""
    monkeypatch.setattr(gcs, "RETRY_INITIAL", 0.05)
    monkeypatch.setattr(gcs, "RETRY_MAXIMUM", 0.4)


def test_a_sync_started_while_the_endpoint_refuses_connections_succeeds_once_it_is_back(
    demo_store, gcs_emulator, bucket, monkeypatch, fleet_cli
):
    with socket.socket() as sock:  # bound, not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        started: list[GenerationGate] = []

        def come_back() -> None:
            sock.close()
            started.append(GenerationGate(gcs_emulator.url, port=port).start())

        timer = threading.Timer(1.5, come_back)
        timer.start()
        try:
            code, out, err = fleet_cli(
                "sync", "--store", demo_store, "--target", f"gs://{bucket}/{PREFIX}"
            )
            assert code == 0, err
            assert "17 added" in out  # 15 modules, their shard file (28 DAGs), the legacy file
            # (while the proxy runs: the emulator's media links point at it)
            assert len([p for p in fleet_objects(gcs_emulator, bucket) if p.endswith(".py")]) == 17
        finally:
            timer.join()
            for gate in started:
                gate.stop()


def test_a_proxy_failing_a_share_of_requests_loses_nothing(
    tmp_path, demo_store, gcs_emulator, bucket, monkeypatch, fleet_cli
):
    """Every 4th request is reset before it arrives, every 5th answered 503, every 7th
    served but its answer lost: the fleet lands exactly as a local sync writes it."""

    def fault(n: int, request: str) -> str | None:
        if n % 4 == 0:
            return "reset"
        if n % 5 == 0:
            return "503"
        if n % 7 == 0:
            return "lost"
        return None

    with GenerationGate(gcs_emulator.url) as gate:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gate.url)
        gate.fault = fault
        code, out, err = fleet_cli(
            "sync", "--store", demo_store, "--target", f"gs://{bucket}/{PREFIX}", "--jobs", "4"
        )
        assert code == 0, err
        assert errors(err) == []
        assert {kind for kind, _ in gate.faults} == {"reset", "503", "lost"}
        assert any(r.startswith("POST /upload") for kind, r in gate.faults if kind == "lost")
        gate.fault = lambda n, request: None
        code, out, _ = fleet_cli(
            "sync", "--store", demo_store, "--target", f"gs://{bucket}/{PREFIX}"
        )
        assert code == 0 and "0 added, 0 changed, 0 removed, 17 unchanged" in out
        published = {p: data for p, (_gen, data) in fleet_objects(gcs_emulator, bucket).items()}

    assert fleet_cli("sync", "--store", demo_store, "--target", f"file://{tmp_path}/d")[0] == 0
    assert published == local_files(tmp_path / "d")
