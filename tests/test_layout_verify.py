"""Verification with shard files (composer/verify/verifier.py, composer/render/layout.py): each rebuilt
customer's part is imported by Airflow as a module of its own, header + part + footer,
which is exactly what ships; one customer's refusal sets only that customer aside, even
when its shard file is rewritten for another customer."""

from __future__ import annotations

import shutil
from pathlib import Path

from composer.pipeline import apply_fleet, plan_fleet
from composer.render import layout
from composer.verify.verifier import Verifier
from tests.conftest import TEMPLATES, customer_part, make_store, published, replace_integration


def _one_shard(tmp_path: Path) -> Path:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    settings = templates / "fleet.yaml"
    settings.write_text(settings.read_text().replace("shards: auto", "shards: 1"))
    return templates


def _sync(tmp_path: Path, snapshot, target: Path, templates: Path, name: str):
    store = make_store(tmp_path / f"{name}.db", snapshot)
    fleet_plan = plan_fleet(store, f"file://{target}", templates, build_jobs=1)
    apply_fleet(fleet_plan)
    return fleet_plan


def _spy(monkeypatch) -> list[tuple[str, bytes]]:
    """Every (path, content) handed to the real verifier."""
    seen: list[tuple[str, bytes]] = []
    real = Verifier.verify

    def verify(self, files):
        seen.extend(files)
        return real(self, files)

    monkeypatch.setattr(Verifier, "verify", verify)
    return seen


def test_only_the_rebuilt_customers_part_is_verified_with_the_builders_its_module_ships(
    tmp_path, demo_snapshot, monkeypatch
):
    templates = _one_shard(tmp_path)
    target = tmp_path / "dags"
    _sync(tmp_path, demo_snapshot, target, templates, "before")
    seen = _spy(monkeypatch)
    changed = replace_integration(
        demo_snapshot,
        "houston-isd",
        "grades",
        task_overrides='{"load_staging": {"args": {"pool_slots": 2}}}',
    )
    fleet_plan = _sync(tmp_path, changed, target, templates, "after")
    assert fleet_plan.errors == []
    assert fleet_plan.plan.changed == [layout.part_path("houston-isd"), "fleet_shard_000.py"]
    # one customer rebuilt with a new part: one import, of its part alone
    assert [path for path, _ in seen] == ["houston-isd/fleet_shard_000.py"]
    verified = seen[0][1].decode()
    assert list(layout.split(verified)) == ["houston-isd"]
    part = customer_part(target, "houston-isd")
    assert "pool_slots=2" in part
    # header + the published module's builders + footer: the file the DAG processor would
    # parse were the customer alone in a shard file with its builders inline
    assert verified == layout.module([part], 3)


def test_a_refused_part_sets_aside_only_its_customer_in_a_rewritten_shared_file(
    tmp_path, demo_snapshot, monkeypatch
):
    templates = _one_shard(tmp_path)
    target = tmp_path / "dags"
    _sync(tmp_path, demo_snapshot, target, templates, "before")
    houston_before = customer_part(target, "houston-isd")
    seen = _spy(monkeypatch)
    broken = replace_integration(
        demo_snapshot,
        "houston-isd",
        "grades",
        task_overrides='{"load_staging": {"args": {"pool_slots": 0}}}',
    )
    both = replace_integration(
        broken,
        "austin-isd",
        "grades",
        task_overrides='{"load_staging": {"args": {"pool_slots": 3}}}',
    )
    fleet_plan = _sync(tmp_path, both, target, templates, "after")
    assert sorted(p for p, _ in seen) == [
        "austin-isd/fleet_shard_000.py",
        "houston-isd/fleet_shard_000.py",
    ]
    assert [(e.customer_id, e.integration_id, e.field) for e in fleet_plan.errors] == [
        ("houston-isd", "grades", "task_overrides.load_staging.args.pool_slots")
    ]
    assert "(houston-isd's part, DAG houston-isd__main)" in fleet_plan.errors[0].message
    # the shared file was rewritten for austin-isd; houston-isd's last good part is in it
    assert "pool_slots=3" in customer_part(target, "austin-isd")
    assert customer_part(target, "houston-isd") == houston_before
    assert published(target)["customers"]["houston-isd"]["dags"]


def test_parts_verify_inside_an_airflow_task_whose_parsing_context_names_another_dag(
    tmp_path, demo_snapshot, monkeypatch
):
    """The meta-DAG's sync runs in a task with Airflow's parsing context set (dag_id
    fleet_meta): the verifying import must still build every DAG of each part, as the DAG
    processor does, not refuse every customer for 'no DAG in the file'."""
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "fleet_meta")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "sync")
    # a setting of its own, so a verification process started without the context
    # (kept by the pool for earlier tests) is not reused
    monkeypatch.setenv("AIRFLOW__CORE__DEFAULT_TASK_RETRIES", "0")
    target = tmp_path / "dags"
    fleet_plan = _sync(tmp_path, demo_snapshot, target, _one_shard(tmp_path), "in-task")
    assert fleet_plan.errors == [] and fleet_plan.invalid_customers == []
    modules = [layout.part_path(c) for c in published(target)["customers"]]
    assert sorted(fleet_plan.plan.added) == sorted(
        [*modules, "fleet_shard_000.py", "lincoln-unified/lincoln_unified_legacy.py"]
    )
    assert sum(len(e["dags"]) for e in published(target)["customers"].values()) == 28
