"""Schedules beyond a cron (composer/compose/timetables.py): manual only, @once, @continuous and
Airflow's own timetables, proven by the Airflow that runs them.

The example fleet examples/features/callables_timetables/ is built, published (each file
verified by DagBag first) and imported in Airflow 3's DagBag here; one slow test imports
the same fleet built for target 2 in Airflow 2.11 (tests/airflow2_env.py).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from composer.build import FleetBuilder
from composer.compose.timetables import normalize_schedule, schedule_for
from composer.errors import SettingsError
from composer.model.settings import load_settings
from composer.render import builder_name, layout
from composer.store import CustomerRow, IntegrationRow, Snapshot
from tests.airflow2_env import REPO, Airflow2EnvError, ensure_airflow2_env, in_ci
from tests.conftest import customer_part, make_store
from tests.examples import example_snapshot, example_templates

EXAMPLE = "callables_timetables"
CHICAGO = "America/Chicago"


def builder_source(text: str, dag_id: str) -> str:
    """The builder function of `dag_id` in a customer's part or a shard file: that DAG's
    source alone, not its neighbours'."""
    name = builder_name(dag_id)
    start = text.index(f"\ndef {name}():\n") + 1
    return text[start : text.index(f"\nDAGS[{dag_id!r}] = {name}\n", start)]


def sync(templates: Path, dags: Path, store: str) -> Path:
    from composer.pipeline import apply_fleet, plan_fleet

    fleet_plan = plan_fleet(store, f"file://{dags}", templates)
    assert [str(e) for e in fleet_plan.errors] == []
    apply_fleet(fleet_plan)
    return dags


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("timetables")


@pytest.fixture(scope="module")
def store(work: Path) -> str:
    return make_store(work / "fleet.db", example_snapshot(EXAMPLE))


@pytest.fixture(scope="module")
def dags(work: Path, store: str) -> Path:
    return sync(example_templates(EXAMPLE, work / "t3"), work / "dags3", store)


@pytest.fixture(scope="module")
def bag(dags: Path):
    from airflow.dag_processing.dagbag import DagBag

    found = DagBag(dag_folder=str(dags))
    assert found.import_errors == {}
    return found


@pytest.mark.airflow
def test_each_store_schedule_becomes_the_airflow_timetable_it_names(bag):
    classes = {dag_id: type(dag.timetable).__name__ for dag_id, dag in bag.dags.items()}
    assert classes == {
        "maple-sd__main": "CronTriggerTimetable",
        "maple-sd__on_demand": "NullTimetable",
        "maple-sd__first_load": "OnceTimetable",
        "maple-sd__live": "ContinuousTimetable",
        "maple-sd__exams": "EventsTimetable",
        "maple-sd__mornings": "CronTriggerTimetable",
        "maple-sd__half_hourly": "DeltaTriggerTimetable",
        "birch-sd__main": "NullTimetable",
    }
    assert bag.dags["maple-sd__on_demand"].schedule is None
    assert bag.dags["birch-sd__main"].schedule is None
    assert bag.dags["maple-sd__live"].max_active_runs == 1  # Airflow requires it for @continuous


@pytest.mark.airflow
def test_timetables_are_in_the_customers_timezone_and_only_crons_are_staggered(bag):
    exams = bag.dags["maple-sd__exams"].timetable
    assert [d.isoformat() for d in exams.event_dates] == [
        "2026-12-07T06:00:00-06:00",
        "2026-12-08T06:00:00-06:00",
        "2026-12-09T06:00:00-06:00",
    ]
    mornings = bag.dags["maple-sd__mornings"].timetable
    assert mornings.expression == "30 6 * * 1-5"  # as written: a timetable is not staggered
    assert str(getattr(mornings.timezone, "name", mornings.timezone)) == CHICAGO
    assert mornings.interval == dt.timedelta(minutes=30)
    assert bag.dags["maple-sd__half_hourly"].timetable.delta == dt.timedelta(minutes=30)
    main = bag.dags["maple-sd__main"].timetable
    assert re.fullmatch(r"\d+ 3 \* \* \*", main.expression)  # the fleet default, staggered


