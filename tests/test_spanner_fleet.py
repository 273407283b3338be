"""The fleet from Cloud Spanner (the real emulator): same rows, same bytes as SQLite;
onboarding by inserting rows; an unreachable store changes nothing."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from google.cloud.spanner_v1 import Client
from google.cloud.spanner_v1.data_types import JsonObject

from composer.render.layout import part_path
from composer.store import open_store
from tests.conftest import customer_part, dag_file, make_store, published
from tests.spanner_emulator import SpannerEmulator
from tests.test_publish_local import snapshot_files


def spanner_url(emulator: SpannerEmulator) -> str:
    return emulator.url("dagfleet-test", f"fleet-{uuid.uuid4().hex[:8]}", "fleet")


def test_same_rows_in_sqlite_and_spanner_give_byte_identical_fleets(
    emulator, tmp_path, demo_snapshot, fleet_cli
):
    url = spanner_url(emulator)
    assert fleet_cli("store", "init", "--store", url, "--demo")[0] == 0
    assert open_store(url).read_snapshot().customers  # the demo rows are there
    code, _out, err = fleet_cli("sync", "--store", url, "--target", f"file://{tmp_path}/spanner")
    assert code == 0, err
    customers = published(tmp_path / "spanner")["customers"]
    assert sum(len(e["dags"]) for e in customers.values()) == 28
    sqlite = make_store(tmp_path / "fleet.db", demo_snapshot)
    assert fleet_cli("sync", "--store", sqlite, "--target", f"file://{tmp_path}/sqlite")[0] == 0
    assert snapshot_files(tmp_path / "spanner") == snapshot_files(tmp_path / "sqlite")


def test_a_district_inserted_into_spanner_gets_its_dags_on_the_next_sync(
    emulator, tmp_path, fleet_cli
):
    url = spanner_url(emulator)
    target = f"file://{tmp_path}/dags"
    assert fleet_cli("store", "init", "--store", url, "--demo")[0] == 0
    assert fleet_cli("sync", "--store", url, "--target", target)[0] == 0
    store = open_store(url)
    database = Client(project=store.project).instance(store.instance_id).database(store.database_id)
    with database.batch() as batch:  # onboarding = inserting rows, with the official client
        batch.insert(
            "customers",
            ("customer_id", "name", "timezone", "active", "params"),
            [["tulsa-ps", "Tulsa Public Schools", "America/Chicago", True, JsonObject({})]],
        )
        batch.insert(
            "integrations",
            ("customer_id", "integration_id", "template", "schedule", "params", "enabled"),
            [
                ["tulsa-ps", "grades", "powerschool_grades", None,
                 JsonObject({"sis_base_url": "https://tulsa.powerschool.com"}), True],
                ["tulsa-ps", "classroom", "google_classroom", "@hourly",
                 JsonObject({"classroom_domain": "tulsaschools.org"}), True],
            ],
        )  # fmt: skip
    code, out, _ = fleet_cli("plan", "--store", url, "--target", target)
    assert code == 0
    changes = [line for line in out.splitlines() if line[:2] in ("+ ", "~ ", "- ")]
    assert fleet_cli("sync", "--store", url, "--target", target)[0] == 0
    assert [c[2:] for c in changes] == [
        part_path("tulsa-ps"),
        dag_file(tmp_path / "dags", "tulsa-ps"),
    ]
    assert published(tmp_path / "dags")["customers"]["tulsa-ps"]["dags"] == [
        "tulsa-ps__main",
        "tulsa-ps__classroom",
    ]
    main = customer_part(tmp_path / "dags", "tulsa-ps")
    assert "sis_base_url" not in main and "https://tulsa.powerschool.com" in main


def test_a_stopped_spanner_emulator_fails_the_sync_with_exit_3_and_changes_nothing(
    emulator_binary, tmp_path, monkeypatch, fleet_cli
):
    target = tmp_path / "dags"
    with SpannerEmulator(emulator_binary) as doomed:
        monkeypatch.setenv("SPANNER_EMULATOR_HOST", doomed.host)
        url = spanner_url(doomed)
        assert fleet_cli("store", "init", "--store", url, "--demo")[0] == 0
        assert fleet_cli("sync", "--store", url, "--target", f"file://{target}")[0] == 0
    before = snapshot_files(target)
    code, out, err = fleet_cli("sync", "--store", url, "--target", f"file://{target}")
    assert code == 3
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: Spanner store projects/")
    assert "Connection refused" in err or "unavailable" in err.lower()
    assert out == ""
    assert snapshot_files(target) == before
    manifest = json.loads((target / ".dagfleet-manifest.json").read_text())
    assert sum(len(e["dags"]) for e in manifest["customers"].values()) == 28
    assert Path(target).is_dir()
