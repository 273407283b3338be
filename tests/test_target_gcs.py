"""Publishing to GCS (SPEC section 5) against a real GCS JSON API on loopback.

gcp-storage-emulator serves the API; it ignores `ifGenerationMatch`, so the tests of
the concurrency control go through `GenerationGate` (tests/gcs_emulator.py), a proxy
that enforces the precondition as GCS does: they fail if GcsTarget stops sending it.
End-to-end cases run the real CLI with STORAGE_EMULATOR_HOST pointing at the emulator.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from composer.errors import TargetError
from composer.pipeline import apply_fleet, plan_fleet
from composer.plan.changes import MANIFEST
from composer.store import Snapshot
from composer.targets import open_target
from composer.targets.gcs import GcsTarget, md5_hex, parse_gs_url
from composer.targets.lock import LOCK_FILE
from tests.conftest import (
    TEMPLATES,
    dag_file,
    make_store,
    remove_customer,
    replace_customer,
)
from tests.gcs_emulator import GcsEmulator, GenerationGate

PREFIX = "dags/fleet"
FOREIGN = {
    "dags/other_team.py": b"# another team's DAG\n",
    "data/x.csv": b"a,b\n1,2\n",
    "dags/fleet/unrelated/notes.txt": b"not written by dagfleet\n",
}


@pytest.fixture
def gate(gcs_emulator, bucket, monkeypatch):
    """The precondition-enforcing proxy; the code under test talks to it."""
    with GenerationGate(gcs_emulator.url) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        yield proxy


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def fleet_objects(gcs_emulator: GcsEmulator, bucket: str) -> dict[str, tuple[int, bytes]]:
    """The objects under the fleet prefix, by path relative to it."""
    return {
        name.removeprefix(f"{PREFIX}/"): state
        for name, state in gcs_emulator.objects(bucket, f"{PREFIX}/").items()
    }


def errors(stderr: str) -> list[str]:
    """The CLI's error lines (other lines on stderr may come from library logging)."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def local_files(root: Path) -> dict[str, bytes]:
    """A local target's files, but its lock file (a local target's alone)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name != LOCK_FILE
    }


# -- the target on its own ---------------------------------------------------------------


def test_url_names_bucket_and_prefix():
    assert parse_gs_url("gs://fleet-bucket/dags/fleet/") == ("fleet-bucket", "dags/fleet")
    assert parse_gs_url("gs://fleet-bucket") == ("fleet-bucket", "")
    with pytest.raises(TargetError, match="expected gs://bucket/prefix"):
        parse_gs_url("gs:///dags")


def test_composite_object_without_md5_never_matches_a_digest():
    assert md5_hex(None, 7) != md5(b"")
    assert not all(c in "0123456789abcdef" for c in md5_hex(None, 7))
    assert md5_hex("XUFAKrxLKna5cZ2REBfFkg==", 1) == md5(b"hello")


def test_listing_is_relative_to_the_prefix_and_reads_no_content(gcs_emulator, bucket, gate):
    gcs_emulator.put(bucket, "dags/fleet/a/a__main.py", b"print('a')\n")
    gcs_emulator.put(bucket, "dags/fleet/", b"")  # a console-made "folder"
    gcs_emulator.put(bucket, "dags/fleetwood/b.py", b"outside the prefix\n")
    gcs_emulator.put(bucket, "dags/other_team.py", b"outside the prefix\n")
    generation = gcs_emulator.objects(bucket)["dags/fleet/a/a__main.py"][0]

    listed = open_target(f"gs://{bucket}/{PREFIX}").list_objects()

    assert set(listed) == {"a/a__main.py"}
    assert listed["a/a__main.py"].md5 == md5(b"print('a')\n")
    assert listed["a/a__main.py"].generation == generation
    object_requests = [r for r in gate.requests if f"/b/{bucket}/o" in r]
    assert len(object_requests) == 1  # one listing, no per-object request, no download
    assert "fields=items%28name%2Cmd5Hash%2Cgeneration%29%2CnextPageToken" in object_requests[0]


def test_write_stores_python_as_text_and_returns_the_new_state(gcs_emulator, bucket):
    target = GcsTarget(f"gs://{bucket}/{PREFIX}")
    state = target.write("a/a__main.py", b"x = 1\n", None)

    blob = gcs_emulator.client().bucket(bucket).get_blob(f"{PREFIX}/a/a__main.py")
    assert blob.content_type == "text/x-python"
    assert state.md5 == md5(b"x = 1\n")
    assert state == target.list_objects()["a/a__main.py"]
    assert target.read("a/a__main.py") == b"x = 1\n"
    assert target.read("a/missing.py") is None


def test_paths_cannot_leave_the_prefix(bucket):
    target = GcsTarget(f"gs://{bucket}/{PREFIX}")
    for path in ("../escape.py", "a//b.py", "/abs.py", "a/./b.py"):
        with pytest.raises(TargetError, match="not a valid path"):
            target.write(path, b"", None)


# -- the precondition: ifGenerationMatch ---------------------------------------------------


def test_new_file_is_written_only_if_absent(gcs_emulator, bucket, gate):
    target = GcsTarget(f"gs://{bucket}/{PREFIX}")
    gcs_emulator.put(bucket, f"{PREFIX}/a/a__main.py", b"written by another run\n")

    with pytest.raises(TargetError, match="another run changed it"):
        target.write("a/a__main.py", b"ours\n", None)  # the plan saw nothing there

    assert gate.calls[-1].if_generation_match == 0
    assert gcs_emulator.objects(bucket)[f"{PREFIX}/a/a__main.py"][1] == b"written by another run\n"


def test_changed_file_is_written_only_if_unchanged_since_listing(gcs_emulator, bucket, gate):
    target = GcsTarget(f"gs://{bucket}/{PREFIX}")
    target.write("a/a__main.py", b"v1\n", None)
    listed = target.list_objects()["a/a__main.py"]
    gcs_emulator.put(bucket, f"{PREFIX}/a/a__main.py", b"v2 by another run\n")

    with pytest.raises(TargetError, match="another run changed it since this run listed it"):
        target.write("a/a__main.py", b"v2 by us\n", listed)

    assert gate.calls[-1].if_generation_match == listed.generation
    assert gcs_emulator.objects(bucket)[f"{PREFIX}/a/a__main.py"][1] == b"v2 by another run\n"


def test_delete_removes_only_the_listed_generation(gcs_emulator, bucket, gate):
    target = GcsTarget(f"gs://{bucket}/{PREFIX}")
    listed = target.write("a/a__main.py", b"v1\n", None)
    gcs_emulator.put(bucket, f"{PREFIX}/a/a__main.py", b"rewritten by another run\n")

    with pytest.raises(TargetError, match=r"cannot delete a/a__main\.py: another run"):
        target.delete("a/a__main.py", listed)

    assert gate.calls[-1].if_generation_match == listed.generation
    assert f"{PREFIX}/a/a__main.py" in gcs_emulator.objects(bucket)


def test_deleting_an_object_that_is_already_gone_is_fine(bucket, gate):
    target = GcsTarget(f"gs://{bucket}/{PREFIX}")
    listed = target.write("a/a__main.py", b"v1\n", None)
    target.delete("a/a__main.py", listed)
    target.delete("a/a__main.py", listed)  # e.g. a retry whose first response was lost
    assert target.list_objects() == {}
    assert [c.status for c in gate.calls if c.method == "delete"] == [200, 404]


def test_a_write_refused_because_our_own_bytes_are_there_succeeds(bucket, gate):
    """A retried upload whose first attempt landed meets its own precondition failure."""
    target = GcsTarget(f"gs://{bucket}/{PREFIX}")
    first = target.write("a/a__main.py", b"v1\n", None)
    again = target.write("a/a__main.py", b"v1\n", None)
    assert gate.calls[-1].status == 412
    assert again == first


def test_every_write_and_delete_of_a_sync_carries_a_precondition(
    tmp_path, demo_snapshot, bucket, gate, fleet_cli
):
    url = f"gs://{bucket}/{PREFIX}"
    assert (
        fleet_cli("sync", "--store", make_store(tmp_path / "a.db", demo_snapshot), "--target", url)[
            0
        ]
        == 0
    )
    changed = replace_customer(
        remove_customer(demo_snapshot, "dallas-isd"), "austin-isd", name="Austin ISD (renamed)"
    )
    assert (
        fleet_cli("sync", "--store", make_store(tmp_path / "b.db", changed), "--target", url)[0]
        == 0
    )

    writes = [c for c in gate.calls if c.method == "write"]
    deletes = [c for c in gate.calls if c.method == "delete"]
    # dallas-isd's module is deleted, and its shard file rewritten without it
    assert [c.name for c in deletes] == [f"{PREFIX}/fleet_parts/dallas-isd.py"]
    assert all(c.if_generation_match is not None and c.status == 200 for c in gate.calls)
    assert {c.if_generation_match for c in writes if c.name.endswith(".py")} != {0}  # updates too


def test_two_runs_planned_together_cannot_both_publish(
    tmp_path, demo_snapshot, gcs_emulator, bucket, gate
):
    url = f"gs://{bucket}/{PREFIX}"
    renamed = replace_customer(demo_snapshot, "dallas-isd", name="Dallas ISD (renamed)")
    first = plan_fleet(make_store(tmp_path / "a.db", demo_snapshot), url, TEMPLATES)
    second = plan_fleet(make_store(tmp_path / "b.db", renamed), url, TEMPLATES)
    apply_fleet(first)
    published = fleet_objects(gcs_emulator, bucket)

    # The manifest is re-read before anything is written (and every write is conditional).
    with pytest.raises(TargetError, match=r"another run changed .* since this run listed it"):
        apply_fleet(second)

    assert fleet_objects(gcs_emulator, bucket) == published  # the second run changed nothing


def test_two_runs_planned_together_with_identical_files_leave_the_same_fleet(
    tmp_path, demo_store, gcs_emulator, bucket, gate
):
    """The second run's first conditional write (its manifest) is refused: it stops
    with nothing changed, and the next run converges without writing anything."""
    url = f"gs://{bucket}/{PREFIX}"
    first, second = plan_fleet(demo_store, url, TEMPLATES), plan_fleet(demo_store, url, TEMPLATES)
    apply_fleet(first)
    published = fleet_objects(gcs_emulator, bucket)
    with pytest.raises(TargetError, match=r"another run changed .* since this run listed it"):
        apply_fleet(second)
    assert fleet_objects(gcs_emulator, bucket) == published
    third = plan_fleet(demo_store, url, TEMPLATES)
    assert not third.plan.has_changes and not third.plan.manifest_changed
    assert apply_fleet(third).written == 0
    assert fleet_objects(gcs_emulator, bucket) == published


# -- failures: one line, fast, nothing written -------------------------------------------


def test_missing_bucket_exits_3_and_writes_nothing(demo_store, gcs_emulator, bucket, fleet_cli):
    code, _, err = fleet_cli(
        "sync", "--store", demo_store, "--target", "gs://no-such-bucket/dags/fleet"
    )
    assert code == 3
    assert errors(err) == [
        "error: target gs://no-such-bucket/dags/fleet: bucket no-such-bucket does not exist (list objects)"
    ]
    assert gcs_emulator.objects(bucket) == {}


def test_an_unreachable_endpoint_is_retried_until_the_deadline_then_fails_with_one_line(
    demo_store, monkeypatch, fleet_cli
):
    """Refused connections are retried with backoff, for a bounded time, then one line."""
    import composer.targets.gcs as gcs

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(gcs, "RETRY_DEADLINE", 2.0)
    decisions: list[bool] = []
    real = gcs._retryable
    monkeypatch.setattr(gcs, "_retryable", lambda exc: decisions.append(real(exc)) or decisions[-1])

    started = time.monotonic()
    code, _, err = fleet_cli(
        "sync", "--store", demo_store, "--target", "gs://fleet-bucket/dags/fleet"
    )

    assert code == 3
    assert errors(err) == [
        "error: target gs://fleet-bucket/dags/fleet: cannot reach the storage endpoint "
        f"http://127.0.0.1:{port} to list objects (gave up after 2s of retries)"
    ]
    assert len(decisions) >= 2 and all(decisions)  # retried, with backoff, then gave up
    assert time.monotonic() - started < 10


def test_permission_denied_names_the_role(demo_store, bucket, gate, fleet_cli):
    gate.deny = True
    code, _, err = fleet_cli("sync", "--store", demo_store, "--target", f"gs://{bucket}/{PREFIX}")
    assert code == 3
    [line] = errors(err)
    assert "permission denied to list objects" in line
    assert f"roles/storage.objectAdmin on bucket {bucket}" in line


# -- end to end through the CLI --------------------------------------------------------


def test_demo_fleet_is_published_under_customer_folders_as_locally(
    tmp_path, demo_store, gcs_emulator, bucket, fleet_cli
):
    code, out, _ = fleet_cli("sync", "--store", demo_store, "--target", f"gs://{bucket}/{PREFIX}")
    assert code == 0, out
    assert (
        fleet_cli("sync", "--store", demo_store, "--target", f"file://{tmp_path / 'local'}")[0] == 0
    )

    published = {path: data for path, (_, data) in fleet_objects(gcs_emulator, bucket).items()}
    assert published == local_files(tmp_path / "local")  # same paths, same bytes
    assert dag_file(tmp_path / "local", "austin-isd") in published
    assert all(
        p.startswith("fleet_shard_") for p in published if p.endswith(".py") and "/" not in p
    )


def test_second_sync_rewrites_no_object(demo_store, gcs_emulator, bucket, fleet_cli):
    url = f"gs://{bucket}/{PREFIX}"
    fleet_cli("sync", "--store", demo_store, "--target", url)
    before = gcs_emulator.objects(bucket)

    code, out, _ = fleet_cli("sync", "--store", demo_store, "--target", url)

    assert code == 0
    assert "0 added, 0 changed, 0 removed, " in out
    assert gcs_emulator.objects(bucket) == before  # same generations: nothing rewritten


@pytest.mark.parametrize("how", ["rows removed", "set inactive"])
def test_offboarding_deletes_exactly_that_customers_objects(
    how, tmp_path, demo_snapshot, gcs_emulator, bucket, fleet_cli
):
    url = f"gs://{bucket}/{PREFIX}"
    for name, data in FOREIGN.items():
        gcs_emulator.put(bucket, name, data)
    fleet_cli("sync", "--store", make_store(tmp_path / "before.db", demo_snapshot), "--target", url)
    before = gcs_emulator.objects(bucket)
    if how == "rows removed":
        after = remove_customer(demo_snapshot, "dallas-isd")
    else:
        after = replace_customer(demo_snapshot, "dallas-isd", active=False)

    code, out, _ = fleet_cli(
        "sync", "--store", make_store(tmp_path / "after.db", after), "--target", url
    )

    assert code == 0, out
    now = gcs_emulator.objects(bucket)
    rewritten = {n for n in before if now.get(n) != before[n] and not n.endswith(MANIFEST)}
    # dallas-isd's module, deleted, and its shard file, rewritten without it
    module = f"{PREFIX}/fleet_parts/dallas-isd.py"
    assert module in rewritten and module not in now and len(rewritten) == 2
    (name,) = rewritten - {module}
    assert b"dallas-isd" not in now[name][1]
    assert b"dallas-isd" in before[name][1]
    assert {n: now[n][1] for n in FOREIGN} == FOREIGN


def test_objects_the_fleet_did_not_write_survive_every_sync(
    tmp_path, demo_snapshot, gcs_emulator, bucket, fleet_cli
):
    url = f"gs://{bucket}/{PREFIX}"
    foreign = {name: gcs_emulator.put(bucket, name, data) for name, data in FOREIGN.items()}
    stores = [
        make_store(tmp_path / "1.db", demo_snapshot),
        make_store(tmp_path / "2.db", remove_customer(demo_snapshot, "dallas-isd")),
        make_store(tmp_path / "3.db", Snapshot((), ())),
    ]
    for store in stores:
        fleet_cli("sync", "--store", store, "--target", url)
    fleet_cli("sync", "--store", stores[2], "--target", url, "--force-prune")

    now = gcs_emulator.objects(bucket)
    assert {name: now[name] for name in FOREIGN} == {
        name: (foreign[name], data) for name, data in FOREIGN.items()
    }
    assert set(fleet_objects(gcs_emulator, bucket)) == {
        ".airflowignore",
        MANIFEST,
        "unrelated/notes.txt",
    }


def test_emptied_store_is_refused_and_nothing_is_deleted(
    tmp_path, demo_store, gcs_emulator, bucket, fleet_cli
):
    url = f"gs://{bucket}/{PREFIX}"
    fleet_cli("sync", "--store", demo_store, "--target", url)
    before = gcs_emulator.objects(bucket)

    code, _, err = fleet_cli(
        "sync", "--store", make_store(tmp_path / "empty.db", Snapshot((), ())), "--target", url
    )

    assert code == 3
    assert "refusing to remove 28 of 28 owned DAGs" in err
    assert gcs_emulator.objects(bucket) == before


# -- parallel uploads -------------------------------------------------------------------


@pytest.fixture
def pool_warnings():
    """urllib3's "Connection pool is full, discarding connection" warnings, collected on
    its own logger (Airflow, imported first, reconfigures the root logger's handlers)."""
    import airflow.settings  # noqa: F401

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "pool is full" in record.getMessage():
                found.append(record.getMessage())

    found: list[str] = []
    logger = logging.getLogger("urllib3.connectionpool")
    handler, level = Collect(logging.WARNING), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    yield found
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_sync_uploads_in_parallel_over_reused_connections(
    tmp_path, bucket, gate, fleet_cli, pool_warnings
):
    """publish's thread pool really uploads 16 files at once through one shared client,
    whose connection pool keeps every connection (none opened per file)."""
    from bench.fleetgen import write_store

    store = write_store(tmp_path / "fleet.db", 300)  # enough customers for every shard file
    gate.hold_uploads(16, match=lambda name: name.endswith(".py"))
    code, out, _ = fleet_cli(
        "sync", "--store", store, "--target", f"gs://{bucket}/{PREFIX}", "--jobs", "16"
    )
    assert code == 0, out
    assert gate.peak_in_flight >= 16
    assert pool_warnings == []
    assert len(gate.connections) <= 16 + 3  # the workers' connections, plus list/read


def test_an_undersized_pool_is_detected(bucket, gate, pool_warnings):
    """Control for the test above: with fewer pooled connections than threads,
    urllib3 discards connections, and the check sees it."""
    target = GcsTarget(f"gs://{bucket}/{PREFIX}", pool_size=2)
    target.list_objects()
    barrier = threading.Barrier(8)

    def write(i: int) -> None:
        barrier.wait()
        target.write(f"c{i}/c{i}__main.py", b"x\n", None)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    assert pool_warnings
