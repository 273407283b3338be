"""Bad config fails at generation time, through the real `fleet sync`, with the right error.

Every case starts from the same published fleet: the demo plus `bad-isd` (a main DAG
with PowerSchool grades, an hourly Classroom DAG and a daily DAG from a test template,
`custom_sync`). The case then breaks one thing in the store (or in a copy of the
templates) and adds a new valid district, `fresh-isd`, and syncs again. It must:
- exit 1, with exactly the expected errors on stderr, one line each, naming the
  customer, the integration (where there is one) and the field;
- still publish the valid customers (fresh-isd's file appears);
- leave every previously published file byte-identical and present (the broken
  customer's files included), and keep the broken customer's files in the manifest.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from composer.plan.changes import MANIFEST
from composer.render import layout
from composer.store import CustomerRow, IntegrationRow, Snapshot
from tests.conftest import TEMPLATES, add_customer, make_store, replace_customer

BAD = "bad-isd"
FRESH = "fresh-isd"
BAD_DAGS = [f"{BAD}__main", f"{BAD}__classroom", f"{BAD}__custom"]
EMPTY_OPERATOR = "airflow.providers.standard.operators.empty.EmptyOperator"

CUSTOM_TEMPLATE = """\
template: custom_sync
description: A district's own extract (a template only bad-isd uses).
params:
  state_code: {required: true}
  extract_name: {default: "extract_{customer_key}"}
tasks:
  run_extract:
    operator: airflow.providers.google.cloud.operators.bigquery.BigQueryInsertJobOperator
    args:
      project_id: "{project}"
      location: "{bq_location}"
      configuration:
        query: {query: "CALL `{project}.{dataset}.{extract_name}`(DATE '{{ ds }}', '{state_code}')", useLegacySql: false}
cron:
  description: "Custom extract for {customer_name}"
"""

LEGACY_FILES = {
    # Each is only published when a customer row names it.
    "does_not_compile.py": "import pendulum\n\ndef broken(:\n    pass\n",
    "imports_missing.py": "import pendulum\nimport dagfleet_no_such_module\n",
    "raises_at_import.py": "import pendulum\n\nraise RuntimeError('legacy file is broken')\n",
}


def bad_customer(**changes) -> CustomerRow:
    row = CustomerRow(
        BAD, "Bad Example ISD", "America/Chicago", True, params=json.dumps({"state_code": "TX"})
    )
    return dataclasses.replace(row, **changes)


def bad_integrations() -> tuple[IntegrationRow, ...]:
    return (
        IntegrationRow(
            BAD,
            "grades",
            "powerschool_grades",
            True,
            params=json.dumps({"sis_base_url": "https://bad.powerschool.example"}),
        ),
        IntegrationRow(
            BAD,
            "classroom",
            "google_classroom",
            True,
            schedule="@hourly",
            params=json.dumps({"classroom_domain": "bad.example"}),
        ),
        IntegrationRow(BAD, "custom", "custom_sync", True, schedule="@daily"),
    )


def fresh_rows() -> tuple[CustomerRow, IntegrationRow]:
    return (
        CustomerRow(FRESH, "Fresh ISD", "America/Chicago", True),
        IntegrationRow(
            FRESH,
            "grades",
            "powerschool_grades",
            True,
            params=json.dumps({"sis_base_url": "https://fresh.powerschool.example"}),
        ),
    )


# -- editing the bad customer's rows ----------------------------------------------------


def customer(**changes) -> Callable[[Snapshot], Snapshot]:
    return lambda snap: replace_customer(snap, BAD, **changes)


def integration(which: str, /, **changes) -> Callable[[Snapshot], Snapshot]:
    """Change bad-isd's integration `which` (its id too, with integration_id=...)."""

    def edit(snap: Snapshot) -> Snapshot:
        assert any((i.customer_id, i.integration_id) == (BAD, which) for i in snap.integrations)
        return Snapshot(
            snap.customers,
            tuple(
                dataclasses.replace(i, **changes)
                if (i.customer_id, i.integration_id) == (BAD, which)
                else i
                for i in snap.integrations
            ),
        )

    return edit


def overrides(integration_id: str, patch: object) -> Callable[[Snapshot], Snapshot]:
    return integration(integration_id, task_overrides=json.dumps(patch))


def grades_params(**params) -> Callable[[Snapshot], Snapshot]:
    return integration(
        "grades", params=json.dumps({"sis_base_url": "https://bad.example", **params})
    )


def customer_params(**params) -> Callable[[Snapshot], Snapshot]:
    return customer(params=json.dumps({"state_code": "TX", **params}))


def new_customer(row: CustomerRow, *integrations: IntegrationRow) -> Callable[[Snapshot], Snapshot]:
    return lambda snap: add_customer(snap, row, *integrations)


def new_district(customer_id: str, **changes) -> Callable[[Snapshot], Snapshot]:
    return new_customer(
        dataclasses.replace(CustomerRow(customer_id, "New", "America/Chicago", True), **changes)
    )


def both(*edits: Callable[[Snapshot], Snapshot]) -> Callable[[Snapshot], Snapshot]:
    def edit(snap: Snapshot) -> Snapshot:
        for one in edits:
            snap = one(snap)
        return snap

    return edit


