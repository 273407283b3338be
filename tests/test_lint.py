"""`fleet lint`: every template of a folder checked alone, without a store, one error
line per broken file (its first problem, with file and field), exit 1 if any."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

GOOD = """\
template: attendance
description: Nightly attendance export.
params:
  attendance_table: {default: attendance, type: identifier, description: "Target table."}
imports: [composer.callbacks.log_failure]
tasks:
  load:
    operator: airflow.providers.google.cloud.operators.bigquery.BigQueryInsertJobOperator
    args:
      project_id: "{project}"
      configuration: {query: {query: "SELECT 1 FROM `{dataset}.{attendance_table}`", useLegacySql: false}}
      on_failure_callback: composer.callbacks.log_failure
  check:
    operator: airflow.providers.google.cloud.operators.bigquery.BigQueryCheckOperator
    upstream: [load]
    args: {sql: "SELECT 1", use_legacy_sql: false, trigger_rule: all_done}
main: {}
"""


def _folder(tmp_path: Path, **files: str) -> Path:
    """The shipped templates plus `files` (name -> text)."""
    out = tmp_path / "templates"
    shutil.copytree(REPO / "templates", out)
    for name, text in files.items():
        (out / f"{name}.yaml").write_text(text)
    return out


def _lint(fleet_cli, folder: Path) -> tuple[int, list[str], list[str]]:
    code, out, err = fleet_cli("lint", "--templates", str(folder))
    return code, out.splitlines(), err.splitlines()


def test_the_shipped_templates_lint_clean_with_a_one_line_summary(fleet_cli):
    code, out, err = _lint(fleet_cli, REPO / "templates")
    assert (code, err) == (0, [])
    assert out == [f"Linted 4 templates and fleet.yaml in {REPO / 'templates'}: all valid"]


def test_a_good_new_template_lints_clean(tmp_path, fleet_cli):
    code, out, err = _lint(fleet_cli, _folder(tmp_path, attendance=GOOD))
    assert (code, err) == (0, [])
    assert out[0].startswith("Linted 5 templates and fleet.yaml")


BROKEN = {
    "unknown_placeholder": (
        ('"SELECT 1"', '"SELECT {attendance_day}"'),
        "tasks: unknown placeholder {attendance_day} (declare it under params)",
    ),
    "unknown_operator_module": (
        ("operators.bigquery.BigQueryCheckOperator", "operators.bigqueryy.BigQueryCheckOperator"),
        "tasks.check.operator: unknown operator "
        "airflow.providers.google.cloud.operators.bigqueryy.BigQueryCheckOperator: cannot import",
    ),
    "not_an_operator": (
        (
            "airflow.providers.google.cloud.operators.bigquery.BigQueryCheckOperator",
            "composer.callbacks.log_failure",
        ),
        "tasks.check.operator: unknown operator composer.callbacks.log_failure: "
        "composer.callbacks.log_failure is not an Airflow operator",
    ),
    "unknown_argument": (
        ("use_legacy_sql: false,", "use_legacy_sqll: false,"),
        "tasks.check.args.use_legacy_sqll: BigQueryCheckOperator takes no argument "
        "'use_legacy_sqll'",
    ),
    "callable_not_in_imports": (
        (
            "callback: composer.callbacks.log_failure",
            "callback: composer.store.demo.snapshot_from_yaml",
        ),
        "tasks.load.args.on_failure_callback: 'composer.store.demo.snapshot_from_yaml' is not a "
        "callable listed under the template's or fleet's imports",
    ),
    "callable_that_does_not_import": (
        ("composer.callbacks.log_failure", "composer.callbacks.no_such_hook"),
        "imports[0]: composer.callbacks has no no_such_hook",
    ),
    "bad_trigger_rule": (
        ("trigger_rule: all_done", "trigger_rule: all_finished"),
        "tasks.check.args.trigger_rule: 'all_finished' is not a valid trigger_rule",
    ),
    "unknown_task_key": (
        ("    upstream: [load]\n", "    upstreams: [load]\n"),
        "tasks.check.upstreams: unknown task key",
    ),
    "dependency_cycle": (
        ("  load:\n", "  load:\n    upstream: [check]\n"),
        "dependency cycle",
    ),
    "unknown_template_key": (("main: {}", "mian: {}"), "mian: unknown template key"),
    "yaml_syntax": (("tasks:\n", "tasks: [\n"), "(file): while parsing"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_template_is_one_line_naming_file_and_field(case, tmp_path, fleet_cli):
    (old, new), expected = BROKEN[case]
    assert old in GOOD
    folder = _folder(tmp_path, attendance=GOOD.replace(old, new, 1))

    code, out, err = _lint(fleet_cli, folder)

    assert code == 1
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {folder / 'attendance.yaml'}: ")
    assert expected in err[0]
    assert out == [f"Linted 5 templates and fleet.yaml in {folder}: 1 with problems"]


def test_each_broken_file_is_one_line_and_the_good_ones_none(tmp_path, fleet_cli):
    two_problems = GOOD.replace("main: {}", "mian: {}").replace('"SELECT 1"', '"{nope}"')
    folder = _folder(
        tmp_path,
        attendance=two_problems,
        attendance_copy=GOOD.replace("template: attendance", "template: attendance_copy"),
        wrong_name=GOOD,
    )

    code, _, err = _lint(fleet_cli, folder)

    assert code == 1
    assert err == [
        f"error: {folder / 'attendance.yaml'}: mian: unknown template key 'mian' "
        "(did you mean 'main'?)",
        f"error: {folder / 'wrong_name.yaml'}: template: must be 'wrong_name', the file's name",
    ]


def test_fleet_yaml_is_linted_too(tmp_path, fleet_cli):
    folder = _folder(tmp_path)
    fleet = folder / "fleet.yaml"
    fleet.write_text(fleet.read_text().replace("if_exists: ignore", "if_exist: ignore"))

    code, _, err = _lint(fleet_cli, folder)

    assert code == 1
    assert err == [
        f"error: {fleet}: setup_tasks.ensure_dataset.args.if_exist: "
        "BigQueryCreateEmptyDatasetOperator takes no argument 'if_exist'"
    ]


def test_an_allow_listed_operator_that_does_not_import_is_a_fleet_yaml_error(tmp_path, fleet_cli):
    folder = _folder(tmp_path)
    fleet = folder / "fleet.yaml"
    text = fleet.read_text()
    old = "  - airflow.providers.standard.operators.empty.EmptyOperator\n"
    fleet.write_text(
        text.replace(old, f"{old}  - airflow.providers.standard.operators.nope.Nope\n")
    )

    code, _, err = _lint(fleet_cli, folder)

    assert code == 1
    assert len(err) == 1 and err[0].startswith(f"error: {fleet}: operators[1]: unknown operator")


def test_lint_needs_no_store_and_never_imports_a_dagbag(tmp_path):
    """A fresh interpreter, a folder with no fleet.db anywhere near: lint still runs,
    and Airflow's DagBag (the slow part of verification) is never imported."""
    folder = _folder(tmp_path, attendance=GOOD)
    script = (
        "import sys\n"
        "from composer.cli.main import main\n"
        f"code = main(['lint', '--templates', {str(folder)!r}])\n"
        "bags = [m for m in sys.modules if m.endswith('dagbag')]\n"
        "print('CODE', code, 'DAGBAG', bags)\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert "CODE 0 DAGBAG []" in found.stdout, found.stdout + found.stderr
    assert not (tmp_path / "fleet.db").exists()


def test_a_broken_fleet_yaml_is_one_line_and_the_templates_are_still_linted(tmp_path, fleet_cli):
    folder = _folder(tmp_path, attendance=GOOD.replace("main: {}", "mian: {}"))
    fleet = folder / "fleet.yaml"
    fleet.write_text(fleet.read_text().replace("stagger_minutes:", "stagger_minute:"))

    code, _, err = _lint(fleet_cli, folder)

    assert code == 1
    assert err == [
        f"error: {fleet}: stagger_minute: unknown key 'stagger_minute' "
        "(did you mean 'stagger_minutes'?)",
        f"error: {folder / 'attendance.yaml'}: mian: unknown template key 'mian' "
        "(did you mean 'main'?)",
    ]


def test_a_broken_roll_up_template_is_its_own_line_not_also_fleet_yamls(tmp_path, fleet_cli):
    folder = _folder(tmp_path)
    rollup = folder / "district_rollup.yaml"
    rollup.write_text(
        rollup.read_text().replace("  sources: powerschool_grades", "  sources: nope")
    )
    code, _, err = _lint(fleet_cli, folder)
    assert (code, err) == (
        1,
        [f"error: {rollup}: rollup.sources: no template 'nope' (no nope.yaml in {folder})"],
    )

    rollup.write_text(rollup.read_text().replace("rollup:\n", "rollupp:\n"))
    code, _, err = _lint(fleet_cli, folder)
    assert (code, err) == (
        1,
        [f"error: {rollup}: rollupp: unknown template key 'rollupp' (did you mean 'rollup'?)"],
    )