def test_store_values_pick_schedules_by_plain_words_and_json():
    assert normalize_schedule("none") == normalize_schedule(" None ") == "none"
    assert normalize_schedule("@once") == "@once"
    assert normalize_schedule("@continuous") == "@continuous"
    assert normalize_schedule("timetable:exam_week") == "timetable:exam_week"
    assert normalize_schedule('{"delta": 1800, "timetable": "delta"}') == (
        '{"delta":1800,"timetable":"delta"}'
    )
    assert normalize_schedule("@daily") == "0 0 * * *"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"timetable": "delta", "delat": "PT30M"}', "unknown key 'delat' (did you mean 'delta'?)"),
        ('{"timetable": "event", "event_dates": []}', "did you mean 'events'?"),
        ('{"timetable": "delta"}', "a delta timetable needs 'delta'"),
        ('{"timetable": "delta", "delta": "P1M"}', "ISO 8601 duration"),
        ('{"timetable": "events", "event_dates": ["2026-12-01T06:00Z"]}', "has an offset"),
        ('{"timetable": "cron", "cron": "61 * * * *"}', "is not a valid cron expression"),
        ("{not json", "is not a JSON timetable object"),
        ("timetable:Exam Week", "a timetable name matches"),
        ("@reboot", "is not a recurring preset"),
    ],
)
def test_a_malformed_store_schedule_is_refused_saying_why(value: str, message: str):
    with pytest.raises(ValueError, match=re.escape(message)):
        normalize_schedule(value)


def test_multiple_cron_needs_airflow_3():
    spec = '{"crons":["0 6 * * *","30 14 * * *"],"timetable":"multiple_cron"}'
    assert schedule_for(spec, CHICAGO, {}, 3).value.callee.dotted == (
        "airflow.sdk.MultipleCronTriggerTimetable"
    )
    with pytest.raises(ValueError, match="needs Airflow 3"):
        schedule_for(spec, CHICAGO, {}, 2)


def test_a_bad_fleet_timetable_is_one_settings_error(tmp_path: Path):
    templates = example_templates(EXAMPLE, tmp_path)
    fleet = templates / "fleet.yaml"
    fleet.write_text(fleet.read_text().replace("    timetable: events\n", "    timetable: evnts\n"))
    with pytest.raises(SettingsError, match=r"timetables\.exam_week: timetable 'evnts'"):
        load_settings(templates)


def _one(schedule: str) -> Snapshot:
    return Snapshot(
        (CustomerRow("oak-sd", "Oak SD", CHICAGO, True),),
        (
            IntegrationRow("oak-sd", "main_part", "school_day_sync", True),
            IntegrationRow("oak-sd", "extra", "school_day_sync", True, schedule=schedule),
        ),
    )


def test_an_unknown_named_timetable_is_one_line_naming_the_field(tmp_path: Path):
    builder = FleetBuilder(_one("timetable:exam_wek"), example_templates(EXAMPLE, tmp_path))
    assert [str(e) for e in builder.build("oak-sd").errors] == [
        "customer oak-sd, integration extra, field schedule: no timetable 'exam_wek' under "
        "timetables in fleet.yaml (did you mean 'exam_week'?)"
    ]