def edit_template(name: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(templates: Path) -> None:
        path = templates / name
        text = path.read_text()
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new))

    return edit


# -- the published baseline, built once ---------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    snapshot: Snapshot
    templates: Path
    target: Path
    files: dict[str, bytes]

    @property
    def parts(self) -> dict[str, str]:
        return parts_of(self.files)


def read_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def parts_of(files: dict[str, bytes]) -> dict[str, str]:
    """Each customer's part, from its module (composer/render/layout.py), by customer."""
    parts: dict[str, str] = {}
    for path, content in files.items():
        if path.startswith(f"{layout.PARTS_DIR}/"):
            parts.update(layout.split(content))
    return parts


def manifest_of(target: Path) -> dict[str, dict]:
    """The manifest's customers: each one's file, part digest and DAGs."""
    return json.loads((target / MANIFEST).read_text())["customers"]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, demo_snapshot) -> Baseline:
    return publish_baseline(tmp_path_factory.mktemp("baseline"), demo_snapshot)


def publish_baseline(root: Path, demo_snapshot: Snapshot) -> Baseline:
    """The demo plus bad-isd, synced into `root/dags` (other test modules share it)."""
    from composer.cli.main import main

    templates = root / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "custom_sync.yaml").write_text(CUSTOM_TEMPLATE)
    for name, text in LEGACY_FILES.items():
        (templates / "legacy" / name).write_text(text)
    listed = [*LEGACY_FILES, "missing_legacy.py", f"{BAD}__classroom.py"]
    owned = "".join(f"  {name}: {BAD}\n" for name in listed)
    edit_template("fleet.yaml", "legacy_files:\n", f"legacy_files:\n{owned}")(templates)
    snapshot = add_customer(demo_snapshot, bad_customer(), *bad_integrations())
    target = root / "dags"
    store = make_store(root / "good.db", snapshot)
    code = main(
        ["sync", "--store", store, "--target", f"file://{target}", "--templates", str(templates)]
    )
    assert code == 0
    files = read_files(target)
    assert BAD in parts_of(files), sorted(files)
    assert sorted(manifest_of(target)[BAD]["dags"]) == sorted(BAD_DAGS)
    return Baseline(snapshot, templates, target, files)


# -- running one case ------------------------------------------------------------------

ERROR_LINE = re.compile(
    r"error: customer (?P<customer>.+?)(?:, integration (?P<integration>.+?))?"
    r", field (?P<field>.+?): (?P<message>.+)"
)
# A broken template file is one line for all its customers (composer/error_lines.py).
TEMPLATE_LINE = re.compile(
    r"error: template (?P<file>\S+), field (?P<field>\S+): (?P<message>.+)"
    r"; set aside \d+ customers?: (?P<customers>.+)"
)


@dataclass
class Outcome:
    code: int
    out: str
    errors: list[tuple[str, str | None, str, str]]
    notes: list[str]  # stderr lines that are not errors
    files: dict[str, bytes]
    manifest: dict[str, dict]

    @property
    def parts(self) -> dict[str, str]:
        return parts_of(self.files)


def run_sync(
    tmp_path: Path,
    fleet_cli,
    baseline: Baseline,
    snapshot: Snapshot,
    edit_templates: Callable[[Path], None] | None = None,
    *extra: str,
) -> Outcome:
    """Sync `snapshot` over a copy of the published baseline; parse stderr strictly."""
    templates = tmp_path / "templates"
    shutil.copytree(baseline.templates, templates)
    if edit_templates:
        edit_templates(templates)
    target = tmp_path / "dags"
    shutil.copytree(baseline.target, target)
    store = make_store(tmp_path / "fleet.db", snapshot)
    code, out, err = fleet_cli(
        "sync",
        "--store",
        store,
        "--target",
        f"file://{target}",
        "--templates",
        str(templates),
        *extra,
    )
    errors, notes = [], []
    for line in (line for line in err.splitlines() if line.strip()):
        if not line.startswith("error: "):
            notes.append(line)
            continue
        folded = TEMPLATE_LINE.fullmatch(line)
        if folded:  # one error per customer it names, with the template's file and field
            message = f"{folded['file']}: {folded['field']}: {folded['message']}"
            for customer in folded["customers"].split(", "):
                errors.append((customer, None, "template", message))
            continue
        match = ERROR_LINE.fullmatch(line)
        assert match, f"not a one-line error naming customer and field: {line!r}\n{err}"
        errors.append((match["customer"], match["integration"], match["field"], match["message"]))
    return Outcome(code, out, errors, notes, read_files(target), manifest_of(target))


@dataclass(frozen=True)
class Expected:
    customer: str
    integration: str | None
    field: str
    message: str  # a fragment of the message

    def matches(self, error: tuple[str, str | None, str, str]) -> bool:
        return (self.customer, self.integration, self.field) == error[:3] and (
            self.message in error[3]
        )


def E(customer: str, integration: str | None, field: str, message: str) -> Expected:
    return Expected(customer, integration, field, message)


