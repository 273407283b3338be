"""Environments with local folders: the cheap refusals, one line each."""

from __future__ import annotations

import json
import shutil

import pytest

from composer.errors import SettingsError
from composer.pipeline import plan_fleet
from composer.plan.changes import MANIFEST
from tests.conftest import TEMPLATES


@pytest.fixture
def two(tmp_path):
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES, folder)
    with (folder / "fleet.yaml").open("a") as fh:
        fh.write(
            f"\nenvironments:\n  east: {{target: 'file://{tmp_path}/east', capacity: 100}}\n"
            f"  west: {{target: 'file://{tmp_path}/west', capacity: 100}}\n"
        )
    return folder


def test_planning_a_fleet_with_environments_needs_one_named(two, demo_store, tmp_path):
    with pytest.raises(SettingsError, match=r"name the one to plan.*FLEET_ENVIRONMENT"):
        plan_fleet(demo_store, f"file://{tmp_path}/east", two)


def test_a_target_that_is_not_the_environments_own_is_refused(two, demo_store, fleet_cli, tmp_path):
    code, _, err = fleet_cli(
        "plan", "--store", demo_store, "--templates", str(two), "--environment", "east",
        "--target", f"file://{tmp_path}/west",
    )  # fmt: skip
    assert code == 1
    assert err.strip() == (
        f"error: environment east: target file://{tmp_path}/west is not its target "
        f"file://{tmp_path}/east in fleet.yaml"
    )


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            "  east: {target: 'ftp://x', capacity: 1}\n",
            "environments.east.target: a file:// or gs:// URL",
        ),
        (
            "  east: {target: 'file:///a', capacity: -1}\n",
            "environments.east.capacity: a number of DAGs",
        ),
        ("  east: {target: 'file:///a', capacity: 0}\n", "every capacity is 0"),
        (
            "  'bad name': {target: 'file:///a', capacity: 1}\n",
            "environments.bad name: the name must match",
        ),
        (
            "  a: {target: 'file:///x', capacity: 1}\n  b: {target: 'file:///x/', capacity: 1}\n",
            "environments.b.target: file:///x/ is also environments.a's",
        ),
        (
            "  east: {target: 'file:///a', capacty: 1}\n",
            "environments.east.capacty: unknown key 'capacty' (did you mean 'capacity'?)",
        ),
    ],
)
def test_broken_environments_in_fleet_yaml_are_one_line_settings_errors(
    tmp_path, demo_store, fleet_cli, block, message
):
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES, folder)
    with (folder / "fleet.yaml").open("a") as fh:
        fh.write("\nenvironments:\n" + block)
    code, _, err = fleet_cli("plan", "--store", demo_store, "--templates", str(folder))
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


def test_inactive_and_invalid_customers_count_for_no_environment(
    two, tmp_path, demo_snapshot, fleet_cli
):
    from tests.conftest import make_store, replace_customer

    broken = replace_customer(demo_snapshot, "dallas-isd", timezone="Mars/Olympus")
    store = make_store(tmp_path / "fleet.db", broken)
    code, out, err = fleet_cli("sync", "--store", store, "--templates", str(two))
    assert code == 1 and "customer dallas-isd, field timezone" in err
    for env in ("east", "west"):
        line = next(x for x in out.splitlines() if x.startswith(f"Synced {env} "))
        manifest = json.loads((tmp_path / env / MANIFEST).read_text())
        dags = sum(len(e["dags"]) for e in manifest["customers"].values())
        assert dags > 0 and f"; {dags} DAGs of 100" in line  # capacity counts what is published


def test_validate_names_a_pin_to_no_environment_and_plan_diff_shows_each_share(
    two, tmp_path, demo_snapshot, fleet_cli
):
    from tests.conftest import make_store, replace_customer

    pinned = replace_customer(demo_snapshot, "austin-isd", environment="north")
    store = make_store(tmp_path / "fleet.db", pinned)
    code, _, err = fleet_cli("validate", "--store", store, "--templates", str(two))
    assert code == 1
    assert "error: customer austin-isd, field environment: 'north' is not an environment" in err
    code, out, _ = fleet_cli("plan", "--diff", "--store", store, "--templates", str(two))
    assert code == 1 and "+++ b/fleet_shard_000.py" in out
    assert "# --- dagfleet customer dallas-isd: begin ---" in out
