"""Both Airflow targets, proven by the Airflow that will run them.

`airflow_target: 3` files are imported by Airflow 3's DagBag in this venv;
`airflow_target: 2` files by Airflow 2.11's DagBag in a second venv built by
tests/airflow2_env.py (tests that need it are `slow`). Both must import with no
import error and no deprecation warning from a generated file, and describe the
same DAGs: same ids, tasks, groups, edges, schedules, timezones and retries.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from composer.model.settings import load_settings
from composer.render.dagfile import STANDARD_PROVIDER_MOVES
from composer.store import CustomerRow, IntegrationRow, Snapshot
from tests.airflow2_env import (
    REPO,
    Airflow2Env,
    Airflow2EnvError,
    ensure_airflow2_env,
    generated_warnings,
    in_ci,
    run_report,
)
from tests.conftest import make_store, published

pytestmark = pytest.mark.airflow

META_DAG = REPO / "dags" / "fleet_meta.py"
LEGACY_DAG_ID = "lincoln-unified__legacy"

# A template naming standard operators in both spellings (Airflow 3's standard provider
# and Airflow 2's core); each target must import the spelling native to it.
STANDARD_OPS_TEMPLATE = """\
template: standard_ops
description: Standard operators, named by their Airflow 3 and their Airflow 2 paths.
tasks:
  start:
    operator: airflow.providers.standard.operators.empty.EmptyOperator
  wait_for_marker:
    operator: airflow.sensors.filesystem.FileSensor
    upstream: [start]
    args: {filepath: "/data/{customer_id}.marker", poke_interval: 60, timeout: 600, mode: reschedule}
  announce:
    operator: airflow.operators.bash.BashOperator
    upstream: [wait_for_marker]
    args: {bash_command: "echo {customer_id} done"}
  done:
    operator: airflow.operators.empty.EmptyOperator
    upstream: [announce]
main: {}
cron: {}
"""
STANDARD_OPS_SNAPSHOT = Snapshot(
    (CustomerRow("std-ops", "Standard Ops District", "America/Chicago", True),),
    (
        IntegrationRow("std-ops", "ops", "standard_ops", True),
        IntegrationRow("std-ops", "nightly", "standard_ops", True, schedule="0 4 * * *"),
    ),
)

# Files that must be reported: one deprecated spelling per Airflow major. They prove the
# deprecation checks below can see a deprecation in a DAG file at all.
CANARY_DAG = """\
import pendulum
{imports}
with DAG(dag_id="canary", start_date=pendulum.datetime(2024, 1, 1), {schedule}):
    EmptyOperator(task_id="noop")
"""
CANARIES = {
    # Airflow 3: the Airflow 2 core path of EmptyOperator (DeprecatedImportWarning).
    3: CANARY_DAG.format(
        imports="from airflow.sdk import DAG\nfrom airflow.operators.empty import EmptyOperator",
        schedule="schedule=None",
    ),
    # Airflow 2.11: `schedule_interval` (RemovedInAirflow3Warning).
    2: CANARY_DAG.format(
        imports="from airflow.models.dag import DAG\nfrom airflow.operators.empty import EmptyOperator",
        schedule='schedule_interval="@daily"',
    ),
}


# -- building the fleets ------------------------------------------------------------


def templates_for(target: int, dest: Path, extra: dict[str, str] | None = None) -> Path:
    """A copy of the repo's templates with `airflow_target` set (and extra templates)."""
    shutil.copytree(REPO / "templates", dest)
    settings = dest / "fleet.yaml"
    text, count = re.subn(
        r"^airflow_target:.*$", f"airflow_target: {target}", settings.read_text(), flags=re.M
    )
    settings.write_text(text if count else f"{text}\nairflow_target: {target}\n")
    for name, body in (extra or {}).items():
        (dest / name).write_text(body)
    assert load_settings(dest).airflow_target == target
    return dest


def sync(store_url: str, templates: Path, dags: Path) -> Path:
    from composer.pipeline import apply_fleet, plan_fleet

    fleet_plan = plan_fleet(store_url, f"file://{dags}", templates)
    assert [str(e) for e in fleet_plan.errors] == []
    apply_fleet(fleet_plan)
    return dags