@dataclass(frozen=True)
class Case:
    break_it: Callable[[Snapshot], Snapshot]
    expected: tuple[Expected, ...]
    edit_templates: Callable[[Path], None] | None = None
    secret: str | None = None  # a value that must appear in no published file
    marks: tuple = field(default=())


def assert_set_aside(outcome: Outcome, baseline: Baseline, expected: tuple[Expected, ...]):
    """Exit 1, exactly the expected errors, valid customers published, nothing touched."""
    assert outcome.code == 1, outcome.errors
    assert outcome.notes == []
    unmatched = list(outcome.errors)
    for want in expected:
        hits = [e for e in unmatched if want.matches(e)]
        assert hits, f"no error like {want} in {outcome.errors}"
        unmatched.remove(hits[0])
    assert not unmatched, f"unexpected errors: {unmatched}"
    parts, before = outcome.parts, baseline.parts
    assert FRESH in parts, "a valid customer was not published"
    for customer_id, part in before.items():  # the invalid one's too: byte for byte
        assert parts.get(customer_id) == part, f"{customer_id}'s DAGs were changed or removed"
    for path, content in baseline.files.items():
        if "/" in path:  # a legacy file
            assert outcome.files.get(path) == content, f"{path} was changed or removed"
    assert outcome.manifest[BAD] == json.loads(baseline.files[MANIFEST])["customers"][BAD]
    new = set(parts) - set(before)
    assert new == {FRESH}, f"unexpected new customers {sorted(new - {FRESH})}"


SECRET = "hunter2-do-not-publish"

