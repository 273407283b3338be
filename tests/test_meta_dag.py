"""The meta-DAG (SPEC section 7): it parses without touching the store or the target,
and a real `airflow dags test` run publishes the fleet, fails on an invalid customer
and still publishes the valid ones.

The runs use real Airflow 3 in a subprocess (its own AIRFLOW_HOME, SQLite metadata
DB) over a DAG folder made by `composer.publish.deploy`, the layout Composer gets; the
deployed copy of the `composer` package is the one the tasks import.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from composer.errors import StoreError
from composer.pipeline import apply_fleet, plan_fleet
from composer.plan.changes import MANIFEST
from composer.publish.deploy import deploy
from composer.store import Snapshot
from tests.conftest import REPO, TEMPLATES, make_store, remove_customer, replace_customer

META_DAG = REPO / "dags" / "fleet_meta.py"
AIRFLOW = Path(sys.executable).parent / "airflow"
INVALID_LINE = "invalid: customer dallas-isd, field timezone: unknown IANA timezone 'Mars/Olympus'"


def dagbag(folder: Path):
    try:  # Airflow 3
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2.11
        from airflow.models.dagbag import DagBag
    return DagBag(dag_folder=str(folder), safe_mode=False)


@pytest.fixture
def dags_folder(tmp_path) -> Path:
    folder = tmp_path / "dags"
    folder.mkdir()
    shutil.copy(META_DAG, folder / "fleet_meta.py")
    return folder


# -- parsing -----------------------------------------------------------------------------


@pytest.mark.airflow
def test_parses_without_touching_store_or_target(dags_folder, tmp_path, monkeypatch):
    """Every way to the store or target is booby-trapped; parsing must use none."""
    import composer.pipeline
    import composer.store
    import composer.targets

    monkeypatch.setenv("FLEET_STORE", f"sqlite:///{tmp_path}/missing/fleet.db")
    monkeypatch.setenv("FLEET_TARGET", "gs://no-such-bucket/dags/fleet")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # nothing listens
    touched: list[str] = []

    def trap(name: str):
        def call(*args, **kwargs):
            touched.append(name)
            raise AssertionError(f"{name} called while parsing")

        return call

    monkeypatch.setattr(composer.store, "open_store", trap("open_store"))
    monkeypatch.setattr(composer.targets, "open_target", trap("open_target"))
    monkeypatch.setattr(composer.pipeline, "plan_fleet", trap("plan_fleet"))

    bag = dagbag(dags_folder)

    assert bag.import_errors == {}
    assert list(bag.dag_ids) == ["fleet_meta"]
    assert touched == []
    assert not (tmp_path / "missing").exists()


@pytest.mark.airflow
def test_parsing_imports_nothing_from_the_composer_package(dags_folder):
    """The package is imported inside the tasks only (a fresh interpreter proves it)."""
    probe = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'composer'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(dags_folder / "fleet_meta.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(dags_folder.parent / "home")},
        cwd=dags_folder,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.airflow
def test_runs_nightly_one_at_a_time_and_alerts_on_failure(dags_folder):
    dag = dagbag(dags_folder).dags["fleet_meta"]
    assert (dag.timetable.expression, str(dag.timetable.timezone)) == ("0 1 * * *", "UTC")
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert {t: sorted(task.upstream_task_ids) for t, task in dag.task_dict.items()} == {
        "sync": [],
        "check": ["sync"],
    }
    assert dag.is_paused_upon_creation is False  # runs from its first night, no human step
    assert dag.task_dict["check"].retries == 0  # an invalid customer is not transient
    assert dag.default_args["on_failure_callback"].__name__ == "on_failure"
    assert all(task.on_failure_callback for task in dag.tasks)


# -- the tasks' code, called directly ---------------------------------------------------------


def publish(store: str, target: Path) -> None:
    apply_fleet(plan_fleet(store, f"file://{target}", TEMPLATES))


@pytest.mark.airflow
def test_apply_refuses_a_prune_and_deletes_nothing_until_forced(
    dags_folder, tmp_path, demo_store, monkeypatch
):
    from airflow.sdk.exceptions import AirflowFailException

    target = tmp_path / "fleet"
    publish(demo_store, target)
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    monkeypatch.setenv("FLEET_STORE", make_store(tmp_path / "empty.db", Snapshot((), ())))
    monkeypatch.setenv("FLEET_TARGET", f"file://{target}")
    monkeypatch.setenv("FLEET_TEMPLATES", str(TEMPLATES))
    tasks = dagbag(dags_folder).dags["fleet_meta"].task_dict

    with pytest.raises(AirflowFailException, match=r"refusing to remove 28 of 28 .*force_prune"):
        tasks["sync"].python_callable(params={"force_prune": False})
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before

    tasks["sync"].python_callable(params={"force_prune": True})
    assert not list(target.rglob("*.py"))


@pytest.mark.airflow
def test_a_run_builds_each_customer_once(dags_folder, tmp_path, demo_store, monkeypatch):
    """Plan and apply share one plan: the fleet is built once per run, not once per task."""
    from airflow.sdk.exceptions import AirflowFailException

    from composer.build import FleetBuilder

    built: list[str] = []
    real_build = FleetBuilder.build

    def counting(self, customer_id):
        built.append(customer_id)
        return real_build(self, customer_id)

    monkeypatch.setattr(FleetBuilder, "build", counting)
    broken = replace_customer(demo_snapshot_of(demo_store), "dallas-isd", timezone="Mars/Olympus")
    monkeypatch.setenv("FLEET_STORE", make_store(tmp_path / "broken.db", broken))
    monkeypatch.setenv("FLEET_TARGET", f"file://{tmp_path / 'fleet'}")
    monkeypatch.setenv("FLEET_TEMPLATES", str(TEMPLATES))
    tasks = dagbag(dags_folder).dags["fleet_meta"].task_dict

    synced = tasks["sync"].python_callable(params={})
    with pytest.raises(AirflowFailException, match="1 invalid customers: dallas-isd"):
        tasks["check"].python_callable(synced)
    assert sorted(built) == sorted(set(built)) and len(built) == 14  # 15 districts, 1 invalid
    manifest = json.loads((tmp_path / "fleet" / MANIFEST).read_text())
    assert sum(len(e["dags"]) for e in manifest["customers"].values()) == 26  # 28 - dallas' 2


def demo_snapshot_of(store_url: str) -> Snapshot:
    from composer.store import open_store

    return open_store(store_url).read_snapshot()


@pytest.mark.airflow
def test_plan_fails_with_one_line_when_the_store_is_down(dags_folder, tmp_path, monkeypatch):
    target = tmp_path / "fleet"
    monkeypatch.setenv("FLEET_STORE", f"sqlite:///{tmp_path}/missing/fleet.db")
    monkeypatch.setenv("FLEET_TARGET", f"file://{target}")
    tasks = dagbag(dags_folder).dags["fleet_meta"].task_dict

    with pytest.raises(StoreError, match="no such SQLite file") as failure:
        tasks["sync"].python_callable()
    assert "\n" not in str(failure.value)
    assert not target.exists()


@pytest.mark.airflow
def test_tasks_say_which_variable_is_missing(dags_folder, monkeypatch):
    monkeypatch.delenv("FLEET_STORE", raising=False)
    monkeypatch.delenv("FLEET_TARGET", raising=False)
    tasks = dagbag(dags_folder).dags["fleet_meta"].task_dict
    with pytest.raises(RuntimeError, match="FLEET_STORE and FLEET_TARGET not set"):
        tasks["sync"].python_callable()


# -- real runs: `airflow dags test` ---------------------------------------------------------


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    """A migrated Airflow home whose DAG folder is what `fleet deploy` makes."""
    root = tmp_path_factory.mktemp("meta-dag")
    dags = root / "dags"
    deploy(f"file://{dags}")
    env = {
        "PATH": f"{AIRFLOW.parent}:/usr/bin:/bin",
        "HOME": str(root),
        "AIRFLOW_HOME": str(root / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'home' / 'airflow.db'}",
        "PYTHONPATH": str(dags),  # the deployed package wins over this checkout's
    }
    migrate = subprocess.run(
        [str(AIRFLOW), "db", "migrate"], env=env, capture_output=True, text=True, timeout=600
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    return env


def dags_test(env: dict[str, str], **fleet_env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(AIRFLOW), "dags", "test", "fleet_meta"],
        env={**env, **fleet_env},
        capture_output=True,
        text=True,
        timeout=900,
    )


def task_states(env: dict[str, str]) -> dict[str, str]:
    """The states of the latest fleet_meta run's tasks, from the metadata DB."""
    db = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT task_id, state FROM task_instance WHERE run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = 'fleet_meta' ORDER BY id DESC LIMIT 1)"
        ).fetchall()
    return dict(rows)


