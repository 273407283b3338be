"""Composition, pure: param precedence, built-ins, merge-patch overrides, roll-up
descendants and the schedule stagger, from rows to DagSpecs (reading only templates/)."""

from __future__ import annotations

import dataclasses
import json
from functools import cache

import pytest

from composer.build import FleetBuilder
from composer.compose.dagspec import DagSpec, TaskSpec
from composer.compose.params import looks_like_credential
from composer.compose.schedule import dst_trouble, stagger, stagger_offset
from composer.errors import ConfigError
from composer.model.fleet import build_fleet
from composer.model.settings import FleetSettings, load_settings
from composer.store import CustomerRow, IntegrationRow, Snapshot
from tests.conftest import (
    TEMPLATES,
    add_customer,
    remove_customer,
    replace_customer,
    replace_integration,
)

CID = "tulsa-ps"


@cache
def settings() -> FleetSettings:
    return load_settings(TEMPLATES)


def district(customer_id: str = CID, **changes) -> CustomerRow:
    row = CustomerRow(customer_id, "Tulsa Public Schools", "America/Chicago", True)
    return dataclasses.replace(row, **changes)


def grades(customer_id: str = CID, params: dict | None = None, **changes) -> IntegrationRow:
    row = IntegrationRow(
        customer_id,
        "grades",
        "powerschool_grades",
        True,
        params=json.dumps({"sis_base_url": "https://tulsa.example", **(params or {})}),
    )
    return dataclasses.replace(row, **changes)


def classroom(customer_id: str = CID, **changes) -> IntegrationRow:
    row = IntegrationRow(
        customer_id,
        "classroom",
        "google_classroom",
        True,
        schedule="@hourly",
        params=json.dumps({"classroom_domain": "tulsa.example"}),
    )
    return dataclasses.replace(row, **changes)


def compose_all(
    snapshot: Snapshot, customer_id: str = CID, fleet_settings: FleetSettings | None = None
) -> tuple[dict[str, DagSpec], list[ConfigError]]:
    builder = FleetBuilder(snapshot, TEMPLATES, settings=fleet_settings or settings())
    assert customer_id in builder.fleet.customers, builder.errors
    specs, errors = builder.composer.compose(builder.fleet.customers[customer_id])
    return {s.dag_id: s for s in specs}, errors


def compose(snapshot: Snapshot, customer_id: str = CID, **kwargs) -> dict[str, DagSpec]:
    specs, errors = compose_all(snapshot, customer_id, **kwargs)
    assert errors == []
    return specs


def one(*rows) -> Snapshot:
    return Snapshot((rows[0],), tuple(rows[1:]))


def task(spec: DagSpec, ref: str) -> TaskSpec:
    found = [t for t in spec.tasks if t.ref == ref]
    assert len(found) == 1, [t.ref for t in spec.tasks]
    return found[0]


def main_of(specs: dict[str, DagSpec], customer_id: str = CID) -> DagSpec:
    return specs[f"{customer_id}__main"]


# -- params: precedence, built-ins, types -----------------------------------------------


def merge_query(spec: DagSpec) -> str:
    return task(spec, "grades.merge_grades").args["configuration"]["query"]["query"]


@pytest.mark.parametrize(
    ("customer_params", "integration_params", "table"),
    [
        ({}, {}, "grades"),  # powerschool_grades declares grades_table: {default: grades}
        ({"grades_table": "from_customer"}, {}, "from_customer"),
        ({}, {"grades_table": "from_integration"}, "from_integration"),
        (
            {"grades_table": "from_customer"},
            {"grades_table": "from_integration"},
            "from_integration",
        ),
    ],
    ids=[
        "template-over-fleet",
        "customer-over-template",
        "integration-over-template",
        "integration-over-customer",
    ],
)
def test_param_precedence_fleet_then_template_then_customer_then_integration(
    customer_params, integration_params, table
):
    fleet = dataclasses.replace(
        settings(), params={**settings().params, "grades_table": "from_fleet"}
    )
    snapshot = one(district(params=json.dumps(customer_params)), grades(params=integration_params))
    query = merge_query(main_of(compose(snapshot, fleet_settings=fleet)))
    assert f".{table}`" in query
    for other in {"from_fleet", "from_customer", "from_integration", "grades"} - {table}:
        assert f".{other}`" not in query