CASES: dict[str, Case] = {
    # -- customer row: timezone and schedules --
    "unknown_timezone": Case(
        customer(timezone="America/Atlantis"),
        (E(BAD, None, "timezone", "unknown IANA timezone 'America/Atlantis'"),),
    ),
    "host_dependent_timezone_localtime": Case(
        customer(timezone="localtime"), (E(BAD, None, "timezone", "unknown IANA timezone"),)
    ),
    "posix_prefixed_timezone": Case(
        customer(timezone="posix/America/Chicago"),
        (E(BAD, None, "timezone", "unknown IANA timezone"),),
    ),
    "timezone_with_trailing_space": Case(
        customer(timezone="America/Chicago "), (E(BAD, None, "timezone", "unknown IANA"),)
    ),
    "timezone_in_wrong_case": Case(
        customer(timezone="america/chicago"), (E(BAD, None, "timezone", "unknown IANA"),)
    ),
    "main_schedule_minute_out_of_range": Case(
        customer(main_schedule="61 2 * * *"),
        (E(BAD, None, "main_schedule", "'61 2 * * *' is not a valid cron expression"),),
    ),
    "main_schedule_with_seconds_field": Case(
        customer(main_schedule="0 0 2 * * *"),
        (E(BAD, None, "main_schedule", "is not a 5-field cron expression"),),
    ),
    "main_schedule_that_never_fires": Case(
        customer(main_schedule="0 2 30 2 *"), (E(BAD, None, "main_schedule", "never fires"),)
    ),
    "main_schedule_unknown_preset": Case(  # @once is a schedule now (composer/compose/timetables.py)
        customer(main_schedule="@reboot"),
        (E(BAD, None, "main_schedule", "is not a recurring preset"),),
    ),
    "main_schedule_empty_string": Case(
        customer(main_schedule=""), (E(BAD, None, "main_schedule", "expected a cron"),)
    ),
    "integration_schedule_not_cron": Case(
        integration("classroom", schedule="every hour"),
        (E(BAD, "classroom", "schedule", "'every hour' is not a 5-field cron expression"),),
    ),
    "integration_schedule_hour_out_of_range": Case(
        integration("custom", schedule="0 24 * * *"),
        (E(BAD, "custom", "schedule", "is not a valid cron expression"),),
    ),
    # -- other customer columns --
    "empty_name": Case(customer(name="  "), (E(BAD, None, "name", "is empty"),)),
    "unknown_parent": Case(
        customer(parent_customer_id="ghost-esd"),
        (E(BAD, None, "parent_customer_id", "unknown parent customer 'ghost-esd'"),),
    ),
    "parent_is_itself": Case(
        customer(parent_customer_id=BAD),
        (E(BAD, None, "parent_customer_id", f"parent cycle {BAD} -> {BAD}"),),
    ),
    "parent_cycle_through_two_customers": Case(
        both(
            customer(parent_customer_id="loop-esd"),
            new_district("loop-esd", parent_customer_id=BAD),
        ),
        (
            E(BAD, None, "parent_customer_id", f"parent cycle {BAD} -> loop-esd -> {BAD}"),
            E(
                "loop-esd",
                None,
                "parent_customer_id",
                f"parent cycle loop-esd -> {BAD} -> loop-esd",
            ),
        ),
    ),
    # -- JSON columns --
    "customer_params_not_json": Case(
        customer(params="{state_code: TX}"), (E(BAD, None, "params", "is not valid JSON"),)
    ),
    "customer_params_json_but_not_an_object": Case(
        customer(params='["TX"]'), (E(BAD, None, "params", "must be a JSON object, not list"),)
    ),
    "integration_params_not_json": Case(
        integration("grades", params="sis_base_url=https://x"),
        (E(BAD, "grades", "params", "is not valid JSON"),),
    ),
    "task_overrides_json_string_not_object": Case(
        integration("grades", task_overrides='"export_grades"'),
        (E(BAD, "grades", "task_overrides", "must be a JSON object, not str"),),
    ),
    "params_with_nan_which_json_does_not_allow": Case(
        customer(params='{"state_code": NaN}'),
        (E(BAD, None, "params", "NaN is not a JSON number"),),
    ),
    "params_with_a_number_too_large_for_a_float": Case(
        customer(params='{"retries": 1e400}'),
        (E(BAD, None, "params", "holds inf, which is not a JSON number"),),
    ),
    "params_nested_too_deep": Case(
        customer(params='{"x": ' + "[" * 100 + "]" * 100 + "}"),
        (E(BAD, None, "params", "nested more than 16 levels deep"),),
    ),
    "params_nested_deeper_than_the_json_parser_can_go": Case(
        customer(params='{"x": ' + "[" * 30_000 + "]" * 30_000 + "}"),  # under the size cap
        (E(BAD, None, "params", "nested more than 16 levels deep"),),
    ),
    # -- placeholders and params --
    "unknown_placeholder_in_override": Case(
        overrides("grades", {"export_grades": {"args": {"function_id": "ps-{region}"}}}),
        (
            E(
                BAD,
                "grades",
                "task_overrides.export_grades.args.function_id",
                "unknown placeholder {region}",
            ),
        ),
    ),
    "unknown_placeholder_in_customer_param_reported_once": Case(
        customer_params(dataset="district_{district}"),
        (E(BAD, None, "params.dataset", "unknown placeholder {district}"),),
    ),
    "unknown_placeholder_in_integration_param": Case(
        grades_params(grades_table="{table_prefix}_grades"),
        (E(BAD, "grades", "params.grades_table", "unknown placeholder {table_prefix}"),),
    ),
    "param_reference_cycle_between_customer_params": Case(
        customer_params(dataset="{b}", b="x-{dataset}"),
        (E(BAD, None, "params.dataset", "param reference cycle dataset -> b -> dataset"),),
    ),
    "param_referencing_itself": Case(
        customer_params(dataset="{dataset}_v2"),
        (E(BAD, None, "params.dataset", "param reference cycle dataset -> dataset"),),
    ),
    "param_reference_cycle_between_integration_params": Case(
        grades_params(grades_table="{export_prefix}", export_prefix="gs://{grades_table}"),
        (
            E(
                BAD,
                "grades",
                "params.grades_table",
                "cycle grades_table -> export_prefix -> grades_table",
            ),
        ),
    ),
    "param_reference_chain_too_deep": Case(
        customer_params(dataset="{p0}", **{f"p{i}": f"{{p{i + 1}}}" for i in range(40)}, p40="end"),
        (E(BAD, None, "params.dataset", "param reference chain deeper than 16"),),
    ),
    "required_param_missing": Case(
        integration("grades", params=None),
        (E(BAD, "grades", "params.sis_base_url", "required by template 'powerschool_grades'"),),
    ),
    "builtin_param_set_by_customer": Case(
        customer_params(customer_id="someone-else"),
        (E(BAD, None, "params.customer_id", "is a built-in param"),),
    ),
    # -- task overrides --
    "override_dependency_cycle": Case(
        overrides("grades", {"export_grades": {"upstream": ["merge_grades"]}}),
        (
            E(
                BAD,
                "grades",
                "task_overrides.export_grades.upstream",
                "dependency cycle export_grades -> merge_grades -> load_staging -> export_grades",
            ),
        ),
    ),
    "override_adds_task_with_unknown_upstream": Case(
        overrides("grades", {"notify": {"operator": EMPTY_OPERATOR, "upstream": ["merge"]}}),
        (E(BAD, "grades", "task_overrides.notify.upstream", "unknown upstream task 'merge'"),),
    ),
    "override_removes_a_task_others_depend_on": Case(
        overrides("grades", {"merge_grades": None}),
        (
            E(
                BAD,
                "grades",
                "task_overrides.grades_loaded.upstream",
                "unknown upstream task 'merge_grades'",
            ),
        ),
    ),
    "override_removes_every_task": Case(
        overrides("custom", {"run_extract": None}),
        (E(BAD, "custom", "task_overrides", "must be a non-empty mapping"),),
    ),
    "override_unknown_operator": Case(
        overrides(
            "grades",
            {
                "export_grades": {
                    "operator": "airflow.providers.google.cloud.operators.functions.CloudFunctionInvokeOperator"
                }
            },
        ),
        (E(BAD, "grades", "task_overrides.export_grades.operator", "is not allowed"),),
    ),
    "override_operator_not_a_dotted_path": Case(
        overrides("grades", {"export_grades": {"operator": "BashOperator"}}),
        (E(BAD, "grades", "task_overrides.export_grades.operator", "dotted import path"),),
    ),
    "override_operator_that_is_not_an_operator": Case(
        overrides("grades", {"export_grades": {"operator": "composer.callbacks.log_failure"}}),
        (E(BAD, "grades", "task_overrides.export_grades.operator", "is not allowed"),),
    ),
    "override_unknown_operator_argument": Case(
        overrides("grades", {"export_grades": {"args": {"functionid": "x"}}}),
        (
            E(
                BAD,
                "grades",
                "task_overrides.export_grades.args.functionid",
                "CloudFunctionInvokeFunctionOperator takes no argument 'functionid'",
            ),
        ),
    ),
    "override_sets_task_id_which_dagfleet_owns": Case(
        overrides("grades", {"export_grades": {"args": {"task_id": "other"}}}),
        (E(BAD, "grades", "task_overrides.export_grades.args.task_id", "takes no argument"),),
    ),
    "override_removes_a_task_the_template_does_not_have": Case(
        overrides("grades", {"grade_in_range": None}),
        (
            E(
                BAD,
                "grades",
                "task_overrides.grade_in_range",
                "no task 'grade_in_range' in template 'powerschool_grades' to remove",
            ),
        ),
    ),
    "override_task_id_with_a_newline_stays_on_one_line": Case(
        overrides("grades", {"bad\ntask": None}),
        (E(BAD, "grades", "task_overrides.bad\\ntask", "no task 'bad\\ntask'"),),
    ),
    "override_unknown_task_key": Case(
        overrides("grades", {"export_grades": {"depends_on": ["merge_grades"]}}),
        (E(BAD, "grades", "task_overrides.export_grades.depends_on", "unknown task key"),),
    ),
    "override_patch_not_a_mapping": Case(
        overrides("grades", {"export_grades": "skip"}),
        (E(BAD, "grades", "task_overrides.export_grades", "must be a task mapping or null"),),
    ),
    "override_task_id_outside_charset": Case(
        overrides("grades", {"notify me": {"operator": EMPTY_OPERATOR}}),
        (E(BAD, "grades", "task_overrides.notify me", "task id must match"),),
    ),
    "override_group_id_outside_charset": Case(
        overrides("grades", {"export_grades": {"group": "quality checks"}}),
        (E(BAD, "grades", "task_overrides.export_grades.group", "must be a task group id"),),
    ),
    "override_adds_a_task_with_a_setup_task_id_in_a_cron_dag": Case(
        overrides("custom", {"ensure_dataset": {"operator": EMPTY_OPERATOR}}),
        (
            E(
                BAD,
                "custom",
                "task_overrides.ensure_dataset",
                "'ensure_dataset' is already the id of a task or group in this DAG",
            ),
        ),
    ),
    "callback_not_in_the_imports_allow_list": Case(
        overrides("grades", {"export_grades": {"args": {"on_failure_callback": "os.system"}}}),
        (
            E(
                BAD,
                "grades",
                "task_overrides.export_grades.args.on_failure_callback",
                "'os.system' is not a callable listed under the template's or fleet's imports",
            ),
        ),
    ),
    # -- credentials --
    "password_in_customer_params": Case(
        customer_params(password=SECRET),
        (E(BAD, None, "params.password", "looks like a credential"),),
        secret=SECRET,
    ),
    "password_with_a_suffix_in_customer_params": Case(
        customer_params(db_password_plain=SECRET),
        (E(BAD, None, "params.db_password_plain", "looks like a credential"),),
        secret=SECRET,
    ),
    "credential_param_name_with_a_newline_stays_on_one_line": Case(
        customer_params(**{"db\npassword": SECRET}),
        (E(BAD, None, "params.db\\npassword", "looks like a credential"),),
        secret=SECRET,
    ),
    "api_key_in_integration_params": Case(
        grades_params(API_KEY=SECRET),
        (E(BAD, "grades", "params.API_KEY", "looks like a credential"),),
        secret=SECRET,
    ),
    "token_in_integration_params": Case(
        grades_params(sis_token=SECRET),
        (E(BAD, "grades", "params.sis_token", "looks like a credential"),),
        secret=SECRET,
    ),
    "client_secret_nested_inside_a_param": Case(
        grades_params(sis={"client_id": "x", "client_secret": SECRET}),
        (E(BAD, "grades", "params.sis.client_secret", "looks like a credential"),),
        secret=SECRET,
    ),
    "private_key_inside_a_list_param": Case(
        customer_params(keys=[{"private_key": SECRET}]),
        (E(BAD, None, "params.keys[0].private_key", "looks like a credential"),),
        secret=SECRET,
    ),
    "token_in_override_args": Case(
        overrides("grades", {"export_grades": {"args": {"input_data": {"token": SECRET}}}}),
        (
            E(
                BAD,
                "grades",
                "task_overrides.export_grades.args.input_data.token",
                "looks like a credential",
            ),
        ),
        secret=SECRET,
    ),
    # -- ids --
    **{
        f"customer_id_outside_charset[{label}]": Case(
            new_district(bad_id),
            (E(repr(bad_id), None, "customer_id", "outside the charset"),),
        )
        for label, bad_id in [
            ("dot-dot-slash", "../x"),
            ("space", "a b"),
            ("65-chars", "x" * 65),
            ("leading-dash", "-lead"),
            ("slash", "a/b"),
            ("non-ascii", "zürich-isd"),
            ("trailing-newline", "abc\n"),
            ("empty", ""),
        ]
    },
    **{
        f"integration_id_outside_charset[{label}]": Case(
            integration("classroom", integration_id=bad_id),
            (E(BAD, repr(bad_id), "integration_id", "is outside"),),
        )
        for label, bad_id in [
            ("dot-dot-slash", "../x"),
            ("space", "a b"),
            ("65-chars", "x" * 65),
            ("leading-dash", "-lead"),
            ("newline", "a\nb"),
        ]
    },
    "integration_id_main_would_be_the_main_dag_id": Case(
        integration("classroom", integration_id="main"),
        (E(BAD, "main", "integration_id", "is reserved by dagfleet"),),
    ),
    "integration_id_rollup_is_reserved": Case(
        integration("grades", integration_id="rollup"),
        (E(BAD, "rollup", "integration_id", "is reserved by dagfleet"),),
    ),
    "integration_id_equal_to_a_setup_task_id": Case(
        integration("grades", integration_id="ensure_dataset"),
        (
            E(
                BAD,
                "ensure_dataset",
                "integration_id",
                "'ensure_dataset' is already the id of a task in this DAG",
            ),
        ),
    ),
    # -- templates and variants --
    "unknown_template": Case(
        integration("grades", template="powerschool"),
        (E(BAD, "grades", "template", "unknown template 'powerschool'"),),
    ),
    "template_name_escaping_the_folder": Case(
        integration("grades", template="../templates/powerschool_grades"),
        (E(BAD, "grades", "template", "invalid template name"),),
    ),
    "template_name_of_the_fleet_settings": Case(
        integration("grades", template="fleet"),
        (E(BAD, "grades", "template", "invalid template name 'fleet'"),),
    ),
    "main_only_template_given_a_schedule": Case(
        integration("grades", schedule="@daily"),
        (E(BAD, "grades", "schedule", "template 'powerschool_grades' cannot run with a schedule"),),
    ),
    "cron_only_template_without_a_schedule": Case(
        integration("classroom", schedule=None),
        (E(BAD, "classroom", "schedule", "cannot run with a NULL schedule (main DAG)"),),
    ),
    "template_yaml_syntax_error": Case(
        lambda snap: snap,
        (E(BAD, None, "template", "custom_sync.yaml"),),
        edit_templates=edit_template("custom_sync.yaml", "tasks:\n", "tasks: [\n"),
    ),
    "template_with_unknown_placeholder": Case(
        lambda snap: snap,
        (E(BAD, None, "template", "unknown placeholder {extract_table}"),),
        edit_templates=edit_template("custom_sync.yaml", "{extract_name}`", "{extract_table}`"),
    ),
    "template_param_default_with_unknown_placeholder": Case(
        lambda snap: snap,
        (E(BAD, None, "template", "params: unknown placeholder {customer}"),),
        edit_templates=edit_template("custom_sync.yaml", "extract_{customer_key}", "x_{customer}"),
    ),
    "template_with_unknown_operator": Case(
        lambda snap: snap,
        (E(BAD, "custom", "tasks.run_extract.operator", "unknown operator"),),
        edit_templates=edit_template(
            "custom_sync.yaml", "BigQueryInsertJobOperator", "BigQueryNoSuchOperator"
        ),
    ),
    "template_with_unknown_key": Case(
        lambda snap: snap,
        (E(BAD, None, "template", "custom_sync.yaml: schedule: unknown template key"),),
        edit_templates=edit_template("custom_sync.yaml", "cron:\n", "schedule: daily\ncron:\n"),
    ),
    "template_named_differently_from_its_file": Case(
        lambda snap: snap,
        (E(BAD, None, "template", "must be 'custom_sync', the file's name"),),
        edit_templates=edit_template("custom_sync.yaml", "template: custom_sync", "template: x"),
    ),
    "template_file_removed": Case(
        lambda snap: snap,
        (E(BAD, "custom", "template", "unknown template 'custom_sync'"),),
        edit_templates=lambda templates: (templates / "custom_sync.yaml").unlink(),
    ),
    # -- legacy files --
    "legacy_file_that_does_not_exist": Case(
        customer(legacy_dag_file="missing_legacy.py"),
        (E(BAD, None, "legacy_dag_file", "no file missing_legacy.py"),),
    ),
    "legacy_file_path_escaping_the_folder": Case(
        customer(legacy_dag_file="../fleet.py"),
        (E(BAD, None, "legacy_dag_file", "must be a file name ending in .py"),),
    ),
    "legacy_file_that_does_not_compile": Case(
        customer(legacy_dag_file="does_not_compile.py"),
        (E(BAD, None, "legacy_dag_file", "does_not_compile.py:3: invalid syntax"),),
    ),
    "legacy_file_importing_a_missing_module": Case(
        customer(legacy_dag_file="imports_missing.py"),
        (E(BAD, None, "legacy_dag_file", "imports dagfleet_no_such_module"),),
    ),
    # -- generated files that would fail when Airflow parses them --
    "legacy_file_that_raises_at_import": Case(
        customer(legacy_dag_file="raises_at_import.py"),
        (E(BAD, None, "legacy_dag_file", "legacy file is broken"),),
    ),
    "override_removes_a_required_operator_argument": Case(
        overrides("grades", {"merge_grades": {"args": {"configuration": None}}}),
        (E(BAD, "grades", "task_overrides.merge_grades.args.configuration", "required"),),
    ),
    "override_argument_of_the_wrong_type": Case(
        overrides("grades", {"export_grades": {"args": {"retries": "three"}}}),
        (E(BAD, "grades", "task_overrides.export_grades.args.retries", "int"),),
    ),
    "override_trigger_rule_that_does_not_exist": Case(
        overrides("grades", {"export_grades": {"args": {"trigger_rule": "all_sucess"}}}),
        (E(BAD, "grades", "task_overrides.export_grades.args.trigger_rule", "trigger_rule"),),
    ),
}


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=name, marks=case.marks) for name, case in CASES.items()],
)
def test_bad_config_sets_its_customer_aside_with_a_one_line_error(
    case: Case, tmp_path, fleet_cli, baseline
):
    snapshot = add_customer(case.break_it(baseline.snapshot), *fresh_rows())
    outcome = run_sync(tmp_path, fleet_cli, baseline, snapshot, case.edit_templates)
    assert_set_aside(outcome, baseline, case.expected)
    if case.secret:
        assert not any(case.secret.encode() in content for content in outcome.files.values())


