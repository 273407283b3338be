"""Publishing to a local folder: deterministic output, onboarding and off-boarding,
the prune guard, ownership, and crash safety."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from composer.errors import PruneRefused, TargetError
from composer.pipeline import apply_fleet, plan_fleet
from composer.plan import MANIFEST
from composer.store import CustomerRow, IntegrationRow, Snapshot
from composer.targets import ObjectState
from composer.targets.local import TMP_PREFIX
from tests.conftest import TEMPLATES, add_customer, make_store, remove_customer, replace_customer


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
    assert len(a) == 31  # 28 DAG files, the manifest, .airflowignore and the (empty) lock
    assert a == b


def test_second_sync_writes_nothing(tmp_path, demo_snapshot):
    store = make_store(tmp_path / "fleet.db", demo_snapshot)
    target = tmp_path / "dags"
    sync(store, target)
    before = {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()}
    fleet_plan, result = sync(store, target)
    assert (result.written, result.deleted) == (0, 0)
    assert not fleet_plan.plan.has_changes and fleet_plan.plan.unchanged == 28
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()} == before


def test_onboarding_a_district_adds_exactly_its_files(tmp_path, demo_snapshot):
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "before.db", demo_snapshot), target)
    before = snapshot_files(target)
    onboarded = add_customer(demo_snapshot, *new_district())
    fleet_plan, _ = sync(make_store(tmp_path / "after.db", onboarded), target)
    after = snapshot_files(target)
    assert fleet_plan.plan.added == ["tulsa-ps/tulsa-ps__main.py"]
    assert fleet_plan.plan.changed == [] and fleet_plan.plan.removed == []
    new = set(after) - set(before)
    assert new == {"tulsa-ps/tulsa-ps__main.py"}
    assert {k: v for k, v in after.items() if k in before and k != MANIFEST} == {
        k: v for k, v in before.items() if k != MANIFEST
    }


def test_off_boarding_prunes_exactly_that_customers_files(tmp_path, demo_snapshot):
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "before.db", demo_snapshot), target)
    before = snapshot_files(target)
    churned = replace_customer(demo_snapshot, "austin-isd", active=False)
    fleet_plan, result = sync(make_store(tmp_path / "after.db", churned), target)
    assert sorted(fleet_plan.plan.removed) == [
        "austin-isd/austin-isd__classroom.py",
        "austin-isd/austin-isd__main.py",
        "austin-isd/austin-isd__staar.py",
    ]
    assert result.deleted == 3
    after = snapshot_files(target)
    assert set(before) - set(after) == set(fleet_plan.plan.removed)
    assert not (target / "austin-isd").exists()
    manifest = json.loads(after[MANIFEST])["files"]
    assert not any(p.startswith("austin-isd/") for p in manifest)


def test_emptied_store_is_refused_and_nothing_is_deleted(tmp_path, demo_snapshot, fleet_cli):
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "full.db", demo_snapshot), target)
    before = snapshot_files(target)
    empty = make_store(tmp_path / "empty.db", Snapshot())
    code, _out, err = fleet_cli("sync", "--store", empty, "--target", f"file://{target}")
    assert code == 3
    assert "refusing to remove 28 of 28 owned files" in err
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
    assert result.deleted == len(fleet_plan.plan.removed) == 9


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


def test_a_file_in_the_way_is_not_overwritten_and_its_customer_is_reported(tmp_path, demo_snapshot):
    target = tmp_path / "dags"
    (target / "nyc-d02").mkdir(parents=True)
    (target / "nyc-d02" / "nyc-d02__main.py").write_bytes(b"# hand-written\n")
    fleet_plan, _ = sync(make_store(tmp_path / "fleet.db", demo_snapshot), target)
    assert [e.customer_id for e in fleet_plan.errors] == ["nyc-d02"]
    assert "not written by dagfleet" in str(fleet_plan.errors[0])
    assert (target / "nyc-d02" / "nyc-d02__main.py").read_bytes() == b"# hand-written\n"
    assert (target / "austin-isd" / "austin-isd__main.py").exists()


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


@pytest.mark.parametrize("crash_after", [0, 1, 7, 20])
def test_a_crash_mid_sync_leaves_no_half_written_file_and_the_next_run_converges(
    tmp_path, demo_snapshot, crash_after
):
    target = tmp_path / "dags"
    store = make_store(tmp_path / "fleet.db", demo_snapshot)
    fleet_plan = plan_fleet(store, f"file://{target}", TEMPLATES)
    fleet_plan.target = CrashingTarget(fleet_plan.target, crash_after)
    with pytest.raises(TargetError):
        apply_fleet(fleet_plan, jobs=1)
    expected = {
        f.path: f.content for f in fleet_plan.render(set(fleet_plan.builder.customer_ids()))
    }
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
    leftover = target / "austin-isd" / f"{TMP_PREFIX}abc123"
    leftover.write_bytes(b"half a DAG")
    assert fleet_cli("sync", "--store", store, "--target", f"file://{target}")[0] == 0
    assert not leftover.exists()


def test_an_invalid_customers_published_files_stay_untouched(tmp_path, demo_snapshot):
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "good.db", demo_snapshot), target)
    before = snapshot_files(target)
    broken = replace_customer(demo_snapshot, "denver-public", timezone="Mars/Olympus_Mons")
    fleet_plan, _ = sync(make_store(tmp_path / "bad.db", broken), target)
    assert [str(e) for e in fleet_plan.errors] == [
        "customer denver-public, field timezone: unknown IANA timezone 'Mars/Olympus_Mons'"
    ]
    after = snapshot_files(target)
    assert {k: v for k, v in after.items() if k.startswith("denver-public/")} == {
        k: v for k, v in before.items() if k.startswith("denver-public/")
    }
    assert "denver-public/denver-public__main.py" in json.loads(after[MANIFEST])["files"]


def test_unchanged_customer_keeps_its_stagger_when_others_come_and_go(tmp_path, demo_snapshot):
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "a.db", demo_snapshot), target)
    austin = (target / "austin-isd" / "austin-isd__main.py").read_bytes()
    crowded = demo_snapshot
    for n in range(30):
        crowded = add_customer(crowded, *new_district(f"chicago-{n:02d}"))
    crowded = remove_customer(crowded, "dallas-isd")
    sync(make_store(tmp_path / "b.db", crowded), target)
    assert (target / "austin-isd" / "austin-isd__main.py").read_bytes() == austin


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


def test_files_rendered_again_after_planning_match_the_ones_kept_from_planning(
    tmp_path, demo_snapshot, monkeypatch
):
    """Applying reuses what planning rendered while it fits a memory budget and renders
    the rest again: both ways must publish the same bytes."""
    import composer.pipeline

    store = make_store(tmp_path / "fleet.db", demo_snapshot)
    kept_plan, _ = sync(store, tmp_path / "kept")
    assert set(kept_plan.kept) == set(kept_plan.builder.customer_ids())
    monkeypatch.setattr(composer.pipeline, "KEEP_BUDGET_BYTES", 3_000)
    partial_plan, _ = sync(store, tmp_path / "partial")
    assert 0 < len(partial_plan.kept) < len(kept_plan.kept)
    monkeypatch.setattr(composer.pipeline, "KEEP_BUDGET_BYTES", 0)
    rebuilt_plan, _ = sync(store, tmp_path / "rebuilt")
    assert rebuilt_plan.kept == {}
    kept = snapshot_files(tmp_path / "kept")
    assert kept == snapshot_files(tmp_path / "partial") == snapshot_files(tmp_path / "rebuilt")
