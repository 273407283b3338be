"""The demo fleet, imported by Airflow's own DagBag: the DAGs have the structure the
store and templates describe (tasks, edges, groups, tags, schedule, timezone)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pendulum
import pytest

from composer.store import Snapshot
from tests.conftest import make_store, published

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def demo_fleet_dir(tmp_path_factory, demo_snapshot: Snapshot) -> Path:
    from composer.pipeline import apply_fleet, plan_fleet

    root = tmp_path_factory.mktemp("demo")
    store = make_store(root / "fleet.db", demo_snapshot)
    fleet_plan = plan_fleet(store, f"file://{root}/dags", Path("templates").resolve())
    assert fleet_plan.errors == []
    apply_fleet(fleet_plan)
    return root / "dags"


@pytest.fixture(scope="module")
def dagbag(demo_fleet_dir: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(demo_fleet_dir))


def test_every_demo_file_imports_and_each_customers_dags_come_from_its_one_file(
    dagbag, demo_fleet_dir: Path
):
    assert dagbag.import_errors == {}
    assert len(dagbag.dags) == 28
    customers = published(demo_fleet_dir)["customers"]
    for entry in customers.values():
        for dag_id in entry["dags"]:
            if "/" not in dag_id:  # a legacy file (counted as one DAG) is a file of its own
                assert Path(dagbag.dags[dag_id].fileloc) == demo_fleet_dir / entry["file"]
    files = {Path(d.fileloc) for d in dagbag.dags.values()}
    modules = set((demo_fleet_dir / "fleet_parts").glob("*.py"))
    assert files == set(demo_fleet_dir.rglob("*.py")) - modules
    assert {p.stem for p in modules} == {c for c, e in customers.items() if e["file"]}
    assert len(files) < len(dagbag.dags)  # several customers share a file


def test_every_dag_has_the_fleet_wide_settings(dagbag):
    for dag_id, dag in dagbag.dags.items():
        customer_id, _, variant = dag_id.partition("__")
        assert dag.catchup is False, dag_id
        assert dag.max_active_runs == 1, dag_id
        assert f"customer:{customer_id}" in dag.tags, dag_id
        expected_variant = {"main": "main", "legacy": "legacy", "rollup": "rollup"}.get(
            variant, "cron"
        )
        assert f"variant:{expected_variant}" in dag.tags, dag_id
        if expected_variant != "legacy":
            assert dag.start_date == pendulum.datetime(2024, 1, 1, tz=str(dag.timezone)), dag_id
            expected_retries = {"main": 2, "classroom": 4}.get(variant, 2)
            assert dag.default_args["retries"] == expected_retries, dag_id
            assert all(t.retry_exponential_backoff for t in dag.tasks), dag_id


def test_every_dag_starts_unpaused_and_first_runs_its_latest_scheduled_time(dagbag):
    """Unpaused at creation (fleet.yaml paused_at_creation: false), so onboarding needs no
    click; with a past start_date and catchup off, Airflow's first run is the most recent
    cron point, at once (run_immediately only applies without a start_date)."""
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable

    for dag_id, dag in dagbag.dags.items():
        if dag_id.endswith("__legacy"):
            continue
        assert dag.is_paused_upon_creation is False, dag_id
    dag = dagbag.dags["austin-isd__main"]
    now = pendulum.now("UTC")
    restriction = TimeRestriction(earliest=dag.start_date, latest=None, catchup=False)
    timetable = CronTriggerTimetable(dag.timetable.expression, timezone=str(dag.timetable.timezone))
    first = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    assert now - dt.timedelta(days=1) < first.run_after <= now


def test_main_dag_has_dataset_setup_then_one_group_per_main_integration(dagbag):
    dag = dagbag.dags["austin-isd__main"]
    assert set(dag.task_group.children) == {"ensure_dataset", "grades"}
    assert sorted(t.task_id for t in dag.tasks) == [
        "ensure_dataset",
        "grades.export_grades",
        "grades.load_staging",
        "grades.merge_grades",
        "grades.quality.grades_in_range",
        "grades.quality.grades_loaded",
    ]
    assert dag.get_task("grades.export_grades").upstream_task_ids == {"ensure_dataset"}
    assert dag.get_task("grades.merge_grades").upstream_task_ids == {"grades.load_staging"}
    assert dag.get_task("grades.quality.grades_loaded").upstream_task_ids == {"grades.merge_grades"}
    assert dag.get_task("grades.export_grades").retries == 3  # the template's default_args
    assert sorted(dag.tags) == [
        "customer:austin-isd",
        "template:powerschool_grades",
        "variant:main",
    ]
    assert dag.get_task("ensure_dataset").dataset_id == "district_austin_isd"


def test_scheduled_integrations_get_their_own_cron_dag(dagbag):
    dag = dagbag.dags["austin-isd__classroom"]
    assert sorted(dag.tags) == ["customer:austin-isd", "template:google_classroom", "variant:cron"]
    assert [t.task_id for t in dag.topological_sort()] == [
        "enqueue_sync",
        "wait_for_export",
        "load_coursework",
        "coursework_loaded",
    ]
    sensor = dag.get_task("wait_for_export")
    assert sensor.deferrable is True
    assert dag.timetable.expression.endswith(" * * * *")  # hourly, staggered minute
    assert dag.default_args["retries"] == 4  # template default_args win over the fleet's
    assert dagbag.dags["austin-isd__staar"].get_task("drop_staging").trigger_rule == "all_done"


def test_setup_tasks_run_daily_not_in_every_hourly_run(dagbag):
    """The dataset check runs in the main DAG and in at-most-daily cron DAGs; an hourly DAG
    gets it only when its customer has no DAG that runs it (legacy, hourly only)."""
    assert "ensure_dataset" in dagbag.dags["austin-isd__main"].task_ids
    assert "ensure_dataset" in dagbag.dags["austin-isd__staar"].task_ids  # weekly
    assert "ensure_dataset" not in dagbag.dags["austin-isd__classroom"].task_ids  # hourly
    legacy_hourly = dagbag.dags["lincoln-unified__classroom"]
    assert legacy_hourly.get_task("enqueue_sync").upstream_task_ids == {"ensure_dataset"}


def test_disabled_and_inactive_get_no_dag_and_legacy_is_published_verbatim(dagbag, demo_fleet_dir):
    assert "boulder-valley__classroom" not in dagbag.dags  # disabled integration
    assert not any(d.startswith("old-mill-isd") for d in dagbag.dags)  # inactive customer
    assert "lincoln-unified__main" not in dagbag.dags  # legacy replaces the main DAG
    assert "lincoln-unified__legacy" in dagbag.dags
    legacy = Path("templates/legacy/lincoln_unified_legacy.py").read_bytes()
    assert (demo_fleet_dir / "lincoln-unified" / "lincoln_unified_legacy.py").read_bytes() == legacy


def test_overrides_patch_add_and_remove_tasks(dagbag):
    dag = dagbag.dags["houston-isd__main"]
    ids = {t.task_id for t in dag.tasks}
    assert "grades.quality.grades_in_range" not in ids
    assert dag.get_task("grades.snapshot_gradebook").upstream_task_ids == {"grades.merge_grades"}
    assert dag.get_task("grades.export_grades").function_id == "powerschool-export-large"
    assert dag.get_task("grades.load_staging").configuration["load"]["destinationTable"][
        "tableId"
    ] == ("gradebook_staging")


def _outlet_uris(dag) -> set[str]:
    return {asset.uri for task in dag.tasks for asset in task.outlets}


def _schedule_uris(dag) -> set[str]:
    from airflow.sdk import Asset

    condition = dag.timetable.asset_condition
    return {a.uri for a in condition.objects if isinstance(a, Asset)}


def test_each_parent_has_a_rollup_dag_on_exactly_its_active_descendants_load_assets(dagbag):
    from airflow.sdk import AssetOrTimeSchedule

    families = {
        "cascade-esd": ["cascade-north", "cascade-north-elem", "cascade-south"],
        "cascade-north": ["cascade-north-elem"],
    }
    rollups = {d for d in dagbag.dags if d.endswith("__rollup")}
    assert rollups == {f"{parent}__rollup" for parent in families}
    for parent, descendants in families.items():
        dag = dagbag.dags[f"{parent}__rollup"]
        assert "variant:rollup" in dag.tags and "template:district_rollup" in dag.tags
        assert isinstance(dag.timetable, AssetOrTimeSchedule)
        emitted = set().union(*(_outlet_uris(dagbag.dags[f"{d}__main"]) for d in descendants))
        assert len(emitted) == len(descendants)
        assert _schedule_uris(dag) == emitted
        query = dag.get_task("rollup_grades").configuration["query"]["query"]
        for uri in emitted:
            project, dataset, table = uri.removeprefix("bigquery://").split("/")
            assert f"FROM `{project}.{dataset}.{table}` WHERE day = run_day" in query
        assert not any(t.task_id.startswith("rollup") for t in dagbag.dags[f"{parent}__main"].tasks)
    assert not any(d.startswith("cascade-south__rollup") for d in dagbag.dags)


def test_a_child_with_a_renamed_table_is_rolled_up_by_name(tmp_path, demo_snapshot):
    """houston-isd loads into `gradebook`; made a child of a parent, the parent's roll-up
    waits for and reads `gradebook`, not the template's default `grades`."""
    from airflow.dag_processing.dagbag import DagBag

    from composer.pipeline import apply_fleet, plan_fleet
    from tests.conftest import replace_customer

    snapshot = replace_customer(demo_snapshot, "houston-isd", parent_customer_id="austin-isd")
    store = make_store(tmp_path / "fleet.db", snapshot)
    fleet_plan = plan_fleet(store, f"file://{tmp_path}/dags", Path("templates").resolve())
    assert fleet_plan.errors == []
    apply_fleet(fleet_plan)
    bag = DagBag(dag_folder=str(tmp_path / "dags"))
    child = bag.dags["houston-isd__main"]
    uri = "bigquery://edu-data-platform/district_houston_isd/gradebook"
    assert _outlet_uris(child) == {uri}
    rollup = bag.dags["austin-isd__rollup"]
    assert _schedule_uris(rollup) == {uri}
    query = rollup.get_task("rollup_grades").configuration["query"]["query"]
    assert "`edu-data-platform.district_houston_isd.gradebook` WHERE day = run_day" in query
    assert "district_houston_isd.grades`" not in query


