"""Template versions, staged rollout and the kill switch (composer/model/versions.py), on the
example examples/features/template_versions: a file with versions 1-3 (body 2), districts
pinned to 1 and 3, a 30 % rollout of 3, and `disabled_templates`."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from pathlib import Path

import pytest
import yaml

from composer import build as build_module
from composer.build import FleetBuilder
from composer.compose.dagspec import DagSpec
from composer.model.templates import TemplateCatalog
from composer.model.versions import plan_lines, rollout_bucket
from composer.store import CustomerRow, IntegrationRow, Snapshot
from tests.conftest import customer_part, make_store, published
from tests.examples import example_snapshot, example_templates

EXAMPLE = "template_versions"
CHECKS = ("attendance_loaded", "attendance_plausible")


def templates_with(tmp_path: Path, **fleet_changes) -> Path:
    """The example's templates folder, with fleet.yaml keys set (None removes one)."""
    folder = example_templates(EXAMPLE, tmp_path)
    set_fleet(folder, **fleet_changes)
    return folder


def set_fleet(folder: Path, **changes) -> None:
    settings = yaml.safe_load((folder / "fleet.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            settings.pop(key, None)
        else:
            settings[key] = value
    (folder / "fleet.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    # A sync in this process must see the edit, as the next `fleet` process would.
    build_module._file_digest.cache_clear()
    build_module._environment_digest.cache_clear()


def compose(builder: FleetBuilder, customer_id: str) -> dict[str, DagSpec]:
    specs, errors = builder.composer.compose(builder.fleet.customers[customer_id])
    assert errors == []
    return {spec.dag_id: spec for spec in specs}


def attendance_checks(spec: DagSpec) -> tuple[str, ...]:
    return tuple(t.task_id for t in spec.tasks if t.task_id in CHECKS)


def districts(count: int, start: int = 0) -> Snapshot:
    """`count` districts, each with one unpinned `attendance` integration in its main DAG."""
    ids = [f"d{n:04d}" for n in range(start, start + count)]
    return Snapshot(
        tuple(CustomerRow(cid, f"District {cid}", "America/Chicago", True) for cid in ids),
        tuple(IntegrationRow(cid, "attendance", "attendance", True) for cid in ids),
    )


def independent_share(ids: list[str], percent: float) -> set[str]:
    """The rollout rule as the README states it, computed here on its own."""
    return {
        cid
        for cid in ids
        if int.from_bytes(hashlib.sha256(f"attendance/{cid}".encode()).digest()[:8], "big") % 10_000
        < percent * 100
    }


# -- the template file ---------------------------------------------------------------------


def test_every_version_of_a_file_is_a_whole_template_built_from_a_merge_patch(tmp_path):
    folder = example_templates(EXAMPLE, tmp_path)
    template = TemplateCatalog(
        folder, frozenset({"project", "bq_location", "gcp_conn_id", "dataset", "run_ds"})
    ).get("attendance")
    assert template.version == 2  # the body is the default
    assert sorted(template.versions) == [1, 2, 3]
    v1, v3 = template.versions[1], template.versions[3]
    assert list(v1.tasks) == ["load_attendance"]  # `attendance_loaded: null` removed it
    assert list(v3.tasks) == ["load_attendance", "attendance_loaded", "attendance_plausible"]
    assert "MERGE" in v3.tasks["load_attendance"]["args"]["configuration"]["query"]["query"]
    assert "max_absent_share" in v3.params and "max_absent_share" not in template.params
    assert template.versions[2] is template


def test_a_broken_version_breaks_its_template_once_naming_the_version(tmp_path, fleet_cli):
    folder = example_templates(EXAMPLE, tmp_path)
    path = folder / "attendance.yaml"
    path.write_text(
        path.read_text().replace("upstream: [attendance_loaded]", "upstream: [attendance_lodaed]")
    )
    store = make_store(tmp_path / "fleet.db", example_snapshot(EXAMPLE))
    code, _, err = fleet_cli("validate", "--store", store, "--templates", str(folder))
    assert code == 1
    # One line for the template, naming the version and the field inside it, and the
    # customers it set aside (all four: none is built on another version meanwhile).
    (line,) = err.strip().splitlines()
    assert "attendance.yaml" in line, line
    assert line.endswith(
        "versions.3.tasks.attendance_plausible.upstream: unknown upstream task "
        "'attendance_lodaed' (did you mean 'attendance_loaded'?); set aside 4 customers: "
        "ames-csd, boone-csd, cedar-csd, dubuque-csd"
    ), line


# -- which version a district runs ------------------------------------------------------------


def test_a_district_runs_its_pin_else_its_rollout_share_else_the_files_version(tmp_path):
    builder = FleetBuilder(example_snapshot(EXAMPLE), example_templates(EXAMPLE, tmp_path))
    assert builder.errors == []
    # 30 % rollout of version 3: ames-csd falls under it, dubuque-csd does not.
    assert (
        rollout_bucket("attendance", "ames-csd") < 30 <= rollout_bucket("attendance", "dubuque-csd")
    )
    ames = compose(builder, "ames-csd")["ames-csd__main"]
    boone = compose(builder, "boone-csd")["boone-csd__main"]
    cedar = compose(builder, "cedar-csd")["cedar-csd__attendance"]
    dubuque = compose(builder, "dubuque-csd")["dubuque-csd__attendance"]
    assert attendance_checks(ames) == CHECKS  # rollout: version 3
    assert attendance_checks(boone) == ()  # pinned to 1
    assert attendance_checks(cedar) == CHECKS  # pinned to 3 (and its own threshold)
    assert attendance_checks(dubuque) == ("attendance_loaded",)  # the file's version 2
    for spec, version in ((ames, 3), (boone, 1), (cedar, 3), (dubuque, 2)):
        tags = list(spec.tags)
        assert tags[1:3] == ["template:attendance", f"template:attendance@{version}"], tags
    plausible = next(t for t in cedar.tasks if t.task_id == "attendance_plausible")
    assert "> 0.3" in plausible.args["sql"]


def test_rollout_moves_a_stable_hash_share_of_200_districts(tmp_path):
    folder = templates_with(tmp_path, rollout={"attendance": {"version": 3, "percent": 10}})
    fleet = districts(200)
    ids = [c.customer_id for c in fleet.customers]
    builder = FleetBuilder(fleet, folder)
    on_v3 = {
        cid for cid in ids if "template:attendance@3" in compose(builder, cid)[f"{cid}__main"].tags
    }
    assert on_v3 == independent_share(ids, 10)
    assert 10 <= len(on_v3) <= 30  # about 20 of 200
    assert plan_lines(builder) == [
        f"template attendance: v2 {200 - len(on_v3)} districts, v3 {len(on_v3)} districts "
        "(rollout v3 10%)"
    ]

    def share(percent: float, snapshot: Snapshot) -> set[str]:
        set_fleet(folder, rollout={"attendance": {"version": 3, "percent": percent}})
        b = FleetBuilder(snapshot, folder)
        return {
            cid
            for cid in b.customer_ids()
            if "template:attendance@3" in compose(b, cid)[f"{cid}__main"].tags
        }

    raised = share(25, fleet)
    assert on_v3 < raised  # raising the percent only adds districts
    assert raised == independent_share(ids, 25)
    # Onboarding 50 districts and off-boarding 20 flips nobody else.
    changed = Snapshot(
        fleet.customers[20:] + districts(50, start=200).customers,
        fleet.integrations[20:] + districts(50, start=200).integrations,
    )
    after = share(25, changed)
    assert after & set(ids) == raised - set(ids[:20])
    assert share(0, fleet) == set()
    assert share(100, fleet) == set(ids)


def test_a_pinned_integration_ignores_the_rollout(tmp_path):
    folder = templates_with(tmp_path, rollout={"attendance": {"version": 3, "percent": 100}})
    builder = FleetBuilder(example_snapshot(EXAMPLE), folder)
    assert attendance_checks(compose(builder, "boone-csd")["boone-csd__main"]) == ()
    assert attendance_checks(compose(builder, "dubuque-csd")["dubuque-csd__attendance"]) == CHECKS


def test_a_param_of_another_version_is_used_and_a_typo_is_not(tmp_path):
    snapshot = example_snapshot(EXAMPLE)
    dubuque = next(i for i in snapshot.integrations if i.customer_id == "dubuque-csd")
    folder = example_templates(EXAMPLE, tmp_path)

    def errors(params: str) -> list[str]:
        rows = tuple(
            dataclasses.replace(i, params=params) if i is dubuque else i
            for i in snapshot.integrations
        )
        builder = FleetBuilder(Snapshot(snapshot.customers, rows), folder)
        _, found = builder.composer.compose(builder.fleet.customers["dubuque-csd"])
        return [str(e) for e in found]

    # Rows are prepared before the rollout reaches a district: version 3's param is used.
    assert errors('{"max_absent_share": 0.2}') == []
    (typo,) = errors('{"max_absent_shre": 0.2}')
    assert "params.max_absent_shre" in typo and "did you mean 'max_absent_share'" in typo


# -- refusals: exit 1, one line ------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "pin", "message"),
    [
        ("attendance", 7, "template 'attendance' has no version 7 (versions: 1, 2, 3)"),
        ("state_assessments", 2, "template 'state_assessments' has no version 2 (no versions)"),
    ],
)
def test_a_pin_to_a_version_the_file_lacks_is_one_line_naming_the_field(
    tmp_path, fleet_cli, template, pin, message
):
    row = IntegrationRow(
        "ames-csd",
        "pinned",
        template,
        True,
        schedule="0 7 * * 1",
        params='{"state_code": "IA"}' if template == "state_assessments" else None,
        template_version=pin,
    )
    snapshot = example_snapshot(EXAMPLE)
    snapshot = Snapshot(snapshot.customers, (*snapshot.integrations, row))
    store = make_store(tmp_path / "fleet.db", snapshot)
    folder = example_templates(EXAMPLE, tmp_path)
    code, _, err = fleet_cli("validate", "--store", store, "--templates", str(folder))
    assert code == 1
    assert err.strip().splitlines() == [
        f"error: customer ames-csd, integration pinned, field template_version: {message}"
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"rollout": {"attendance": {"version": 9, "percent": 10}}},
            "rollout.attendance.version: attendance.yaml has no version 9 (versions: 1, 2, 3)",
        ),
        (
            {"rollout": {"attendence": {"version": 3, "percent": 10}}},
            "rollout.attendence: no template 'attendence' in",
        ),
        (
            {"rollout": {"attendance": {"version": 3, "percnt": 10}}},
            "rollout.attendance.percnt: unknown key 'percnt' (did you mean 'percent'?)",
        ),
        (
            {"rollout": {"attendance": {"version": 3, "percent": 150}}},
            "rollout.attendance.percent: must be a number from 0 to 100",
        ),
        ({"disabled_templates": ["attendence"]}, "disabled_templates: no template 'attendence'"),
    ],
)
def test_a_rollout_or_kill_switch_naming_nothing_stops_the_run_in_one_line(
    tmp_path, fleet_cli, change, message
):
    folder = templates_with(tmp_path, **change)
    store = make_store(tmp_path / "fleet.db", example_snapshot(EXAMPLE))
    code, out, err = fleet_cli(
        "plan", "--store", store, "--templates", str(folder), "--target", f"file://{tmp_path}/dags"
    )
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    assert out == ""


