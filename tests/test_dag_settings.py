"""DAG-level settings: the allow-list a template (`main:`/`cron:`) and the fleet
(`dag_settings:`) may set, their precedence and how a main DAG combines them; unknown
and fleet-owned keys refused with one line (and a "did you mean")."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from composer.compose.dag_settings import DagSettingError, combine
from composer.compose.dagspec import CodeRef
from composer.compose.typed_values import duration
from tests.conftest import make_store
from tests.examples import example_snapshot, example_templates
from tests.test_typed_values import CUSTOMER, EXAMPLE, build

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    from airflow.dag_processing.dagbag import DagBag

    found = DagBag(dag_folder=str(build(tmp_path_factory.mktemp("settings"))))
    assert found.import_errors == {}
    return found


def test_a_cron_template_sets_its_dags_settings_over_the_fleets(bag):
    from airflow.sdk import Param

    from composer.callbacks import log_failure

    dag = bag.dags[f"{CUSTOMER}__attendance"]
    assert dag.dagrun_timeout == dt.timedelta(hours=3)  # template PT3H over fleet PT6H
    assert dag.max_active_tasks == 4  # template 4 over fleet 16
    assert dag.doc_md.startswith("Attendance for **Plano ISD**")
    assert dag.owner_links == {"data-platform": "mailto:data-platform@example.org"}  # fleet's
    assert dag.user_defined_macros == {"district_label": "plano_isd"}
    assert dag.on_failure_callback in (log_failure, [log_failure])
    days_back = dag.params.get_param("days_back")
    assert isinstance(days_back, Param)
    assert days_back.value == 1
    assert days_back.schema == {"type": "integer", "minimum": 1, "maximum": 30}
    assert dag.params.get_param("full_refresh").schema["type"] == "boolean"


def test_the_fleet_owned_settings_stay_the_fleets(bag):
    for dag in bag.dags.values():
        assert (dag.catchup, dag.max_active_runs) == (False, 1)
        assert f"customer:{CUSTOMER}" in dag.tags


def test_a_main_dag_takes_its_templates_settings_and_the_fleets_for_the_rest(bag):
    dag = bag.dags[f"{CUSTOMER}__main"]
    assert dag.dagrun_timeout == dt.timedelta(hours=4)  # attendance_report's main: PT4H
    assert dag.max_active_tasks == 8
    assert dag.owner_links == {"data-platform": "mailto:data-platform@example.org"}
    assert dag.params.get_param("report_format").schema["enum"] == ["csv", "parquet"]


def test_main_dag_settings_of_several_templates_combine():
    fleet = {"max_active_tasks": 16, "owner_links": {"ops": "mailto:ops@x.org"}}
    log = CodeRef("composer.callbacks.log_failure")
    combined = combine(
        fleet,
        [
            ("grades", "a", {"dagrun_timeout": duration("PT1H"), "max_active_tasks": 4}),
            ("report", "b", {"dagrun_timeout": duration("PT2H"), "max_active_tasks": 2}),
            ("att", "c", {"doc_md": "C", "on_failure_callback": log, "owner_links": {"c": "u"}}),
            ("att2", "c", {"doc_md": "D", "on_failure_callback": [log]}),
        ],
    )
    assert combined == {
        "dagrun_timeout": duration(7200),  # the largest
        "max_active_tasks": 4,
        "owner_links": {"ops": "mailto:ops@x.org", "c": "u"},  # merged over the fleet's
        "doc_md": "## att (c)\n\nC\n\n## att2 (c)\n\nD",
        "on_failure_callback": log,  # the union, once
    }


def test_one_param_set_differently_by_two_templates_of_a_main_dag_is_refused():
    with pytest.raises(DagSettingError) as caught:
        combine({}, [("g", "a", {"params": {"x": 1}}), ("r", "b", {"params": {"x": 2}})])
    assert caught.value.field == "params.x" and caught.value.integration_id == "r"
    assert "templates 'a' and 'b'" in str(caught.value)


def validate(tmp_path: Path, fleet_cli, edit) -> tuple[int, list[str]]:
    templates = example_templates(EXAMPLE, tmp_path)
    edit(templates)
    store = make_store(tmp_path / "fleet.db", example_snapshot(EXAMPLE))
    code, _, err = fleet_cli("validate", "--store", store, "--templates", str(templates))
    return code, err.splitlines()


def replacing(name: str, old: str, new: str):
    def edit(templates: Path) -> None:
        path = templates / name
        text = path.read_text()
        assert old in text, (name, old)
        path.write_text(text.replace(old, new, 1))

    return edit


BATCH = "attendance_batch.yaml"
# A value with no placeholder is checked once, when the template is loaded: the field is
# then the template file's.
STATIC = f"template: {BATCH}: "
REPORT = "attendance_report.yaml"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            replacing(BATCH, "  dagrun_timeout: PT3H", "  dagrun_timout: PT3H"),
            "template attendance_batch.yaml, field cron.dagrun_timout: unknown key "
            "'dagrun_timout' (did you mean 'dagrun_timeout'?)",
        ),
        (
            replacing(REPORT, "  max_active_tasks: 8", "  catchup: true"),
            "template attendance_report.yaml, field main.catchup: cannot be set here: always False",
        ),
        (
            replacing(BATCH, "  max_active_tasks: 4", "  tags: [extra]"),
            "cron.tags: cannot be set here: the fleet sets them",
        ),
        (
            replacing(BATCH, "tasks:\n", "taks:\n"),
            "unknown template key 'taks' (did you mean 'tasks'?)",
        ),
        (
            replacing(BATCH, "batch_region: {default:", "batch_region: {defualt:"),
            "params.batch_region.defualt: unknown key 'defualt' (did you mean 'default'?)",
        ),
        (
            replacing(BATCH, "    args:\n", "    argz: {}\n    args:\n"),
            "tasks.run_batch.argz: unknown task key 'argz' (did you mean 'args'?)",
        ),
    ],
    ids=["cron-typo", "main-catchup", "cron-tags", "top-level", "param-key", "task-key"],
)
def test_a_bad_template_key_is_one_line_with_did_you_mean(edit, expected, tmp_path, fleet_cli):
    code, lines = validate(tmp_path, fleet_cli, edit)
    assert code == 1
    assert len(lines) == 1 and expected in lines[0], lines


@pytest.mark.parametrize(
    ("edit", "field", "message"),
    [
        (
            replacing(BATCH, "days_back: {default: 1,", "days_back: {default: 90,"),
            STATIC + "cron.params.days_back.default",
            "90 is greater than the maximum of 30",
        ),
        (
            replacing(BATCH, "days_back: {default: 1,", "days_back: {"),
            STATIC + "cron.params.days_back.default",
            "is required",
        ),
        (
            replacing(BATCH, "type: integer, minimum", "type: int, minimum"),
            STATIC + "cron.params.days_back.type",
            "'int' is not a JSON Schema type",
        ),
        (
            replacing(BATCH, "  dagrun_timeout: PT3H", "  dagrun_timeout: three hours"),
            STATIC + "cron.dagrun_timeout",
            "'three hours' is not an ISO 8601 duration",
        ),
        (
            replacing(
                BATCH,
                "  on_failure_callback: composer.callbacks.log_failure",
                "  on_failure_callback: os.system",
            ),
            "cron.on_failure_callback",
            "'os.system' is not a callable listed under the template's or fleet's imports",
        ),
        (
            replacing(BATCH, "  max_active_tasks: 4", "  max_active_tasks: 0"),
            STATIC + "cron.max_active_tasks",
            "must be a positive integer",
        ),
        (
            replacing(BATCH, "computed by a Cloud Batch job.", "see {customer_name}.md"),
            "cron.doc_md",
            "not a .md file's name",
        ),
        (
            replacing(BATCH, "  max_active_tasks: 4", "  access_control: {support: [can_read]}"),
            "cron.access_control",
            "is deprecated in Airflow 3 (RemovedInAirflow4Warning)",
        ),
        (
            replacing(BATCH, "  max_active_tasks: 4", "  access_control: {support: can_read}"),
            STATIC + "cron.access_control.support",
            "must be a list of permissions",
        ),
    ],
    ids=[
        *["param-default", "param-no-default", "param-type", "timeout", "callback", "tasks"],
        *["doc-file", "access-on-3", "access-shape"],
    ],
)
def test_a_bad_dag_setting_value_is_one_line_naming_the_field(
    edit, field, message, tmp_path, fleet_cli
):
    code, lines = validate(tmp_path, fleet_cli, edit)
    prefix = f"error: customer {CUSTOMER}, integration attendance, field {field}: "
    if field.startswith(STATIC):  # a broken template file: one line for its customers
        prefix = f"error: template {BATCH}, field {field.removeprefix(STATIC)}: "
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith(prefix) and message in lines[0], lines


def test_two_templates_setting_one_param_differently_in_a_main_dag_is_one_line(tmp_path, fleet_cli):
    def edit(templates: Path) -> None:
        grades = templates / "powerschool_grades.yaml"
        grades.write_text(
            grades.read_text().replace(
                "main:\n", "main:\n  params:\n    report_format: {default: parquet}\n"
            )
        )

    code, lines = validate(tmp_path, fleet_cli, edit)
    assert code == 1
    assert len(lines) == 1, lines
    assert "field main.params.report_format: set differently by templates" in lines[0]
    assert "'powerschool_grades' and 'attendance_report'" in lines[0], lines


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            "dag_setings: {}\n",
            "dag_setings: unknown key 'dag_setings' (did you mean 'dag_settings'?)",
        ),
        ("dag_settings: {schedule: '@daily'}\n", "dag_settings.schedule: cannot be set here"),
        (
            "dag_settings: {max_active_task: 3}\n",
            "dag_settings.max_active_task: unknown key 'max_active_task' "
            "(did you mean 'max_active_tasks'?)",
        ),
        (
            "dag_settings: {dagrun_timeout: PT3X}\n",
            "dag_settings.dagrun_timeout: 'PT3X' is not an ISO 8601 duration",
        ),
        (
            "dag_settings: {on_success_callback: os.system}\n",
            "dag_settings.on_success_callback: 'os.system' is not a callable listed",
        ),
    ],
    ids=["top-level", "fleet-owned", "typo", "duration", "callback"],
)
def test_a_bad_fleet_yaml_key_is_one_settings_error(patch, message, tmp_path, fleet_cli):
    def edit(templates: Path) -> None:
        fleet = templates / "fleet.yaml"
        settings = yaml.safe_load(fleet.read_text())
        del settings["dag_settings"]  # the example's: the patch alone is judged
        fleet.write_text(yaml.safe_dump({**settings, **yaml.safe_load(patch)}))

    code, lines = validate(tmp_path, fleet_cli, edit)
    assert code == 1
    assert len(lines) == 1 and message in lines[0], lines