def test_a_fleet_param_is_overridden_by_the_customer_and_then_the_integration():
    base = task(main_of(compose(one(district(), grades()))), "grades.load_staging")
    assert base.args["location"] == settings().params["bq_location"]
    customer = one(district(params='{"bq_location": "EU"}'), grades())
    assert task(main_of(compose(customer)), "grades.load_staging").args["location"] == "EU"
    both = one(district(params='{"bq_location": "EU"}'), grades(params={"bq_location": "asia"}))
    assert task(main_of(compose(both)), "grades.load_staging").args["location"] == "asia"


def test_a_template_default_sees_the_winning_value_of_the_params_it_references():
    snapshot = one(district(params='{"landing_bucket": "tulsa-landing"}'), grades())
    # The shared landing bucket is tenant-scoped: Tulsa's own bucket is an exception.
    granted = {CID: {"landing_bucket": "tulsa-landing"}}
    fleet = dataclasses.replace(settings(), tenant_exceptions=granted)
    load = task(main_of(compose(snapshot, fleet_settings=fleet)), "grades.load_staging")
    assert load.args["configuration"]["load"]["sourceUris"] == [
        f"gs://tulsa-landing/powerschool/{CID}/{settings().params['run_ds']}/grades.jsonl"
    ]


def test_builtins_in_a_main_dag_and_in_a_cron_dag():
    probe = {
        "id": "{customer_id}",
        "key": "{customer_key}",
        "name": "{customer_name}",
        "tz": "{timezone}",
        "integration": "{integration_id}",
        "template": "{template}",
        "dag": "{dag_id}",
        "ids": "{descendant_ids}",
        "count": "{descendant_count}",
    }
    snapshot = one(
        district(),
        grades(task_overrides=json.dumps({"export_grades": {"args": {"input_data": probe}}})),
        classroom(
            task_overrides=json.dumps({"enqueue_sync": {"args": {"task": {"probe": probe}}}})
        ),
    )
    specs = compose(snapshot)
    input_data = task(main_of(specs), "grades.export_grades").args["input_data"]
    main = {key: input_data[key] for key in probe}  # merged beside the template's `data`
    cron = task(specs[f"{CID}__classroom"], "enqueue_sync").args["task"]["probe"]
    common = {
        "id": CID,
        "key": "tulsa_ps",
        "name": "Tulsa Public Schools",
        "tz": "America/Chicago",
        "ids": [],
        "count": 0,
    }
    assert main == {
        **common,
        "integration": "grades",
        "template": "powerschool_grades",
        "dag": f"{CID}__main",
    }
    assert cron == {
        **common,
        "integration": "classroom",
        "template": "google_classroom",
        "dag": f"{CID}__classroom",
    }


def test_a_json_value_used_as_one_placeholder_keeps_its_type_and_inside_text_is_a_string():
    params = {"regions": ["us", "eu"], "limits": {"max": 5}, "retry_n": 4, "on": True}
    args = {
        "input_data": {
            "regions": "{regions}",
            "limits": "{limits}",
            "n": "{retry_n}",
            "on": "{on}",
            "text": "n={retry_n} r={regions}",
        }
    }
    snapshot = one(
        district(params=json.dumps(params)),
        grades(task_overrides=json.dumps({"export_grades": {"args": args}})),
    )
    input_data = task(main_of(compose(snapshot)), "grades.export_grades").args["input_data"]
    assert {key: input_data[key] for key in args["input_data"]} == {
        "regions": ["us", "eu"],
        "limits": {"max": 5},
        "n": 4,
        "on": True,
        "text": "n=4 r=['us', 'eu']",
    }


def test_a_customer_param_mistake_is_reported_once_not_per_integration():
    snapshot = one(district(params='{"dataset": "d_{nope}"}'), grades(), classroom())
    _specs, errors = compose_all(snapshot)
    assert errors == [ConfigError(CID, None, "params.dataset", "unknown placeholder {nope}")]


# -- task overrides: RFC 7396 merge patch ----------------------------------------------


def overridden(patch: dict) -> DagSpec:
    return main_of(compose(one(district(), grades(task_overrides=json.dumps(patch)))))


def plain() -> DagSpec:
    return main_of(compose(one(district(), grades())))


