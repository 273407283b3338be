"""The operator-signature cache: a warm run checks operators without importing Airflow,
and anything that could change an answer makes the next run import again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from composer.compose.operator_cache import FactCache, environment_key
from composer.compose.operators import OperatorCatalog, UnknownOperator

REPO = Path(__file__).resolve().parent.parent

BIGQUERY = "airflow.providers.google.cloud.operators.bigquery.BigQueryInsertJobOperator"


def _run(code: str, cache: Path, *, extra_path: Path | None = None) -> dict:
    """Run code in a fresh interpreter (nothing imported yet); it prints one JSON line."""
    env = {**os.environ, "FLEET_CACHE_DIR": str(cache)}
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), str(REPO)])
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


SYNC_ONE_CUSTOMER = """
    import json, sys
    from pathlib import Path
    from composer.build import FleetBuilder
    from composer.store.demo import snapshot_from_yaml
    snapshot = snapshot_from_yaml(Path("examples/demo_fleet.yaml"))
    builder = FleetBuilder(snapshot, Path("templates"))
    build = builder.build("houston-isd")
    print(json.dumps({
        "files": {f.path: f.md5 for f in build.files},
        "errors": [str(e) for e in build.errors],
        "airflow_imported": sorted(m for m in sys.modules if m.split(".")[0] == "airflow")[:5],
    }))
"""


def test_a_warm_cache_builds_a_customer_without_importing_airflow(tmp_path):
    cold = _run(SYNC_ONE_CUSTOMER, tmp_path)
    warm = _run(SYNC_ONE_CUSTOMER, tmp_path)
    assert cold["errors"] == [] and cold["files"]
    assert cold["airflow_imported"], "the cold run must import the operators to check them"
    assert warm["airflow_imported"] == []
    assert warm["files"] == cold["files"]  # same bytes either way


def test_an_unknown_operator_is_never_cached(tmp_path):
    catalog = OperatorCatalog(facts=FactCache(tmp_path))
    for _ in range(2):
        with pytest.raises(UnknownOperator):
            catalog.unknown_arguments("airflow.providers.google.NoSuchOperator", {"x"})
    cached = list(tmp_path.glob("operators-*.json"))
    assert not cached or "NoSuchOperator" not in cached[0].read_text()


def test_a_cached_signature_gives_the_same_answers_as_importing(tmp_path):
    learned = OperatorCatalog(facts=FactCache(tmp_path))
    args = {"configuration", "location", "not_an_argument"}
    expected = learned.unknown_arguments(BIGQUERY, args), learned.missing_arguments(BIGQUERY, set())
    reread = OperatorCatalog(facts=FactCache(tmp_path))
    assert reread.facts.get(f"operator:{BIGQUERY}") is not None
    assert (
        reread.unknown_arguments(BIGQUERY, args),
        reread.missing_arguments(BIGQUERY, set()),
    ) == (
        ["not_an_argument"],
        expected[1],
    )
    assert reread.value_problems({"trigger_rule": "all_sucess"}) == learned.value_problems(
        {"trigger_rule": "all_sucess"}
    )


def test_an_entry_is_dropped_when_a_file_it_was_learned_from_changes(tmp_path):
    source = tmp_path / "ops.py"
    source.write_text("x = 1\n")
    FactCache(tmp_path / "cache").put("operator:ops.Op", {"arguments": ["a"]}, [str(source)])
    assert FactCache(tmp_path / "cache").get("operator:ops.Op") == {"arguments": ["a"]}
    source.write_text("x = 12\n")
    assert FactCache(tmp_path / "cache").get("operator:ops.Op") is None


def test_an_entry_is_checked_against_its_files_once_per_run(tmp_path, monkeypatch):
    source = tmp_path / "ops.py"
    source.write_text("x = 1\n")
    FactCache(tmp_path / "cache").put("operator:ops.Op", {"arguments": ["a"]}, [str(source)])
    run = FactCache(tmp_path / "cache")
    stats: list[str] = []
    real_stat = os.stat
    monkeypatch.setattr(
        os, "stat", lambda p, *a, **k: stats.append(str(p)) or real_stat(p, *a, **k)
    )
    for _ in range(50):
        assert run.get("operator:ops.Op") == {"arguments": ["a"]}
    assert stats.count(str(source)) == 1
    source.write_text("x = 12\n")  # the next run sees the change
    assert FactCache(tmp_path / "cache").get("operator:ops.Op") is None


def test_a_changed_operator_signature_is_seen_by_the_next_run(tmp_path):
    """An operator module edited in place (a provider upgrade does the same) is imported
    again, and its new required argument is enforced."""
    package = tmp_path / "pkg"
    package.mkdir()
    module = package / "myops.py"
    check = """
        import json, sys
        from composer.compose.operators import OperatorCatalog
        catalog = OperatorCatalog()
        missing = catalog.missing_arguments("myops.ExportOperator", {"table"})
        print(json.dumps({"missing": missing, "imported": "myops" in sys.modules}))
    """
    template = """
        from airflow.sdk import BaseOperator

        class ExportOperator(BaseOperator):
            def __init__(self, *, table{extra}, **kwargs):
                super().__init__(**kwargs)
    """
    module.write_text(textwrap.dedent(template.format(extra="")))
    cache = tmp_path / "cache"
    assert _run(check, cache, extra_path=package) == {"missing": [], "imported": True}
    assert _run(check, cache, extra_path=package) == {"missing": [], "imported": False}
    module.write_text(textwrap.dedent(template.format(extra=", region")))
    assert _run(check, cache, extra_path=package) == {"missing": ["region"], "imported": True}


def test_each_python_environment_has_its_own_cache_file(tmp_path, monkeypatch):
    first = environment_key()
    environment_key.cache_clear()
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    (tmp_path / "some_new_package-1.0.dist-info").mkdir()
    try:
        assert environment_key() != first
    finally:
        environment_key.cache_clear()


def test_an_unwritable_cache_directory_only_costs_speed(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    catalog = OperatorCatalog(facts=FactCache(blocker / "dagfleet"))
    assert catalog.unknown_arguments(BIGQUERY, {"nope"}) == ["nope"]


def test_the_cache_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("FLEET_CACHE_DIR", "off")
    assert FactCache.default().path is None


BUILD_EVERY_CUSTOMER = """
    import json, sys
    from pathlib import Path
    from composer.build import FleetBuilder
    from composer.store.demo import snapshot_from_yaml
    builder = FleetBuilder(snapshot_from_yaml(Path("examples/demo_fleet.yaml")), Path("templates"))
    builds = list(builder.builds())
    print(json.dumps({
        "dags": sum(len(b.dag_ids) for b in builds),
        "errors": [str(e) for b in builds for e in b.errors],
        "airflow_imported": sorted(m for m in sys.modules if m.split(".")[0] == "airflow")[:5],
    }))
