"""One fleet over several Composer environments, one bucket each, on the GCS emulator,
through the real `fleet` command: where every customer's DAGs land, how moves are
applied, and what a capacity refusal leaves alone."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from bench.fleetgen import customer_rows, fleet_snapshot
from composer.build import FleetBuilder
from composer.plan.changes import MANIFEST
from composer.plan.fleetenvs import dag_count
from composer.render import layout
from composer.store import Snapshot, open_store
from tests.conftest import TEMPLATES, fresh_bucket_name, replace_customer
from tests.gcs_emulator import GcsEmulator

N = 60  # customers: two org trees of six, 48 single districts


@pytest.fixture
def buckets(gcs_emulator: GcsEmulator, monkeypatch) -> list[str]:
    names = [fresh_bucket_name(f"env-bucket-{i}") for i in range(5)]
    for name in names:
        gcs_emulator.create_bucket(name)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    return names


def templates_with(tmp_path: Path, environments: dict[str, tuple[str, int]]) -> Path:
    """The shipped templates with an `environments:` block (NAME: bucket, capacity)."""
    folder = tmp_path / f"templates-{len(list(tmp_path.glob('templates-*')))}"
    shutil.copytree(TEMPLATES, folder)
    lines = ["", "environments:"]
    for name, (bucket, capacity) in environments.items():
        lines.append(f"  {name}: {{target: gs://{bucket}/dags/fleet, capacity: {capacity}}}")
    with (folder / "fleet.yaml").open("a") as fh:
        fh.write("\n".join(lines) + "\n")
    return folder


def store_of(path: Path, snapshot: Snapshot) -> str:
    url = f"sqlite:///{path}"
    if path.exists():
        path.unlink()
    store = open_store(url, create=True)
    store.init_schema()
    store.insert(snapshot)
    return url


def placement(gcs: GcsEmulator, buckets: dict[str, str]) -> dict[str, set[str]]:
    """customer_id -> environments holding any of its DAGs (its part of a shard file)."""
    found: dict[str, set[str]] = defaultdict(set)
    for env, bucket in buckets.items():
        for customer_id in parts_in(gcs, bucket):
            found[customer_id].add(env)
    return found


def parts_in(gcs: GcsEmulator, bucket: str) -> dict[str, str]:
    """customer_id -> its part, over the bucket's shard files."""
    parts: dict[str, str] = {}
    for name, (_, data) in gcs.objects(bucket, "dags/fleet/").items():
        if name.endswith(".py"):
            parts.update(layout.split(data))
    return parts


def four(buckets: list[str], capacity: int = 3000) -> dict[str, tuple[str, int]]:
    return {f"env-{i}": (buckets[i], capacity) for i in range(4)}


@pytest.fixture
def synced(tmp_path, buckets, gcs_emulator, fleet_cli):
    """A 60-customer fleet synced over four environments."""
    templates = templates_with(tmp_path, four(buckets))
    store = store_of(tmp_path / "fleet.db", fleet_snapshot(N))
    code, _out, err = fleet_cli("sync", "--store", store, "--templates", str(templates))
    assert code == 0, err
    before = placement(gcs_emulator, {f"env-{i}": buckets[i] for i in range(4)})
    return templates, store, before


def test_every_active_customer_is_in_exactly_one_bucket_with_its_org_tree(
    synced, gcs_emulator, buckets
):
    _, _, where = synced
    assert len(where) == N and all(len(envs) == 1 for envs in where.values())
    assert len({e for envs in where.values() for e in envs}) == 4  # all used
    for child in ("d00001", "d00002", "d00003", "d00004", "d00005"):  # d00005: grandchild
        assert where[child] == where["d00000"]


def test_onboarding_one_customer_writes_to_one_environment_and_moves_nobody(
    synced, tmp_path, buckets, gcs_emulator, fleet_cli
):
    templates, _, before = synced
    snapshot = fleet_snapshot(N)
    rows = customer_rows(N, "tulsa-ps")
    grown = Snapshot(snapshot.customers + rows.customers, snapshot.integrations + rows.integrations)
    store = store_of(tmp_path / "grown.db", grown)
    code, out, err = fleet_cli("sync", "--store", store, "--templates", str(templates))
    assert code == 0, err
    written = [line for line in out.splitlines() if line.startswith("Synced env-")]
    assert sum(" 0 written" not in line for line in written) == 1, out
    after = placement(gcs_emulator, {f"env-{i}": buckets[i] for i in range(4)})
    assert {c: e for c, e in after.items() if c != "tulsa-ps"} == before
    assert not [line for line in out.splitlines() if line.startswith("moved ")]