def test_patching_a_tasks_args_changes_only_those_args():
    before = task(plain(), "grades.export_grades")
    after = task(
        overridden({"export_grades": {"args": {"function_id": "export-v2"}}}),
        "grades.export_grades",
    )
    assert after.args == {**before.args, "function_id": "export-v2"}
    assert (after.operator, after.upstream) == (before.operator, before.upstream)


def test_adding_a_task_with_upstream_puts_it_after_the_template_tasks():
    spec = overridden(
        {
            "snapshot_gradebook": {
                "operator": "airflow.providers.standard.operators.empty.EmptyOperator",
                "upstream": ["merge_grades"],
            }
        }
    )
    added = task(spec, "grades.snapshot_gradebook")
    assert added.upstream == ("grades.merge_grades",)
    assert added.operator.endswith(".EmptyOperator")
    refs = [t.ref for t in spec.tasks]
    assert refs[-1] == "grades.snapshot_gradebook"
    assert [r for r in refs if r != "grades.snapshot_gradebook"] == [t.ref for t in plain().tasks]


def test_added_tasks_are_ordered_by_id_whatever_the_json_key_order():
    empty = {"operator": "airflow.providers.standard.operators.empty.EmptyOperator"}
    one_way = overridden({"zz_last": empty, "aa_first": empty})
    other_way = overridden({"aa_first": empty, "zz_last": empty})
    assert one_way == other_way
    assert [t.task_id for t in one_way.tasks][-2:] == ["aa_first", "zz_last"]


def test_removing_a_task_with_null_removes_only_that_task():
    spec = overridden({"grades_in_range": None})
    assert [t.ref for t in spec.tasks] == [
        t.ref for t in plain().tasks if t.ref != "grades.quality.grades_in_range"
    ]


def test_removing_a_nested_arg_with_null_keeps_its_siblings():
    spec = overridden({"load_staging": {"args": {"configuration": {"load": {"autodetect": None}}}}})
    before = task(plain(), "grades.load_staging").args["configuration"]["load"]
    after = task(spec, "grades.load_staging").args["configuration"]["load"]
    assert "autodetect" in before
    assert after == {k: v for k, v in before.items() if k != "autodetect"}


def test_removing_a_whole_arg_with_null():
    spec = overridden({"export_grades": {"args": {"gcp_conn_id": None}}})
    before = task(plain(), "grades.export_grades").args
    assert "gcp_conn_id" in before
    assert task(spec, "grades.export_grades").args == {
        k: v for k, v in before.items() if k != "gcp_conn_id"
    }


def test_a_list_in_a_patch_replaces_the_list_as_rfc_7396_says():
    spec = overridden(
        {
            "load_staging": {
                "args": {"configuration": {"load": {"sourceUris": ["gs://a/{customer_id}"]}}}
            },
            "grades_loaded": {"upstream": ["export_grades"]},
        }
    )
    load = task(spec, "grades.load_staging").args["configuration"]["load"]
    assert load["sourceUris"] == [f"gs://a/{CID}"]
    assert task(spec, "grades.quality.grades_loaded").upstream == ("grades.export_grades",)


def test_a_patch_can_move_a_task_out_of_its_group():
    spec = overridden({"grades_in_range": {"group": None}})
    assert task(spec, "grades.grades_in_range").groups == ("grades",)


def test_removing_a_task_the_template_does_not_have_is_an_error_not_a_silent_no_op():
    _specs, errors = compose_all(
        one(district(), grades(task_overrides=json.dumps({"grade_in_range": None})))
    )
    assert errors == [
        ConfigError(
            CID,
            "grades",
            "task_overrides.grade_in_range",
            "no task 'grade_in_range' in template 'powerschool_grades' to remove",
        )
    ]


def test_the_demo_override_patches_adds_and_removes(demo_snapshot):
    spec = main_of(compose(demo_snapshot, "houston-isd"), "houston-isd")
    refs = {t.ref for t in spec.tasks}
    assert "grades.quality.grades_in_range" not in refs
    assert task(spec, "grades.snapshot_gradebook").upstream == ("grades.merge_grades",)
    assert task(spec, "grades.export_grades").args["function_id"] == "powerschool-export-large"


