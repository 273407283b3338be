"""Task graph features (composer/compose/taskgraph.py): order across the integrations of one main
DAG, nested task groups with their own settings, and dynamic task mapping.

The example fleet (examples/features/task_graph/) is synced, verified and imported by
Airflow 3's DagBag (and, slow-marked, Airflow 2.11's); a small network-free mapped DAG
runs with `dag.test()`; every refusal is `fleet validate` exiting 1 with one line.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import textwrap
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from composer.store import IntegrationRow, Snapshot
from tests.airflow2_env import REPO
from tests.conftest import customer_part, make_store
from tests.examples import example_snapshot, example_templates

pytestmark = pytest.mark.airflow

DAG_ID = "lakeside-usd__main"
SCHOOLS = [
    {"school_id": "lakeside-hs", "sis_school_number": 101},
    {"school_id": "lakeside-ms", "sis_school_number": 102},
    {"school_id": "harbor-es", "sis_school_number": 201},
]


def sync(store_url: str, templates: Path, dags: Path) -> Path:
    from composer.pipeline import apply_fleet, plan_fleet

    fleet_plan = plan_fleet(store_url, f"file://{dags}", templates)
    assert [str(e) for e in fleet_plan.errors] == []
    apply_fleet(fleet_plan)
    return dags


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("task-graph")


@pytest.fixture(scope="module")
def templates(work: Path) -> Path:
    return example_templates("task_graph", work)


@pytest.fixture(scope="module")
def dags(work: Path, templates: Path) -> Path:
    store = make_store(work / "fleet.db", example_snapshot("task_graph"))
    return sync(store, templates, work / "dags")


@pytest.fixture(scope="module")
def dag(dags: Path):
    from airflow.dag_processing.dagbag import DagBag

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bag = DagBag(dag_folder=str(dags))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


# -- order across integrations --------------------------------------------------------


def test_template_after_puts_an_integration_after_the_other_integrations_last_tasks(dag):
    assert dag.get_task("attendance.load_attendance").upstream_task_ids == {
        "roster.quality.checks.roster_not_empty",
        "roster.quality.checks.every_school_present",
    }


def test_override_upstream_puts_a_task_after_another_integrations_task(dag):
    assert dag.get_task("grades.export_grades").upstream_task_ids == {"roster.load_roster"}
    assert "grades.export_grades" in dag.get_task("roster.load_roster").downstream_task_ids


def test_only_the_first_integration_waits_for_the_setup_task(dag):
    assert dag.get_task("ensure_dataset").downstream_task_ids == {"roster.export_school"}


# -- nested groups ----------------------------------------------------------------------


def test_nested_group_ids_are_prefixed_by_integration_and_parent_group(dag):
    groups = dag.task_group_dict
    assert {"roster", "roster.quality", "roster.quality.checks"} <= set(groups)
    assert groups["roster.quality.checks"].tooltip == "Row-level checks"
    assert groups["roster.quality"].tooltip == "Roster checks for Lakeside Unified"
    assert dag.get_task("roster.quality.checks.roster_not_empty").task_group.group_id == (
        "roster.quality.checks"
    )


def test_group_default_args_apply_to_their_tasks_and_nest(dag):
    check = dag.get_task("roster.quality.checks.roster_not_empty")
    assert check.retries == 0  # groups.quality, over the template's retries: 3
    assert check.trigger_rule == "all_done"  # groups.quality.checks
    load = dag.get_task("roster.load_roster")
    assert load.retries == 3 and load.trigger_rule == "all_success"


# -- mapping ------------------------------------------------------------------------------


def test_expand_makes_a_mapped_operator_over_the_customers_list(dag, dags: Path):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    task = dag.get_task("roster.export_school")
    assert isinstance(task, MappedOperator)
    assert task.expand_input.value == {"input_data": SCHOOLS}
    assert task.partial_kwargs["function_id"] == "sis-roster-export"
    text = customer_part(dags, "lakeside-usd")
    assert f"DAGS[{DAG_ID!r}] = " in text
    assert "CloudFunctionInvokeFunctionOperator.partial(" in text
    assert ").expand(\n" in text


# -- a mapped DAG that runs ---------------------------------------------------------------

BELL_TEMPLATE = """\
template: school_bell
description: Waits for every school of a district to open (no network, for dag.test).
params:
  open_times: {required: true}
  closed_times: {default: []}
