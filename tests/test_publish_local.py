"""Publishing to a local folder: deterministic output, onboarding and off-boarding,
the prune guard, ownership, and crash safety."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from composer.errors import PruneRefused, TargetError
from composer.pipeline import apply_fleet, plan_fleet
from composer.plan.changes import MANIFEST
from composer.render.layout import part_path
from composer.store import CustomerRow, IntegrationRow, Snapshot
from composer.targets import ObjectState
from composer.targets.local import TMP_PREFIX
from tests.conftest import (
    TEMPLATES,
    add_customer,
    customer_part,
    dag_file,
    make_store,
    published,
    remove_customer,
    replace_customer,
)


def snapshot_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def sync(store: str, target: Path, **kwargs):
    fleet_plan = plan_fleet(store, f"file://{target}", TEMPLATES, **kwargs)
    result = apply_fleet(fleet_plan, force_prune=kwargs.get("force_prune", False))
    return fleet_plan, result


def new_district(customer_id: str = "tulsa-ps", tz: str = "America/Chicago"):
    return (
        CustomerRow(customer_id, "Tulsa Public Schools", tz, active=True),
        IntegrationRow(
            customer_id,
            "grades",
            "powerschool_grades",
            enabled=True,
            params=json.dumps({"sis_base_url": "https://tulsa.powerschool.com"}),
        ),
    )


def test_output_is_byte_identical_across_runs(tmp_path, demo_snapshot):
    store = make_store(tmp_path / "fleet.db", demo_snapshot)
    sync(store, tmp_path / "a")
    sync(store, tmp_path / "b")
    a, b = snapshot_files(tmp_path / "a"), snapshot_files(tmp_path / "b")
    files = published(tmp_path / "a")["files"]
    assert len(a) == len(files) + 3  # the DAG files, the manifest, .airflowignore, the lock
    assert a == b


def test_second_sync_writes_nothing(tmp_path, demo_snapshot):
    store = make_store(tmp_path / "fleet.db", demo_snapshot)
    target = tmp_path / "dags"
    sync(store, target)
    before = {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()}
    fleet_plan, result = sync(store, target)
    assert (result.written, result.deleted) == (0, 0)
    files = len(published(target)["files"])
    assert not fleet_plan.plan.has_changes and fleet_plan.plan.unchanged == files
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()} == before


def test_onboarding_a_district_adds_exactly_its_files(tmp_path, demo_snapshot):
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "before.db", demo_snapshot), target)
    before = snapshot_files(target)
    onboarded = add_customer(demo_snapshot, *new_district())
    fleet_plan, _ = sync(make_store(tmp_path / "after.db", onboarded), target)
    after = snapshot_files(target)
    shard, module = dag_file(target, "tulsa-ps"), part_path("tulsa-ps")
    assert fleet_plan.plan.writes == [module, shard] and fleet_plan.plan.removed == []
    assert {k for k in after if after[k] != before.get(k)} == {module, shard, MANIFEST}
    assert published(target)["customers"]["tulsa-ps"]["dags"] == ["tulsa-ps__main"]


def test_off_boarding_prunes_exactly_that_customers_files(tmp_path, demo_snapshot):
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "before.db", demo_snapshot), target)
    before = snapshot_files(target)
    churned = replace_customer(demo_snapshot, "austin-isd", active=False)
    fleet_plan, result = sync(make_store(tmp_path / "after.db", churned), target)
    austin = ["austin-isd__classroom", "austin-isd__main", "austin-isd__staar"]
    assert fleet_plan.plan.removed_dags == austin
    after = snapshot_files(target)
    changed = {k for k in before if after.get(k) != before[k]} - {MANIFEST}
    assert changed == set(fleet_plan.plan.writes) | set(fleet_plan.plan.removed)
    # its module removed, its shard file no longer loading it
    assert changed == {part_path("austin-isd"), dag_file(target, "houston-isd")}
    assert result.written == 1 and result.deleted == 1
    assert b"austin-isd" not in b"".join(after.get(p, b"") for p in changed)
    assert "austin-isd" not in json.loads(after[MANIFEST])["customers"]


def test_emptied_store_is_refused_and_nothing_is_deleted(tmp_path, demo_snapshot, fleet_cli):
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "full.db", demo_snapshot), target)
    before = snapshot_files(target)
    empty = make_store(tmp_path / "empty.db", Snapshot())
    code, _out, err = fleet_cli("sync", "--store", empty, "--target", f"file://{target}")
    assert code == 3
    assert "refusing to remove 28 of 28 owned DAGs" in err
    assert snapshot_files(target) == before
    with pytest.raises(PruneRefused):
        sync(empty, target)


def test_force_prune_removes_a_large_share_when_asked(tmp_path, demo_snapshot):
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "full.db", demo_snapshot), target)
    half = demo_snapshot
    for customer_id in ["austin-isd", "houston-isd", "dallas-isd", "miami-dade"]:
        half = remove_customer(half, customer_id)
    store = make_store(tmp_path / "half.db", half)
    with pytest.raises(PruneRefused):
        sync(store, target)
    fleet_plan, result = sync(store, target, force_prune=True)
    assert len(fleet_plan.plan.removed_dags) == 9
    assert result.deleted == len(fleet_plan.plan.removed)


def test_files_the_fleet_did_not_write_are_never_touched(tmp_path, demo_snapshot):
    target = tmp_path / "dags"
    foreign = {
        "other_team.py": b"# someone else's DAG\n",
        "austin-isd/notes.txt": b"hand-written notes\n",
        ".airflowignore": b"scratch/\n",
    }
    for rel, data in foreign.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(data)
    store = make_store(tmp_path / "fleet.db", demo_snapshot)
    sync(store, target)
    sync(make_store(tmp_path / "churn.db", remove_customer(demo_snapshot, "austin-isd")), target)
    files = snapshot_files(target)
    assert files["other_team.py"] == foreign["other_team.py"]
    assert files["austin-isd/notes.txt"] == foreign["austin-isd/notes.txt"]
    ignore = files[".airflowignore"].decode().splitlines()
    assert ignore[0] == "scratch/" and ".dagfleet-manifest.json" in ignore


def test_a_file_in_the_way_is_not_overwritten_and_its_customers_are_reported(
    tmp_path, demo_snapshot
):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    settings = templates / "fleet.yaml"
    settings.write_text(settings.read_text().replace("shards: auto", "shards: 4"))
    store = make_store(tmp_path / "fleet.db", demo_snapshot)

    def sync_to(target: Path):
        fleet_plan = plan_fleet(store, f"file://{target}", templates)
        apply_fleet(fleet_plan)
        return fleet_plan

    sync_to(tmp_path / "scratch")
    shard = dag_file(tmp_path / "scratch", "nyc-d02")
    customers = published(tmp_path / "scratch")["customers"]
    sharing = sorted(c for c, e in customers.items() if e["file"] == shard)
    target = tmp_path / "dags"
    target.mkdir()
    (target / shard).write_bytes(b"# hand-written\n")
    fleet_plan = sync_to(target)
    assert sorted(e.customer_id for e in fleet_plan.errors) == sharing
    assert "not written by dagfleet" in str(fleet_plan.errors[0])
    assert (target / shard).read_bytes() == b"# hand-written\n"
    others = set(customers) - set(sharing)
    assert others and set(published(target)["customers"]) == others


class CrashingTarget:
    """The real LocalTarget, with a crash injected after `after` successful writes:
    the one fault a real disk will not produce on demand."""

    def __init__(self, inner, after: int) -> None:
        self.inner, self.after, self.url = inner, after, inner.url

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def write(self, path: str, data: bytes, expected: ObjectState | None) -> ObjectState:
        if self.after <= 0:
            raise TargetError("simulated crash")
        self.after -= 1
        return self.inner.write(path, data, expected)


@pytest.mark.parametrize("crash_after", [0, 1, 2, 3])
def test_a_crash_mid_sync_leaves_no_half_written_file_and_the_next_run_converges(
    tmp_path, demo_snapshot, crash_after
):
    target = tmp_path / "dags"
    store = make_store(tmp_path / "fleet.db", demo_snapshot)
    fleet_plan = plan_fleet(store, f"file://{target}", TEMPLATES)
    fleet_plan.target = CrashingTarget(fleet_plan.target, crash_after)
    with pytest.raises(TargetError):
        apply_fleet(fleet_plan, jobs=1)
    expected = {f.path: f.content for f in fleet_plan.render(set(fleet_plan.plan.writes))}
    for path in target.rglob("*.py"):
        assert path.read_bytes() == expected[str(path.relative_to(target))]
    assert not [p for p in target.rglob("*") if p.name.startswith(TMP_PREFIX)]
    again, _ = sync(store, target)
    assert not plan_fleet(store, f"file://{target}", TEMPLATES).plan.has_changes
    assert set(json.loads((target / MANIFEST).read_bytes())["files"]) == set(expected)
    assert again.errors == []


def test_a_temp_file_left_by_a_killed_run_is_cleaned_up(tmp_path, demo_snapshot, fleet_cli):
    """By the next `fleet sync`, which lists the target under the lock."""
    target = tmp_path / "dags"
    store = make_store(tmp_path / "fleet.db", demo_snapshot)
    sync(store, target)
    leftover = target / f"{TMP_PREFIX}abc123"
    leftover.write_bytes(b"half a DAG")
    assert fleet_cli("sync", "--store", store, "--target", f"file://{target}")[0] == 0
    assert not leftover.exists()


def test_an_invalid_customers_published_files_stay_untouched(tmp_path, demo_snapshot):
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "good.db", demo_snapshot), target)
    before_part = customer_part(target, "denver-public")
    broken = replace_customer(demo_snapshot, "denver-public", timezone="Mars/Olympus_Mons")
    fleet_plan, _ = sync(make_store(tmp_path / "bad.db", broken), target)
    assert [str(e) for e in fleet_plan.errors] == [
        "customer denver-public, field timezone: unknown IANA timezone 'Mars/Olympus_Mons'"
    ]
    assert customer_part(target, "denver-public") == before_part
    assert "denver-public" in published(target)["customers"]


def test_unchanged_customer_keeps_its_stagger_when_others_come_and_go(tmp_path, demo_snapshot):
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "a.db", demo_snapshot), target)
    austin = customer_part(target, "austin-isd")
    crowded = demo_snapshot
    for n in range(30):
        crowded = add_customer(crowded, *new_district(f"chicago-{n:02d}"))
    crowded = remove_customer(crowded, "dallas-isd")
    sync(make_store(tmp_path / "b.db", crowded), target)
    assert customer_part(target, "austin-isd") == austin


def test_spanner_style_json_key_order_does_not_change_the_output(tmp_path, demo_snapshot):
    """Spanner returns JSON objects with sorted keys; SQLite returns the text as written."""

    def reorder(value):
        if value is None:
            return None
        data = json.loads(value)
        return json.dumps(dict(reversed(list(data.items()))))

    shuffled = Snapshot(
        tuple(dataclasses.replace(c, params=reorder(c.params)) for c in demo_snapshot.customers),
        tuple(
            dataclasses.replace(
                i, params=reorder(i.params), task_overrides=reorder(i.task_overrides)
            )
            for i in demo_snapshot.integrations
        ),
    )
    sync(make_store(tmp_path / "a.db", demo_snapshot), tmp_path / "a")
    sync(make_store(tmp_path / "b.db", shuffled), tmp_path / "b")
    assert snapshot_files(tmp_path / "a") == snapshot_files(tmp_path / "b")