def _next_runs_utc(dag, after: dt.datetime, count: int) -> list[dt.datetime]:
    """What Airflow's own scheduler timetable would run, in UTC."""
    from airflow.timetables.base import DataInterval, TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable

    timetable = CronTriggerTimetable(dag.timetable.expression, timezone=str(dag.timetable.timezone))
    restriction = TimeRestriction(earliest=pendulum.instance(after), latest=None, catchup=True)
    runs, last = [], None
    for _ in range(count):
        info = timetable.next_dagrun_info(
            last_automated_data_interval=last, restriction=restriction
        )
        runs.append(info.run_after.in_timezone("UTC"))
        last = DataInterval(info.data_interval.start, info.data_interval.end)
    return runs


def test_main_schedule_stays_at_local_time_across_dst(dagbag):
    dag = dagbag.dags["austin-isd__main"]  # America/Chicago, fleet default 03:00 + stagger
    minute, hour = (int(f) for f in dag.timetable.expression.split()[:2])
    runs = _next_runs_utc(dag, dt.datetime(2025, 3, 7, 12, tzinfo=dt.UTC), 4)
    local = [r.in_timezone("America/Chicago") for r in runs]
    assert {(r.hour, r.minute) for r in local} == {(hour, minute)}
    # CST is UTC-6, CDT is UTC-5: the UTC hour moves by one across 2025-03-09.
    assert runs[0].hour - runs[-1].hour == 1


def test_same_timezone_customers_start_at_different_minutes_within_the_window(dagbag):
    chicago_default = ["austin-isd__main", "dallas-isd__main"]  # both on the fleet default
    starts = [dagbag.dags[d].timetable.expression.split()[:2] for d in chicago_default]
    assert all(hour == "3" and 0 <= int(minute) < 20 for minute, hour in starts)
    assert starts[0] != starts[1]
