"""The `fleet` command line: defaults, subcommands and exit codes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from composer.store import Snapshot
from tests.conftest import TEMPLATES, dag_file, make_store, published, replace_integration


def checkout(folder: Path) -> Path:
    """A folder that looks like a dagfleet checkout (its pyproject.toml)."""
    (folder / "pyproject.toml").write_text('[project]\nname = "dagfleet"\n')
    return folder


def test_sync_on_a_fresh_clone_seeds_the_default_store_and_builds_the_demo(
    tmp_path, monkeypatch, fleet_cli
):
    monkeypatch.chdir(checkout(tmp_path))
    code, out, err = fleet_cli("sync")
    assert code == 0, err
    assert f"created {tmp_path}/fleet.db with the demo fleet" in err
    files = len(list((tmp_path / "build" / "dags").rglob("*.py")))
    assert f"{files} added" in out and "15 customers published, 0 invalid" in out
    assert published(tmp_path / "build" / "dags")["files"].keys() == {
        str(p.relative_to(tmp_path / "build" / "dags"))
        for p in (tmp_path / "build" / "dags").rglob("*.py")
    }
    code, out, err = fleet_cli("sync")
    assert (
        code == 0
        and "created" not in err
        and f"0 added, 0 changed, 0 removed, {files} unchanged" in out
    )


def test_an_explicit_store_that_does_not_exist_is_a_store_failure(tmp_path, fleet_cli):
    code, _out, err = fleet_cli(
        "sync", "--store", f"sqlite:///{tmp_path}/missing.db", "--target", f"file://{tmp_path}/d"
    )
    assert code == 3
    assert err.strip().splitlines() == [
        f"error: store sqlite:///{tmp_path}/missing.db: no such SQLite file; create it with "
        f"`fleet store init --store sqlite:///{tmp_path}/missing.db`"
    ]
    assert not (tmp_path / "missing.db").exists() and not (tmp_path / "d").exists()


def test_a_store_without_tables_is_a_store_failure(tmp_path, fleet_cli):
    sqlite3.connect(tmp_path / "empty.db").close()
    code, _out, err = fleet_cli("validate", "--store", f"sqlite:///{tmp_path}/empty.db")
    assert code == 3 and "no such table" in err


def test_plan_detailed_exitcode_reports_changes_like_terraform(tmp_path, demo_store, fleet_cli):
    target = f"file://{tmp_path}/dags"
    code, out, _ = fleet_cli(
        "plan", "--store", demo_store, "--target", target, "--detailed-exitcode"
    )
    assert code == 2
    added = [line for line in out.splitlines() if line.startswith("+ ")]
    assert "+ lincoln-unified/lincoln_unified_legacy.py" in added
    assert f"Plan: {len(added)} to add, 0 to change, 0 to remove, 0 unchanged" in out
    assert not (tmp_path / "dags").exists()  # plan writes nothing
    assert fleet_cli("sync", "--store", demo_store, "--target", target)[0] == 0
    assert f"+ {dag_file(tmp_path / 'dags', 'austin-isd')}" in added
    code, out, _ = fleet_cli(
        "plan", "--store", demo_store, "--target", target, "--detailed-exitcode"
    )
    assert code == 0 and f"Plan: 0 to add, 0 to change, 0 to remove, {len(added)} unchanged" in out


def test_plan_diff_shows_the_change_an_override_makes(tmp_path, demo_snapshot, fleet_cli):
    target = f"file://{tmp_path}/dags"
    fleet_cli("sync", "--store", make_store(tmp_path / "a.db", demo_snapshot), "--target", target)
    changed = replace_integration(
        demo_snapshot,
        "nyc-d02",
        "grades",
        task_overrides=json.dumps({"export_grades": {"args": {"function_id": "ps-export-v2"}}}),
    )
    code, out, _ = fleet_cli(
        "plan", "--diff", "--store", make_store(tmp_path / "b.db", changed), "--target", target
    )
    assert code == 0
    shard = dag_file(tmp_path / "dags", "nyc-d02")
    assert f"~ {shard}" in out
    assert f"--- a/{shard}" in out
    assert "-                function_id='powerschool-export'," in out
    assert "+                function_id='ps-export-v2'," in out


def test_render_prints_one_customers_files(demo_store, fleet_cli):
    code, out, _ = fleet_cli("render", "austin-isd", "--store", demo_store)
    assert code == 0
    headers = [line for line in out.splitlines() if line.startswith("# =====")]
    assert len(headers) == 1 and headers[0].endswith(" (customer austin-isd's part) =====")
    assert headers[0].startswith("# ===== fleet_shard_")
    for dag_id in ("austin-isd__main", "austin-isd__classroom", "austin-isd__staar"):
        assert f"dag_id={dag_id!r}" in out


def test_render_of_an_unknown_customer_is_a_usage_error(demo_store, fleet_cli):
    code, _out, err = fleet_cli("render", "nobody", "--store", demo_store)
    assert code == 2 and err.strip() == "error: customer nobody: not in the store"


def test_validate_checks_every_customer_and_writes_nothing(tmp_path, demo_store, fleet_cli):
    code, out, _ = fleet_cli("validate", "--store", demo_store)
    assert code == 0
    assert out.strip() == "Validated 16 customers: 28 DAGs, 0 invalid customers"


def test_store_init_demo_creates_the_schema_and_rows(tmp_path, fleet_cli):
    url = f"sqlite:///{tmp_path}/new.db"
    code, out, _ = fleet_cli("store", "init", "--store", url, "--demo")
    assert code == 0 and "Inserted the demo fleet: 16 customers" in out
    with sqlite3.connect(tmp_path / "new.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM customers").fetchone() == (16,)
    code, _out, _err = fleet_cli("store", "init", "--store", url)
    assert code == 0  # idempotent


def test_usage_errors_exit_2(fleet_cli):
    assert fleet_cli("sync", "--no-such-option")[0] == 2
    assert fleet_cli()[0] == 2


def test_an_unsupported_target_is_a_usage_error(demo_store, fleet_cli):
    code, _out, err = fleet_cli("sync", "--store", demo_store, "--target", "ftp://x/dags")
    assert code == 2 and "unsupported target URL" in err


def test_the_default_store_is_created_next_to_where_fleet_runs(tmp_path, monkeypatch, fleet_cli):
    monkeypatch.chdir(checkout(tmp_path))
    code, out, _ = fleet_cli("validate")
    assert code == 0 and Path("fleet.db").is_file()
    assert "28 DAGs" in out


def test_deploy_copies_the_meta_dag_package_and_templates_once(tmp_path, fleet_cli):
    dags = tmp_path / "dags"
    code, out, _ = fleet_cli("deploy", f"file://{dags}", "--dry-run")
    assert code == 0 and out.splitlines()[-1].startswith("Would deploy") and not dags.exists()
    code, out, _ = fleet_cli("deploy", f"file://{dags}")
    assert code == 0 and "+ fleet_meta.py" in out
    assert (dags / "composer" / "pipeline.py").is_file()
    assert (dags / "fleet_templates" / "fleet.yaml").is_file()
    code, out, _ = fleet_cli("deploy", f"file://{dags}")
    assert code == 0 and ": 0 added, 0 changed, 0 removed" in out


@pytest.mark.parametrize(
    "args",
    [
        ["sync", "--jobs", "-3"],
        ["sync", "--jobs", "0"],
        ["sync", "--jobs", "65"],
        ["sync", "--jobs", "many"],
        ["validate", "--build-jobs", "0"],
        ["plan", "--build-jobs", "-1"],
        ["sync", "--lock-wait", "-1"],
    ],
)
def test_out_of_range_job_counts_are_usage_errors(tmp_path, demo_store, args, fleet_cli):
    """`--jobs -3` used to publish, then spin at 100% CPU after the manifest."""
    code, _out, err = fleet_cli(*args, "--store", demo_store, "--target", f"file://{tmp_path}/d")
    assert code == 2 and f"argument {args[1]}" in err
    assert not (tmp_path / "d").exists()


def test_deploy_job_count_is_bounded_too(tmp_path, fleet_cli):
    code, _out, err = fleet_cli("deploy", f"file://{tmp_path}/dags", "--jobs", "-3")
    assert code == 2 and "argument --jobs: -3 is not between 1 and 64" in err
    assert not (tmp_path / "dags").exists()


@pytest.mark.parametrize(
    "option",
    [
        ["--store", "sqlite:fleet.db"],
        ["--store", "postgres://db/fleet"],
        ["--store", "spanner://projects/p/instances/i"],
        ["--target", "gs://Bad_Bucket!/dags"],
        ["--target", "s3://bucket/dags"],
    ],
)
def test_malformed_store_and_target_urls_are_usage_errors(tmp_path, demo_store, option, fleet_cli):
    args = ["plan", "--store", demo_store, "--target", f"file://{tmp_path}/d", *option]
    code, _out, err = fleet_cli(*args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_a_relative_store_path_error_shows_the_resolved_file_and_the_absolute_form(
    tmp_path, monkeypatch, fleet_cli
):
    monkeypatch.chdir(tmp_path)
    code, _out, err = fleet_cli("validate", "--store", "sqlite:///tmp/x.db")
    assert code == 3
    assert err.strip() == (
        f"error: store sqlite:///tmp/x.db ({tmp_path}/tmp/x.db): no such SQLite file; "
        "sqlite:/// with three slashes is relative to the working directory, for /tmp/x.db "
        f"write sqlite:////tmp/x.db; create it with `fleet store init --store "
        f"sqlite:///{tmp_path}/tmp/x.db`"
    )
    assert not (tmp_path / "tmp").exists()
    code, out, _ = fleet_cli("store", "init", "--store", "sqlite:///tmp/x.db")
    assert (
        code == 0 and out.strip() == f"Schema applied to sqlite:///tmp/x.db ({tmp_path}/tmp/x.db)"
    )


def test_store_errors_name_the_resolved_file(tmp_path, monkeypatch, fleet_cli):
    monkeypatch.chdir(tmp_path)
    sqlite3.connect(tmp_path / "empty.db").close()
    code, _out, err = fleet_cli("validate", "--store", "sqlite:///empty.db")
    assert code == 3
    assert err.startswith(f"error: store sqlite:///empty.db ({tmp_path}/empty.db): cannot read")


def test_validate_counts_each_customer_once_when_one_fails_at_build_time(
    tmp_path, demo_snapshot, fleet_cli
):
    broken = replace_integration(
        demo_snapshot,
        "nyc-d02",
        "grades",
        task_overrides=json.dumps({"export_grades": {"args": {"colour": "red"}}}),
    )
    code, out, err = fleet_cli("validate", "--store", make_store(tmp_path / "b.db", broken))
    assert code == 1 and "customer nyc-d02, integration grades" in err
    assert out.strip().startswith("Validated 16 customers: ")
    assert out.strip().endswith(", 1 invalid customers")


def test_environment_variables_set_store_target_and_templates_and_flags_win(
    tmp_path, demo_store, monkeypatch, fleet_cli
):
    monkeypatch.chdir(tmp_path)  # not a checkout: nothing may be seeded here
    monkeypatch.setenv("FLEET_STORE", demo_store)
    monkeypatch.setenv("FLEET_TARGET", f"file://{tmp_path}/env-dags")
    monkeypatch.setenv("FLEET_TEMPLATES", str(TEMPLATES))
    code, out, err = fleet_cli("sync")
    assert code == 0, err
    files = len(published(tmp_path / "env-dags")["files"])  # 28 DAGs in them
    assert f"Synced file://{tmp_path}/env-dags: {files} added" in out
    assert len(list((tmp_path / "env-dags").rglob("*.py"))) == files
    code, out, err = fleet_cli("sync", "--target", f"file://{tmp_path}/flag-dags")
    assert code == 0 and f"{files} added" in out
    monkeypatch.setenv("FLEET_TEMPLATES", str(tmp_path / "no-templates"))
    assert fleet_cli("validate")[0] == 1  # the variable is read: its folder is missing
    assert fleet_cli("validate", "--templates", str(TEMPLATES))[0] == 0
    monkeypatch.setenv("FLEET_STORE", "sqlite:////nowhere/fleet.db")
    assert fleet_cli("validate", "--store", demo_store, "--templates", str(TEMPLATES))[0] == 0
    assert fleet_cli("validate", "--templates", str(TEMPLATES))[0] == 3


def test_outside_a_checkout_the_default_store_is_not_created(tmp_path, monkeypatch, fleet_cli):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLEET_STORE", raising=False)
    code, _out, err = fleet_cli("sync")
    assert code == 3
    assert err.strip() == (
        f"error: store sqlite:///fleet.db: no such SQLite file {tmp_path}/fleet.db, and the "
        "demo fleet is only seeded inside a dagfleet checkout: pass --store URL or set "
        "FLEET_STORE, or create it with `fleet store init --demo --store "
        f"sqlite:///{tmp_path}/fleet.db`"
    )
    assert list(tmp_path.iterdir()) == []


def test_plan_exits_3_when_the_sync_would_refuse_the_removal(tmp_path, demo_snapshot, fleet_cli):
    target = f"file://{tmp_path}/dags"
    fleet_cli("sync", "--store", make_store(tmp_path / "a.db", demo_snapshot), "--target", target)
    empty = make_store(tmp_path / "empty.db", Snapshot())
    code, out, err = fleet_cli("plan", "--store", empty, "--target", target)
    assert code == 3
    assert "Plan: 0 to add, 0 to change, 17 to remove, 0 unchanged (removal refused" in out
    assert err.strip().startswith(
        f"error: target {target}: sync would stop, refusing to remove 28 of 28 owned DAGs"
    )
    code, _out, _err = fleet_cli("plan", "--store", empty, "--target", target, "--force-prune")
    assert code == 0


def test_a_refused_sync_still_prints_its_summary_line(tmp_path, demo_snapshot, fleet_cli):
    target = f"file://{tmp_path}/dags"
    fleet_cli("sync", "--store", make_store(tmp_path / "a.db", demo_snapshot), "--target", target)
    empty = make_store(tmp_path / "empty.db", Snapshot())
    code, out, err = fleet_cli("sync", "--store", empty, "--target", target)
    assert code == 3
    assert "refusing to remove 28 of 28 owned DAGs" in err
    assert out.strip().startswith(f"Not synced {target}: nothing changed (the plan: 0 to add")


def test_version_and_help_state_exit_codes_and_environment(fleet_cli):
    code, out, _ = fleet_cli("--version")
    assert code == 0 and out.strip() == "fleet (dagfleet) 0.1.0"
    code, out, _ = fleet_cli("--help")
    assert code == 0
    for needle in ("exit codes:", "  3  store or target failure", "FLEET_STORE", "FLEET_TARGET"):
        assert needle in out
    code, out, _ = fleet_cli("sync", "--help")
    assert code == 0 and "FLEET_TEMPLATES" in out and "--lock-wait" in out