@pytest.mark.slow
def test_dags_test_publishes_the_demo_fleet_to_gcs(airflow_env, gcs_emulator, demo_store, tmp_path):
    gcs_emulator.create_bucket("composer-env-bucket")
    run = dags_test(
        airflow_env,
        FLEET_STORE=demo_store,
        FLEET_TARGET="gs://composer-env-bucket/dags/fleet",
        STORAGE_EMULATOR_HOST=gcs_emulator.url,
    )
    log = run.stdout + run.stderr

    assert run.returncode == 0, log[-5000:]
    assert task_states(airflow_env) == {"sync": "success", "check": "success"}
    published = gcs_emulator.objects("composer-env-bucket", "dags/fleet/")
    expected = plan_fleet(demo_store, f"file://{tmp_path / 'empty'}", TEMPLATES).plan.added
    assert sorted(n.removeprefix("dags/fleet/") for n in published if n.endswith(".py")) == sorted(
        expected
    )
    # the fleet report, beside the manifest, and listed in .airflowignore
    assert published["dags/fleet/fleet-report.html"][1].startswith(b"<!DOCTYPE html>")
    assert b"fleet-report.html" in published["dags/fleet/.airflowignore"][1].splitlines()
    assert "report written: fleet-report.html" in log
    # the plan is readable in the task log, and the tasks ran the deployed package
    assert all(f"+ {path}" in log for path in expected)
    assert f"Plan: {len(expected)} to add, 0 to change, 0 to remove, 0 unchanged; 0 invalid" in log
    dags = airflow_env["AIRFLOW__CORE__DAGS_FOLDER"]
    assert f"templates {dags}/fleet_templates, composer package {dags}/composer" in log