# -- credentials -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "db_password",
        "PASSWORD",
        "password_plain",
        "passwd",
        "passphrase",
        "pass",
        "db_pass",
        "pwd",
        "api_key",
        "apikey",
        "X-API-KEY",
        "token",
        "refresh_token",
        "client_secret",
        "secret",
        "private_key",
        "aws_access_key",
        "credentials",
        "auth_key",
    ],
)
def test_a_name_that_looks_like_a_credential_is_refused(name):
    assert looks_like_credential(name)


@pytest.mark.parametrize(
    "name",
    [
        "sis_conn_id",
        "conn_id",
        "client_secret_id",
        "secret_id",
        "token_secret_id",
        "passthrough",
        "bypass_cache",
        "compass_region",
        "sis_base_url",
        "keys",
    ],
)
def test_a_reference_or_an_innocent_name_is_accepted(name):
    assert not looks_like_credential(name)


# -- rows the store cannot hold but the model still refuses ------------------------------


def test_a_disabled_integration_is_not_validated_so_disabling_unblocks_its_customer():
    broken = dataclasses.replace(grades(enabled=False, schedule="not a cron"), params="{not json")
    fleet = build_fleet(one(district(), broken))
    assert fleet.errors == [] and CID not in fleet.invalid
    assert fleet.customers[CID].integrations == ()


def test_two_integrations_with_one_id_are_refused():
    fleet = build_fleet(one(district(), grades(), grades()))
    assert CID in fleet.invalid
    assert fleet.errors == [
        ConfigError(CID, "grades", "integration_id", "appears twice for this customer")
    ]


# -- roll-up: exactly the active descendants -------------------------------------------


def family() -> Snapshot:
    """root
    ├── north (active)
    │   ├── north-elem (active)
    │   └── north-old (inactive)
    ├── south (inactive)
    │   └── south-elem (active)      <- reached through an inactive middle node
    └── east (active, invalid: unknown timezone)
    other (active, unrelated)"""
    rows = [
        district("root", name="Root ESD"),
        district("north", parent_customer_id="root"),
        district("north-elem", parent_customer_id="north"),
        district("north-old", parent_customer_id="north", active=False),
        district("south", parent_customer_id="root", active=False),
        district("south-elem", parent_customer_id="south"),
        district("east", parent_customer_id="root", timezone="Mars/Olympus"),
        district("other"),
    ]
    return Snapshot(tuple(rows), tuple(grades(r.customer_id) for r in rows))


def test_active_descendants_cover_children_grandchildren_and_through_inactive_nodes():
    fleet = build_fleet(family())
    assert fleet.active_descendants("root") == ["east", "north", "north-elem", "south-elem"]
    assert fleet.active_descendants("north") == ["north-elem"]
    assert fleet.active_descendants("south") == ["south-elem"]
    assert fleet.active_descendants("north-elem") == []
    assert fleet.active_descendants("other") == []


def test_an_invalid_active_descendant_is_still_an_active_descendant():
    """An active child whose row is broken keeps its published DAGs (left untouched), so its
    data still lands: it stays among its parent's descendants, and the parent's roll-up
    (which cannot resolve its tables) is reported invalid and stays as published."""
    fleet = build_fleet(family())
    assert "east" in fleet.invalid
    assert "east" in fleet.active_descendants("root")


def outlets(snapshot: Snapshot, customer_id: str, **kwargs) -> set[str]:
    """The asset URIs the customer's own generated DAGs emit."""
    return {
        asset.uri
        for spec in compose(snapshot, customer_id, **kwargs).values()
        for t in spec.tasks
        for asset in t.args.get("outlets", [])
    }


def rollup_query(spec: DagSpec) -> str:
    return task(spec, "rollup_grades").args["configuration"]["query"]["query"]


def test_the_roll_up_is_its_own_dag_on_exactly_the_active_descendants_assets():
    snapshot = remove_customer(family(), "east")
    specs = compose(snapshot, "root")
    assert set(specs) == {"root__main", "root__rollup"}
    rollup = specs["root__rollup"]
    assert rollup.variant == "rollup" and rollup.dag_id == "root__rollup"
    assert "variant:rollup" in rollup.tags and "template:district_rollup" in rollup.tags
    expected = set().union(*(outlets(snapshot, d) for d in ("north", "north-elem", "south-elem")))
    assert {a.uri for a in rollup.assets} == expected
    assert len(rollup.assets) == 3
    query = rollup_query(rollup)
    for key in ("north", "north_elem", "south_elem"):
        assert f"`edu-data-platform.district_{key}.grades` WHERE day = run_day" in query
    assert "north_old" not in query and "district_other" not in query
    assert not any(t.groups[:1] == ("rollup",) for t in specs["root__main"].tasks)
    assert "template:district_rollup" not in specs["root__main"].tags
    north = compose(snapshot, "north")["north__rollup"]
    assert {a.uri for a in north.assets} == outlets(snapshot, "north-elem")