def test_cli_refuses_an_unknown_timetable_key_with_exit_1_and_one_line(tmp_path: Path, capsys):
    from composer.cli.main import main

    store = make_store(tmp_path / "bad.db", _one('{"timetable":"delta","every":"PT1H"}'))
    templates = example_templates(EXAMPLE, tmp_path)
    code = main(["validate", "--store", store, "--templates", str(templates)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 1
    assert errors == [
        "error: customer oak-sd, integration extra, field schedule: unknown key 'every'"
    ]


@pytest.mark.airflow
def test_the_fleet_report_lists_non_cron_dags_as_not_charted(work: Path, store: str, dags: Path):
    from composer.pipeline import plan_fleet
    from composer.report import facts

    fleet_plan = plan_fleet(store, f"file://{dags}", example_templates(EXAMPLE, work / "tr"))
    found = facts(fleet_plan, dt.date(2026, 12, 7))
    assert sorted(t.dag_id for t in found.timings) == ["maple-sd__main"]
    assert dict((line.split(":")[0], line) for _, line in found.uncharted) == {
        "birch-sd__main": "birch-sd__main: manual only (schedule=None): runs when triggered",
        "maple-sd__on_demand": "maple-sd__on_demand: manual only (schedule=None): runs when triggered",
        "maple-sd__first_load": "maple-sd__first_load: @once: runs one time",
        "maple-sd__live": "maple-sd__live: @continuous: a new run as soon as the last one ends",
        "maple-sd__exams": "maple-sd__exams: timetable exam_week (fleet.yaml timetables)",
        "maple-sd__mornings": "maple-sd__mornings: timetable school_mornings (fleet.yaml timetables)",
        "maple-sd__half_hourly": 'maple-sd__half_hourly: timetable {"delta":"PT30M","timetable":"delta"}',
    }


# -- Airflow 2.11 ----------------------------------------------------------------------


@pytest.mark.airflow
@pytest.mark.slow
def test_target2_timetables_and_callables_import_in_airflow_2_11(
    work: Path, store: str, monkeypatch
):
    try:
        airflow2 = ensure_airflow2_env()
    except Airflow2EnvError as exc:
        if in_ci():
            pytest.fail(f"the Airflow 2.11 environment could not be built under CI: {exc}")
        pytest.skip(f"the Airflow 2.11 environment cannot be built here: {exc}")
    templates = example_templates(EXAMPLE, work / "t2")
    fleet = templates / "fleet.yaml"
    fleet.write_text(re.sub(r"(?m)^airflow_target:.*$", "airflow_target: 2", fleet.read_text()))
    # Verified by Airflow 2.11 before it is published: the verifier imports the shipped
    # composer package, callables_lib included.
    monkeypatch.setenv("FLEET_VERIFY_PYTHON", str(airflow2.python))
    dags = sync(templates, work / "dags2", store)
    source = builder_source(customer_part(dags, "maple-sd"), "maple-sd__exams")
    assert "from airflow.operators.python import BranchPythonOperator" in source
    assert "from airflow.timetables.events import EventsTimetable" in source
    home = work / "home2"
    home.mkdir()
    report = airflow2.dagbag_report([dags], home)[str(dags)]
    assert report["airflow_version"].startswith("2.11")
    assert report["import_errors"] == {} and report["strict_import_errors"] == {}
    timetables = {d: info["timetable"]["class"] for d, info in report["dags"].items()}
    assert timetables == {
        "maple-sd__main": "CronTriggerTimetable",
        "maple-sd__on_demand": "NullTimetable",
        "maple-sd__first_load": "OnceTimetable",
        "maple-sd__live": "ContinuousTimetable",
        "maple-sd__exams": "EventsTimetable",
        "maple-sd__mornings": "CronTriggerTimetable",
        "maple-sd__half_hourly": "DeltaTriggerTimetable",
        "birch-sd__main": "NullTimetable",
    }
    tasks = report["dags"]["maple-sd__on_demand"]["tasks"]
    assert {t: tasks[t]["operator"] for t in ("school_day", "choose_load", "record")} == {
        "school_day": "ShortCircuitOperator",
        "choose_load": "BranchPythonOperator",
        "record": "PythonOperator",
    }


def test_setup_tasks_run_in_manual_and_timetable_dags_but_not_in_continuous_ones():
    rows = Snapshot(
        (CustomerRow("elm-sd", "Elm SD", CHICAGO, True),),
        (
            IntegrationRow(
                "elm-sd", "grades", "powerschool_grades", True,
                params='{"sis_base_url": "https://elm.powerschool.com"}',
            ),
            IntegrationRow(
                "elm-sd", "staar", "state_assessments", True, schedule="none",
                params='{"state_code": "TX"}',
            ),
            IntegrationRow(
                "elm-sd", "classroom", "google_classroom", True, schedule="@continuous",
                params='{"classroom_domain": "elm.org"}',
            ),
        ),
    )  # fmt: skip
    build = FleetBuilder(rows, REPO / "templates").build("elm-sd")
    assert [str(e) for e in build.errors] == []
    (shard,) = build.files
    part = layout.split(shard.content)["elm-sd"]
    staar = builder_source(part, "elm-sd__staar")
    classroom = builder_source(part, "elm-sd__classroom")
    assert "task_id='ensure_dataset'" in staar
    assert "schedule=None," in staar
    assert "task_id='ensure_dataset'" not in classroom
    assert "schedule='@continuous'," in classroom