def test_ids_outside_the_charset_never_create_files_outside_their_folder(
    tmp_path, fleet_cli, baseline
):
    escapes = ("../escaped", "../../escaped", "/abs-escaped", "a/../../escaped")
    snapshot = baseline.snapshot
    for n, bad_id in enumerate(escapes):
        snapshot = add_customer(
            snapshot,
            CustomerRow(bad_id, "Escape", "America/Chicago", True),
            IntegrationRow(
                bad_id,
                "grades",
                "powerschool_grades",
                True,
                params=json.dumps({"sis_base_url": "x"}),
            ),
        )
        snapshot = add_customer(
            snapshot,
            CustomerRow(f"ok-{n}", "Ok", "America/Chicago", True),
            IntegrationRow(
                f"ok-{n}",
                "../escaped",
                "google_classroom",
                True,
                schedule="@hourly",
                params=json.dumps({"classroom_domain": "x"}),
            ),
        )
    snapshot = add_customer(snapshot, *fresh_rows())
    outcome = run_sync(tmp_path, fleet_cli, baseline, snapshot)
    assert outcome.code == 1
    assert sorted(e[0] for e in outcome.errors if e[2] == "customer_id") == sorted(
        repr(i) for i in escapes
    )
    assert sorted(e[0] for e in outcome.errors if e[2] == "integration_id") == [
        f"ok-{n}" for n in range(len(escapes))
    ]
    assert not [p for p in tmp_path.rglob("*escaped*")]
    assert not Path("/abs-escaped").exists()
    assert set(outcome.parts) - set(baseline.parts) == {FRESH}


