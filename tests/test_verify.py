"""Nothing broken is published: every file a sync would write is imported by Airflow's
own DagBag first, in an interpreter whose path holds the `composer` package as deploy
ships it; a refused file sets its customer aside with Airflow's message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from composer import parallel
from composer.build import FleetBuilder
from composer.parallel import BuildRunner
from composer.plan.changes import MANIFEST
from composer.verify.verifier import PYTHON_ENV, Problem, Verifier, refusal
from tests import test_bad_input
from tests.conftest import add_customer, replace_integration
from tests.test_bad_input import BAD, E, assert_set_aside, fresh_rows, overrides, run_sync

REPO = Path(__file__).resolve().parent.parent
baseline = test_bad_input.baseline  # the published fleet those cases start from (a fixture)

REFUSED = {
    "pool_slots_zero_in_a_main_dag": (
        overrides("grades", {"load_staging": {"args": {"pool_slots": 0}}}),
        E(
            BAD,
            "grades",
            "task_overrides.load_staging.args.pool_slots",
            f"fleet_shard_000.py ({BAD}'s part, DAG {BAD}__main): Airflow refuses the file: "
            "ValueError: pool slots for "
            f"grades.load_staging in dag {BAD}__main cannot be less than 1",
        ),
    ),
    # (execution_timeout in seconds was the example here: dagfleet now writes it as a
    # timedelta, README: Typed values.)
    "doc_md_not_a_string_in_a_cron_dag": (
        overrides("classroom", {"load_coursework": {"args": {"doc_md": 5}}}),
        E(
            BAD,
            "classroom",
            "task_overrides.load_coursework.args.doc_md",
            "TypeError: 'doc_md' for task 'load_coursework' expects <class 'str'>, got "
            "<class 'int'> with value 5",
        ),
    ),
}


def dagbag_of(folder: Path):
    """Airflow 3's DagBag over a published folder (the manifest is not Python)."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder), safe_mode=False)


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_an_override_airflow_refuses_sets_its_customer_aside_with_airflows_message(
    case: str, tmp_path, fleet_cli, baseline
):
    break_it, expected = REFUSED[case]
    snapshot = add_customer(break_it(baseline.snapshot), *fresh_rows())
    outcome = run_sync(tmp_path, fleet_cli, baseline, snapshot)
    # exit 1, exactly this one-line error, the broken customer's files byte-identical,
    # the valid new customer published
    assert_set_aside(outcome, baseline, (expected,))
    # ... and what is published all imports: the DagBag refuses nothing in the target.
    target = tmp_path / "dags"
    bag = dagbag_of(target)
    assert bag.import_errors == {}
    published = sorted(d for e in outcome.manifest.values() for d in e["dags"])
    assert len(bag.dag_ids) == len(published) > 20  # a legacy file: one DAG, by its path


def _broken_demo(demo_snapshot):
    snapshot = replace_integration(
        demo_snapshot,
        "houston-isd",
        "grades",
        task_overrides='{"load_staging": {"args": {"pool_slots": 0}}}',
    )
    return replace_integration(
        snapshot,
        "denver-public",
        "classroom",
        task_overrides='{"load_coursework": {"args": {"doc_md": 5}}}',
    )


