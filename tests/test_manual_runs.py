"""Generated DAGs render in a run without a logical date, as Airflow 3 makes for a run
triggered by hand (and for an asset-triggered roll-up).

Real runs: `dag.test(logical_date=None)` in a subprocess with its own Airflow home and
SQLite metadata DB. Airflow renders each task's templated fields before it executes the
task and stores them (rendered_task_instance_fields) even when execution then fails, as it
does here: the Google connection points at a key file that does not exist, so nothing
reaches Google Cloud. Every task is made to run (trigger_rule all_done, no retries), so
every task of the DAG renders.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.airflow2_env import REPO
from tests.conftest import make_store

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

RUN_AFTER = "2026-03-04T09:17:00+00:00"
DAY = "2026-03-04"
DAG_IDS = (
    "austin-isd__main",  # powerschool_grades with setup tasks
    "houston-isd__main",  # a task added by override, {run_ds_nodash}
    "austin-isd__classroom",  # google_classroom, {run_ts_nodash}
    "austin-isd__staar",  # state_assessments
    "cascade-esd__rollup",  # the roll-up (asset-triggered runs have no logical date)
    "control__old_style",  # {{ ds }}: must fail to render, or this test could not fail
)
RUNNER = textwrap.dedent(
    """
    import datetime as dt, sys
    from airflow.dag_processing.dagbag import DagBag

    folder, run_after, *dag_ids = sys.argv[1:]
    bag = DagBag(dag_folder=folder)
    assert not bag.import_errors, bag.import_errors
    for dag_id in dag_ids:
        dag = bag.dags[dag_id]
        for task in dag.tasks:
            task.retries = 0
            task.trigger_rule = "all_done"
        dag.test(logical_date=None, run_after=dt.datetime.fromisoformat(run_after))
    """
)
CONTROL_DAG = textwrap.dedent(
    """
    import pendulum
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG

    with DAG(dag_id="control__old_style", start_date=pendulum.datetime(2024, 1, 1), schedule=None):
        BashOperator(task_id="echo_ds", bash_command="echo {{ ds }}")
    """
)


@pytest.fixture(scope="module")
def manual_runs(tmp_path_factory, demo_snapshot) -> dict[str, dict[str, dict | None]]:
    """dag_id -> task_id -> rendered fields (None: the task never rendered)."""
    from composer.pipeline import apply_fleet, plan_fleet

    root = tmp_path_factory.mktemp("manual-runs")
    store = make_store(root / "fleet.db", demo_snapshot)
    fleet_plan = plan_fleet(store, f"file://{root}/dags", REPO / "templates")
    assert fleet_plan.errors == []
    apply_fleet(fleet_plan)
    (root / "dags" / "control.py").write_text(CONTROL_DAG)
    (root / "run.py").write_text(RUNNER)
    home = root / "home"
    home.mkdir()
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(root),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PYTHONPATH": str(REPO),
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(
            {
                "conn_type": "google_cloud_platform",
                "extra": {"key_path": str(root / "no-such-key.json")},
            }
        ),
        "GCE_METADATA_HOST": "127.0.0.1:9",  # never a metadata server, even by accident
    }
    airflow = Path(sys.executable).parent / "airflow"
    migrate = subprocess.run(
        [str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=600
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    done = subprocess.run(
        [sys.executable, str(root / "run.py"), str(root / "dags"), RUN_AFTER, *DAG_IDS],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with sqlite3.connect(home / "airflow.db") as db:
        runs = db.execute("SELECT dag_id, run_id, logical_date FROM dag_run").fetchall()
        tis = db.execute("SELECT dag_id, task_id FROM task_instance").fetchall()
        rendered = dict(
            ((dag_id, task_id), json.loads(fields))
            for dag_id, task_id, fields in db.execute(
                "SELECT dag_id, task_id, rendered_fields FROM rendered_task_instance_fields"
            )
        )
    assert sorted(r[0] for r in runs) == sorted(DAG_IDS)
    assert all(logical_date is None for _, _, logical_date in runs)
    out: dict[str, dict[str, dict | None]] = {}
    for dag_id, task_id in tis:
        out.setdefault(dag_id, {})[task_id] = rendered.get((dag_id, task_id))
    return out


def test_every_task_of_the_shipped_templates_renders_in_a_run_without_a_logical_date(
    manual_runs,
):
    for dag_id in DAG_IDS[:-1]:
        tasks = manual_runs[dag_id]
        assert tasks, dag_id
        for task_id, fields in tasks.items():
            assert fields is not None, f"{dag_id}.{task_id} did not render"
            text = json.dumps(fields)
            assert "{{" not in text and "{%" not in text, (dag_id, task_id)


def test_the_run_date_is_the_day_the_run_was_due(manual_runs):
    main = manual_runs["austin-isd__main"]
    assert f"DATE '{DAY}' AS day" in main["grades.merge_grades"]["configuration"]["query"]["query"]
    assert main["grades.load_staging"]["configuration"]["load"]["sourceUris"] == [
        f"gs://edu-data-platform-landing/powerschool/austin-isd/{DAY}/grades.jsonl"
    ]
    snapshot = manual_runs["houston-isd__main"]["grades.snapshot_gradebook"]
    assert f"gradebook_{DAY.replace('-', '')}`" in snapshot["configuration"]["query"]["query"]
    sensor = manual_runs["austin-isd__classroom"]["wait_for_export"]
    assert sensor["object"] == "classroom/austin-isd/20260304T091700/coursework.jsonl"
    rollup = manual_runs["cascade-esd__rollup"]["rollup_grades"]
    assert (
        f"DECLARE run_day DATE DEFAULT DATE '{DAY}';" in rollup["configuration"]["query"]["query"]
    )


def test_the_old_style_ds_does_not_render_without_a_logical_date(manual_runs):
    """The control: the harness sees a template that fails to render."""
    assert manual_runs["control__old_style"] == {"echo_ds": None}
