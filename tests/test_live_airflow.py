"""The demo fleet in a running Airflow 3 (issue 9): the real dag-processor, scheduler and
api-server (`tests/airflow_services.py`) over the folder `fleet sync` publishes to.

What Airflow itself records, read from its metadata DB and its REST API:
- every published DAG is registered, unpaused, with no import error or DAG warning;
- a district onboarded by inserting rows and running `fleet sync` is registered
  unpaused, and its next run is the time its staggered cron gives in its timezone
  (computed here from `composer.compose.schedule` and croniter, not read from the file);
- a parent's roll-up DAG gets a run only once every active descendant's asset has an
  event, not after all but one (the events are posted through Airflow's REST API).

One Airflow serves the module; the tests run in file order and each leaves the fleet as
the next expects (onboarding adds a district, which the roll-up test ignores).
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
import sqlite3
import subprocess
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from croniter import croniter

from composer.compose.schedule import normalize_cron, stagger
from tests.airflow_services import (
    BIN,
    AirflowServices,
    migrate_metadata_db,
    precompile_airflow,
    utc,
)
from tests.conftest import REPO, TEMPLATES, published

pytestmark = pytest.mark.slow

FLEET = BIN / "fleet"
REGISTER_TIMEOUT = 180  # the first parse of the whole fleet, on a loaded 2-core machine
SCHEDULER_TIMEOUT = 60


def onboard_sql() -> str:
    """The SQL of README "Onboarding a district", as a user would paste it."""
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", readme, flags=re.S)
    found = [b for b in blocks if "INSERT INTO customers" in b and "'tulsa-ps'" in b]
    assert len(found) == 1, "README's onboarding example not found"
    return found[0]


def fleet_sync(store_url: str, dags: Path) -> str:
    """`fleet sync` into the folder Airflow watches; returns its output."""
    command = [str(FLEET), "sync", "--store", store_url, "--target", f"file://{dags}"]
    done = subprocess.run(
        [*command, "--templates", str(TEMPLATES)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"fleet sync exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


@dataclass
class LiveFleet:
    airflow: AirflowServices
    store_url: str
    store_db: Path
    dags: Path

    def sync(self) -> str:
        return fleet_sync(self.store_url, self.dags)


@pytest.fixture(scope="session")
def migrated_airflow_db(tmp_path_factory) -> Iterator[Future[Path]]:
    """`airflow db migrate` once per session, in the background: a test builds its fleet
    meanwhile and takes `.result()` when it needs the file."""
    precompile_airflow()
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(migrate_metadata_db, tmp_path_factory.mktemp("airflow-migrated"))


@pytest.fixture(scope="module")
def live(tmp_path_factory, migrated_airflow_db) -> Iterator[LiveFleet]:
    """The demo fleet (`fleet store init --demo`, `fleet sync`) in a running Airflow."""
    work = tmp_path_factory.mktemp("live")
    store_db, dags = work / "fleet.db", work / "dags"
    store_url = f"sqlite:///{store_db}"
    init = subprocess.run(
        [str(FLEET), "store", "init", "--demo", "--store", store_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert init.returncode == 0, init.stderr
    fleet_sync(store_url, dags)
    airflow = AirflowServices(work, dags, migrated_airflow_db.result())
    try:
        airflow.start()
        yield LiveFleet(airflow, store_url, store_db, dags)
    finally:
        airflow.stop()


@pytest.fixture(autouse=True)
def service_logs_on_failure(request, live) -> Iterator[None]:
    """A failed test shows the end of every service's log (its teardown output)."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        print(live.airflow.log_tails(80))


# -- what the folder holds, read without Airflow ------------------------------------------------


def dag_ids_in(folder: Path) -> dict[str, Path]:
    """dag_id -> file, from each file's `DAG(dag_id=...)` call (legacy files included)."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DAG":
                for kw in node.keywords:
                    if kw.arg == "dag_id" and isinstance(kw.value, ast.Constant):
                        found[kw.value.value] = path
    return found


def active_descendants(store_db: Path) -> dict[str, set[str]]:
    """parent -> its active descendants at any depth (through inactive orgs), for every
    active customer that has one, from the store's rows."""
    with sqlite3.connect(store_db) as conn:
        rows = conn.execute(
            "SELECT customer_id, parent_customer_id, active FROM customers"
        ).fetchall()
    parent_of = {c: p for c, p, _ in rows}
    active = {c for c, _, a in rows if a}
    tree: dict[str, set[str]] = {}
    for customer in active:
        ancestor = parent_of.get(customer)
        while ancestor:
            tree.setdefault(ancestor, set()).add(customer)
            ancestor = parent_of.get(ancestor)
    return {p: d for p, d in tree.items() if p in active}