def dag_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.py"))}


def dag_count(folder: Path) -> int:
    """The DAGs the manifest says the folder holds (a legacy file counts as one)."""
    return sum(len(e["dags"]) for e in published(folder)["customers"].values())


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("targets")


@pytest.fixture(scope="module")
def demo_store_url(work: Path, demo_snapshot: Snapshot) -> str:
    return make_store(work / "demo.db", demo_snapshot)


@pytest.fixture(scope="module")
def templates2(work: Path) -> Path:
    return templates_for(2, work / "templates2")


@pytest.fixture(scope="module")
def fleet3(work: Path, demo_store_url: str) -> Path:
    return sync(demo_store_url, templates_for(3, work / "templates3"), work / "fleet3")


@pytest.fixture(scope="module")
def fleet2(work: Path, demo_store_url: str, templates2: Path) -> Path:
    return sync(demo_store_url, templates2, work / "fleet2")


@pytest.fixture(scope="module")
def std_store_url(work: Path) -> str:
    return make_store(work / "std.db", STANDARD_OPS_SNAPSHOT)


@pytest.fixture(scope="module")
def std3(work: Path, std_store_url: str) -> Path:
    extra = {"standard_ops.yaml": STANDARD_OPS_TEMPLATE}
    return sync(std_store_url, templates_for(3, work / "std_templates3", extra), work / "std3")


@pytest.fixture(scope="module")
def std2(work: Path, std_store_url: str) -> Path:
    extra = {"standard_ops.yaml": STANDARD_OPS_TEMPLATE}
    return sync(std_store_url, templates_for(2, work / "std_templates2", extra), work / "std2")


def canary(work: Path, target: int) -> Path:
    folder = work / f"canary{target}"
    folder.mkdir(exist_ok=True)
    (folder / "canary.py").write_text(CANARIES[target])
    return folder


# -- the reports: one DagBag run per Airflow major, over every folder -----------------


def airflow2_env_or_skip() -> Airflow2Env:
    """Skip when the env cannot be built here, but fail under CI (it must build there)."""
    try:
        return ensure_airflow2_env()
    except Airflow2EnvError as exc:
        if in_ci():
            pytest.fail(f"the Airflow 2.11 environment could not be built under CI: {exc}")
        pytest.skip(f"the Airflow 2.11 environment cannot be built here (CI unset): {exc}")


@pytest.fixture(scope="session")
def airflow2() -> Airflow2Env:
    return airflow2_env_or_skip()


@pytest.fixture(scope="module")
def report3(work: Path, fleet3: Path, std3: Path) -> dict[str, Any]:
    """Airflow 3 (this venv), in a subprocess, so the strict pass starts clean."""
    home = work / "home3"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False", PYTHONPATH=str(REPO))
    folders = [fleet3, std3, canary(work, 3)]
    return run_report(sys.executable, folders, env, home)


@pytest.fixture(scope="module")
def report2(work: Path, airflow2: Airflow2Env, fleet2: Path, std2: Path) -> dict[str, Any]:
    home = work / "home2"
    home.mkdir(exist_ok=True)
    return airflow2.dagbag_report([fleet2, std2, canary(work, 2)], home)


def deprecations(report: dict[str, Any]) -> list[str]:
    return [
        f"{w['filename']}:{w['lineno']}: {w['category']}: {w['message']}"
        for w in report["warnings"]
        if w["deprecation"]
    ]


# -- target 3, in this process --------------------------------------------------------


@pytest.fixture(scope="module")
def dagbag3(fleet3: Path):
    import airflow  # noqa: F401  (before recording: importing Airflow may set up warnings)
    from airflow.dag_processing.dagbag import DagBag

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = DagBag(dag_folder=str(fleet3))
    return bag, caught


def test_target3_fleet_imports_in_airflow3_dagbag_with_no_import_error(dagbag3, fleet3: Path):
    bag, _ = dagbag3
    assert bag.import_errors == {}
    assert len(bag.dags) == dag_count(fleet3) > 20


def test_target3_fleet_emits_no_deprecation_warning_from_a_generated_file(dagbag3, fleet3: Path):
    bag, caught = dagbag3
    assert deprecations({"warnings": generated_warnings(bag, caught, fleet3)}) == []


