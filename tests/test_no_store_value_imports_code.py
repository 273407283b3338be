"""No store value, anywhere, makes dagfleet import a module: operator and callable names
in task overrides, params, and the legacy file a customer names are only ever looked up
in the allow-lists (composer/compose/allowlist.py).

The property watches `sys.modules` around building one customer whose rows hold the
generated values. Everything the allow-lists name is imported once first (a warm-up
build of the same shapes), so any module that appears during a build was named by a
store value. Probe modules on sys.path also leave a file behind when imported, and the
planted legacy file when it is run.
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from composer.build import FleetBuilder
from composer.store import CustomerRow, IntegrationRow, Snapshot
from tests.conftest import TEMPLATES

CID = "prop-isd"
PROBE = f"dagfleet_probe_{uuid.uuid4().hex[:10]}"
BASH = "airflow.providers.standard.operators.bash.BashOperator"
EMPTY = "airflow.providers.standard.operators.empty.EmptyOperator"
BIGQUERY = "airflow.providers.google.cloud.operators.bigquery.BigQueryInsertJobOperator"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    """A templates folder with a planted legacy file, and probe modules on sys.path."""
    root = tmp_path_factory.mktemp("imports")
    sentinel = root / "sentinel"
    templates = root / "templates"
    shutil.copytree(TEMPLATES, templates)
    ran = f"open({str(sentinel)!r}, 'a').write(__name__)\n"
    (templates / "legacy" / "planted.py").write_text(ran)
    site = root / "site"
    (site / PROBE).mkdir(parents=True)
    (site / PROBE / "__init__.py").write_text(ran + "class Anything:\n    pass\n")
    (site / PROBE / "ops.py").write_text(ran + "def hook(context):\n    pass\n")
    sys.path.insert(0, str(site))
    try:
        warm_up(templates)
        yield templates, sentinel
    finally:
        sys.path.remove(str(site))


NAMED = [
    f"{PROBE}.Anything",
    f"{PROBE}.ops.hook",
    f"{PROBE}.ops.Operator",
    BASH,
    "airflow.operators.bash.BashOperator",
    "airflow.providers.standard.operators.python.PythonOperator",
    "composer.callbacks.log_failure",
    "os.system",
    "subprocess.Popen",
    EMPTY,
    BIGQUERY,
]
dotted = st.from_regex(r"[a-z_][a-z0-9_]{0,7}(\.[A-Za-z_][A-Za-z0-9_]{0,7}){1,3}", fullmatch=True)
names = st.one_of(st.sampled_from(NAMED), dotted, st.text(max_size=20))
values = st.recursive(
    st.none() | st.booleans() | st.integers() | names,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
arg_names = st.sampled_from(
    [
        "on_failure_callback",
        "on_success_callback",
        "sla_miss_callback",
        "my_callback",
        "python_callable",
        "function_id",
        "sql",
        "bash_command",
        "configuration",
    ]
)
tasks = st.fixed_dictionaries(
    {},
    optional={
        "operator": names,
        "args": st.dictionaries(
            arg_names, st.one_of(names, st.lists(names, max_size=2), values), max_size=3
        ),
        "upstream": st.sampled_from([["merge_grades"], ["export_grades"], []]),
    },
)
overrides = st.dictionaries(
    st.sampled_from(["export_grades", "merge_grades", "added"]), tasks, max_size=2
)
params = st.dictionaries(
    st.sampled_from(["dataset", "grades_table", "project", "gcp_conn_id", "on_failure_callback"]),
    values,
    max_size=3,
)
legacy = st.none() | st.sampled_from(["planted.py", "lincoln_unified_legacy.py", "nope.py"])


def snapshot(customer_params: dict, integration_params: dict, patch: dict, legacy_file) -> Snapshot:
    return Snapshot(
        (
            CustomerRow(
                CID,
                "Prop ISD",
                "America/Chicago",
                True,
                legacy_dag_file=legacy_file,
                params=json.dumps(customer_params),
            ),
        ),
        (
            IntegrationRow(
                CID,
                "grades",
                "powerschool_grades",
                True,
                params=json.dumps({"sis_base_url": "https://p.example", **integration_params}),
                task_overrides=json.dumps(patch) if patch else None,
            ),
        ),
    )


def build(templates: Path, rows: Snapshot) -> None:
    builder = FleetBuilder(rows, templates)
    if CID in builder.customer_ids():
        builder.build(CID)


def warm_up(templates: Path) -> None:
    """Import what the allow-lists name, and walk the error paths once."""
    allowed_patch = {
        "added": {"operator": EMPTY, "upstream": ["merge_grades"]},
        "export_grades": {"args": {"on_success_callback": "composer.callbacks.log_failure"}},
    }
    build(templates, snapshot({}, {}, allowed_patch, None))
    build(templates, snapshot({"dataset": "x"}, {"grades_table": "a b"}, {"x": {}}, "nope.py"))
    build(templates, snapshot({}, {}, {"added": {"operator": BASH}}, "planted.py"))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(customer_params=params, integration_params=params, patch=overrides, legacy_file=legacy)
@example({}, {}, {"added": {"operator": f"{PROBE}.Anything", "upstream": ["merge_grades"]}}, None)
@example({}, {}, {"export_grades": {"args": {"on_failure_callback": f"{PROBE}.ops.hook"}}}, None)
@example({}, {}, {"export_grades": {"args": {"my_callback": [f"{PROBE}.ops.hook"]}}}, None)
@example({"on_failure_callback": f"{PROBE}.ops.hook"}, {}, {}, None)
@example({}, {}, {"export_grades": {"args": {"python_callable": f"{PROBE}.ops.hook"}}}, None)
@example(
    {},
    {},
    {
        "added": {
            "operator": "airflow.providers.standard.operators.python.PythonOperator",
            "args": {"python_callable": f"{PROBE}.ops.hook"},
        }
    },
    None,
)
@example({}, {}, {}, "planted.py")
def test_no_store_value_causes_an_import(
    world, customer_params, integration_params, patch, legacy_file
):
    templates, sentinel = world
    before = set(sys.modules)
    build(templates, snapshot(customer_params, integration_params, patch, legacy_file))
    imported = sorted(set(sys.modules) - before)
    assert imported == [], f"a store value made dagfleet import {imported[:5]}"
    assert not sentinel.exists(), f"store-named code ran: {sentinel.read_text()}"
