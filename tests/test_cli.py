"""The `fleet` command line: defaults, subcommands and exit codes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.conftest import dag_file, make_store, published, replace_integration


def test_sync_on_a_fresh_clone_seeds_the_default_store_and_builds_the_demo(
    tmp_path, monkeypatch, fleet_cli
):
    monkeypatch.chdir(tmp_path)
    code, out, err = fleet_cli("sync")
    assert code == 0, err
    assert "created fleet.db with the demo fleet" in err
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
        f"error: store sqlite:///{tmp_path}/missing.db: no such SQLite file "
        "(create it with `fleet store init`)"
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


def test_render_of_an_unknown_customer_says_so(demo_store, fleet_cli):
    code, _out, err = fleet_cli("render", "nobody", "--store", demo_store)
    assert code == 1 and err.strip() == "error: customer nobody: not in the store"


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


def test_an_unsupported_target_is_a_target_failure(demo_store, fleet_cli):
    code, _out, err = fleet_cli("sync", "--store", demo_store, "--target", "ftp://x/dags")
    assert code == 3 and "unsupported target URL" in err


def test_the_default_store_is_created_next_to_where_fleet_runs(tmp_path, monkeypatch, fleet_cli):
    monkeypatch.chdir(tmp_path)
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
