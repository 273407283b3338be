"""Callables for any callable-taking argument (composer/compose/callables.py), from allow-lists.

The example fleet examples/features/callables_timetables/ is built and published like
any fleet (verified by Airflow's own DagBag before it is published), then imported in
Airflow 3's DagBag here and run with `dag.test()` in a subprocess with its own metadata
DB: the branch not taken is skipped, a non-school day short-circuits the rest.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from composer import callables_lib
from composer.build import FleetBuilder
from composer.render import builder_name, layout
from composer.store import CustomerRow, IntegrationRow, Snapshot
from tests.airflow2_env import REPO
from tests.conftest import customer_part, make_store
from tests.examples import example_snapshot, example_templates

EXAMPLE = "callables_timetables"
PYTHON_OP = "airflow.providers.standard.operators.python.PythonOperator"


def builder_source(text: str, dag_id: str) -> str:
    """The builder function of `dag_id` in a customer's part or a shard file: that DAG's
    source alone, not its neighbours'."""
    name = builder_name(dag_id)
    start = text.index(f"\ndef {name}():\n") + 1
    return text[start : text.index(f"\nDAGS[{dag_id!r}] = {name}\n", start)]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("callables")


@pytest.fixture(scope="module")
def templates(work: Path) -> Path:
    return example_templates(EXAMPLE, work)


@pytest.fixture(scope="module")
def dags(work: Path, templates: Path) -> Path:
    """The example, planned and applied (every file verified by Airflow 3's DagBag)."""
    from composer.pipeline import apply_fleet, plan_fleet

    store = make_store(work / "fleet.db", example_snapshot(EXAMPLE))
    fleet_plan = plan_fleet(store, f"file://{work / 'dags'}", templates)
    assert [str(e) for e in fleet_plan.errors] == []
    apply_fleet(fleet_plan)
    return work / "dags"


@pytest.fixture(scope="module")
def bag(dags: Path):
    from airflow.dag_processing.dagbag import DagBag

    found = DagBag(dag_folder=str(dags))
    assert found.import_errors == {}
    return found


@pytest.mark.airflow
def test_python_callables_are_the_real_allow_listed_functions(bag):
    dag = bag.dags["maple-sd__main"]
    tasks = dag.task_dict
    assert tasks["daily.school_day"].python_callable is callables_lib.is_school_day
    assert tasks["daily.choose_load"].python_callable is callables_lib.choose_by_weekday
    assert tasks["daily.record"].python_callable is callables_lib.record_run
    assert type(tasks["daily.choose_load"]).__name__ == "BranchPythonOperator"
    assert type(tasks["daily.school_day"]).__name__ == "ShortCircuitOperator"
    assert tasks["daily.record"].op_kwargs == {"customer_id": "maple-sd", "integration_id": "daily"}


def test_a_python_callable_is_written_as_an_import_never_as_a_string(dags: Path):
    source = builder_source(customer_part(dags, "maple-sd"), "maple-sd__on_demand")
    assert "from composer.callables_lib import choose_by_weekday, is_school_day, record_run" in (
        source
    )
    assert "python_callable=choose_by_weekday" in source
    assert "'composer.callables_lib" not in source


# -- dag.test(): the branch runs ---------------------------------------------------------

RUNNER = textwrap.dedent(
    """
    import datetime as dt, sys
    from airflow.dag_processing.dagbag import DagBag

    folder, *runs = sys.argv[1:]
    bag = DagBag(dag_folder=folder)
    assert not bag.import_errors, bag.import_errors
    for run in runs:
        dag_id, day = run.split("@")
        bag.dags[dag_id].test(logical_date=dt.datetime.fromisoformat(day))
    """
)
MONDAY, TUESDAY, CHRISTMAS_EVE = (
    "2026-12-07T15:00:00+00:00",
    "2026-12-08T15:00:00+00:00",
    "2026-12-24T15:00:00+00:00",
)