def test_adding_an_environment_moves_about_a_fifth_only_to_it_and_shows_moves(
    synced, tmp_path, buckets, gcs_emulator, fleet_cli
):
    _, store, before = synced
    five = templates_with(tmp_path, {**four(buckets), "env-4": (buckets[4], 3000)})
    code, out, err = fleet_cli("plan", "--store", store, "--templates", str(five))
    assert code == 0, err
    moves = [line for line in out.splitlines() if line.startswith("customer ") and "->" in line]
    code, out, err = fleet_cli("sync", "--store", store, "--templates", str(five))
    assert code == 0, err
    after = placement(gcs_emulator, {f"env-{i}": buckets[i] for i in range(5)})
    assert all(len(envs) == 1 for envs in after.values()) and len(after) == N
    moved = {c for c in before if before[c] != after[c]}
    assert moved and all(after[c] == {"env-4"} for c in moved)  # none between old ones
    assert 0.5 * N / 5 <= len(moved) <= 1.6 * N / 5
    assert len(moves) == len(moved)  # every move shown as a move in the plan
    assert all(line.endswith("-> env-4") for line in moves)
    # No tick runs twice: a moved DAG starts after its old environment let it go (plus the
    # margin its DAG processor may take); the others keep the fleet's start date.
    tomb = json.loads(gcs_emulator.objects(buckets[0], "dags/fleet/")["dags/fleet/" + MANIFEST][1])
    starts = {
        customer_id: re.findall(r"start_date=(pendulum\.datetime\([^)]*\))", part)
        for customer_id, part in parts_in(gcs_emulator, buckets[4]).items()
    }
    for customer_id, entry in tomb.get("moved_out", {}).items():
        at = dt.datetime.fromisoformat(entry["at"])
        assert entry["to"] == "env-4"
        expected = (
            f"pendulum.datetime({at.year}, {at.month}, {at.day}, {at.hour}, {at.minute}, tz='UTC')"
        )
        assert starts[customer_id] and set(starts[customer_id]) == {expected}
    assert set(tomb.get("moved_out", {})) <= {m for m in moved}
    assert all("tz='UTC'" in start for found in starts.values() for start in found)
    untouched = parts_in(gcs_emulator, buckets[2])
    assert untouched and all("tz='UTC'" not in part for part in untouched.values())


def test_removing_an_environment_moves_only_its_own_customers(
    synced, tmp_path, buckets, gcs_emulator, fleet_cli
):
    _, store, before = synced
    three = templates_with(tmp_path, {k: v for k, v in four(buckets).items() if k != "env-1"})
    # The removed environment's files are not the fleet's business any more: its own
    # bucket goes with it (Terraform). Its customers land on the others.
    code, _out, err = fleet_cli("sync", "--store", store, "--templates", str(three))
    assert code == 0, err
    after = placement(gcs_emulator, {f"env-{i}": buckets[i] for i in (0, 2, 3)})
    moved = {c for c in before if before[c] != after[c]}
    assert moved == {c for c, envs in before.items() if envs == {"env-1"}}


def test_a_pin_wins_and_brings_its_tree(synced, tmp_path, buckets, gcs_emulator, fleet_cli):
    templates, _, before = synced
    target = next(e for e in ("env-0", "env-1", "env-2", "env-3") if before["d00000"] != {e})
    pinned = replace_customer(fleet_snapshot(N), "d00003", environment=target)
    store = store_of(tmp_path / "pinned.db", pinned)
    code, _out, err = fleet_cli("sync", "--store", store, "--templates", str(templates))
    assert code == 0, err
    after = placement(gcs_emulator, {f"env-{i}": buckets[i] for i in range(4)})
    for member in ("d00000", "d00001", "d00002", "d00003", "d00004", "d00005"):
        assert after[member] == {target}
    assert {c: e for c, e in after.items() if not c.startswith("d0000")} == {
        c: e for c, e in before.items() if not c.startswith("d0000")
    }


