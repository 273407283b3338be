"""Typed values by the operator's signature: the example `typed_values` built, imported
by Airflow's DagBag, and its objects checked; values that cannot be converted refused
with one line naming customer, integration and field."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from composer.compose.dagspec import Call
from composer.compose.typed_values import TypedValueError, duration
from composer.render import builder_name
from tests.conftest import customer_part, make_store
from tests.examples import example_snapshot, example_templates

pytestmark = pytest.mark.airflow

EXAMPLE = "typed_values"
CUSTOMER = "plano-isd"


def builder_source(text: str, dag_id: str) -> str:
    """The builder function of `dag_id` in a customer's part or a shard file: that DAG's
    source alone, not its neighbours'."""
    name = builder_name(dag_id)
    start = text.index(f"\ndef {name}():\n") + 1
    return text[start : text.index(f"\nDAGS[{dag_id!r}] = {name}\n", start)]


def build(tmp_path: Path, target: int = 3, cron_extra: str = "") -> Path:
    """The example's fleet, verified and published into tmp_path/dags (`cron_extra`:
    lines added to attendance_batch's `cron:` section)."""
    from composer.pipeline import apply_fleet, plan_fleet

    templates = example_templates(EXAMPLE, tmp_path)
    batch = templates / "attendance_batch.yaml"
    batch.write_text(batch.read_text().replace("cron:\n", f"cron:\n{cron_extra}", 1))
    if target != 3:
        fleet = templates / "fleet.yaml"
        fleet.write_text(
            fleet.read_text().replace("airflow_target: 3", f"airflow_target: {target}")
        )
    store = make_store(tmp_path / "fleet.db", example_snapshot(EXAMPLE))
    plan = plan_fleet(store, f"file://{tmp_path}/dags", templates)
    assert [str(e) for e in plan.errors] == []
    apply_fleet(plan)
    return tmp_path / "dags"


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    from airflow.dag_processing.dagbag import DagBag

    dags = build(tmp_path_factory.mktemp("typed"))
    found = DagBag(dag_folder=str(dags))
    assert found.import_errors == {}
    return found


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        *[("PT30M", 1800), ("P1D", 86400), ("P1W", 604800), ("PT1H30M", 5400)],
        *[("PT1.5S", 1.5), ("P1DT2H", 93600), (90, 90), (2.5, 2.5), (0, 0)],
    ],
)
def test_a_duration_is_written_as_timedelta_seconds(written, seconds):
    assert duration(written) == Call(duration(0).callee, kwargs={"seconds": seconds})


@pytest.mark.parametrize("bad", ["PT3X", "P1Y", "P2M", "P", "PT", "30 minutes", -5, True, None])
def test_a_value_that_is_not_a_duration_is_refused(bad):
    with pytest.raises(TypedValueError):
        duration(bad)


def test_durations_become_timedelta_on_the_task_and_in_default_args(bag):
    task = bag.dags[f"{CUSTOMER}__attendance"].get_task("run_batch")
    assert isinstance(task.execution_timeout, dt.timedelta)
    assert task.execution_timeout == dt.timedelta(hours=2)  # PT2H on the task wins
    assert task.retry_delay == dt.timedelta(minutes=10)  # template default_args: PT10M
    assert task.max_retry_delay == dt.timedelta(hours=1)  # fleet default_args: PT1H
    grades = bag.dags[f"{CUSTOMER}__main"].get_task("grades.export_grades")
    assert grades.retry_delay == dt.timedelta(minutes=5)  # fleet.yaml: PT5M
    report = bag.dags[f"{CUSTOMER}__main"].get_task("report.publish_report")
    assert report.retry_delay == dt.timedelta(minutes=1)  # its TaskGroup's default_args


def test_outlets_and_inlets_are_assets(bag):
    from airflow.sdk import Asset

    task = bag.dags[f"{CUSTOMER}__attendance"].get_task("run_batch")
    assert all(isinstance(a, Asset) for a in [*task.inlets, *task.outlets])
    assert [a.uri for a in task.inlets] == ["gs://edu-data-platform-landing/attendance/plano-isd"]
    assert [a.uri for a in task.outlets] == [
        "bigquery://edu-data-platform/district_plano_isd/attendance"
    ]
    report = bag.dags[f"{CUSTOMER}__main"].get_task("report.publish_report")
    assert [a.uri for a in report.inlets] == [task.outlets[0].uri]