def test_target3_fleet_parses_with_deprecations_as_errors_in_generated_modules(
    report3, fleet3: Path
):
    report = report3[str(fleet3)]
    assert report["airflow_version"].startswith("3.")
    assert report["import_errors"] == {}
    assert report["strict_import_errors"] == {}
    assert deprecations(report) == []


def test_deprecation_checks_catch_a_deprecated_import_under_airflow3(report3, work: Path):
    report = report3[str(canary(work, 3))]
    assert any("airflow.operators.empty" in line for line in deprecations(report))
    assert list(report["strict_import_errors"]) != []


def test_target3_imports_standard_operators_from_the_standard_provider(report3, std3: Path):
    imported = imported_modules(std3)
    assert {m for m in imported if m.startswith(("airflow.operators", "airflow.sensors"))} == set()
    assert "airflow.providers.standard.operators.empty" in imported
    report = report3[str(std3)]
    assert report["import_errors"] == {}
    assert report["strict_import_errors"] == {}
    assert deprecations(report) == []
    assert report["dag_ids"] == ["std-ops__main", "std-ops__nightly"]


# -- target 2, rendering only (fast) --------------------------------------------------


def imported_modules(folder: Path) -> set[str]:
    modules: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules.add(node.module)
            elif isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
    return modules


def test_target2_files_import_nothing_that_only_airflow3_has(fleet2: Path, std2: Path):
    generated = [p for p in fleet2.rglob("*.py") if "legacy" not in p.name]
    assert generated
    for path in [*generated, *std2.rglob("*.py")]:
        text = path.read_text()
        assert "airflow.sdk" not in text, path
        assert "airflow.providers.standard" not in text, path
        if path.parent.name == "fleet_parts":  # the builders (shard files only load them)
            assert "from airflow.models.dag import DAG" in text, path
        elif path.name.startswith("fleet_shard_"):
            assert "from airflow.utils.dag_parsing_context import get_parsing_context" in text


def test_target2_imports_standard_operators_from_airflow2_core(std2: Path):
    imported = imported_modules(std2)
    assert {m for m in imported if m.startswith("airflow.providers.standard")} == set()
    assert {"airflow.operators.empty", "airflow.operators.bash", "airflow.sensors.filesystem"} <= (
        imported
    )


def test_targets_differ_only_in_import_lines(fleet2: Path, fleet3: Path):
    files2, files3 = dag_files(fleet2), dag_files(fleet3)
    assert files2.keys() == files3.keys()

    def body(source: bytes) -> list[str]:
        # Airflow 2.11 names assets datasets: Dataset(...), DatasetOrTimeSchedule(datasets=)
        text = source.decode().replace("Dataset", "Asset").replace("datasets=", "assets=")
        # a shard file names each module's md5, which differs with the import lines
        text = re.sub(r"  # md5 [0-9a-f]{32}$", "", text, flags=re.MULTILINE)
        return [
            line
            for line in text.splitlines()
            if not line.lstrip().startswith(("from airflow", "import airflow"))
        ]

    for path, source in files2.items():
        if path.endswith("_legacy.py"):
            assert source == files3[path]  # published verbatim
        else:
            assert body(source) == body(files3[path]), path


# -- target 2, in Airflow 2.11 ----------------------------------------------------------


@pytest.mark.slow
def test_target2_fleet_imports_in_airflow_2_11_with_no_import_error(report2, fleet2: Path):
    report = report2[str(fleet2)]
    assert report["airflow_version"].startswith("2.11.")
    assert report["import_errors"] == {}
    assert len(report["dag_ids"]) == dag_count(fleet2) > 20


@pytest.mark.slow
def test_target2_fleet_emits_no_deprecation_warning_in_airflow_2_11(report2, fleet2: Path):
    report = report2[str(fleet2)]
    assert deprecations(report) == []
    assert report["strict_import_errors"] == {}


@pytest.mark.slow
def test_deprecation_checks_catch_a_deprecated_argument_under_airflow_2_11(report2, work: Path):
    report = report2[str(canary(work, 2))]
    assert any("schedule_interval" in line for line in deprecations(report))
    assert list(report["strict_import_errors"]) != []


