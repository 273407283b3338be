"""A broken template is reported once, naming file and field and the customers it set
aside, not once per customer; exit codes and what is published do not change."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from composer.build import _file_digest
from composer.error_lines import error_lines
from composer.errors import ConfigError
from composer.store import CustomerRow, IntegrationRow, Snapshot
from tests.conftest import make_store

REPO = Path(__file__).resolve().parent.parent


def _templates(tmp_path: Path) -> Path:
    out = tmp_path / "templates"
    shutil.copytree(REPO / "templates", out)
    return out


def _break_upstream(templates: Path, name: str, task: str) -> None:
    """Point one task's upstream at a task that does not exist."""
    path = templates / f"{name}.yaml"
    text = path.read_text()
    old = f"  {task}:\n"
    assert old in text
    path.write_text(text.replace(old, f"{old}    upstream: [no_such_task]\n", 1))


def _fleet(count: int) -> Snapshot:
    customers = tuple(
        CustomerRow(f"district-{n:04d}", f"District {n}", "America/Chicago", True)
        for n in range(count)
    )
    integrations = tuple(
        IntegrationRow(
            c.customer_id, "staar", "state_assessments", True, "0 6 * * 1", '{"state_code": "TX"}'
        )
        for c in customers
    )
    return Snapshot(customers, integrations)


def test_one_broken_template_used_by_2000_customers_is_one_stderr_line(tmp_path, fleet_cli):
    templates = _templates(tmp_path)
    _break_upstream(templates, "state_assessments", "wait_for_state_export")
    store = make_store(tmp_path / "fleet.db", _fleet(2000))

    code, out, err = fleet_cli(
        "validate", "--store", store, "--templates", str(templates), "--build-jobs", "1"
    )

    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1, lines[:5]
    assert lines[0] == (
        "error: template state_assessments.yaml, field tasks.wait_for_state_export.upstream: "
        "unknown upstream task 'no_such_task'; set aside 2000 customers: district-0000, "
        "district-0001, district-0002, district-0003, district-0004 and 1995 more"
    )
    assert "2000 invalid customers" in out


def test_sync_with_a_broken_template_prints_it_once_and_keeps_its_customers_files(
    tmp_path, demo_snapshot, fleet_cli
):
    templates = _templates(tmp_path)
    store = make_store(tmp_path / "fleet.db", demo_snapshot)
    target = tmp_path / "dags"
    common = ("--store", store, "--target", f"file://{target}", "--templates", str(templates))
    assert fleet_cli("sync", *common)[0] == 0
    before = {p: p.read_bytes() for p in target.rglob("*.py")}
    users = sorted(  # boulder-valley's classroom integration is disabled
        i.customer_id
        for i in demo_snapshot.integrations
        if i.template == "google_classroom" and i.enabled
    )
    _break_upstream(templates, "google_classroom", "enqueue_sync")
    _file_digest.cache_clear()  # one CLI run is one process; this test runs two in one

    code, _, err = fleet_cli("sync", *common)

    assert code == 1
    template_lines = [line for line in err.splitlines() if "google_classroom.yaml" in line]
    assert len(template_lines) == 1
    assert f"set aside {len(users)} customers: " in template_lines[0]
    assert not [line for line in err.splitlines() if line.startswith("error: customer ")]
    assert {p: p.read_bytes() for p in target.rglob("*.py")} == before


def test_other_errors_stay_one_line_per_customer_and_in_order():
    errors = [
        ConfigError("a", "x", "params.sis_base_url", "is required"),
        ConfigError("b", "g", "template", "t.yaml: main: must be a mapping"),
        ConfigError("c", "x", "params.sis_base_url", "is required"),
        ConfigError("c", "g", "template", "t.yaml: main: must be a mapping"),
        ConfigError("d", "g", "template", "unknown template 'nope' (no nope.yaml in t)"),
    ]

    assert error_lines(errors) == [
        "customer a, integration x, field params.sis_base_url: is required",
        "template t.yaml, field main: must be a mapping; set aside 2 customers: b, c",
        "customer c, integration x, field params.sis_base_url: is required",
        "customer d, integration g, field template: unknown template 'nope' (no nope.yaml in t)",
    ]


def test_a_template_with_a_yaml_syntax_error_is_one_line_too(tmp_path, fleet_cli):
    templates = _templates(tmp_path)
    (templates / "state_assessments.yaml").write_text("template: [state_assessments\n")
    store = make_store(tmp_path / "fleet.db", _fleet(30))

    code, _, err = fleet_cli(
        "validate", "--store", store, "--templates", str(templates), "--build-jobs", "1"
    )

    assert code == 1
    assert len(err.splitlines()) == 1
    assert err.startswith("error: template state_assessments.yaml, field (file): ")
    assert "set aside 30 customers" in err


@pytest.mark.airflow
def test_the_meta_dag_logs_a_broken_template_once(tmp_path, demo_snapshot, monkeypatch):
    """The sync task's log and the summary the check task fails with: one line."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowFailException

    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "fleet_meta.py", dags / "fleet_meta.py")
    templates = _templates(tmp_path)
    _break_upstream(templates, "google_classroom", "enqueue_sync")
    monkeypatch.setenv("FLEET_STORE", make_store(tmp_path / "fleet.db", demo_snapshot))
    monkeypatch.setenv("FLEET_TARGET", f"file://{tmp_path / 'fleet'}")
    monkeypatch.setenv("FLEET_TEMPLATES", str(templates))
    tasks = DagBag(dag_folder=str(dags), safe_mode=False).dags["fleet_meta"].task_dict

    records: list[logging.LogRecord] = []
    collect = logging.Handler(logging.INFO)
    collect.emit = records.append  # each record of the task logger once, however configured
    task_log = logging.getLogger("airflow.task")
    task_log.addHandler(collect)
    level = task_log.level
    task_log.setLevel(logging.INFO)
    try:
        synced = tasks["sync"].python_callable(params={})
        with pytest.raises(AirflowFailException, match="5 invalid customers"):
            tasks["check"].python_callable(synced)
    finally:
        task_log.removeHandler(collect)
        task_log.setLevel(level)

    logged = [r.getMessage() for r in records if "google_classroom.yaml" in r.getMessage()]
    line = (
        "invalid: template google_classroom.yaml, field tasks.enqueue_sync.upstream: unknown "
        "upstream task 'no_such_task'; set aside 5 customers: austin-isd, denver-public, "
        "houston-isd, lincoln-unified, miami-dade"
    )
    assert logged == [line, line]  # once by sync, once by check
    assert synced["errors"] == [line.removeprefix("invalid: ")]
    assert synced["error_count"] == 5