def test_a_provider_model_argument_is_an_instance_of_its_class_nested_by_its_fields(bag, tmp_path):
    """The file calls `Job(...)`, nested by Job's own field types; the operator then
    hands Airflow the Job as a dict (CloudBatchSubmitJobOperator.prepare_template, so
    Jinja inside renders): read back through the class, every field is typed."""
    from google.cloud import batch_v1

    dag = bag.dags[f"{CUSTOMER}__attendance"]
    module = Path(dag.fileloc).parent / "fleet_parts" / f"{CUSTOMER}.py"  # what it loads
    source = builder_source(module.read_text(), dag.dag_id)
    assert "        job=Job(\n" in source and "container=Runnable.Container(" in source
    assert "from google.cloud.batch_v1 import ComputeResource, Job, LogsPolicy," in source
    task = dag.get_task("run_batch")
    job = (
        task.job
        if isinstance(task.job, batch_v1.Job)
        else batch_v1.Job.from_json(json.dumps(task.job))
    )
    spec = job.task_groups[0].task_spec
    assert spec.max_run_duration == dt.timedelta(minutes=90)
    assert spec.compute_resource.cpu_milli == 2000  # a param's value, typed by the class
    assert spec.runnables[0].container.commands[0] == "--district=plano-isd"
    assert job.logs_policy.destination == batch_v1.LogsPolicy.Destination.CLOUD_LOGGING
    assert dict(job.labels) == {"district": "plano_isd"}


def refused(tmp_path: Path, fleet_cli, template: str, old: str, new: str) -> list[str]:
    templates = example_templates(EXAMPLE, tmp_path)
    path = templates / f"{template}.yaml"
    text = path.read_text()
    if old == "      job:\n":  # the whole nested block goes
        changed = re.sub(r"      job:\n(        .*\n)+", new, text)
    else:
        changed = text.replace(old, new, 1)
    assert changed != text
    path.write_text(changed)
    store = make_store(tmp_path / "fleet.db", example_snapshot(EXAMPLE))
    code, _, err = fleet_cli("validate", "--store", store, "--templates", str(templates))
    assert code == 1, err
    return err.splitlines()


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        (
            "execution_timeout: PT2H",
            "execution_timeout: PT3X",
            "tasks.run_batch.args.execution_timeout",
            "'PT3X' is not an ISO 8601 duration",
        ),
        (
            "retry_delay: PT10M",
            "retry_delay: P1M",
            "default_args.retry_delay",
            "'P1M' is not an ISO 8601 duration",
        ),
        (
            "max_retry_count: 2",
            "max_retry_cuont: 2",
            "tasks.run_batch.args.job.task_groups[0].task_spec.max_retry_cuont",
            "unknown key 'max_retry_cuont' (did you mean 'max_retry_count'?)",
        ),
        (
            "max_run_duration: PT1H30M",
            "max_run_duration: soon",
            "tasks.run_batch.args.job.task_groups[0].task_spec.max_run_duration",
            "'soon' is not an ISO 8601 duration",
        ),
        (
            'inlets: ["gs://{landing_bucket}/attendance/{customer_id}"]',
            'inlets: ["attendance {customer_id}"]',
            "tasks.run_batch.args.inlets",
            "must be ASCII without spaces",
        ),
        (
            "      job:\n",
            "      job: not-a-mapping\n",
            "tasks.run_batch.args.job",
            "must be a mapping of Job fields",
        ),
    ],
    ids=["iso", "months", "model-key", "model-duration", "inlet", "model-shape"],
)
def test_a_value_that_cannot_be_converted_is_one_line_naming_the_field(
    old, new, field, message, tmp_path, fleet_cli
):
    lines = refused(tmp_path, fleet_cli, "attendance_batch", old, new)
    expected = f"error: customer {CUSTOMER}, integration attendance, field {field}: "
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected) and message in lines[0], lines


def test_the_example_parses_with_no_warning_under_airflow_3(tmp_path):
    """Typed values, Params and model classes bring no deprecation or other warning
    from a generated file (the strict pass turns deprecations into import errors)."""
    import os
    import sys

    from tests.airflow2_env import run_report

    dags = build(tmp_path / "fleet")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    report = run_report(sys.executable, [dags], env, home)[str(dags)]
    assert (report["import_errors"], report["strict_import_errors"]) == ({}, {})
    assert report["warnings"] == []
    assert len(report["dag_ids"]) == 2


