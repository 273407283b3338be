"""Building in worker processes gives exactly what building in-process gives."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from composer import parallel
from composer.build import FleetBuilder
from composer.parallel import BuildRunner, WorkerFailed
from tests.conftest import replace_integration

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def two_workers_for_any_fleet(monkeypatch):
    """The demo fleet is small: let it through the worker path all the same."""
    monkeypatch.setattr(parallel, "MIN_PER_WORKER", 1)
    monkeypatch.setattr(parallel, "MIN_PER_WORKER_VERIFYING", 1)
    monkeypatch.setattr(parallel, "CHUNK", 2)  # several chunks per worker, in order


def _files(builds) -> dict[str, bytes]:
    return {f.path: f.content for b in builds for f in b.files}


def test_workers_build_the_same_bytes_and_errors_as_one_process(
    demo_snapshot, templates_dir, two_workers_for_any_fleet
):
    broken = replace_integration(
        demo_snapshot,
        "houston-isd",
        "grades",
        task_overrides='{"export_grades": {"args": {"no_such_argument": 1}}}',
    )
    serial = FleetBuilder(broken, templates_dir)
    ids = serial.customer_ids()
    with BuildRunner(serial, jobs=1) as runner:
        expected = list(runner.builds(ids))
    builder = FleetBuilder(broken, templates_dir)
    with BuildRunner(builder, jobs=2) as runner:
        got = list(runner.builds(ids))
        assert len(runner._workers) == 2  # it really ran in workers
    assert [b.customer_id for b in got] == ids  # in the order asked
    assert _files(got) == _files(expected) and _files(got)
    assert [e for b in got for e in b.errors] == [e for b in expected for e in b.errors]
    assert "houston-isd" in builder.invalid and "houston-isd" in serial.invalid


def test_a_sync_with_build_workers_publishes_the_same_files(
    demo_store, tmp_path, fleet_cli, two_workers_for_any_fleet
):
    results = {}
    for jobs in ("1", "2"):
        target = tmp_path / f"jobs{jobs}"
        code, _out, err = fleet_cli(
            "sync", "--store", demo_store, "--target", f"file://{target}", "--build-jobs", jobs
        )
        assert code == 0, err
        results[jobs] = {
            p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()
        }
    assert results["1"] == results["2"]
    manifest = json.loads(results["1"][Path(".dagfleet-manifest.json")])
    assert sum(len(e["dags"]) for e in manifest["customers"].values()) > 20


def test_a_dead_worker_stops_the_build_with_an_error_instead_of_hanging(
    demo_snapshot, templates_dir, two_workers_for_any_fleet
):
    builder = FleetBuilder(demo_snapshot, templates_dir)
    with BuildRunner(builder, jobs=2) as runner:
        builds = runner.builds(builder.customer_ids())
        next(builds)  # workers started and answering
        for worker in runner._workers:
            worker.process.kill()
            worker.process.wait()
        with pytest.raises(WorkerFailed, match="build worker exited"):
            list(builds)


def test_a_script_without_a_main_guard_builds_once(tmp_path, demo_snapshot):
    """Workers are fresh interpreters running composer.build_worker: unlike
    multiprocessing's spawn, they never re-run the caller's __main__."""
    builder = FleetBuilder(demo_snapshot, REPO / "templates")
    expected = sum(len(builder.build(cid).files) for cid in builder.customer_ids())
    script = tmp_path / "caller.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from composer import parallel
            from composer.build import FleetBuilder
            from composer.store.demo import snapshot_from_yaml
            parallel.MIN_PER_WORKER = 1
            print("caller ran", flush=True)
            demo = Path({str(REPO / "examples/demo_fleet.yaml")!r})
            builder = FleetBuilder(snapshot_from_yaml(demo), Path({str(REPO / "templates")!r}))
            with parallel.BuildRunner(builder, jobs=2) as runner:
                builds = list(runner.builds(builder.customer_ids()))
                print("workers", len(runner._workers), "files", sum(len(b.files) for b in builds))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("caller ran") == 1
    assert f"workers 2 files {expected}\n" in done.stdout


def test_small_batches_are_built_in_process(demo_snapshot, templates_dir):
    builder = FleetBuilder(demo_snapshot, templates_dir)
    with BuildRunner(builder, jobs=8) as runner:
        builds = list(runner.builds(builder.customer_ids()))
        assert runner._workers == []  # 15 customers: not worth a worker
    assert all(dataclasses.is_dataclass(b) for b in builds) and _files(builds)