def test_two_customers_that_would_share_a_dag_id_are_both_set_aside(tmp_path, fleet_cli, baseline):
    """`a` + integration `b__c` and `a__b` + integration `c` both make dag_id a__b__c."""
    a = CustomerRow("a", "A", "America/Chicago", True)
    a_b = CustomerRow("a__b", "A B", "America/Chicago", True)

    def classroom(customer_id: str, integration_id: str) -> IntegrationRow:
        return IntegrationRow(
            customer_id,
            integration_id,
            "google_classroom",
            True,
            schedule="@hourly",
            params=json.dumps({"classroom_domain": "x"}),
        )

    good = add_customer(
        add_customer(baseline.snapshot, a, classroom("a", "b__c")), a_b, classroom("a__b", "d")
    )
    first = run_sync(tmp_path / "first", fleet_cli, baseline, good)
    assert first.code == 0, first.errors
    published = {c: p for c, p in first.parts.items() if c in ("a", "a__b")}
    assert first.manifest["a"]["dags"] == ["a__main", "a__b__c"]
    assert first.manifest["a__b"]["dags"] == ["a__b__main", "a__b__d"]
    colliding = Snapshot(good.customers, (*good.integrations, classroom("a__b", "c")))
    second_baseline = dataclasses.replace(baseline, target=tmp_path / "first" / "dags")
    outcome = run_sync(
        tmp_path / "second", fleet_cli, second_baseline, add_customer(colliding, *fresh_rows())
    )
    assert outcome.code == 1
    assert sorted(outcome.errors) == [
        (
            "a",
            "b__c",
            "integration_id",
            "dag_id a__b__c is also generated for customer a__b integration c",
        ),
        (
            "a__b",
            "c",
            "integration_id",
            "dag_id a__b__c is also generated for customer a integration b__c",
        ),
    ]
    for customer_id, part in published.items():
        assert outcome.parts[customer_id] == part
        assert outcome.manifest[customer_id] == first.manifest[customer_id]
    assert "DAGS['a__b__c']" in outcome.parts["a"] and "a__b__c" not in outcome.parts["a__b"]
    assert FRESH in outcome.parts