@pytest.fixture(scope="module")
def runs(work: Path, dags: Path) -> dict[tuple[str, str, str], str]:
    """(dag_id, logical date, task_id) -> state, from real `dag.test()` runs."""
    home = work / "home"
    home.mkdir()
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(work),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PYTHONPATH": str(REPO),
    }
    airflow = Path(sys.executable).parent / "airflow"
    migrate = subprocess.run(
        [str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=600
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    (work / "run.py").write_text(RUNNER)
    wanted = [
        f"maple-sd__on_demand@{MONDAY}",
        f"maple-sd__on_demand@{TUESDAY}",
        f"maple-sd__main@{CHRISTMAS_EVE}",
        f"maple-sd__main@{MONDAY}",
    ]
    done = subprocess.run(
        [sys.executable, str(work / "run.py"), str(dags), *wanted],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            "SELECT ti.dag_id, r.logical_date, ti.task_id, ti.state FROM task_instance ti "
            "JOIN dag_run r ON r.dag_id = ti.dag_id AND r.run_id = ti.run_id"
        ).fetchall()
    return {(d, str(day)[:10], t): s for d, day, t, s in rows}


@pytest.mark.airflow
@pytest.mark.slow
def test_dag_test_of_a_branch_dag_skips_the_branch_not_taken(runs):
    monday = {
        t: s for (d, day, t), s in runs.items() if (d, day) == ("maple-sd__on_demand", "2026-12-07")
    }
    assert monday == {
        "school_day": "success",
        "choose_load": "success",
        "full_load": "success",
        "incremental_load": "skipped",
        "record": "success",
    }
    tuesday = {
        t: s for (d, day, t), s in runs.items() if (d, day) == ("maple-sd__on_demand", "2026-12-08")
    }
    assert tuesday["full_load"] == "skipped" and tuesday["incremental_load"] == "success"


@pytest.mark.airflow
@pytest.mark.slow
def test_a_branch_inside_a_task_group_names_its_siblings_without_the_group(runs):
    main = {t: s for (d, day, t), s in runs.items() if (d, day) == ("maple-sd__main", "2026-12-07")}
    assert main["daily.full_load"] == "success"
    assert main["daily.incremental_load"] == "skipped"


@pytest.mark.airflow
@pytest.mark.slow
def test_short_circuit_on_a_holiday_param_skips_everything_after_it(runs):
    eve = {t: s for (d, day, t), s in runs.items() if (d, day) == ("maple-sd__main", "2026-12-24")}
    assert eve["daily.school_day"] == "success"  # a Thursday, but in the district's holidays
    after = ("choose_load", "full_load", "incremental_load", "record")
    assert {eve[f"daily.{t}"] for t in after} == {"skipped"}


# -- refusals: one line, exit 1 -----------------------------------------------------------


def _row(task_overrides: dict | None = None, template: str = "school_day_sync") -> Snapshot:
    return Snapshot(
        (CustomerRow("oak-sd", "Oak SD", "America/Chicago", True),),
        (
            IntegrationRow(
                "oak-sd",
                "daily",
                template,
                True,
                task_overrides=json.dumps(task_overrides) if task_overrides else None,
            ),
            # Keeps the main DAG non-empty when `daily` fails (an empty one cannot compile).
            IntegrationRow("oak-sd", "plain", "school_day_sync", True),
        ),
    )


def _errors(templates: Path, snapshot: Snapshot) -> list[str]:
    builder = FleetBuilder(snapshot, templates)
    build = builder.build("oak-sd")
    return [str(e) for e in [*builder.errors, *build.errors]]


def test_an_override_may_name_only_an_allow_listed_callable(templates: Path):
    ok = _errors(
        templates,
        _row({"record": {"args": {"python_callable": "composer.callables_lib.is_school_day"}}}),
    )
    assert ok == []
    errors = _errors(templates, _row({"record": {"args": {"python_callable": "os.system"}}}))
    assert errors == [
        "customer oak-sd, integration daily, field task_overrides.record.args.python_callable: "
        "'os.system' is not a callable listed under the template's or fleet's imports"
    ]


def test_an_override_cannot_add_a_python_operator_unless_fleet_yaml_lists_it(
    templates: Path, tmp_path: Path
):
    added = {
        "again": {
            "operator": PYTHON_OP,
            "upstream": ["record"],
            "args": {
                "python_callable": "composer.callables_lib.record_run",
                "op_kwargs": {"customer_id": "x", "integration_id": "y"},
            },
        }
    }
    errors = _errors(templates, _row(added))
    assert len(errors) == 1
    assert "field task_overrides.again.operator" in errors[0]
    assert "runs the code it is given" in errors[0]
    assert "a task override only when fleet.yaml lists it under operators" in errors[0]
    allowed = example_templates(EXAMPLE, tmp_path)
    fleet = allowed / "fleet.yaml"
    fleet.write_text(fleet.read_text().replace("operators:\n", f"operators:\n- {PYTHON_OP}\n", 1))
    assert _errors(allowed, _row(added)) == []


def test_a_template_callable_missing_from_imports_is_refused(tmp_path: Path):
    templates = example_templates(EXAMPLE, tmp_path)
    template = (templates / "school_day_sync.yaml").read_text()
    broken = template.replace("  - composer.callables_lib.record_run\n", "")
    (templates / "broken_sync.yaml").write_text(broken.replace("school_day_sync", "broken_sync"))
    errors = _errors(templates, _row(template="broken_sync"))
    assert errors == [
        "customer oak-sd, integration daily, field tasks.record.args.python_callable: "
        "'composer.callables_lib.record_run' is not a callable listed under the template's "
        "or fleet's imports"
    ]


def test_cli_refuses_a_store_value_naming_a_module_with_exit_1_and_one_line(
    templates: Path, tmp_path: Path, capsys
):
    from composer.cli.main import main

    store = make_store(
        tmp_path / "bad.db", _row({"record": {"args": {"python_callable": "subprocess.call"}}})
    )
    code = main(["validate", "--store", store, "--templates", str(templates)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert [line for line in err if line.startswith("error:")] == [
        "error: customer oak-sd, integration daily, field task_overrides.record.args."
        "python_callable: 'subprocess.call' is not a callable listed under the template's "
        "or fleet's imports"
    ]


def test_shipped_callables_choose_by_local_weekday_and_resolve_group_relative_ids():
    import datetime as dt

    class Task:
        task_id = "daily.choose_load"
        dag = type("Dag", (), {"task_dict": {"daily.full_load": 1, "daily.incremental_load": 2}})

    # 2026-12-08 03:00 UTC is still Monday evening in Chicago.
    context = {"logical_date": dt.datetime(2026, 12, 8, 3, tzinfo=dt.UTC), "task": Task}
    chosen = callables_lib.choose_by_weekday(
        {"monday": "full_load"}, "incremental_load", "America/Chicago", **context
    )
    assert chosen == ["daily.full_load"]
    assert callables_lib.choose_by_weekday({"monday": "full_load"}, None, "UTC", **context) == []
    assert not callables_lib.is_school_day("America/Chicago", skip_dates=["2026-12-07"], **context)


@pytest.mark.airflow
def test_any_argument_annotated_as_callable_takes_an_allow_listed_callable(tmp_path: Path):
    from composer.compose.callables import callable_arguments
    from composer.compose.operators import OperatorCatalog

    sensor = "airflow.providers.google.cloud.sensors.gcs.GCSObjectUpdateSensor"
    catalog = OperatorCatalog()
    assert "ts_func" in callable_arguments(catalog, sensor)  # `ts_func: Callable = ...`
    assert "python_callable" in callable_arguments(catalog, PYTHON_OP)
    bigquery = "airflow.providers.google.cloud.operators.bigquery.BigQueryInsertJobOperator"
    assert "configuration" not in callable_arguments(catalog, bigquery)
    templates = example_templates(EXAMPLE, tmp_path)
    (templates / "fresh_export.yaml").write_text(
        textwrap.dedent(
            f"""\
            template: fresh_export
            description: Waits for the export to be updated after the run's moment.
            imports: [composer.callables_lib.run_moment]
            tasks:
              export_updated:
                operator: {sensor}
                args:
                  bucket: "{{landing_bucket}}"
                  object: "exports/{{customer_id}}.csv"
                  ts_func: composer.callables_lib.run_moment
            main: {{}}
            """
        )
    )
    builder = FleetBuilder(_row(template="fresh_export"), templates)
    build = builder.build("oak-sd")
    assert [str(e) for e in build.errors] == []
    assert build.dag_ids == ["oak-sd__main"]
    (shard,) = [f for f in build.files if f.path.startswith("fleet_shard_")]
    source = builder_source(layout.split(shard.content)["oak-sd"], "oak-sd__main")
    assert "from composer.callables_lib import" in source and "ts_func=run_moment" in source


def test_fleet_deploy_ships_the_callables_the_generated_files_import():
    from composer.publish.deploy import deploy_files
    from composer.verify.verifier import shipped_package_files

    assert "composer/callables_lib.py" in deploy_files()
    # The verifier imports generated files against this copy, not the checkout.
    assert "composer/callables_lib.py" in shipped_package_files()