@pytest.mark.slow
def test_target2_dags_have_the_ids_and_structure_of_target3(
    report2, report3, fleet2: Path, fleet3: Path
):
    two, three = report2[str(fleet2)], report3[str(fleet3)]
    assert two["dag_ids"] == three["dag_ids"]
    assert two["files"] == three["files"]
    for dag_id in three["dag_ids"]:
        assert two["dags"][dag_id] == three["dags"][dag_id], dag_id
    # spot checks, so equality is not of two empty descriptions
    main = two["dags"]["cascade-esd__main"]
    assert main["timetable"]["timezone"] == main["timezone"] == "America/Los_Angeles"
    assert main["timetable"]["class"] == "CronTriggerTimetable"
    rollup = two["dags"]["cascade-esd__rollup"]  # on Datasets in 2.11, Assets in 3
    assert rollup["timetable"]["class"] == "AssetOrTimeSchedule"
    assert rollup["timetable"]["timetable"]["class"] == "CronTriggerTimetable"
    assert rollup["timetable"]["assets"] == sorted(
        uri
        for d in ("cascade-north", "cascade-north-elem", "cascade-south")
        for uri in two["dags"][f"{d}__main"]["tasks"]["grades.merge_grades"]["outlets"]
    )
    assert rollup["tasks"]["rollup_grades"]["upstream"] == ["ensure_dataset"]
    assert all(d["is_paused_upon_creation"] is False for d in two["dags"].values())
    grades = two["dags"]["austin-isd__main"]["tasks"]["grades.export_grades"]
    assert (grades["retries"], grades["retry_delay"], grades["max_retry_delay"]) == (3, 300, 3600)
    assert grades["retry_exponential_backoff"] is True
    assert grades["on_failure_callback"] == ["composer.callbacks.log_failure"]
    assert two["dags"]["austin-isd__classroom"]["tasks"]["enqueue_sync"]["retry_delay"] == 120


@pytest.mark.slow
def test_legacy_dag_file_imports_in_both_airflow_majors(
    report2, report3, fleet2: Path, fleet3: Path
):
    for report in (report2[str(fleet2)], report3[str(fleet3)]):
        assert report["files"][LEGACY_DAG_ID] == "lincoln-unified/lincoln_unified_legacy.py"
        assert not [w for w in report["warnings"] if "legacy" in w["filename"]]
    assert (
        report2[str(fleet2)]["dags"][LEGACY_DAG_ID] == report3[str(fleet3)]["dags"][LEGACY_DAG_ID]
    )


@pytest.mark.slow
def test_standard_operators_import_without_deprecation_in_airflow_2_11(
    report2, report3, std2: Path, std3: Path
):
    two = report2[str(std2)]
    assert two["import_errors"] == {}
    assert two["strict_import_errors"] == {}
    assert deprecations(two) == []
    three = report3[str(std3)]
    assert two["dags"] == three["dags"]
    assert two["dags"]["std-ops__main"]["tasks"]["ops.done"]["upstream"] == ["ops.announce"]