def test_a_dag_id_collision_names_the_integrations_involved(tmp_path, fleet_cli, baseline):
    snapshot = add_customer(
        add_customer(
            baseline.snapshot,
            CustomerRow("a", "A", "America/Chicago", True),
            IntegrationRow(
                "a", "b__c", "google_classroom", True, "@hourly", '{"classroom_domain": "x"}'
            ),
        ),
        CustomerRow("a__b", "A B", "America/Chicago", True),
        IntegrationRow(
            "a__b", "c", "google_classroom", True, "@hourly", '{"classroom_domain": "x"}'
        ),
    )
    outcome = run_sync(tmp_path, fleet_cli, baseline, add_customer(snapshot, *fresh_rows()))
    assert sorted(e[:3] for e in outcome.errors) == [
        ("a", "b__c", "integration_id"),
        ("a__b", "c", "integration_id"),
    ]


def test_references_to_secrets_are_accepted_and_reach_the_dag(tmp_path, fleet_cli, baseline):
    snapshot = integration(
        "grades",
        params=json.dumps(
            {
                "sis_base_url": "https://bad.example",
                "sis_client_secret_id": "powerschool-bad-isd-v2",
                "gcp_conn_id": "google_cloud_bad_isd",  # a param the template uses
            }
        ),
    )(baseline.snapshot)
    # Another secret or connection than the customer's own is a tenant exception.
    grant = edit_template(
        "fleet.yaml",
        "tenant_exceptions: {}",
        f"tenant_exceptions: {{{BAD}: {{sis_client_secret_id: powerschool-bad-isd-v2, "
        "gcp_conn_id: google_cloud_bad_isd}}",
    )
    outcome = run_sync(tmp_path, fleet_cli, baseline, add_customer(snapshot, *fresh_rows()), grant)
    assert outcome.code == 0, outcome.errors
    assert outcome.errors == []
    assert "powerschool-bad-isd-v2" in outcome.parts[BAD]