# -- plan, kill switch, re-enable: through the CLI and Airflow's DagBag ----------------------


def read_tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.py"))}


def read_parts(folder: Path) -> dict[str, object]:
    """What the manifest says of each customer: its file, part digest and DAGs."""
    return published(folder)["customers"]


def write_files(dags: Path, files) -> None:
    """A customer's build, each part as a file of its own (in the target, parts share a
    shard file with other customers'; here they must not overwrite each other)."""
    for rendered in files:
        path = (
            dags / rendered.customer_id / rendered.path if rendered.part else dags / rendered.path
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rendered.content)


def dagbag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    return bag


def test_kill_switch_keeps_history_and_re_enabling_restores_the_files(tmp_path, fleet_cli):
    folder = example_templates(EXAMPLE, tmp_path)
    store = make_store(tmp_path / "fleet.db", example_snapshot(EXAMPLE))
    target = tmp_path / "dags"
    common = ("--store", store, "--templates", str(folder), "--target", f"file://{target}")

    code, out, err = fleet_cli("plan", *common)
    assert code == 0, err
    assert (
        "template attendance: v1 1 districts, v2 1 districts, v3 2 districts "
        "(rollout v3 30%; 2 pinned)" in out.splitlines()
    )
    assert fleet_cli("sync", *common)[0] == 0
    before = read_tree(target)
    before_ames = customer_part(target, "ames-csd")
    parts_before = read_parts(target)
    bag = dagbag(target)
    assert {d for p in parts_before.values() for d in p["dags"]} == set(bag.dag_ids)
    assert "template:attendance@3" in bag.dags["ames-csd__main"].tags
    assert "template:attendance@1" in bag.dags["boone-csd__main"].tags
    assert type(bag.dags["dubuque-csd__attendance"].timetable).__name__ == "CronTriggerTimetable"

    set_fleet(folder, disabled_templates=["attendance"])
    code, out, err = fleet_cli("plan", *common)
    assert code == 0, err
    assert not [line for line in out.splitlines() if line.startswith("- ")]  # nothing removed
    assert "(rollout v3 30%; 2 pinned; DISABLED: not scheduled)" in out
    code, out, err = fleet_cli("sync", *common)
    assert code == 0, err
    assert "0 removed" in out
    disabled = read_tree(target)
    assert disabled.keys() == before.keys()  # every file stays: the prune guard is not asked
    assert "TaskGroup('attendance'" in before_ames
    assert "TaskGroup('attendance'" not in customer_part(target, "ames-csd")
    assert read_parts(target).keys() == parts_before.keys()
    bag = dagbag(target)
    for cid in ("ames-csd", "boone-csd"):  # main DAGs: the integration's group left
        dag = bag.dags[f"{cid}__main"]
        assert not any(t.startswith("attendance.") for t in dag.task_ids), dag.task_ids
        assert "disabled" not in dag.tags
        assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    for cid in ("cedar-csd", "dubuque-csd"):  # own DAGs: manual only, tagged, tasks kept
        dag = bag.dags[f"{cid}__attendance"]
        assert type(dag.timetable).__name__ == "NullTimetable"
        assert "disabled" in dag.tags and "load_attendance" in dag.task_ids

    code, page, err = fleet_cli("report", "--out", "-", *common)
    assert code == 0, err
    assert "dubuque-csd__attendance: disabled (manual runs only)" in page  # not charted

    set_fleet(folder, disabled_templates=None)
    assert fleet_cli("sync", *common)[0] == 0
    assert read_tree(target) == before  # byte for byte: every shard file
    assert read_parts(target) == parts_before  # and the manifest's parts