def test_a_sync_over_capacity_is_refused_for_that_environment_only(
    tmp_path, buckets, gcs_emulator, fleet_cli
):
    envs = {**four(buckets), "env-0": (buckets[0], 5)}  # weights follow capacity: pin it full
    templates = templates_with(tmp_path, envs)
    store = store_of(
        tmp_path / "fleet.db", replace_customer(fleet_snapshot(N), "d00000", environment="env-0")
    )
    gcs_emulator.put(buckets[0], "dags/fleet/hand-made.py", b"# not ours\n")
    before = gcs_emulator.objects(buckets[0])
    code, _out, err = fleet_cli("sync", "--store", store, "--templates", str(templates))
    assert code == 3
    assert "environment env-0:" in err and "exceed its capacity of 5" in err
    assert gcs_emulator.objects(buckets[0]) == before  # nothing written there
    for i in (1, 2, 3):
        assert MANIFEST.join(["dags/fleet/", ""]) in gcs_emulator.objects(buckets[i])


def test_environment_option_syncs_one_share_and_rejects_unknown_names(
    tmp_path, buckets, gcs_emulator, fleet_cli
):
    templates = templates_with(tmp_path, four(buckets))
    store = store_of(tmp_path / "fleet.db", fleet_snapshot(N))
    code, _out, err = fleet_cli(
        "sync", "--store", store, "--templates", str(templates), "--environment", "env-2"
    )
    assert code == 0, err
    where = placement(gcs_emulator, {f"env-{i}": buckets[i] for i in range(4)})
    assert where and all(envs == {"env-2"} for envs in where.values())
    code, _, err = fleet_cli(
        "plan", "--store", store, "--templates", str(templates), "--environment", "nope"
    )
    assert code == 2 and "environment 'nope' is not in fleet.yaml" in err


def test_a_moving_customer_is_written_only_after_its_old_environment_removed_it(
    synced, tmp_path, buckets, gcs_emulator, fleet_cli
):
    _, store, before = synced
    five = templates_with(tmp_path, {**four(buckets), "env-4": (buckets[4], 3000)})
    envs = {f"env-{i}": buckets[i] for i in range(5)}

    def one(name: str) -> tuple[int, str]:
        code, out, err = fleet_cli(
            "sync", "--store", store, "--templates", str(five), "--environment", name
        )
        assert code == 0, err
        return code, out

    one("env-4")  # everything assigned to it is still owned by an old environment
    assert placement(gcs_emulator, envs) == before
    _, out = one("env-0")  # lets go of its movers (outside the prune limit)
    from_env0 = {line.split()[2].rstrip(":") for line in out.splitlines() if "-> env-4" in line}
    after_env0 = placement(gcs_emulator, envs)
    assert from_env0 and all(c not in after_env0 for c in from_env0)
    one("env-4")  # now writes env-0's movers, still holds the others'
    now = placement(gcs_emulator, envs)
    assert {c for c, e in now.items() if e == {"env-4"}} == from_env0
    assert all(len(e) == 1 for e in now.values())


def test_draining_an_environment_moves_its_customers_out_in_one_sync_two_passes(
    synced, tmp_path, buckets, gcs_emulator, fleet_cli
):
    _, store, before = synced
    draining = templates_with(tmp_path, {**four(buckets), "env-1": (buckets[1], 0)})
    code, out, err = fleet_cli("sync", "--store", store, "--templates", str(draining))
    assert code == 0, err
    assert "2 pass(es)" in out  # removed from env-1 first, written elsewhere after
    after = placement(gcs_emulator, {f"env-{i}": buckets[i] for i in range(4)})
    assert len(after) == N and all(len(e) == 1 and e != {"env-1"} for e in after.values())
    assert {c for c in before if before[c] != after[c]} == {
        c for c, e in before.items() if e == {"env-1"}
    }


def test_the_report_shows_every_environment_against_its_capacity_or_one(
    tmp_path, buckets, gcs_emulator, fleet_cli
):
    templates = templates_with(tmp_path, four(buckets))
    store = store_of(tmp_path / "fleet.db", fleet_snapshot(N))
    common = ("--store", store, "--templates", str(templates))
    out = tmp_path / "report.html"
    code, _, err = fleet_cli("report", *common, "--out", str(out))
    assert code == 0, err
    page = out.read_text()
    dags = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) of 3,000 DAGs", page)]
    builder = FleetBuilder(open_store(store).read_snapshot(), templates)
    total = sum(dag_count(builder, c) for c in builder.customer_ids())
    assert len(dags) == 4 and all(dags) and sum(dags) == total
    code, _, err = fleet_cli("report", *common, "--environment", "env-2", "--out", str(out))
    assert code == 0, err
    assert len(re.findall(r"of 3,000 DAGs", out.read_text())) == 1