tasks:
  wait_for_open:
    operator: airflow.providers.standard.sensors.date_time.DateTimeSensor
    group: schools.opening
    args: {poke_interval: 1}
    expand: {target_time: "{open_times}"}
  closed_today:
    operator: airflow.providers.standard.sensors.date_time.DateTimeSensor
    group: schools.opening
    expand: {target_time: "{closed_times}"}
  all_open:
    operator: airflow.providers.standard.operators.empty.EmptyOperator
    upstream: [wait_for_open]
groups:
  schools: {default_args: {retries: 0}}
cron: {}
"""
RUNNER = textwrap.dedent(
    """
    import sys
    from airflow.dag_processing.dagbag import DagBag

    folder, dag_id = sys.argv[1:]
    bag = DagBag(dag_folder=folder)
    assert not bag.import_errors, bag.import_errors
    bag.dags[dag_id].test()
    """
)


@pytest.mark.slow
def test_a_mapped_task_runs_one_instance_per_item_and_an_empty_list_is_skipped(
    tmp_path: Path,
):
    templates = example_templates("task_graph", tmp_path)
    (templates / "school_bell.yaml").write_text(BELL_TEMPLATE)
    opens = ["2024-01-01T07:30:00+00:00", "2024-01-01T08:00:00+00:00"]
    snapshot = Snapshot(
        customers=example_snapshot("task_graph").customers,
        integrations=(
            IntegrationRow(
                "lakeside-usd",
                "bell",
                "school_bell",
                True,
                schedule="@hourly",  # sub-daily: no setup task (BigQuery) in this DAG
                params={"open_times": opens},
            ),
        ),
    )
    dags = sync(make_store(tmp_path / "fleet.db", snapshot), templates, tmp_path / "dags")
    (tmp_path / "run.py").write_text(RUNNER)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
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
    done = subprocess.run(
        [sys.executable, str(tmp_path / "run.py"), str(dags), "lakeside-usd__bell"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, map_index, state FROM task_instance ORDER BY task_id, map_index"
        ).fetchall()
    assert rows == [
        ("all_open", -1, "success"),
        ("schools.opening.closed_today", -1, "skipped"),
        ("schools.opening.wait_for_open", 0, "success"),
        ("schools.opening.wait_for_open", 1, "success"),
    ]


# -- Airflow 2.11 -------------------------------------------------------------------------


@pytest.mark.slow
def test_airflow2_imports_the_example_with_mapping_nested_groups_and_order(
    tmp_path: Path, monkeypatch
):
    from tests.test_airflow_targets import airflow2_env_or_skip

    airflow2 = airflow2_env_or_skip()
    templates = example_templates("task_graph", tmp_path)
    settings = templates / "fleet.yaml"
    text, count = re.subn(
        r"^airflow_target:.*$", "airflow_target: 2", settings.read_text(), flags=re.M
    )
    assert count == 1
    settings.write_text(text)
    monkeypatch.setenv("FLEET_VERIFY_PYTHON", str(airflow2.python))  # verified by 2.11 too
    store = make_store(tmp_path / "fleet.db", example_snapshot("task_graph"))
    dags = sync(store, templates, tmp_path / "dags")
    home = tmp_path / "home2"
    home.mkdir()
    report = airflow2.dagbag_report([dags], home)[str(dags)]
    assert report["airflow_version"].startswith("2.11")
    assert report["import_errors"] == {}
    described: dict[str, Any] = report["dags"][DAG_ID]
    tasks = described["tasks"]
    assert tasks["roster.export_school"]["operator"] == "MappedOperator"
    assert tasks["attendance.load_attendance"]["upstream"] == [
        "roster.quality.checks.every_school_present",
        "roster.quality.checks.roster_not_empty",
    ]
    assert tasks["grades.export_grades"]["upstream"] == ["roster.load_roster"]
    assert tasks["roster.quality.checks.roster_not_empty"]["retries"] == 0
    assert tasks["roster.quality.checks.roster_not_empty"]["trigger_rule"] == "all_done"
    assert described["groups"]["roster.quality.checks"]["tooltip"] == "Row-level checks"


# -- refusals: exit 1, one line each ------------------------------------------------------

ERROR_LINE = re.compile(
    r"error: customer (?P<customer>\S+), integration (?P<integration>\S+), "
    r"field (?P<field>\S+): (?P<message>.+)"
)
# A broken template file is one line for all the customers it sets aside.
TEMPLATE_LINE = re.compile(
    r"error: template (?P<file>\S+), field (?P<field>\S+): (?P<message>.+)"
    r"; set aside \d+ customers?: (?P<customer>\S+)"
)


def _parsed(line: str) -> tuple:
    folded = TEMPLATE_LINE.fullmatch(line)
    if folded:
        message = f"{folded['field']}: {folded['message']}"
        return folded["customer"], None, "template", message
    return ERROR_LINE.fullmatch(line).groups()


def _with(snapshot: Snapshot, integration_id: str, **changes: Any) -> Snapshot:
    rows = tuple(
        replace(row, **changes) if row.integration_id == integration_id else row
        for row in snapshot.integrations
    )
    return replace(snapshot, integrations=rows)


def _edit_template(templates: Path, name: str, edit) -> None:
    path = templates / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    edit(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def validate(fleet_cli, tmp_path: Path, snapshot: Snapshot, edit=None) -> tuple[int, list]:
    templates = example_templates("task_graph", tmp_path)
    if edit:
        edit(templates)
    store = make_store(tmp_path / "fleet.db", snapshot)
    code, _, err = fleet_cli("validate", "--store", store, "--templates", str(templates))
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    return code, [_parsed(line) for line in lines]


GRADES_AFTER = {"export_grades": {"upstream": ["roster.load_roster"]}}
REFUSALS: dict[str, tuple[Any, Any, tuple[str, str, str]]] = {
    "upstream_names_an_unknown_integration": (
        lambda s: _with(s, "grades", task_overrides={"export_grades": {"upstream": ["rostr.x"]}}),
        None,
        (
            "grades",
            "task_overrides.export_grades.upstream",
            "unknown integration 'rostr' in upstream 'rostr.x' (did you mean 'roster'?)",
        ),
    ),
    "upstream_names_an_unknown_task": (
        lambda s: _with(
            s, "grades", task_overrides={"export_grades": {"upstream": ["roster.load_rooster"]}}
        ),
        None,
        (
            "grades",
            "task_overrides.export_grades.upstream",
            "integration 'roster' has no task 'load_rooster' (did you mean 'load_roster'?)",
        ),
    ),
    "cycle_across_integrations": (
        lambda s: _with(
            s,
            "roster",
            task_overrides={"load_roster": {"upstream": ["export_school", "grades.merge_grades"]}},
        ),
        None,
        (
            "roster",
            "task_overrides.load_roster.upstream",
            "dependency cycle across integrations: roster.load_roster -> grades.merge_grades"
            " -> grades.load_staging -> grades.export_grades -> roster.load_roster",
        ),
    ),
    "cycle_between_templates_after_each_other": (
        lambda s: s,
        lambda t: _edit_template(
            t, "sis_roster", lambda raw: raw["main"].update(after=["attendance_sync"])
        ),
        ("attendance", "main.after", "dependency cycle across integrations: attendance."),
    ),
    "upstream_on_an_integration_with_its_own_cron_dag": (
        lambda s: _with(s, "grades", schedule="@daily"),
        lambda t: _edit_template(t, "powerschool_grades", lambda raw: raw.update(cron={})),
        ("grades", "task_overrides.export_grades.upstream", "runs in its own DAG"),
    ),
    "upstream_naming_an_integration_with_its_own_cron_dag": (
        lambda s: _with(s, "roster", schedule="@daily"),
        lambda t: _edit_template(t, "sis_roster", lambda raw: raw.update(cron={})),
        (
            "grades",
            "task_overrides.export_grades.upstream",
            "integration 'roster' runs in its own DAG (schedule '0 0 * * *')",
        ),
    ),
    "expand_on_a_non_list": (
        lambda s: _with(s, "roster", params={"schools": "lakeside-hs"}),
        None,
        ("roster", "tasks.export_school.expand.input_data", "must be a list to map over"),
    ),
    "expand_on_an_argument_the_operator_does_not_take": (
        lambda s: s,
        lambda t: _edit_template(
            t,
            "sis_roster",
            lambda raw: raw["tasks"]["export_school"].update(expand={"input_dat": "{schools}"}),
        ),
        (
            "roster",
            "tasks.export_school.expand.input_dat",
            "CloudFunctionInvokeFunctionOperator takes no argument 'input_dat' "
            "(did you mean 'input_data'?)",
        ),
    ),
    "expand_on_a_base_operator_argument": (
        lambda s: s,
        lambda t: _edit_template(
            t,
            "sis_roster",
            lambda raw: raw["tasks"]["export_school"]["expand"].update(pool=["a", "b"]),
        ),
        ("roster", "tasks.export_school.expand.pool", "is an argument of every operator"),
    ),
    "expand_set_by_an_override": (
        lambda s: _with(
            s, "grades", task_overrides={"export_grades": {"expand": {"input_data": []}}}
        ),
        None,
        ("grades", "task_overrides.export_grades.expand", "an override cannot map a task"),
    ),
    "group_settings_for_a_group_no_task_uses": (
        lambda s: s,
        lambda t: _edit_template(
            t, "sis_roster", lambda raw: raw["groups"].update(qualty={"tooltip": "x"})
        ),
        (None, "template", "groups.qualty: no task is in group 'qualty'"),
    ),
    "unprefixed_group_ids": (
        lambda s: s,
        lambda t: _edit_template(
            t, "sis_roster", lambda raw: raw["groups"]["quality"].update(prefix_group_id=False)
        ),
        (None, "template", "groups.quality.prefix_group_id: group ids are always prefixed"),
    ),
    "after_an_unknown_template": (
        lambda s: s,
        lambda t: _edit_template(
            t, "attendance_sync", lambda raw: raw["main"].update(after=["sis_rostr"])
        ),
        (
            None,
            "template",
            "main.after: unknown template 'sis_rostr' (did you mean 'sis_roster'?)",
        ),
    ),
    "after_a_task_the_other_template_does_not_have": (
        lambda s: s,
        lambda t: _edit_template(
            t, "attendance_sync", lambda raw: raw["main"].update(after=["sis_roster.load_rooster"])
        ),
        (
            "attendance",
            "main.after",
            "integration 'roster' (sis_roster) has no task 'load_rooster' "
            "(did you mean 'load_roster'?)",
        ),
    ),
    "template_upstream_naming_another_integration": (
        lambda s: s,
        lambda t: _edit_template(
            t,
            "attendance_sync",
            lambda raw: raw["tasks"]["load_attendance"].update(upstream=["roster.load_roster"]),
        ),
        (None, "template", "a template orders integrations by template name"),
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusal_is_exit_1_and_one_line(case: str, fleet_cli, tmp_path: Path):
    break_store, edit, (integration, field, fragment) = REFUSALS[case]
    code, errors = validate(fleet_cli, tmp_path, break_store(example_snapshot("task_graph")), edit)
    assert code == 1
    assert len(errors) == 1, errors
    customer, got_integration, got_field, message = errors[0]
    assert (customer, got_integration, got_field) == ("lakeside-usd", integration, field), errors
    assert fragment in message, message


def test_the_example_validates(fleet_cli, tmp_path: Path):
    code, errors = validate(fleet_cli, tmp_path, example_snapshot("task_graph"))
    assert (code, errors) == (0, [])


def test_an_empty_list_is_mapped_not_refused(fleet_cli, tmp_path: Path):
    code, errors = validate(
        fleet_cli, tmp_path, _with(example_snapshot("task_graph"), "roster", params={"schools": []})
    )
    assert (code, errors) == (0, [])


def test_after_template_task_waits_for_that_one_task(fleet_cli, tmp_path: Path):
    from airflow.dag_processing.dagbag import DagBag

    templates = example_templates("task_graph", tmp_path)
    _edit_template(
        templates,
        "attendance_sync",
        lambda raw: raw["main"].update(after=["sis_roster.load_roster"]),
    )
    store = make_store(tmp_path / "fleet.db", example_snapshot("task_graph"))
    code, out, err = fleet_cli(
        "render", "lakeside-usd", "--store", store, "--templates", str(templates)
    )
    assert code == 0, err
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "main.py").write_text(out.split("\n", 1)[1])  # after the "# ===== path" line
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    dag = bag.dags[DAG_ID]
    assert dag.get_task("attendance.load_attendance").upstream_task_ids == {"roster.load_roster"}


def test_store_text_in_a_mapped_templated_argument_is_inert_for_jinja(fleet_cli, tmp_path):
    hostile = "{{ conn.google_cloud_default.password }}"
    snapshot = _with(
        example_snapshot("task_graph"), "roster", params={"schools": [{"school_id": hostile}]}
    )
    templates = example_templates("task_graph", tmp_path)
    store = make_store(tmp_path / "fleet.db", snapshot)
    code, out, err = fleet_cli(
        "render", "lakeside-usd", "--store", store, "--templates", str(templates)
    )
    assert code == 0, err
    mapped = out[out.index("CloudFunctionInvokeFunctionOperator.partial(") :]
    mapped = mapped[: mapped.index("t9 = ")]
    assert hostile not in mapped
    assert "{{ '\\\\x7b\\\\x7b conn.google_cloud_default.password \\\\x7d\\\\x7d' }}" in mapped
