"""A DAG that moved between Composer environments must not run, in its new one, the
tick its old one already ran. Checked with Airflow's own DagBag and timetable."""

from __future__ import annotations

import datetime as dt

import pendulum

from composer.build import FleetBuilder
from composer.store import Snapshot
from tests.conftest import TEMPLATES


def _first_run(dag):
    """What the scheduler runs first for a DAG with no runs yet (catchup=False)."""
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable  # the scheduler's own

    timetable = CronTriggerTimetable(dag.timetable.expression, timezone=str(dag.timetable.timezone))
    restriction = TimeRestriction(earliest=dag.start_date, latest=None, catchup=dag.catchup)
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    return info.run_after


def _dag(tmp_path, builder: FleetBuilder, dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    build = builder.build("austin-isd")
    assert not build.errors
    for rendered in build.files:
        path = tmp_path / rendered.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rendered.content)
    bag = DagBag(dag_folder=str(tmp_path))
    assert not bag.import_errors
    return bag.dags[dag_id]


def test_a_moved_dag_first_runs_after_the_move_not_the_latest_past_tick(
    tmp_path, demo_snapshot: Snapshot
):
    now = pendulum.now("UTC")
    staying = _dag(tmp_path / "a", FleetBuilder(demo_snapshot, TEMPLATES), "austin-isd__main")
    assert _first_run(staying) <= now  # a new DAG runs its latest past tick at once

    moved_at = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=10)
    builder = FleetBuilder(demo_snapshot, TEMPLATES)
    builder.composer.start_after["austin-isd"] = moved_at
    moved = _dag(tmp_path / "b", builder, "austin-isd__main")

    assert moved.start_date == pendulum.instance(moved_at)
    assert _first_run(moved) >= moved_at > now  # the first tick after the move, no repeat
    assert moved.timetable.expression == staying.timetable.expression  # same schedule
