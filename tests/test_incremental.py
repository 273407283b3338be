"""Incremental planning: a customer whose inputs and published files are unchanged is
not built again, and every input that shapes its files makes it rebuild."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from composer.build import FleetBuilder
from composer.pipeline import apply_fleet, plan_fleet
from composer.plan.changes import MANIFEST
from composer.render.layout import part_path
from tests.conftest import (
    TEMPLATES,
    add_customer,
    customer_part,
    dag_file,
    make_store,
    published,
    replace_customer,
)
from tests.test_publish_local import new_district, snapshot_files


@pytest.fixture
def built(monkeypatch) -> list[str]:
    """The customers FleetBuilder.build is called for, in order."""
    calls: list[str] = []
    real = FleetBuilder.build

    def counting(self, customer_id: str):
        calls.append(customer_id)
        return real(self, customer_id)

    monkeypatch.setattr(FleetBuilder, "build", counting)
    return calls


def sync(store: str, target: Path, templates: Path = TEMPLATES):
    fleet_plan = plan_fleet(store, f"file://{target}", templates)
    return fleet_plan, apply_fleet(fleet_plan)


def test_a_no_op_sync_builds_no_customer(tmp_path, demo_snapshot, built):
    store, target = make_store(tmp_path / "fleet.db", demo_snapshot), tmp_path / "dags"
    sync(store, target)
    assert len(built) == 15
    built.clear()
    fleet_plan, result = sync(store, target)
    assert built == [] and result.written == 0
    files = len(published(target)["files"])
    assert fleet_plan.plan.unchanged == files and not fleet_plan.plan.manifest_changed


def test_onboarding_builds_only_the_new_customer(tmp_path, demo_snapshot, built):
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "a.db", demo_snapshot), target)
    built.clear()
    fleet_plan, _ = sync(
        make_store(tmp_path / "b.db", add_customer(demo_snapshot, *new_district())), target
    )
    assert built == ["tulsa-ps"]  # what planning rendered is kept for publishing
    assert fleet_plan.plan.writes == [part_path("tulsa-ps"), dag_file(target, "tulsa-ps")]


def test_a_changed_row_rebuilds_that_customer_and_matches_a_full_build(
    tmp_path, demo_snapshot, built
):
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "a.db", demo_snapshot), target)
    built.clear()
    renamed = replace_customer(demo_snapshot, "nyc-d02", name="NYC District 2")
    store = make_store(tmp_path / "b.db", renamed)
    fleet_plan, _ = sync(store, target)
    assert set(built) == {"nyc-d02"}
    assert fleet_plan.plan.changed == [part_path("nyc-d02"), dag_file(target, "nyc-d02")]
    sync(store, tmp_path / "scratch")
    assert snapshot_files(target) == snapshot_files(tmp_path / "scratch")


def test_a_new_child_rebuilds_its_parents_roll_up(tmp_path, demo_snapshot, built):
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "a.db", demo_snapshot), target)
    built.clear()
    customer, grades = new_district("cascade-west", "America/Los_Angeles")
    child = add_customer(demo_snapshot, customer, grades)
    child = replace_customer(child, "cascade-west", parent_customer_id="cascade-esd")
    fleet_plan, _ = sync(make_store(tmp_path / "b.db", child), target)
    assert set(built) == {"cascade-west", "cascade-esd"}
    # One org tree, one file: the child lands in its parent's shard.
    assert sorted(fleet_plan.plan.writes) == [
        part_path("cascade-esd"),
        part_path("cascade-west"),
        dag_file(target, "cascade-esd"),
    ]
    assert dag_file(target, "cascade-west") == dag_file(target, "cascade-esd")


def test_editing_a_template_rebuilds_exactly_the_customers_that_use_it(
    tmp_path, demo_snapshot, built
):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    store, target = make_store(tmp_path / "fleet.db", demo_snapshot), tmp_path / "dags"
    sync(store, target, templates)
    built.clear()
    path = templates / "state_assessments.yaml"
    path.write_text(path.read_text().replace("poke_interval: 900", "poke_interval: 600"))
    from composer import build as build_module

    build_module._file_digest.cache_clear()
    fleet_plan, _ = sync(store, target, templates)
    users = {"austin-isd", "dallas-isd", "boulder-valley", "phoenix-union", "boston-public",
             "cascade-north"}  # fmt: skip
    assert set(built) == users
    shards = {dag_file(target, c) for c in users}
    assert set(fleet_plan.plan.changed) == {part_path(c) for c in users} | shards


def test_a_file_changed_in_the_target_is_rebuilt_and_rewritten(tmp_path, demo_snapshot, built):
    store, target = make_store(tmp_path / "fleet.db", demo_snapshot), tmp_path / "dags"
    sync(store, target)
    path = dag_file(target, "miami-dade")
    original = (target / path).read_bytes()
    (target / path).write_bytes(b"# edited by hand\n")
    built.clear()
    fleet_plan, _ = sync(store, target)
    sharing = {c for c, e in published(target)["customers"].items() if e["file"] == path}
    assert set(built) == sharing  # whoever shares the file: nothing of it can be trusted
    assert fleet_plan.plan.changed == [path]
    assert (target / path).read_bytes() == original


def test_a_module_changed_in_the_target_rebuilds_only_its_customer(tmp_path, demo_snapshot, built):
    store, target = make_store(tmp_path / "fleet.db", demo_snapshot), tmp_path / "dags"
    sync(store, target)
    path = part_path("miami-dade")
    original = (target / path).read_bytes()
    (target / path).write_bytes(b"# edited by hand\n")
    built.clear()
    fleet_plan, _ = sync(store, target)
    assert built == ["miami-dade"]
    assert fleet_plan.plan.changed == [path]  # same bytes again: its shard file is as it was
    assert (target / path).read_bytes() == original


def test_a_manifest_without_digests_means_a_full_build_once(tmp_path, demo_snapshot, built):
    store, target = make_store(tmp_path / "fleet.db", demo_snapshot), tmp_path / "dags"
    sync(store, target)
    manifest = published(target)
    for entry in manifest["customers"].values():
        entry["inputs"] = ""
    (target / MANIFEST).write_text(json.dumps(manifest))
    parts = {c: customer_part(target, c) for c in manifest["customers"] if c != "lincoln-unified"}
    built.clear()
    fleet_plan, result = sync(store, target)
    assert len(built) == 15 and result.written == 0 and fleet_plan.plan.manifest_changed
    assert {c: customer_part(target, c) for c in parts} == parts
    assert all(e["inputs"] for e in published(target)["customers"].values())


def test_a_manifest_is_one_line_per_customer_and_file_so_a_change_is_one_line():
    from composer.plan.changes import Entry, Manifest

    customers = {
        c: Entry(inputs=c * 4, file="fleet_shard_000.py", dags=(f"{c}__main",)) for c in "abc"
    }
    before = Manifest(files={"x.py": "1", "y.py": "2"}, customers=customers, shards=1)
    after = Manifest(
        files=before.files,
        customers={**customers, "b": Entry(inputs="changed", file="fleet_shard_000.py")},
        shards=1,
    )
    old, new = before.to_bytes().decode(), after.to_bytes().decode()
    assert Manifest.from_bytes(old.encode()) == before
    assert json.loads(new)["customers"]["b"]["inputs"] == "changed"
    changed = [(a, b) for a, b in zip(old.splitlines(), new.splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and changed[0][1].lstrip().startswith('"b": ')