@pytest.mark.slow
def test_the_example_imports_typed_under_airflow_2(tmp_path, request):
    """Airflow 2.11: the same values typed as 2.11 wants them (Dataset, Param from
    airflow.models.param, timedelta, batch_v1.Job), with no import error."""
    from tests.test_airflow_targets import airflow2_env_or_skip

    airflow2 = airflow2_env_or_skip()
    # access_control is Airflow 2's (deprecated in Airflow 3, so refused there).
    dags = build(tmp_path, target=2, cron_extra="  access_control: {support: [can_read]}\n")
    assert "from airflow.datasets import Dataset" in builder_source(
        customer_part(dags, CUSTOMER), f"{CUSTOMER}__attendance"
    )
    script = """
import json, sys, datetime as dt
from airflow.models.dagbag import DagBag
from airflow.datasets import Dataset
from airflow.models.param import Param
from google.cloud import batch_v1
bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
dag = bag.dags["plano-isd__attendance"]
task = dag.get_task("run_batch")
main = bag.dags["plano-isd__main"]
job = task.job if isinstance(task.job, batch_v1.Job) else batch_v1.Job.from_json(json.dumps(task.job))
print("REPORT:" + json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "timeout": task.execution_timeout.total_seconds(),
    "retry_delay": task.retry_delay.total_seconds(),
    "assets": all(isinstance(a, Dataset) for a in [*task.inlets, *task.outlets]),
    "job": "job=Job(" in open(sys.argv[1] + "/fleet_parts/plano-isd.py").read().split(
        "DAGS['plano-isd__attendance']")[0].rsplit("\\ndef ", 1)[1],
    "run_duration": job.task_groups[0].task_spec.max_run_duration.total_seconds(),
    "dagrun_timeout": dag.dagrun_timeout.total_seconds(),
    "main_dagrun_timeout": main.dagrun_timeout.total_seconds(),
    "param": isinstance(dag.params.get_param("days_back"), Param),
    "param_type": dag.params.get_param("days_back").schema.get("type"),
    "max_active_tasks": dag.max_active_tasks,
    "access_control": {
        k: {r: sorted(p) for r, p in v.items()} for k, v in dag.access_control.items()
    },
}))
"""
    home = tmp_path / "home2"
    home.mkdir()
    proc = airflow2.run(["python", "-c", script, str(dags)], home, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    strict = airflow2.dagbag_report([dags], tmp_path / "home2")[str(dags)]
    assert (strict["import_errors"], strict["strict_import_errors"]) == ({}, {})
    assert strict["warnings"] == []
    line = next(x for x in proc.stdout.splitlines() if x.startswith("REPORT:"))
    report = json.loads(line[len("REPORT:") :])
    assert report == {
        "errors": {},
        "timeout": 7200.0,
        "retry_delay": 600.0,
        "assets": True,
        "job": True,
        "run_duration": 5400.0,
        "dagrun_timeout": 10800.0,
        "main_dagrun_timeout": 14400.0,
        "param": True,
        "param_type": "integer",
        "max_active_tasks": 4,
        "access_control": {"support": {"DAGs": ["can_read"]}},
    }


@pytest.mark.parametrize(
    ("patch", "error"),
    [
        ({"execution_timeout": "PT45M"}, None),
        (
            {"execution_timeout": "__import__('os').system('id')"},
            "field task_overrides.run_batch.args.execution_timeout: "
            "\"__import__('os').system('id')\" is not an ISO 8601 duration",
        ),
        (
            {"job": {"task_groups": [{"task_spec": {"max_run_duration": "PT2H", "os": 1}}]}},
            "field task_overrides.run_batch.args.job.task_groups[0].task_spec.os: unknown key 'os'",
        ),
    ],
    ids=["converted", "code-refused", "model-key-refused"],
)
def test_a_store_override_is_typed_like_the_template_and_never_becomes_code(patch, error, tmp_path):
    """An override (a store value) goes through the same conversion: a duration becomes
    a timedelta, anything else is refused, and a model's fields are the class's own."""
    from composer.pipeline import apply_fleet, plan_fleet
    from tests.conftest import replace_integration

    templates = example_templates(EXAMPLE, tmp_path)
    snapshot = replace_integration(
        example_snapshot(EXAMPLE),
        CUSTOMER,
        "attendance",
        task_overrides=json.dumps({"run_batch": {"args": patch}}),
    )
    plan = plan_fleet(make_store(tmp_path / "f.db", snapshot), f"file://{tmp_path}/d", templates)
    errors = [str(e) for e in plan.errors]
    if error is None:
        assert errors == []
        apply_fleet(plan)
        source = builder_source(customer_part(tmp_path / "d", CUSTOMER), f"{CUSTOMER}__attendance")
        assert "execution_timeout=timedelta(seconds=2700)," in source
    else:
        assert len(errors) == 1 and error in errors[0], errors
