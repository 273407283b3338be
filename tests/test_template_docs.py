"""The template reference page, docs/templates.md, generated from the shipped templates."""

from __future__ import annotations

import shutil
from pathlib import Path

from composer.cli.template_docs import templates_reference

REPO = Path(__file__).resolve().parent.parent


def test_the_committed_reference_is_current():
    """Run `uv run fleet docs --out docs/templates.md` when this fails."""
    committed = (REPO / "docs" / "templates.md").read_text(encoding="utf-8")
    assert committed == templates_reference(REPO / "templates")


def test_the_reference_shows_params_tasks_and_how_each_template_runs():
    page = templates_reference(REPO / "templates")
    section = page.split("## `powerschool_grades`", 1)[1].split("\n## ", 1)[0]
    assert "Nightly PowerSchool grades sync" in section
    assert "| `sis_base_url` | yes |  | url | The district's PowerSchool URL. |" in section
    assert "| `grades_table` | no | `grades` | identifier, at most 64 characters |" in section
    assert (
        "| `grades_loaded` | `airflow.providers.google.cloud.operators.bigquery."
        "BigQueryCheckOperator` | `merge_grades` | `quality` |"
    ) in section
    assert "**Main DAG**" in section and "**Own cron DAG**" not in section
    rollup = page.split("## `district_rollup`", 1)[1].split("\n## ", 1)[0]
    assert "**Roll-up**" in rollup and "`powerschool_grades` integrations" in rollup
    state = page.split("## `state_assessments`", 1)[1].split("\n## ", 1)[0]
    assert "**Main DAG**" in state and "**Own cron DAG**" in state
    assert "| `state_code` | yes |  | matches `[A-Z]{2}` |" in state


def test_a_new_template_appears_in_the_reference(tmp_path, fleet_cli):
    folder = tmp_path / "templates"
    shutil.copytree(REPO / "templates", folder)
    (folder / "attendance.yaml").write_text(
        "template: attendance\n"
        "description: Nightly attendance | export.\n"
        "params:\n"
        "  day_column: {required: true, enum: [day, date], description: Which column.}\n"
        "tasks:\n"
        "  start: {operator: airflow.providers.standard.operators.empty.EmptyOperator}\n"
        "cron: {}\n"
    )
    out = tmp_path / "templates.md"

    code, stdout, _ = fleet_cli("docs", "--templates", str(folder), "--out", str(out))

    assert (code, stdout) == (0, f"Wrote {out}\n")
    page = out.read_text()
    assert "## `attendance`" in page and "\nNightly attendance | export.\n" in page
    assert "| `day_column` | yes |  | one of `day`, `date` | Which column. |" in page


def test_docs_refuse_a_template_that_does_not_load(tmp_path, fleet_cli):
    folder = tmp_path / "templates"
    shutil.copytree(REPO / "templates", folder)
    broken = folder / "google_classroom.yaml"
    broken.write_text(broken.read_text().replace("cron:", "crn:"))

    code, out, err = fleet_cli("docs", "--templates", str(folder))

    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1 and "google_classroom.yaml: crn: unknown template key" in err