def test_a_child_that_renames_its_table_or_dataset_is_rolled_up_by_its_own_names():
    snapshot = remove_customer(family(), "east")
    snapshot = replace_integration(
        snapshot,
        "north",
        "grades",
        params=json.dumps({"sis_base_url": "https://n.example", "grades_table": "gradebook"}),
    )
    snapshot = replace_customer(snapshot, "south-elem", params=json.dumps({"dataset": "se_data"}))
    # A dataset outside the district's namespace is a granted exception (tenant scoping).
    granted = {"south-elem": {"dataset": "se_data"}}
    fleet = dataclasses.replace(settings(), tenant_exceptions=granted)
    rollup = compose(snapshot, "root", fleet_settings=fleet)["root__rollup"]
    assert "bigquery://edu-data-platform/district_north/gradebook" in {a.uri for a in rollup.assets}
    assert "bigquery://edu-data-platform/se_data/grades" in {a.uri for a in rollup.assets}
    assert {a.uri for a in rollup.assets} == outlets(snapshot, "north") | outlets(
        snapshot, "north-elem"
    ) | outlets(snapshot, "south-elem", fleet_settings=fleet)
    query = rollup_query(rollup)
    assert "FROM `edu-data-platform.district_north.gradebook` WHERE day = run_day" in query
    assert "FROM `edu-data-platform.se_data.grades` WHERE day = run_day" in query
    assert "district_north.grades`" not in query


def test_the_roll_up_checks_completeness_and_rolls_up_in_one_task_on_a_deadline():
    snapshot = remove_customer(family(), "east")
    rollup = compose(snapshot, "root")["root__rollup"]
    rollup_tasks = [t for t in rollup.tasks if t.task_id != "ensure_dataset"]
    assert [t.task_id for t in rollup_tasks] == ["rollup_grades"]
    query = rollup_query(rollup)
    assert query.index("RAISE USING MESSAGE") < query.index("DELETE FROM")
    minute, hour = rollup.schedule.split()[:2]
    assert hour == "9" and 0 <= int(minute) < settings().stagger_minutes  # 09:00 + stagger
    later = replace_customer(
        snapshot, "root", params=json.dumps({"rollup_deadline": "30 11 * * *"})
    )
    assert compose(later, "root")["root__rollup"].schedule.split()[1] in ("11", "12")
    broken = replace_customer(snapshot, "root", params=json.dumps({"rollup_deadline": "at nine"}))
    _, errors = compose_all(broken, "root")
    assert [(e.integration_id, e.field) for e in errors] == [("rollup", "rollup.deadline")]


def test_an_invalid_descendant_fails_its_parents_roll_up_with_one_line():
    specs, errors = compose_all(family(), "root")
    assert "root__rollup" not in specs
    assert [str(e) for e in errors] == [
        "customer root, integration rollup, field descendants.east: is invalid, so the tables"
        " it loads are unknown"
    ]


def test_a_descendant_without_the_source_template_is_named_not_waited_for():
    snapshot = remove_customer(family(), "east")
    snapshot = Snapshot(
        snapshot.customers,
        (
            *(i for i in snapshot.integrations if i.customer_id != "south-elem"),
            classroom("south-elem"),
        ),
    )
    rollup = compose(snapshot, "root")["root__rollup"]
    assert rollup.description.endswith("(no powerschool_grades to roll up: south-elem)")
    assert "south_elem" not in rollup_query(rollup)
    assert len(rollup.assets) == 2


def test_a_customer_without_active_descendants_gets_no_roll_up():
    for customer_id in ("other", "north-elem"):
        specs = compose(family(), customer_id)
        assert set(specs) == {f"{customer_id}__main"}
        assert not [t for t in specs[f"{customer_id}__main"].tasks if t.groups[:1] == ("rollup",)]