# -- Airflow's state -----------------------------------------------------------------------------


def registered(airflow: AirflowServices) -> dict[str, sqlite3.Row]:
    return {r["dag_id"]: r for r in airflow.query("SELECT * FROM dag WHERE NOT is_stale")}


def import_errors(airflow: AirflowServices) -> dict[str, str]:
    return {
        r["filename"]: r["stacktrace"].strip().splitlines()[-1]
        for r in airflow.query("SELECT filename, stacktrace FROM import_error")
    }


def wait_until_parsed(airflow: AirflowServices, expected: dict[str, Path]) -> None:
    """Until every expected DAG is registered or its file has an import error."""

    def parsed() -> bool:
        dags, errors = registered(airflow), import_errors(airflow)
        pending = [
            d
            for d, f in expected.items()
            if d not in dags and not any(e.endswith(f.name) for e in errors)
        ]
        return not pending

    airflow.wait_for(parsed, REGISTER_TIMEOUT, f"Airflow to parse {len(expected)} DAGs")


def fires(cron: str, timezone: str, at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The cron's latest fire at or before `at` and its next one after, in `timezone`, as UTC."""
    local = at.astimezone(ZoneInfo(timezone))
    prev, nxt = (
        croniter(cron, local).get_prev(dt.datetime),
        croniter(cron, local).get_next(dt.datetime),
    )
    return prev.astimezone(dt.UTC), nxt.astimezone(dt.UTC)


# -- the tests -----------------------------------------------------------------------------------


def test_every_published_dag_is_registered_unpaused_without_import_errors(live):
    expected = dag_ids_in(live.dags)
    manifest = json.loads((live.dags / ".dagfleet-manifest.json").read_text())
    assert len(expected) == sum(len(e["dags"]) for e in manifest["customers"].values()) == 28

    wait_until_parsed(live.airflow, expected)

    assert import_errors(live.airflow) == {}
    warnings = [
        dict(r) for r in live.airflow.query("SELECT dag_id, warning_type, message FROM dag_warning")
    ]
    assert warnings == []
    dags = registered(live.airflow)
    assert set(dags) == set(expected)
    paused = sorted(d for d, row in dags.items() if row["is_paused"])
    assert paused == [], f"{len(paused)} of {len(dags)} DAGs registered paused: {paused}"

    # the same, as the REST API reports it
    listed = live.airflow.api("GET", "dags?limit=1000")
    assert {d["dag_id"]: d["is_paused"] for d in listed["dags"]} == dict.fromkeys(expected, False)
    assert live.airflow.api("GET", "importErrors")["total_entries"] == 0


def test_onboarded_district_is_registered_unpaused_at_its_staggered_time(live):
    settings = yaml.safe_load((TEMPLATES / "fleet.yaml").read_text())
    window = settings["stagger_minutes"]
    want_cron = {  # the README's rows: grades in the main DAG, classroom hourly, ostp weekly
        "tulsa-ps__main": stagger(
            normalize_cron(settings["default_main_schedule"]), "tulsa-ps__main", window
        ),
        "tulsa-ps__classroom": stagger(normalize_cron("@hourly"), "tulsa-ps__classroom", window),
        "tulsa-ps__ostp": stagger(normalize_cron("0 6 * * 1"), "tulsa-ps__ostp", window),
    }
    with sqlite3.connect(live.store_db) as conn:
        conn.executescript(onboard_sql())
    before = dt.datetime.now(dt.UTC)

    out = live.sync()

    # tulsa-ps's part joins its shard file (`shards: auto` keeps the demo's 16 customers in
    # the one file): one file changed, and the manifest records tulsa-ps's 3 DAGs in it
    assert "1 added, 1 changed, 0 removed" in out  # its module, its shard file
    assert sorted(published(live.dags)["customers"]["tulsa-ps"]["dags"]) == sorted(want_cron)
    expected = {d: f for d, f in dag_ids_in(live.dags).items() if d.startswith("tulsa-ps__")}
    assert set(expected) == set(want_cron)
    wait_until_parsed(live.airflow, expected)
    assert import_errors(live.airflow) == {}
    dags = registered(live.airflow)
    assert {d: bool(dags[d]["is_paused"]) for d in want_cron} == dict.fromkeys(want_cron, False)

    # Airflow runs the latest slot at once (catchup=False) and then waits for the next
    # one; the clock may cross a fire time while the test runs, so both ends count.
    def next_runs_settled() -> bool:
        rows = registered(live.airflow)
        return all(
            utc(rows[d]["next_dagrun"])
            in {fires(c, "America/Chicago", t)[1] for t in (before, now())}
            for d, c in want_cron.items()
        )

    live.airflow.wait_for(next_runs_settled, SCHEDULER_TIMEOUT, "the onboarded DAGs' next runs")
    after = now()
    for dag_id, cron in want_cron.items():
        row = registered(live.airflow)[dag_id]
        slots = [fires(cron, "America/Chicago", t) for t in (before, after)]
        assert row["timetable_summary"] == cron, dag_id
        assert utc(row["next_dagrun"]) in {n for _, n in slots}, dag_id
        assert utc(row["next_dagrun_create_after"]) in {n for _, n in slots}, dag_id
        runs = live.airflow.query(
            "SELECT run_after FROM dag_run WHERE dag_id = ? AND run_type = 'scheduled'", (dag_id,)
        )
        # its one first run, at once, for its latest slot (README: "First run")
        assert len(runs) == 1 and utc(runs[0]["run_after"]) in {p for p, _ in slots}, dag_id
        via_api = live.airflow.api("GET", f"dags/{dag_id}")
        assert not via_api["is_paused"]
        assert dt.datetime.fromisoformat(via_api["next_dagrun_run_after"]) == utc(
            row["next_dagrun_create_after"]
        )


def test_rollup_is_queued_only_once_every_active_descendant_has_loaded(live):
    tree = active_descendants(live.store_db)
    assert tree == {  # the demo's parent org, as examples/demo_fleet.yaml describes it
        "cascade-esd": {"cascade-north", "cascade-north-elem", "cascade-south"},
        "cascade-north": {"cascade-north-elem"},
    }
    wait_until_parsed(live.airflow, dag_ids_in(live.dags))  # when run on its own
    dags = registered(live.airflow)
    rollups = {f"{parent}__rollup": parent for parent in tree}
    missing = sorted(set(rollups) - set(dags))
    assert not missing, f"no roll-up DAG registered for {missing}; registered: {sorted(dags)}"
    assert not any(dags[r]["is_paused"] for r in rollups)

    # each roll-up's assets and who produces them, as Airflow recorded them when parsing
    assets: dict[str, set[int]] = {}
    for rollup, parent in rollups.items():
        refs = live.airflow.query(
            "SELECT asset_id FROM dag_schedule_asset_reference WHERE dag_id = ?", (rollup,)
        )
        assets[rollup] = {r["asset_id"] for r in refs}
        assert assets[rollup], f"{rollup} is scheduled on no asset"
        producers = live.airflow.query(
            "SELECT DISTINCT t.name FROM task_outlet_asset_reference o "
            "JOIN dag_tag t ON t.dag_id = o.dag_id AND t.name LIKE 'customer:%' "
            f"WHERE o.asset_id IN ({','.join('?' * len(assets[rollup]))})",
            tuple(assets[rollup]),
        )
        assert {r["name"].removeprefix("customer:") for r in producers} == tree[parent], rollup
        orphans = live.airflow.query(
            "SELECT a.uri FROM asset a WHERE a.id IN "
            f"({','.join('?' * len(assets[rollup]))}) AND a.id NOT IN "
            "(SELECT asset_id FROM task_outlet_asset_reference)",
            tuple(assets[rollup]),
        )
        assert [r["uri"] for r in orphans] == [], f"{rollup} waits on assets no task emits"
        via_api = live.airflow.api("GET", f"assets?dag_ids={rollup}&limit=1000")["assets"]
        scheduled = {
            a["id"] for a in via_api if any(s["dag_id"] == rollup for s in a["scheduled_dags"])
        }
        assert scheduled == assets[rollup], rollup

    top, nested = "cascade-esd__rollup", "cascade-north__rollup"
    assert assets[nested] < assets[top]
    assert not runs_of(live, top) and not runs_of(live, nested)
    for rollup in (top, nested):
        end_first_timed_run(live, rollup)
    # nothing else holds the roll-ups back: a run that waits below waits for its assets
    assert active_runs(live, top) == active_runs(live, nested) == []

    # all of the top roll-up's assets but one; the nested roll-up's last, so the scheduler
    # loop that starts the nested roll-up has seen every event posted
    held_back = min(assets[top] - assets[nested])
    for asset_id in sorted(assets[top] - assets[nested] - {held_back}) + sorted(assets[nested]):
        post_event(live, asset_id)

    live.airflow.wait_for(
        lambda: runs_of(live, nested), SCHEDULER_TIMEOUT, f"an asset-triggered run of {nested}"
    )
    assert runs_of(live, top) == [], (
        f"{top} ran with {len(assets[top]) - 1} of {len(assets[top])} assets updated"
    )
    queued = live.airflow.query(
        "SELECT asset_id FROM asset_dag_run_queue WHERE target_dag_id = ?", (top,)
    )
    assert {r["asset_id"] for r in queued} == assets[top] - {held_back}

    post_event(live, held_back)

    (run,) = live.airflow.wait_for(
        lambda: runs_of(live, top), SCHEDULER_TIMEOUT, f"an asset-triggered run of {top}"
    )
    consumed = live.airflow.query(
        "SELECT e.asset_id FROM dagrun_asset_event d JOIN asset_event e ON e.id = d.event_id WHERE d.dag_run_id = ?",
        (run["id"],),
    )
    assert {r["asset_id"] for r in consumed} == assets[top]
    assert (
        live.airflow.query("SELECT 1 FROM asset_dag_run_queue WHERE target_dag_id = ?", (top,))
        == []
    )
    assert len(runs_of(live, nested)) == 1  # the held-back asset is not one of its descendants'


def end_first_timed_run(live: LiveFleet, dag_id: str) -> None:
    """A roll-up that also runs on a cron (the deadline: Airflow's AssetOrTimeSchedule)
    had its first run at once (README "First run"). No task starts here, so that run
    would hold the roll-up's one active run (max_active_runs=1) and Airflow would defer
    every asset-triggered run behind it: once the scheduler has made that run, end it
    through the REST API (as failed: what its tasks would do without Google Cloud)."""
    row = registered(live.airflow)[dag_id]
    if row["next_dagrun_create_after"] is None:
        return  # scheduled on assets only

    def nothing_due() -> bool:
        due = utc(registered(live.airflow)[dag_id]["next_dagrun_create_after"])
        return due is not None and due > now()

    live.airflow.wait_for(nothing_due, SCHEDULER_TIMEOUT, f"the first timed run of {dag_id}")
    for run_id in active_runs(live, dag_id):
        run_path = f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
        assert live.airflow.api("PATCH", run_path, {"state": "failed"})["state"] == "failed"


def active_runs(live: LiveFleet, dag_id: str) -> list[str]:
    rows = live.airflow.query(
        "SELECT run_id FROM dag_run WHERE dag_id = ? AND state IN ('queued', 'running')", (dag_id,)
    )
    return [r["run_id"] for r in rows]


def runs_of(live: LiveFleet, dag_id: str) -> list[sqlite3.Row]:
    return live.airflow.query(
        "SELECT id, state, run_type FROM dag_run WHERE dag_id = ? AND run_type = 'asset_triggered'",
        (dag_id,),
    )


def post_event(live: LiveFleet, asset_id: int) -> None:
    """An asset event for today, through Airflow's REST API (what a load task's outlet does)."""
    today = dt.datetime.now(dt.UTC).date().isoformat()
    event = live.airflow.api(
        "POST", "assets/events", {"asset_id": asset_id, "extra": {"day": today}}
    )
    assert event["asset_id"] == asset_id


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