@pytest.mark.slow
def test_disabled_and_versioned_dags_import_in_airflow_2_11(tmp_path):
    """Target 2 (Composer 2): the same files, imported by Airflow 2.11's DagBag with
    deprecations raised as errors: `schedule=None`, the version and `disabled` tags."""
    from tests.test_airflow_targets import airflow2_env_or_skip

    folder = templates_with(tmp_path, airflow_target=2, disabled_templates=["attendance"])
    builder = FleetBuilder(example_snapshot(EXAMPLE), folder)
    dags = tmp_path / "dags2"
    for customer_id in builder.customer_ids():
        build = builder.build(customer_id)
        assert build.errors == []
        write_files(dags, build.files)
    home = tmp_path / "home2"
    home.mkdir()
    report = airflow2_env_or_skip().dagbag_report([dags], home)[str(dags)]
    assert report["airflow_version"].startswith("2.11")
    assert report["import_errors"] == {} and report["strict_import_errors"] == {}
    disabled = report["dags"]["dubuque-csd__attendance"]
    assert disabled["timetable"]["class"] == "NullTimetable"
    assert {"disabled", "template:attendance", "template:attendance@2"} <= set(disabled["tags"])
    assert "load_attendance" in disabled["tasks"]
    ames = report["dags"]["ames-csd__main"]
    assert ames["timetable"]["class"] == "CronTriggerTimetable"
    assert not any(t.startswith("attendance.") for t in ames["tasks"])