"""


def test_what_the_parent_warms_is_all_a_build_worker_needs(tmp_path, monkeypatch, demo_snapshot):
    """Before starting build workers the parent fills a cold cache, so the workers (fresh
    interpreters) never import Airflow themselves: not for operators, callbacks,
    trigger rules or the legacy file."""
    from composer.build import FleetBuilder
    from composer.parallel import BuildRunner

    monkeypatch.setenv("FLEET_CACHE_DIR", str(tmp_path))
    builder = FleetBuilder(demo_snapshot, REPO / "templates")
    BuildRunner(builder)._warm_operator_cache(builder.customer_ids())
    worker_like = _run(BUILD_EVERY_CUSTOMER, tmp_path)
    assert worker_like["errors"] == [] and worker_like["dags"] > 20
    assert worker_like["airflow_imported"] == []


REFUSED_OPERATOR = """
    import dataclasses, json, sys
    from pathlib import Path
    from composer.build import FleetBuilder
    from composer.store.demo import snapshot_from_yaml
    from composer.store import Snapshot
    snapshot = snapshot_from_yaml(Path("examples/demo_fleet.yaml"))
    patch = {"export_grades": {"operator": "airflow.providers.google.NoSuchOperator"}}
    snapshot = Snapshot(snapshot.customers, tuple(
        dataclasses.replace(i, task_overrides=json.dumps(patch))
        if (i.customer_id, i.integration_id) == ("houston-isd", "grades") else i
        for i in snapshot.integrations
    ))
    build = FleetBuilder(snapshot, Path("templates")).build("houston-isd")
    print(json.dumps({
        "errors": [str(e) for e in build.errors],
        "airflow_imported": sorted(m for m in sys.modules if m.split(".")[0] == "airflow")[:5],
    }))
"""


def test_an_operator_outside_the_allow_list_is_refused_without_importing_airflow(tmp_path):
    """A bad operator name in the store used to be imported on every run (12-28 s of
    Airflow and providers): refused by name now, a warm run still imports nothing."""
    _run(SYNC_ONE_CUSTOMER, tmp_path)  # warm the cache with the valid fleet
    for _ in range(2):
        refused = _run(REFUSED_OPERATOR, tmp_path)
        assert refused["airflow_imported"] == []
        assert len(refused["errors"]) == 1 and "is not allowed" in refused["errors"][0]


def test_template_fields_are_learned_and_kept_with_the_signature(tmp_path):
    learned = OperatorCatalog(facts=FactCache(tmp_path))
    fields, ext = learned.templated(BIGQUERY)
    assert "configuration" in fields and ".sql" in ext
    reread = OperatorCatalog(facts=FactCache(tmp_path))
    assert reread.facts.get(f"operator:{BIGQUERY}")["template_fields"] == sorted(fields)
    assert reread.templated(BIGQUERY) == (fields, ext)
