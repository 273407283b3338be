"""The benchmark harness cannot silently rot: its synthetic fleet is a valid store, and
its parse-benchmark peers build exactly the DAGs dagfleet generates (no timings here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from bench import peers
from bench.fleetgen import ONBOARDED_ID, fleet_snapshot, parents, write_store
from bench.measure import Sample, paired
from bench.targetstate import changes, snapshot
from bench.verify import verify
from composer.build import FleetBuilder
from composer.store import open_store

N = 12  # one parent with four children and a grandchild, and plain customers


def test_synthetic_fleet_is_a_valid_store_with_rollups_and_three_integrations(
    tmp_path: Path, templates_dir: Path
) -> None:
    url = write_store(tmp_path / "fleet.db", N, onboard=True)
    rows = open_store(url).read_snapshot()
    builder = FleetBuilder(rows, templates_dir)

    assert builder.errors == []
    assert len(builder.customer_ids()) == N + 1
    assert ONBOARDED_ID in builder.customer_ids()
    templates = {
        c.customer_id: {i.template for i in c.integrations}
        for c in builder.fleet.customers.values()
    }
    assert all(
        t == {"powerschool_grades", "google_classroom", "state_assessments"}
        for t in templates.values()
    )
    assert {c.timezone for c in builder.fleet.customers.values()} >= {
        "America/New_York",
        "America/Chicago",
    }
    assert parents(N) == ["d00000", "d00001"]
    assert builder.fleet.active_descendants("d00000") == [
        "d00001",
        "d00002",
        "d00003",
        "d00004",
        "d00005",
    ]
    dags = [d for b in builder.builds() for d in b.dag_ids]
    assert len(dags) == 3 * (N + 1) + len(parents(N))  # + one roll-up DAG per parent
    (part,) = builder.build("d00000").files
    rollup = part.content.decode()
    assert "DAGS['d00000__rollup']" in rollup
    assert "rollup_grades" in rollup and "AssetOrTimeSchedule(" in rollup


def _peer_folders(tmp_path: Path, templates_dir: Path) -> dict[str, Path]:
    rows = fleet_snapshot(N)
    return peers.write_peers(tmp_path / "peers", peers.fleet_specs(rows, templates_dir))


@pytest.mark.airflow
def test_static_and_loop_peers_build_every_dag_of_the_fleet_as_dagfleet_does(
    tmp_path: Path, templates_dir: Path
) -> None:
    folders = _peer_folders(tmp_path, templates_dir)
    report = verify({name: folders[name] for name in ("ours", "hand", "loop")})

    assert report["ok"], report
    # main + two cron DAGs per customer, and a roll-up per parent: what the shards hold
    assert report["ours"]["dags"] == 3 * N + len(parents(N))
    assert "grades.merge_grades" in _tasks_of(folders["ours"], "d00000__main")
    assert _tasks_of(folders["loop"], "d00000__rollup") == ["ensure_dataset", "rollup_grades"]


@pytest.mark.airflow
def test_verify_reports_a_peer_that_builds_a_different_dag(
    tmp_path: Path, templates_dir: Path
) -> None:
    folders = _peer_folders(tmp_path, templates_dir)
    hand = folders["hand"] / "d00007" / "d00007__main.py"
    hand.write_text(hand.read_text().replace("WRITE_TRUNCATE", "WRITE_APPEND"))

    report = verify({name: folders[name] for name in ("ours", "hand")})

    assert not report["ok"]
    assert report["hand"]["differences"][0].startswith("d00007__main: task grades.load_staging")


@pytest.mark.airflow
@pytest.mark.skipif(
    importlib.util.find_spec("dagfactory") is None,
    reason="dag-factory is in the `bench` group: uv sync --group bench",
)
def test_dagfactory_peer_builds_the_same_dags_as_dagfleet(
    tmp_path: Path, templates_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY", "False")
    folders = _peer_folders(tmp_path, templates_dir)

    report = verify({name: folders[name] for name in ("ours", "dagfactory")})

    assert report["ok"], report


def _tasks_of(folder: Path, dag_id: str) -> list[str]:
    from airflow.dag_processing.dagbag import DagBag

    return sorted(DagBag(dag_folder=str(folder), bundle_path=folder).dags[dag_id].task_dict)


def test_target_snapshot_sees_a_rewritten_file_and_a_new_one(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 1\n")
    before = snapshot(tmp_path)
    (tmp_path / "b.tmp").write_text("y = 1\n")
    (tmp_path / "b.tmp").replace(tmp_path / "b.py")  # same bytes, new inode: a write
    (tmp_path / "c.py").write_text("z = 1\n")

    assert changes(before, snapshot(tmp_path)) == ["b.py", "c.py"]
    assert changes(before, before) == []


def test_ratios_are_paired_within_each_round() -> None:
    samples = [
        Sample("a", 0, 2.0, 0, 0, 0),
        Sample("b", 0, 1.0, 0, 0, 0),
        Sample("a", 1, 9.0, 0, 0, 0),
        Sample("b", 1, 3.0, 0, 0, 0),
        Sample("a", 2, 4.0, 0, 0, 0),  # no partner in round 2: not a ratio
    ]
    ratio = paired(samples, "a", "b")

    assert ratio is not None
    assert (ratio.median, ratio.low, ratio.high, ratio.n) == (2.5, 2.0, 3.0, 2)