def test_strict_sync_publishes_nothing_when_one_customer_is_invalid(tmp_path, fleet_cli, baseline):
    snapshot = add_customer(customer(timezone="Mars/Olympus")(baseline.snapshot), *fresh_rows())
    outcome = run_sync(tmp_path, fleet_cli, baseline, snapshot, None, "--strict")
    assert outcome.code == 1
    assert [e[:3] for e in outcome.errors] == [(BAD, None, "timezone")]
    assert outcome.notes == ["sync --strict: 1 invalid customers, nothing published"]
    assert outcome.files == baseline.files  # not even the valid new customer


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("stagger_minutes: 20", "stagger_minutes: 90", "stagger_minutes must be an integer"),
        ("stagger_minutes: 20", "stagger_minutes: true", "stagger_minutes must be an integer"),
        ("airflow_target: 3", "airflow_target: 4", "airflow_target must be 2 or 3, not 4"),
        (
            'default_main_schedule: "0 3 * * *"',
            'default_main_schedule: "0 3 30 2 *"',
            "never fires",
        ),
        (
            "  - composer.callbacks.log_failure",
            "  - log_failure",
            "imports must be a list of dotted",
        ),
        (
            "  ensure_dataset:\n",
            "  ensure_dataset:\n    upstream: [create_bucket]\n",
            "setup_tasks.ensure_dataset.upstream: unknown upstream task 'create_bucket'",
        ),
        (
            "paused_at_creation: false",
            "paused_at_creation: sometimes",
            "paused_at_creation must be true or false",
        ),
    ],
    ids=[
        "stagger-out-of-range",
        "stagger-boolean",
        "unknown-airflow-target",
        "default-schedule-never-fires",
        "import-not-dotted",
        "setup-task-unknown-upstream",
        "paused-at-creation-not-a-bool",
    ],
)
def test_broken_fleet_settings_are_one_error_and_publish_nothing(
    old, new, message, tmp_path, fleet_cli, baseline
):
    templates = tmp_path / "templates"
    shutil.copytree(baseline.templates, templates)
    edit_template("fleet.yaml", old, new)(templates)
    target = tmp_path / "dags"
    shutil.copytree(baseline.target, target)
    snapshot = add_customer(baseline.snapshot, *fresh_rows())
    code, _out, err = fleet_cli(
        "sync",
        "--store",
        make_store(tmp_path / "fleet.db", snapshot),
        "--target",
        f"file://{target}",
        "--templates",
        str(templates),
    )
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {templates}/fleet.yaml: ") and message in lines[0]
    assert read_files(target) == baseline.files


def test_validate_reports_an_invalid_customer_and_writes_nothing(tmp_path, fleet_cli, baseline):
    snapshot = customer_params(dataset="district_{district}", password=SECRET)(baseline.snapshot)
    store = make_store(tmp_path / "fleet.db", snapshot)
    code, out, err = fleet_cli("validate", "--store", store, "--templates", str(baseline.templates))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1  # one customer, first problem found
    assert lines[0].startswith(f"error: customer {BAD}, field params.")
    assert "1 invalid customers" in out
    assert not (tmp_path / "dags").exists()