def test_a_parent_cycle_elsewhere_does_not_hang_descendants():
    snapshot = add_customer(
        add_customer(family(), district("loop-a", parent_customer_id="loop-b")),
        district("loop-b", parent_customer_id="loop-a"),
    )
    fleet = build_fleet(snapshot)
    assert {"loop-a", "loop-b"} <= fleet.invalid
    assert fleet.active_descendants("root") == ["east", "north", "north-elem", "south-elem"]
    assert fleet.active_descendants("loop-a") == ["loop-b"]


# -- stagger -------------------------------------------------------------------------


def schedules(snapshot: Snapshot) -> dict[str, tuple[str, str]]:
    """dag_id -> (timezone, schedule) for every DAG of every valid, active customer."""
    builder = FleetBuilder(snapshot, TEMPLATES, settings=settings())
    out = {}
    for customer_id in builder.customer_ids():
        specs, errors = builder.composer.compose(builder.fleet.customers[customer_id])
        assert errors == []
        out.update({s.dag_id: (s.timezone, s.schedule) for s in specs})
    return out


def test_stagger_is_a_pure_function_of_the_dag_id():
    window = settings().stagger_minutes
    assert stagger("0 3 * * *", "a__main", window) == stagger("0 3 * * *", "a__main", window)
    offsets = {stagger_offset(f"d{n}__main", window) for n in range(500)}
    assert offsets == set(range(window))  # spread over the whole window, never outside


def test_stagger_shifts_the_minute_and_carries_into_the_hour_but_never_past_midnight():
    key = next(k for k in (f"k{n}" for n in range(1000)) if stagger_offset(k, 20) == 15)
    assert stagger("0 3 * * *", key, 20) == "15 3 * * *"
    assert stagger("50 1 * * 1", key, 20) == "5 2 * * 1"
    assert stagger("50 23 * * 1", key, 20) == "5 23 * * 1"  # same day, not Tuesday 00:05
    assert stagger("*/15 * * * *", key, 20) == "*/15 * * * *"
    assert stagger("0 3 * * *", key, 0) == "0 3 * * *"


def test_sub_daily_dags_are_spread_over_the_whole_hour_whatever_the_window():
    key = next(k for k in (f"k{n}" for n in range(1000)) if stagger_offset(k, 60) == 45)
    assert stagger("50 * * * *", key, 20) == "35 * * * *"
    assert stagger("0 */2 * * *", key, 0) == "45 */2 * * *"
    assert stagger("0 8-17 * * 1-5", key, 20) == "45 8-17 * * 1-5"
    minutes = {int(stagger("0 * * * *", f"d{n}__classroom", 20).split()[0]) for n in range(600)}
    assert minutes == set(range(60))


def test_same_timezone_customers_of_the_demo_start_at_different_minutes(demo_snapshot):
    by_base: dict[tuple[str, str], list[str]] = {}
    demo = schedules(demo_snapshot)
    builder = FleetBuilder(demo_snapshot, TEMPLATES, settings=settings())
    for dag_id, (timezone, schedule) in demo.items():
        customer = builder.fleet.customers[dag_id.split("__")[0]]
        if dag_id.endswith("__main"):
            base = customer.main_schedule or settings().default_main_schedule
        elif dag_id.endswith("__rollup"):
            base = "rollup deadline"
        else:
            integration_id = dag_id.split("__")[1]
            base = next(
                i.schedule for i in customer.integrations if i.integration_id == integration_id
            )
        by_base.setdefault((timezone, base), []).append(schedule)
    shared = {key: starts for key, starts in by_base.items() if len(starts) > 1}
    assert shared, "the demo has customers sharing a timezone and a base schedule"
    for key, starts in shared.items():
        assert len(set(starts)) == len(starts), f"{key}: {starts}"


def test_no_demo_dag_and_no_default_start_falls_in_a_dst_gap_or_overlap(demo_snapshot):
    for dag_id, (timezone, schedule) in schedules(demo_snapshot).items():
        assert dst_trouble(schedule, timezone) is None, (dag_id, schedule, timezone)
    window = settings().stagger_minutes
    base = settings().default_main_schedule
    for timezone in (
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Los_Angeles",
        "America/Anchorage",
        "Pacific/Honolulu",
    ):
        for minute in range(window):
            start = stagger(
                base,
                next(
                    k for k in (f"k{n}" for n in range(999)) if stagger_offset(k, window) == minute
                ),
                window,
            )
            assert dst_trouble(start, timezone) is None, (start, timezone)
    assert dst_trouble("0 1 * * *", "America/Chicago") == "overlap"  # the check can fail
    assert dst_trouble("30 2 * * *", "America/Chicago") == "gap"