@pytest.mark.slow
def test_every_relocated_operator_path_exists_in_its_airflow_major(airflow2: Airflow2Env, work):
    import importlib

    for path in STANDARD_PROVIDER_MOVES.values():
        module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name), path
    script = (
        "import importlib, sys\n"
        "for p in sys.argv[1:]:\n"
        "    m, _, n = p.rpartition('.')\n"
        "    assert hasattr(importlib.import_module(m), n), p\n"
        "print('ok')\n"
    )
    home = work / "home2-imports"
    home.mkdir(exist_ok=True)
    proc = airflow2.run(["python", "-c", script, *STANDARD_PROVIDER_MOVES], home, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_target2_templates_render_the_run_date_in_airflow_2_11(
    airflow2: Airflow2Env, fleet2: Path, work: Path
):
    """{run_ds} (logical date, else run_after) renders under 2.11, which always has a
    logical date: `airflow tasks render` builds the task's real template context."""
    home = work / "home2-render"
    home.mkdir(exist_ok=True)
    env = {"AIRFLOW__CORE__DAGS_FOLDER": str(fleet2)}
    migrate = airflow2.run(["airflow", "db", "migrate"], home, extra_env=env, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    for dag_id, task_id, expected in (
        ("austin-isd__main", "grades.merge_grades", "DATE '2026-03-04' AS day"),
        ("cascade-esd__rollup", "rollup_grades", "DECLARE run_day DATE DEFAULT DATE '2026-03-04';"),
        ("austin-isd__staar", "wait_for_state_export", "state/TX/austin-isd/20260304/results.csv"),
    ):
        render = airflow2.run(
            ["airflow", "tasks", "render", dag_id, task_id, "2026-03-04T09:17:00+00:00"],
            home,
            extra_env=env,
            timeout=300,
        )
        assert render.returncode == 0, render.stderr[-3000:]
        assert expected in render.stdout, render.stdout[-3000:]
        assert "{{" not in render.stdout, render.stdout[-3000:]


# -- the meta-DAG under Airflow 2.11 ----------------------------------------------------


@pytest.fixture(scope="module")
def meta_dag_folder(work: Path) -> Path:
    if not META_DAG.is_file():
        pytest.skip("dags/fleet_meta.py not present")
    folder = work / "meta_dags"
    folder.mkdir(exist_ok=True)
    shutil.copy2(META_DAG, folder / META_DAG.name)
    return folder


@pytest.mark.slow
def test_meta_dag_parses_in_airflow_2_11_with_no_import_error(
    airflow2: Airflow2Env, meta_dag_folder: Path, work: Path
):
    home = work / "home2-meta-parse"
    home.mkdir(exist_ok=True)
    report = airflow2.dagbag_report([meta_dag_folder], home)[str(meta_dag_folder)]
    assert report["import_errors"] == {}
    assert report["dag_ids"] == ["fleet_meta"]
    assert deprecations(report) == []
    assert report["dags"]["fleet_meta"]["max_active_runs"] == 1


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_meta_dag_run_under_airflow_2_11_publishes_the_target2_fleet(
    airflow2: Airflow2Env,
    meta_dag_folder: Path,
    demo_snapshot: Snapshot,
    templates2: Path,
    fleet2: Path,
    tmp_path: Path,
):
    home, published = tmp_path / "airflow", tmp_path / "published"
    home.mkdir()
    env = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(meta_dag_folder),
        "FLEET_STORE": make_store(tmp_path / "fleet.db", demo_snapshot),
        "FLEET_TARGET": f"file://{published}",
        "FLEET_TEMPLATES": str(templates2),
    }
    migrate = airflow2.run(["airflow", "db", "migrate"], home, extra_env=env, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    run = airflow2.run(["airflow", "dags", "test", "fleet_meta"], home, extra_env=env)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert re.search(r"DagRun Finished: dag_id=fleet_meta.*state=success", log), log[-5000:]
    # Rendered under Airflow 2.11 by the meta-DAG, byte for byte what this venv rendered.
    assert dag_files(published) == dag_files(fleet2)
    assert (published / ".dagfleet-manifest.json").is_file()
    assert "DAG starts per 5 minutes" in (published / "fleet-report.html").read_text()


def outcome_of(call) -> BaseException | None:
    """The exception `call` ends with: pytest's skip and fail are BaseExceptions, and a
    skip escaping a test would skip the test instead of failing it."""
    try:
        call()
    except BaseException as exc:
        return exc
    return None


def test_an_airflow2_env_that_cannot_be_built_skips_locally_and_fails_under_ci(
    monkeypatch, tmp_path: Path
):
    monkeypatch.setenv("DAGFLEET_AIRFLOW2_CACHE", str(tmp_path))
    monkeypatch.setenv("UV", str(tmp_path / "no-such-uv"))
    for ci, expected in (
        ("", "skip"),
        ("false", "skip"),
        ("0", "skip"),
        ("true", "fail"),
        ("1", "fail"),
    ):
        monkeypatch.setenv("CI", ci)
        outcome = outcome_of(airflow2_env_or_skip)
        kind = getattr(pytest, expected).Exception
        assert isinstance(outcome, kind), f"CI={ci!r}: {outcome!r}"
        assert "uv venv" in str(outcome), outcome