def test_promoting_a_fully_rolled_out_version_to_the_body_changes_no_file(tmp_path):
    """The end of a rollout: at 100 %, make version 3 the body (version 2 becomes a patch)
    and drop the rollout entry; every district's files stay byte for byte."""

    def files(folder: Path) -> dict[str, bytes]:
        builder = FleetBuilder(example_snapshot(EXAMPLE), folder)
        out = {}
        for customer_id in builder.customer_ids():
            build = builder.build(customer_id)
            assert build.errors == []
            # Keyed by customer too: customers share a shard file (composer/render/layout.py).
            out.update({(f.customer_id, f.path): f.content for f in build.files})
        return out

    rolled = files(
        templates_with(tmp_path / "a", rollout={"attendance": {"version": 3, "percent": 100}})
    )
    folder = templates_with(tmp_path / "b", rollout=None)
    raw = yaml.safe_load((folder / "attendance.yaml").read_text())
    v3 = raw.pop("versions")[3]
    old_query = raw["tasks"]["load_attendance"]["args"]["configuration"]["query"]["query"]
    body = {**raw, "version": 3}
    body["params"] = {**raw["params"], **v3["params"]}
    body["tasks"]["load_attendance"]["args"]["configuration"]["query"]["query"] = v3["tasks"][
        "load_attendance"
    ]["args"]["configuration"]["query"]["query"]
    body["tasks"]["attendance_plausible"] = v3["tasks"]["attendance_plausible"]
    back_to_2 = {
        "params": {"max_absent_share": None},
        "tasks": {
            "attendance_plausible": None,
            "load_attendance": {"args": {"configuration": {"query": {"query": old_query}}}},
        },
    }
    back_to_1 = copy.deepcopy(back_to_2)
    back_to_1["tasks"]["attendance_loaded"] = None
    body["versions"] = {1: back_to_1, 2: back_to_2}
    (folder / "attendance.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    assert files(folder) == rolled


def test_disabling_the_roll_up_template_makes_roll_ups_manual_only(tmp_path, demo_snapshot):
    folder = templates_with(tmp_path, disabled_templates=["district_rollup"])
    builder = FleetBuilder(demo_snapshot, folder)
    specs = compose(builder, "cascade-esd")
    rollup = specs["cascade-esd__rollup"]
    assert rollup.timetable.value is None and rollup.tags[-1] == "disabled"
    assert rollup.assets  # its sources are still known: re-enabling restores the schedule
    assert specs["cascade-esd__main"].timetable is None
    assert "disabled" not in specs["cascade-esd__main"].tags
    dags = tmp_path / "dags"
    write_files(dags, builder.build("cascade-esd").files)
    dag = dagbag(dags).dags["cascade-esd__rollup"]
    assert type(dag.timetable).__name__ == "NullTimetable" and "disabled" in dag.tags


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"version": None}, "versions", "needs `version:`"),
        ({"version": "2"}, "version", "must be a positive integer"),
        ({"versions": {0: {}}}, "versions.0", "a version is a positive integer"),
        ({"versions": {2: {}}}, "versions.2", "version 2 is defined twice"),
        ({"versions": {4: {"template": "other"}}}, "versions.4.template", "cannot change"),
        ({"versions": {4: ["not", "a", "patch"]}}, "versions.4", "must be a merge patch"),
        ({"versions": {4: {"cron": None, "main": None}}}, "versions.4.main", "must declare"),
    ],
)
def test_a_malformed_versions_section_names_its_field(tmp_path, changes, field, message):
    from composer.model.templates import TemplateError
    from composer.model.versions import load_versioned

    raw = yaml.safe_load((example_templates(EXAMPLE, tmp_path) / "attendance.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    known = frozenset({"project", "bq_location", "gcp_conn_id", "dataset", "run_ds"})
    with pytest.raises(TemplateError) as caught:
        load_versioned(raw, "attendance", known, None)
    assert caught.value.field == field and message in str(caught.value), (
        caught.value.field,
        str(caught.value),
    )


def test_fleet_lint_checks_every_version_against_its_operators(tmp_path, fleet_cli):
    folder = example_templates(EXAMPLE, tmp_path)
    assert fleet_cli("lint", "--templates", str(folder))[0] == 0
    path = folder / "attendance.yaml"
    path.write_text(path.read_text().replace("pass_value: false", "pass_valu: false"))
    code, _, err = fleet_cli("lint", "--templates", str(folder))
    assert code == 1
    (line,) = err.strip().splitlines()
    assert "attendance.yaml: versions.3.tasks.attendance_plausible.args.pass_valu" in line, line


def test_the_kill_switch_stops_a_dag_on_any_schedule_not_only_a_cron(tmp_path):
    from composer.compose.timetables import Schedule

    snapshot = example_snapshot(EXAMPLE)
    rows = tuple(
        dataclasses.replace(i, schedule="@continuous") if i.customer_id == "dubuque-csd" else i
        for i in snapshot.integrations
    )
    folder = templates_with(tmp_path, disabled_templates=["attendance"])
    builder = FleetBuilder(Snapshot(snapshot.customers, rows), folder)
    spec = compose(builder, "dubuque-csd")["dubuque-csd__attendance"]
    assert spec.timetable == Schedule(None) and "disabled" in spec.tags
    set_fleet(folder, disabled_templates=None)
    spec = FleetBuilder(Snapshot(snapshot.customers, rows), folder).composer.compose(
        builder.fleet.customers["dubuque-csd"]
    )[0][-1]
    assert spec.timetable == Schedule("@continuous") and "disabled" not in spec.tags