def test_build_workers_and_one_process_verify_alike(demo_snapshot, templates_dir, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_PER_WORKER_VERIFYING", 1)  # the demo, through workers
    monkeypatch.setattr(parallel, "CHUNK", 4)
    snapshot = _broken_demo(demo_snapshot)
    results = {}
    for jobs in (1, 2):
        builder = FleetBuilder(snapshot, templates_dir)
        ids = builder.customer_ids()
        with BuildRunner(builder, jobs=jobs) as runner:
            builds = list(runner.builds(ids, verify_against={}))  # an empty target
            assert len(runner._workers) == (2 if jobs == 2 else 0)
        results[jobs] = (
            {(f.customer_id, f.path): f.content for b in builds for f in b.files},
            [str(e) for b in builds for e in b.errors],
            builder.invalid,
        )
    assert results[1] == results[2]
    files, errors, invalid = results[1]
    assert invalid == {"houston-isd", "denver-public"}
    assert len(errors) == 2 and "cannot be less than 1" in errors[1]
    assert "'doc_md' for task 'load_coursework' expects" in errors[0]
    owners = {customer for customer, _path in files}
    assert len(owners) > 10 and not owners & {"houston-isd", "denver-public"}


def test_a_sync_that_writes_nothing_verifies_nothing(
    tmp_path, fleet_cli, demo_snapshot, monkeypatch
):
    """No verification interpreter starts unless a file would be written: with one that
    cannot start, a no-op sync and a rebuild that changes no file still succeed, and the
    first file to write fails the run (exit 3, nothing written)."""
    from tests.conftest import make_store

    target = tmp_path / "dags"
    store = make_store(tmp_path / "fleet.db", demo_snapshot)
    sync = ("sync", "--store", store, "--target", f"file://{target}")
    assert fleet_cli(*sync)[0] == 0
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    monkeypatch.setenv(PYTHON_ENV, str(tmp_path / "no-such-python"))
    code, out, err = fleet_cli(*sync)
    assert (code, err) == (0, "") and "0 added, 0 changed" in out
    # houston-isd's row changes (a param set to its default): rebuilt, same files
    same = json.dumps(
        {
            "sis_base_url": "https://houstonisd.powerschool.com",
            "grades_table": "gradebook",
            "sis_client_secret_id": "powerschool-houston-isd",
        }
    )
    make_store(
        tmp_path / "edited.db",
        replace_integration(demo_snapshot, "houston-isd", "grades", params=same),
    )
    code, out, err = fleet_cli("sync", "--store", f"sqlite:///{tmp_path / 'edited.db'}", *sync[3:])
    assert (code, err) == (0, "") and "0 added, 0 changed" in out
    broken = replace_integration(
        demo_snapshot, "houston-isd", "grades", task_overrides='{"grades_in_range": null}'
    )
    make_store(tmp_path / "changed.db", broken)
    code, out, err = fleet_cli("sync", "--store", f"sqlite:///{tmp_path / 'changed.db'}", *sync[3:])
    assert code == 3 and "no-such-python" in err and len(err.strip().splitlines()) == 1
    after = {p: p.read_bytes() for p in target.rglob("*") if p.is_file() and p.name != MANIFEST}
    assert after == {p: c for p, c in before.items() if p.name != MANIFEST}


def _houston_main(demo_snapshot, templates_dir):
    builder = FleetBuilder(demo_snapshot, templates_dir)
    return next(f for f in builder.build("houston-isd").files if f.part)


def test_callbacks_are_imported_from_what_deploy_ships_not_from_the_checkout(
    tmp_path, demo_snapshot, templates_dir
):
    """A callbacks module that imports something only the checkout has (here the repo's
    `bench` package) works in the checkout but not on Composer: verification refuses it."""
    main = _houston_main(demo_snapshot, templates_dir)
    checkout = tmp_path / "checkout"
    shutil.copytree(
        REPO / "composer", checkout / "composer", ignore=shutil.ignore_patterns("*.pyc")
    )
    with Verifier(3, _python()) as verifier:
        assert verifier.verify([(main.path, main.content)]) == {}  # the shipped copy is fine
    callbacks = checkout / "composer" / "callbacks.py"
    callbacks.write_text(callbacks.read_text() + "\nimport bench.fleetgen  # noqa\n")
    import bench.fleetgen  # noqa: F401  (importable here, from the checkout)

    with Verifier(3, _python(), package_dir=checkout / "composer") as verifier:
        problems = verifier.verify([(main.path, main.content)])
    assert list(problems) == [main.path]
    assert problems[main.path].message == "ModuleNotFoundError: No module named 'bench'"
    error = refusal(main, problems[main.path], {})
    assert (error.customer_id, error.integration_id, error.field) == (
        "houston-isd",
        None,
        "template",
    )


def _python() -> str:
    import sys

    return sys.executable


def test_a_refusal_names_the_task_and_argument_at_the_failing_line(demo_snapshot, templates_dir):
    main = _houston_main(demo_snapshot, templates_dir)
    source = main.content.decode().splitlines()
    line = next(i for i, text in enumerate(source, 1) if "task_id='merge_grades'" in text)
    problem = Problem("ValueError: pool slots for task cannot be less than 1", line + 1)
    patch = {"grades": {"merge_grades": {"args": {"pool_slots": 0}}}}
    error = refusal(main, problem, patch)
    assert (error.integration_id, error.field) == (
        "grades",
        "task_overrides.merge_grades.args.pool_slots",
    )
    setup = next(i for i, text in enumerate(source, 1) if "task_id='ensure_dataset'" in text)
    error = refusal(main, Problem("boom", setup), patch, {"ensure_dataset"})
    assert (error.integration_id, error.field) == (None, "setup_tasks.ensure_dataset")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_target2_files_are_verified_by_airflow_2_11_given_its_python(
    tmp_path, fleet_cli, demo_snapshot, monkeypatch, caplog
):
    """This venv has Airflow 3: a target-2 fleet is verified by $FLEET_VERIFY_PYTHON's
    Airflow 2.11; without it the sync warns, in one line, that it only compiled."""
    from tests.airflow2_env import run_report
    from tests.conftest import make_store
    from tests.test_airflow_targets import airflow2_env_or_skip, templates_for

    airflow2 = airflow2_env_or_skip()
    templates = templates_for(2, tmp_path / "templates2")
    store = make_store(tmp_path / "fleet.db", _broken_demo(demo_snapshot))
    common = ("--store", store, "--templates", str(templates))

    monkeypatch.delenv(PYTHON_ENV, raising=False)
    code, _out, err = fleet_cli("sync", "--target", f"file://{tmp_path / 'unverified'}", *common)
    assert code == 0  # only compiled: the broken overrides get through, and it says so
    assert [r.getMessage() for r in caplog.records if r.name == "dagfleet"] == [
        "warning: files are only compiled, not imported by Airflow, before publishing: the "
        f"fleet targets Airflow 2 and this environment has Airflow 3; set {PYTHON_ENV} to "
        "a Python with Airflow 2 to verify them"
    ]

    monkeypatch.setenv(PYTHON_ENV, str(airflow2.python))
    target = tmp_path / "verified"
    code, _out, err = fleet_cli("sync", "--target", f"file://{target}", *common)
    assert code == 1
    lines = sorted(err.splitlines())
    assert len(lines) == 2, err
    assert lines[0].startswith(
        "error: customer denver-public, integration classroom, field "
        "task_overrides.load_coursework.args.doc_md: fleet_shard_"
    )
    assert (
        "(denver-public's part, DAG denver-public__classroom): Airflow refuses the file: "
        in (lines[0])
    )
    assert "'doc_md' has an invalid type <class 'int'>" in lines[0]
    assert lines[1].startswith(
        "error: customer houston-isd, integration grades, field "
        "task_overrides.load_staging.args.pool_slots: fleet_shard_"
    )
    assert "(houston-isd's part, DAG houston-isd__main): Airflow refuses the file: " in lines[1]
    assert "cannot be less than 1" in lines[1]
    published = json.loads((target / MANIFEST).read_text())["customers"]
    assert published and not {"houston-isd", "denver-public"} & set(published)
    home = tmp_path / "home2"
    home.mkdir()
    report = run_report(airflow2.python, [target], airflow2.environ(home), home)[str(target)]
    assert report["import_errors"] == {}
    assert len(report["dag_ids"]) == sum(len(e["dags"]) for e in published.values())


def test_a_no_op_sync_imports_no_airflow(tmp_path, demo_snapshot):
    """In a fresh interpreter, with a warm operator cache: the second sync of an
    unchanged fleet imports no Airflow module and starts no verification."""
    import os
    import subprocess
    import sys
    import textwrap

    from tests.conftest import make_store

    store = make_store(tmp_path / "fleet.db", demo_snapshot)
    code = textwrap.dedent(
        f"""
        import json, sys
        from composer.cli.main import main
        code = main(["sync", "--store", {store!r}, "--target", "file://{tmp_path / "dags"}"])
        print(json.dumps([code, sorted(m for m in sys.modules if m.split(".")[0] == "airflow")]))
        """
    )
    env = {**os.environ, "FLEET_CACHE_DIR": str(tmp_path / "cache")}
    runs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        env[PYTHON_ENV] = str(tmp_path / "no-such-python")  # the no-op must not need it
    (first_code, first_modules), (noop_code, noop_modules) = runs
    assert first_code == noop_code == 0
    assert first_modules, "the first sync learns the operators by importing them"
    assert noop_modules == []
