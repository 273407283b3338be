"""Every feature example (examples/features/<name>/) runs: its fleet builds with no
error, every generated file imports in Airflow 3's DagBag with no import error, and
`fleet lint` passes over its templates folder. An example is documentation; this
keeps it true. With no example folders the tests are skipped, not failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.airflow2_env import dagbag_report
from tests.conftest import make_store, published
from tests.examples import example_names, example_snapshot, example_templates

NAMES = example_names()


@pytest.mark.airflow
@pytest.mark.parametrize("name", NAMES)
def test_the_example_fleet_builds_and_every_file_imports_in_airflow(name, tmp_path, fleet_cli):
    templates = example_templates(name, tmp_path)
    store = make_store(tmp_path / "fleet.db", example_snapshot(name))
    dags = tmp_path / "dags"

    code, out, err = fleet_cli(
        "sync", "--store", store, "--target", f"file://{dags}", "--templates", str(templates)
    )

    assert code == 0, err
    files = sorted(str(p.relative_to(dags)) for p in dags.rglob("*.py"))
    assert files, out
    report = dagbag_report(dags)
    assert report["import_errors"] == {}
    # Every DAG the manifest lists is built, from the shard file it names; every other
    # DAG comes from a legacy file; every file on disk is published, and every one but
    # the customers' modules (which the shard files load) yields a DAG.
    manifest = published(dags)
    generated = {
        dag_id: entry["file"]
        for entry in manifest["customers"].values()
        for dag_id in entry["dags"]
    }
    legacy = {
        f"{cid}/{name}"
        for cid, entry in manifest["customers"].items()
        for name in entry.get("legacy", [])
    }
    assert generated, out
    assert {d: report["files"][d] for d in generated if d in report["files"]} == generated
    others = {d: f for d, f in report["files"].items() if d not in generated}
    assert set(others.values()) <= legacy
    assert sorted(set(manifest["files"]) | legacy) == files
    assert set(report["files"].values()) == {f for f in files if not f.startswith("fleet_parts/")}


@pytest.mark.parametrize("name", NAMES)
def test_the_example_templates_lint_clean(name, tmp_path, fleet_cli):
    templates = example_templates(name, tmp_path)

    code, out, err = fleet_cli("lint", "--templates", str(templates))

    assert (code, err) == (0, ""), err
    assert out.endswith(": all valid\n")


@pytest.mark.parametrize("name", NAMES)
def test_the_example_templates_are_in_the_reference_page(name, tmp_path, fleet_cli):
    templates = example_templates(name, tmp_path)
    code, out, _ = fleet_cli("docs", "--templates", str(templates))

    assert code == 0
    example = Path(__file__).resolve().parent.parent / "examples" / "features" / name
    for path in sorted((example / "templates").glob("*.yaml")):
        assert f"## `{path.stem}`" in out