@pytest.mark.slow
def test_dags_test_fails_on_an_invalid_customer_after_publishing_the_others(
    airflow_env, tmp_path, demo_snapshot
):
    invalid = replace_customer(demo_snapshot, "dallas-isd", timezone="Mars/Olympus")
    target = tmp_path / "fleet"

    run = dags_test(
        airflow_env,
        FLEET_STORE=make_store(tmp_path / "fleet.db", invalid),
        FLEET_TARGET=f"file://{target}",
    )
    log = run.stdout + run.stderr

    assert run.returncode != 0
    assert task_states(airflow_env) == {"sync": "success", "check": "failed"}
    assert INVALID_LINE in log  # named in the task log: customer, field, reason
    assert "1 invalid customers: dallas-isd" in log
    valid_only = make_store(tmp_path / "valid.db", remove_customer(demo_snapshot, "dallas-isd"))
    expected = plan_fleet(valid_only, f"file://{tmp_path / 'empty'}", TEMPLATES).plan
    assert len(expected.removed_dags) == 0 and len(expected.manifest.customers) == 14
    expected = expected.added
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.py")) == sorted(
        expected
    )
    report = (target / "fleet-report.html").read_text()
    assert "customer dallas-isd, field timezone: unknown IANA timezone" in report


@pytest.mark.slow
def test_dags_test_builds_a_large_fleet_in_build_workers(airflow_env, tmp_path):
    """Inside Airflow's task process the build workers start (no fallback to one
    process) and publish what an in-process build plans."""
    from bench.fleetgen import parents, write_store

    store = write_store(tmp_path / "fleet.db", 2 * 160)  # enough for two workers
    target = tmp_path / "fleet"

    run = dags_test(
        airflow_env, FLEET_STORE=store, FLEET_TARGET=f"file://{target}", FLEET_BUILD_JOBS="2"
    )
    log = run.stdout + run.stderr

    assert run.returncode == 0, log[-5000:]
    assert "building 320 customers in 2 worker processes" in log
    assert "building in one process" not in log
    expected = plan_fleet(store, f"file://{tmp_path / 'empty'}", TEMPLATES, build_jobs=1)
    dags = sum(len(e.dags) for e in expected.plan.manifest.customers.values())
    assert dags == 3 * 320 + len(parents(320))  # + a roll-up per parent
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.py")) == sorted(
        expected.plan.added
    )


@pytest.mark.slow
def test_dags_test_with_fleet_environment_publishes_only_that_share(
    airflow_env, tmp_path, demo_store
):
    from composer.build import FleetBuilder
    from composer.plan.fleetenvs import assignment_of
    from composer.store import open_store

    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    targets = {name: tmp_path / name for name in ("east", "west")}
    with (templates / "fleet.yaml").open("a") as fh:
        fh.write("\nenvironments:\n")
        for name, folder in targets.items():
            fh.write(f"  {name}: {{target: 'file://{folder}', capacity: 1000}}\n")
    builder = FleetBuilder(open_store(demo_store).read_snapshot(), templates)
    west = assignment_of(builder).members("west") & set(builder.customer_ids())

    run = dags_test(
        airflow_env,
        FLEET_STORE=demo_store,
        FLEET_TARGET=f"file://{targets['west']}",
        FLEET_TEMPLATES=str(templates),
        FLEET_ENVIRONMENT="west",
    )

    assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]
    published = set(json.loads((targets["west"] / MANIFEST).read_text())["customers"])
    assert published == west and 0 < len(west) < len(builder.customer_ids())
    assert not targets["east"].exists()