def test_onboarding_or_removing_customers_never_moves_another_customers_schedule(demo_snapshot):
    before = schedules(demo_snapshot)
    crowded = demo_snapshot
    for n in range(40):
        crowded = add_customer(
            crowded, district(f"new-{n:02}"), grades(f"new-{n:02}"), classroom(f"new-{n:02}")
        )
    after = schedules(crowded)
    assert {k: after[k] for k in before} == before
    fewer = schedules(remove_customer(demo_snapshot, "dallas-isd"))
    assert fewer == {k: v for k, v in before.items() if not k.startswith("dallas-isd__")}


def test_the_same_rows_always_give_the_same_specs(demo_snapshot):
    first = [compose(demo_snapshot, c) for c in ("houston-isd", "cascade-esd")]
    second = [compose(demo_snapshot, c) for c in ("houston-isd", "cascade-esd")]
    assert first == second


@pytest.mark.parametrize(
    ("name", "value", "target", "problem"),
    [
        ("sla", 3600, 3, "exists only in Airflow 2"),
        ("sla_miss_callback", "x.y", 3, "exists only in Airflow 2"),
        ("retry_policy", {}, 2, "exists only in Airflow 3"),
        ("retry_exponential_backoff", 2.0, 2, "must be true or false in Airflow 2"),
        ("retries", True, 3, "must be an int"),
        ("deferrable", "yes", 3, "must be true or false"),
        ("trigger_rule", "all_sucess", 3, "is not a valid trigger_rule"),
    ],
)
def test_values_airflow_refuses_at_parse_time_are_refused_for_the_fleets_target(
    name, value, target, problem
):
    from composer.compose.operators import value_problem

    assert problem in (value_problem(name, value, target) or "")


@pytest.mark.parametrize(
    ("name", "value", "target"),
    [
        ("sla", 3600, 2),
        ("retry_exponential_backoff", 2.0, 3),
        ("retries", 3, 3),
        ("trigger_rule", "all_done", 2),
    ],
)
def test_values_valid_for_the_target_pass(name, value, target):
    from composer.compose.operators import value_problem

    assert value_problem(name, value, target) is None


@pytest.mark.parametrize(
    ("rollup", "field", "message"),
    [
        ({"deadline": "0 9 * * *"}, "rollup.sources", "must name the template"),
        ({"sources": "powerschool_grades"}, "rollup.deadline", "must be a cron expression"),
        (
            {"sources": "x", "deadline": "0 9 * * *", "per_source": {"t": {"each": "a"}}},
            "rollup.per_source.t",
            "{each: string, join: string}",
        ),
        (
            {"sources": "x", "deadline": "0 9 * * *", "per_source": {"source_ids": "a"}},
            "rollup.per_source.source_ids",
            "has the name of a built-in",
        ),
        ({"sources": "x", "deadline": "{nope}"}, "rollup.deadline", "unknown placeholder {nope}"),
    ],
)
def test_a_broken_rollup_section_is_a_template_error_naming_the_key(rollup, field, message):
    from composer.model.templates import TemplateError, parse_template

    raw = {
        "template": "r",
        "tasks": {"t": {"operator": "airflow.providers.standard.operators.empty.EmptyOperator"}},
        "rollup": rollup,
    }
    with pytest.raises(TemplateError) as caught:
        parse_template(raw, "r", frozenset())
    assert caught.value.field == field and message in str(caught.value)


def test_per_source_names_are_known_in_the_rollup_tasks_only():
    from composer.model.templates import TemplateError, parse_template

    task = {"operator": "x.Y", "args": {"sql": "{rows} {source_count}"}}
    rollup = {"sources": "s", "deadline": "0 9 * * *", "per_source": {"rows": "{t}"}}
    parsed = parse_template(
        {"template": "r", "tasks": {"t": task}, "rollup": rollup}, "r", frozenset()
    )
    assert parsed.rollup["per_source"] == {"rows": "{t}"}
    with pytest.raises(TemplateError, match=r"unknown placeholder \{rows\}"):
        parse_template({"template": "r", "tasks": {"t": task}, "main": {}}, "r", frozenset())
