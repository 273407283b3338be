"""The store's bad values are refused early, through the real `fleet sync`.

Misspelled params, non-canonical timezones, ids that differ only in case and oversized
JSON or files set their customer aside with one line (the bad_input pattern: the rest
of the fleet is published, the customer's files stay as they were). Integration rows
left behind by deleting a customer row with the sqlite3 CLI are ignored with a warning,
and that customer is off-boarded like any other.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from composer.store import IntegrationRow, Snapshot
from tests.conftest import TEMPLATES, add_customer, make_store
from tests.test_bad_input import (
    BAD,
    FRESH,
    Baseline,
    Case,
    E,
    assert_set_aside,
    both,
    customer,
    customer_params,
    edit_template,
    fresh_rows,
    grades_params,
    integration,
    manifest_of,
    new_district,
    overrides,
    parts_of,
    publish_baseline,
    read_files,
    run_sync,
)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, demo_snapshot) -> Baseline:
    return publish_baseline(tmp_path_factory.mktemp("baseline"), demo_snapshot)


CASES: dict[str, Case] = {
    # -- params nothing uses (SPEC 3) --
    "integration_param_misspelled": Case(
        grades_params(grades_tabel="gradebook"),
        (
            E(
                BAD,
                "grades",
                "params.grades_tabel",
                "is not a param of template 'powerschool_grades' and its task_overrides do "
                "not use it (did you mean 'grades_table'?)",
            ),
        ),
    ),
    "integration_param_misspelled_and_required_one_missing_names_the_typo": Case(
        integration("grades", params=json.dumps({"sis_base_ur": "https://bad.example"})),
        (E(BAD, "grades", "params.sis_base_ur", "(did you mean 'sis_base_url'?)"),),
    ),
    "integration_param_of_another_template": Case(
        integration("classroom", params=json.dumps({"classroom_domain": "x", "grades_table": "g"})),
        (E(BAD, "classroom", "params.grades_table", "not a param of template 'google_classroom'"),),
    ),
    "integration_sets_a_fleet_param_its_template_never_uses": Case(
        integration("custom", params=json.dumps({"landing_bucket": "other-bucket"})),
        (E(BAD, "custom", "params.landing_bucket", "not a param of template 'custom_sync'"),),
    ),
    "customer_param_misspelled": Case(
        customer_params(state_cod="TX"),
        (
            E(
                BAD,
                None,
                "params.state_cod",
                "is used by none of this customer's templates (custom_sync, google_classroom, "
                "powerschool_grades), task_overrides or the fleet settings "
                "(did you mean 'state_code'?)",
            ),
        ),
    ),
    "customer_param_no_template_uses": Case(
        customer_params(rollup_table="t"),  # only a parent's roll-up uses it
        (E(BAD, None, "params.rollup_table", "is used by none of this customer's templates"),),
    ),
    # -- canonical IANA zones only --
    **{
        f"timezone_{label}": Case(customer(timezone=name), (E(BAD, None, "timezone", message),))
        for label, name, message in [
            (
                "EST_has_no_DST",
                "EST",
                "'EST' is UTC-5 all year, without DST: use 'America/New_York'",
            ),
            (
                "US_Central_alias",
                "US/Central",
                "is an alias, not a canonical IANA zone: use 'America/Chicago'",
            ),
            ("CST6CDT_legacy", "CST6CDT", "'CST6CDT' is a legacy rule name: use 'America/Chicago'"),
            ("GMT_plus_5", "GMT+5", "is a fixed UTC offset, not a place"),
            ("Etc_GMT_plus_5", "Etc/GMT+5", "is a fixed UTC offset, not a place"),
            ("Etc_UTC", "Etc/UTC", "use 'UTC'"),
            (
                "typo",
                "America/Chicgo",
                "unknown IANA timezone 'America/Chicgo' (did you mean 'America/Chicago'?)",
            ),
        ]
    },
    # -- ids unique ignoring case --
    "customer_id_differing_only_in_case": Case(
        new_district("BAD-ISD"),
        (
            E(BAD, None, "customer_id", "differs only in case from customer BAD-ISD in the store"),
            E("BAD-ISD", None, "customer_id", f"differs only in case from customer {BAD}"),
        ),
    ),
    "integration_id_differing_only_in_case": Case(
        integration("classroom", integration_id="Grades"),
        (
            E(BAD, "Grades", "integration_id", "differs only in case from integration grades"),
            E(BAD, "grades", "integration_id", "differs only in case from integration Grades"),
        ),
    ),
    # -- sizes --
    "customer_params_over_the_cap": Case(
        customer_params(note="x" * 70_000),
        (E(BAD, None, "params", "bytes, over the 65,536-byte cap (limits.params_bytes"),),
    ),
    "integration_params_over_the_cap": Case(
        grades_params(grades_table="x" * 70_000),
        (E(BAD, "grades", "params", "over the 65,536-byte cap (limits.params_bytes"),),
    ),
    "task_overrides_over_the_cap": Case(
        overrides("grades", {"export_grades": {"args": {"function_id": "f" * 70_000}}}),
        (E(BAD, "grades", "task_overrides", "(limits.task_overrides_bytes in fleet.yaml)"),),
    ),
    "generated_file_over_the_cap_after_fleet_yaml_raised_the_params_cap": Case(
        integration("custom", params=json.dumps({"extract_name": "x" * 1_100_000})),
        (
            E(
                BAD,
                None,
                "dag_file",
                "is 1,1",  # its part of its shard file is 1.1 MB and some
            ),
        ),
        edit_templates=edit_template("fleet.yaml", "params_bytes: 65536", "params_bytes: 2000000"),
    ),
    "legacy_file_over_the_cap": Case(
        customer(legacy_dag_file="huge_legacy.py"),
        (E(BAD, None, "legacy_dag_file", f"{BAD}/huge_legacy.py is 1,2"),),
        edit_templates=lambda templates: _huge_legacy_file(templates),
    ),
}


def _huge_legacy_file(templates: Path) -> None:
    """A legacy file over the 1 MiB cap, listed for bad-isd (the allow-list comes first)."""
    (templates / "legacy" / "huge_legacy.py").write_text(
        (TEMPLATES / "legacy" / "lincoln_unified_legacy.py").read_text() + "#" * 1_200_000 + "\n"
    )
    fleet = templates / "fleet.yaml"
    text = fleet.read_text()
    assert "legacy_files:\n" in text
    fleet.write_text(text.replace("legacy_files:\n", f"legacy_files:\n  huge_legacy.py: {BAD}\n"))


@pytest.mark.parametrize("case", [pytest.param(c, id=name) for name, c in CASES.items()])
def test_bad_store_value_sets_its_customer_aside_with_a_one_line_error(
    case: Case, tmp_path, fleet_cli, baseline
):
    snapshot = add_customer(case.break_it(baseline.snapshot), *fresh_rows())
    outcome = run_sync(tmp_path, fleet_cli, baseline, snapshot, case.edit_templates)
    assert_set_aside(outcome, baseline, case.expected)


def test_size_caps_are_raised_in_fleet_yaml(tmp_path, fleet_cli, baseline):
    snapshot = add_customer(customer_params(note="x" * 70_000)(baseline.snapshot), *fresh_rows())

    def raise_cap(templates: Path) -> None:
        edit_template("fleet.yaml", "params_bytes: 65536", "params_bytes: 100000")(templates)
        # `note` is a fleet param, so only its size is in question.
        edit_template("fleet.yaml", "\nparams:\n", "\nparams:\n  note: ''\n")(templates)

    outcome = run_sync(tmp_path, fleet_cli, baseline, snapshot, raise_cap)
    assert (outcome.code, outcome.errors, outcome.notes) == (0, [], [])
    assert FRESH in outcome.parts


def test_a_customer_param_used_only_through_an_integration_param_is_accepted(
    tmp_path, fleet_cli, baseline
):
    snapshot = both(
        customer_params(sis_host="bad.powerschool.example"),
        grades_params(sis_base_url="https://{sis_host}"),
    )(baseline.snapshot)
    outcome = run_sync(tmp_path, fleet_cli, baseline, add_customer(snapshot, *fresh_rows()))
    assert (outcome.code, outcome.errors) == (0, [])
    assert "https://bad.powerschool.example" in outcome.parts[BAD]


@pytest.mark.parametrize("enabled", [None, False], ids=["no-integration", "disabled"])
def test_a_customer_param_of_a_disabled_integrations_template_stays_valid(
    enabled, tmp_path, fleet_cli, baseline
):
    """`results_table` is only a state_assessments param: unused without that integration,
    but disabling the integration (to unblock or pause it) must not invalidate the customer."""
    snapshot = customer_params(results_table="staar_results")(baseline.snapshot)
    if enabled is not None:
        staar = IntegrationRow(BAD, "staar", "state_assessments", enabled, "0 6 * * 1")
        snapshot = Snapshot(snapshot.customers, (*snapshot.integrations, staar))
    outcome = run_sync(tmp_path, fleet_cli, baseline, add_customer(snapshot, *fresh_rows()))
    if enabled is None:
        assert [e[:3] for e in outcome.errors] == [(BAD, None, "params.results_table")]
    else:
        assert (outcome.code, outcome.errors) == (0, [])


def _delete_customer_row_as_the_sqlite3_cli_does(db: Path, customer_id: str) -> None:
    """The sqlite3 CLI (and the stdlib module) leaves foreign keys off: no cascade."""
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM customers WHERE customer_id = ?", (customer_id,))
    conn.close()


def test_integration_rows_left_by_deleting_a_customer_row_are_ignored_and_its_files_pruned(
    tmp_path, fleet_cli, baseline
):
    store_path = tmp_path / "fleet.db"
    store = make_store(store_path, add_customer(baseline.snapshot, *fresh_rows()))
    _delete_customer_row_as_the_sqlite3_cli_does(store_path, BAD)
    with sqlite3.connect(store_path) as conn:
        left = conn.execute(
            "SELECT COUNT(*) FROM integrations WHERE customer_id = ?", (BAD,)
        ).fetchone()[0]
    conn.close()
    assert left == 3  # the situation the issue describes
    target = tmp_path / "dags"
    shutil.copytree(baseline.target, target)
    args = ["sync", "--store", store, "--target", f"file://{target}"]
    args += ["--templates", str(baseline.templates)]
    warning = (
        f"warning: customer {BAD}: no customer row; ignoring its 3 integration row(s) "
        "(classroom, custom, grades): delete them"
    )
    code, out, err = fleet_cli(*args)
    assert (code, err.splitlines()) == (0, [warning]), err
    parts = parts_of(read_files(target))
    assert BAD not in parts, "the deleted customer's DAGs were not pruned"
    assert BAD not in manifest_of(target)
    assert FRESH in parts
    for customer_id, part in baseline.parts.items():
        if customer_id != BAD:
            assert parts[customer_id] == part
    # Every later sync stays green (and says why the rows are ignored) until they are deleted.
    code, out, err = fleet_cli(*args)
    assert (code, err.splitlines()) == (0, [warning])
    assert "0 added, 0 changed, 0 removed" in out
    code, out, err = fleet_cli("validate", "--store", store, "--templates", str(baseline.templates))
    assert (code, err.splitlines()) == (0, [warning])


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("params_bytes: 65536", "params_bytes: 0", "limits.params_bytes must be a positive"),
        (
            "params_bytes: 65536",
            "params_byte: 65536",
            "limits.params_byte: unknown key 'params_byte' (did you mean 'params_bytes'?)",
        ),
    ],
    ids=["not-positive", "misspelled"],
)
def test_a_broken_size_cap_in_fleet_yaml_is_one_settings_error(
    old, new, message, tmp_path, fleet_cli, baseline
):
    templates = tmp_path / "templates"
    shutil.copytree(baseline.templates, templates)
    edit_template("fleet.yaml", old, new)(templates)
    store = make_store(tmp_path / "fleet.db", baseline.snapshot)
    code, _out, err = fleet_cli("validate", "--store", store, "--templates", str(templates))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {templates}/fleet.yaml: ") and message in lines[0]


def test_json_decoded_by_the_store_is_capped_like_json_text() -> None:
    """Spanner hands JSON columns over decoded: the cap measures their compact encoding."""
    from composer.model.fleet import Limits, build_fleet
    from composer.store import CustomerRow

    row = CustomerRow("big-isd", "Big", "America/Chicago", True, params={"note": "x" * 2_000})
    fleet = build_fleet(Snapshot((row,), ()), Limits(params_bytes=1_000))
    assert [(e.field, e.message) for e in fleet.errors] == [
        ("params", "is 2,011 bytes, over the 1,000-byte cap (limits.params_bytes in fleet.yaml)")
    ]
    assert build_fleet(Snapshot((row,), ()), Limits(params_bytes=3_000)).errors == []


@pytest.mark.parametrize(
    "name",
    [
        "UTC",
        "America/Chicago",
        "America/Phoenix",
        "America/Indiana/Indianapolis",
        "Pacific/Honolulu",
        "Europe/Kyiv",
        "Asia/Kolkata",
    ],
)
def test_canonical_zones_are_accepted(name: str) -> None:
    from composer.model.fleet import valid_timezone

    assert valid_timezone(name)
