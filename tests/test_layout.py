"""The file layout (composer/render/layout.py): shard files that load several customers' modules,
never a customer split over files, a worker building only its DAG, one module and its
shard file rewritten per change, invalid customers' modules kept byte for byte, targets
of earlier layouts migrated, and the prune guard counting DAGs."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from composer.errors import PruneRefused
from composer.pipeline import apply_fleet, plan_fleet
from composer.plan.changes import MANIFEST
from composer.render import layout, render_dag
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
from tests.test_publish_local import new_district, snapshot_files


def templates_with(tmp_path: Path, shards: int | str) -> Path:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates, dirs_exist_ok=True)
    settings = templates / "fleet.yaml"
    settings.write_text(settings.read_text().replace("shards: auto", f"shards: {shards}"))
    return templates


def sync(store: str, target: Path, templates: Path = TEMPLATES, **kwargs):
    fleet_plan = plan_fleet(store, f"file://{target}", templates, **kwargs)
    return fleet_plan, apply_fleet(fleet_plan, force_prune=kwargs.get("force_prune", False))


def test_each_customers_dags_are_in_exactly_one_file_shared_with_other_customers(
    tmp_path, demo_snapshot
):
    templates = templates_with(tmp_path, 4)
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "fleet.db", demo_snapshot), target, templates)
    customers = published(target)["customers"]
    tables: dict[str, str] = {}  # dag_id -> the shard file that loads it
    for path in target.glob("fleet_shard_*.py"):
        for customer_id, dag_ids in layout.listed(path.read_bytes()).items():
            assert customers[customer_id]["file"] == path.name
            # the customer's module registers exactly the DAGs its shard file lists
            part = customer_part(target, customer_id)
            built = [line.split("'")[1] for line in part.splitlines() if line.startswith("DAGS[")]
            assert sorted(built) == dag_ids
            for dag_id in dag_ids:
                assert dag_id not in tables, f"{dag_id} is loaded by two files"
                tables[dag_id] = path.name
    generated = {d for e in customers.values() for d in e["dags"] if "/" not in d}
    assert set(tables) == generated
    assert len(set(tables.values())) <= 4 < len({c for c, e in customers.items() if e["file"]})
    # an org tree shares a file: the roll-up parent and its descendants
    assert (
        len({dag_file(target, c) for c in ("cascade-esd", "cascade-north", "cascade-south")}) == 1
    )


@pytest.mark.airflow
def test_the_parsing_context_builds_only_the_dag_a_worker_asks_for(
    tmp_path, demo_snapshot, monkeypatch
):
    from airflow.dag_processing.dagbag import DagBag

    target = tmp_path / "dags"
    sync(make_store(tmp_path / "fleet.db", demo_snapshot), target)
    shard = target / dag_file(target, "austin-isd")
    everyone = DagBag(dag_folder=str(shard), safe_mode=False)
    assert everyone.import_errors == {} and len(everyone.dags) > 3
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "austin-isd__staar")
    one = DagBag(dag_folder=str(shard), safe_mode=False)
    assert one.import_errors == {} and list(one.dags) == ["austin-isd__staar"]
    # the same DAG as when every DAG of the file is built
    assert one.dags["austin-isd__staar"].task_ids == everyone.dags["austin-isd__staar"].task_ids


def test_onboarding_writes_its_module_and_shard_file_and_no_other_customers_bytes(
    tmp_path, demo_snapshot
):
    templates = templates_with(tmp_path, 4)
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "a.db", demo_snapshot), target, templates)
    before = snapshot_files(target)
    parts = {
        c: customer_part(target, c)
        for c in published(target)["customers"]
        if c != "lincoln-unified"
    }
    onboarded = add_customer(demo_snapshot, *new_district())
    fleet_plan, result = sync(make_store(tmp_path / "b.db", onboarded), target, templates)
    shard, module = dag_file(target, "tulsa-ps"), layout.part_path("tulsa-ps")
    assert sorted(fleet_plan.plan.writes) == [module, shard] and result.written == 2
    after = snapshot_files(target)
    assert {p for p in after if after[p] != before.get(p)} == {module, shard, MANIFEST}
    assert {c: customer_part(target, c) for c in parts} == parts
    # the shard file lists what it listed before, and tulsa-ps
    old = layout.listed(before.get(shard, b""))
    new = layout.listed(after[shard])
    assert {c: d for c, d in new.items() if c != "tulsa-ps"} == old
    assert new["tulsa-ps"] == ["tulsa-ps__main"]


def test_an_invalid_customer_keeps_its_module_byte_exact_when_its_shard_is_rewritten(
    tmp_path, demo_snapshot
):
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "a.db", demo_snapshot), target, templates_with(tmp_path, 1))
    denver = customer_part(target, "denver-public")
    entry = published(target)["customers"]["denver-public"]
    broken = replace_customer(demo_snapshot, "denver-public", timezone="Mars/Olympus_Mons")
    renamed = replace_customer(broken, "nyc-d02", name="NYC District 2")  # same (only) file
    fleet_plan, _ = sync(
        make_store(tmp_path / "b.db", renamed), target, templates_with(tmp_path, 1)
    )
    assert [e.customer_id for e in fleet_plan.errors] == ["denver-public"]
    # nyc-d02's module, and the shard file both load (it names each module's md5)
    assert fleet_plan.plan.changed == [layout.part_path("nyc-d02"), entry["file"]]
    assert customer_part(target, "denver-public") == denver
    assert published(target)["customers"]["denver-public"] == entry
    assert "NYC District 2" in customer_part(target, "nyc-d02")


def test_the_prune_guard_counts_dags_not_files(tmp_path, demo_snapshot):
    target = tmp_path / "dags"
    templates = templates_with(tmp_path, 1)
    sync(make_store(tmp_path / "a.db", demo_snapshot), target, templates)
    smaller = demo_snapshot
    for customer_id in ("austin-isd", "dallas-isd", "houston-isd"):  # 3 + 2 + 2 DAGs of 28
        smaller = remove_customer(smaller, customer_id)
    store = make_store(tmp_path / "b.db", smaller)
    fleet_plan = plan_fleet(store, f"file://{target}", templates)
    gone = [layout.part_path(c) for c in ("austin-isd", "dallas-isd", "houston-isd")]
    assert fleet_plan.plan.removed == gone and len(fleet_plan.plan.removed_dags) == 7
    before = snapshot_files(target)
    with pytest.raises(PruneRefused, match="refusing to remove 7 of 28 owned DAGs"):
        apply_fleet(fleet_plan)
    assert snapshot_files(target) == before
    sync(store, target, templates, force_prune=True)
    assert "austin-isd" not in published(target)["customers"]


def test_a_fleet_published_one_file_per_dag_moves_to_shards_without_tripping_the_guard(
    tmp_path, demo_snapshot
):
    """A target written by dagfleet before shard files (manifest version 2)."""
    target = tmp_path / "dags"
    store = make_store(tmp_path / "fleet.db", demo_snapshot)
    sync(store, tmp_path / "scratch")
    old_files, old_md5 = {}, {}
    from composer.build import FleetBuilder
    from composer.store import open_store

    builder = FleetBuilder(open_store(store).read_snapshot(), TEMPLATES)
    for customer_id in builder.customer_ids():
        specs, _ = builder.composer.compose(builder.fleet.customers[customer_id])
        for spec in specs:
            path = f"{customer_id}/{spec.dag_id}.py"
            (target / customer_id).mkdir(parents=True, exist_ok=True)
            (target / path).write_text(render_dag(spec))
            old_files[path], old_md5[path] = customer_id, ""
    version2 = {"generator": "dagfleet", "version": 2, "files": old_files, "md5": old_md5}
    (target / MANIFEST).write_text(json.dumps(version2))
    fleet_plan, _ = sync(store, target)
    assert fleet_plan.errors == [] and not fleet_plan.plan.prune_refused
    assert fleet_plan.plan.removed_dags == []
    assert sorted(fleet_plan.plan.removed) == sorted(old_files)
    stray = [p for p in target.rglob("*.py") if p.parent.name not in (target.name, "fleet_parts")]
    assert [p.name for p in stray] == ["lincoln_unified_legacy.py"]
    assert snapshot_files(target) == snapshot_files(tmp_path / "scratch")


@pytest.mark.airflow
def test_a_target_with_parts_inside_its_shard_files_moves_to_modules_keeping_invalid_dags(
    tmp_path, demo_snapshot
):
    """A target written before the customers' modules (manifest version 3: each
    customer's builders inside its shard file): every valid customer is rebuilt into its
    module, and an invalid one's module is taken from its old shard file, byte for byte,
    so its last good DAGs keep running."""
    from airflow.dag_processing.dagbag import DagBag

    target = tmp_path / "dags"
    store = make_store(tmp_path / "a.db", demo_snapshot)
    sync(store, target)
    manifest = published(target)
    denver = customer_part(target, "denver-public")
    for shard in {e["file"] for e in manifest["customers"].values() if e["file"]}:
        cids = layout.listed((target / shard).read_bytes())
        fat = layout.module([customer_part(target, c) for c in cids], 3)
        (target / shard).write_text(fat)
        manifest["files"][shard] = hashlib.md5(fat.encode()).hexdigest()
    for path in list(manifest["files"]):
        if path.startswith("fleet_parts/"):
            del manifest["files"][path]
    shutil.rmtree(target / "fleet_parts")
    for entry in manifest["customers"].values():
        entry.pop("modules")
    (target / MANIFEST).write_text(json.dumps({**manifest, "version": 3}))

    broken = replace_customer(demo_snapshot, "denver-public", timezone="Mars/Olympus_Mons")
    fleet_plan, _ = sync(make_store(tmp_path / "b.db", broken), target)

    assert [e.customer_id for e in fleet_plan.errors] == ["denver-public"]
    assert fleet_plan.plan.removed_dags == [] and fleet_plan.plan.removed == []
    assert customer_part(target, "denver-public") == denver
    assert published(target)["version"] == 4
    bag = DagBag(dag_folder=str(target), safe_mode=False, bundle_path=target)
    assert bag.import_errors == {} and len(bag.dags) == 28
    assert {"denver-public__main", "denver-public__classroom"} <= set(bag.dags)


def test_auto_shard_count_keeps_its_count_until_the_fleet_halves_or_doubles():
    assert layout.shard_count(15, None) == 1
    assert layout.shard_count(1000, None) == 64  # ~16 customers a file
    assert layout.shard_count(10_000, None) == 512
    assert layout.shard_count(1001, 64) == layout.shard_count(999, 64) == 64
    assert layout.shard_count(2048, 64) == 64 and layout.shard_count(2049, 64) == 128
    assert layout.shard_count(511, 64) == 32 and layout.shard_count(512, 64) == 64
    # after a change the fleet sits mid-window, so one customer more or less never flips it
    assert layout.shard_count(2048, 128) == layout.shard_count(2050, 128) == 128


def test_the_airflow_2_target_imports_the_parsing_context_from_airflow_2(tmp_path, demo_snapshot):
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    settings = templates / "fleet.yaml"
    settings.write_text(settings.read_text().replace("airflow_target: 3", "airflow_target: 2"))
    target = tmp_path / "dags"
    sync(make_store(tmp_path / "fleet.db", demo_snapshot), target, templates)
    text = (target / dag_file(target, "austin-isd")).read_text()
    assert "from airflow.utils.dag_parsing_context import get_parsing_context\n" in text
    assert "airflow.sdk" not in text


# The first definitions of split() and airflow_modules(): whole-text regexes, kept here as
# the reference the line-by-line versions must agree with.
_PART_REFERENCE = re.compile(
    r"^# --- dagfleet customer ([A-Za-z0-9_-]+): begin ---\n.*?"
    r"^# --- dagfleet customer \1: end ---\n",
    re.DOTALL | re.MULTILINE,
)
_IMPORT_REFERENCE = re.compile(r"^ +from (airflow\.[\w.]+) import ", re.MULTILINE)
_BEGIN = "# --- dagfleet customer {}: begin ---\n"
_END = "# --- dagfleet customer {}: end ---\n"
_ODD_TEXTS = [
    "",
    _BEGIN.format("a"),  # never ended
    _BEGIN.format("a") + _END.format("a"),  # empty part
    "x" + _BEGIN.format("a") + "body\n" + _END.format("a"),  # begin not at a line start
    _BEGIN.format("a") + "body " + _END.format("a") + _END.format("a"),  # end inside a line
    _BEGIN.format("a") + _BEGIN.format("b") + "b\n" + _END.format("b") + _END.format("a"),
    _BEGIN.format("a") + "1\n" + _END.format("b") + _END.format("a") + _BEGIN.format("c"),
    _BEGIN.format("a") + "1\n" + _END.format("a") + "\n" + _BEGIN.format("b") + _END.format("b"),
    _BEGIN.format("a b") + _END.format("a b"),  # not an id
    _BEGIN.format("a").rstrip("\n"),  # no newline at all
    "  from airflow.sdk import DAG\n\tfrom airflow.x import y\nfrom airflow.top import z\n"
    "    from airflow.providers.google.cloud.operators.bigquery import A, B\n"
    "    from airflowx.y import z\n    from  airflow.two import spaces\n",
]


def test_parts_and_airflow_imports_are_found_as_the_whole_text_regexes_found_them(
    tmp_path, demo_snapshot
):
    sync(make_store(tmp_path / "fleet.db", demo_snapshot), tmp_path / "out")
    texts = [p.read_text() for p in sorted((tmp_path / "out" / "fleet_parts").glob("*.py"))]
    assert len(texts) > 10
    texts.append("".join(texts))  # many customers' parts in one text
    for text in [*texts, *_ODD_TEXTS]:
        expected = {m.group(1): m.group(0) for m in _PART_REFERENCE.finditer(text)}
        assert layout.split(text) == expected, text[:200]
        assert layout.airflow_modules(text) == tuple(
            sorted(set(_IMPORT_REFERENCE.findall(text)))
        ), text[:200]
