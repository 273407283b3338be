"""No config value can ever become code: arbitrary strings and JSON values put into
customer params, integration params, task overrides and the customer's name come out
of Airflow's own DagBag exactly as they went in, and no injected payload ever runs.

Strings holding a `{identifier}` placeholder are left out of the generated inputs:
those are substituted by design (composer.compose.substitution). Everything else, quotes,
backslashes, newlines, NUL, triple quotes, Python, Jinja, JSON, regex and SQL, must be
held verbatim.

Decision on NUL and lone surrogates: JSON can carry both (`\\u0000`, `\\ud800`) and the
whole pipeline can publish them (a Python literal escapes them, the file stays ASCII for
them, Airflow serializes them), so they are held exactly like any other text rather
than refused.
"""

from __future__ import annotations

import ast
import json
import re
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from composer.build import FleetBuilder
from composer.compose.inert import SAFE_MACRO
from composer.compose.params import looks_like_credential
from composer.compose.substitution import placeholders
from composer.model.settings import load_settings
from composer.render import layout
from composer.store import CustomerRow, IntegrationRow, Snapshot
from tests.airflow_render import render
from tests.conftest import TEMPLATES

CID = "prop-isd"
SENTINEL = Path(tempfile.gettempdir()) / f"dagfleet-injected-{uuid.uuid4().hex}"
S = str(SENTINEL)

PAYLOADS = [
    f"'); __import__('os').system('touch {S}'); ('",
    f'"); __import__("os").system("touch {S}"); ("',
    f"'''); __import__('os').system('touch {S}'); ('''",
    f'"""); __import__("os").system("touch {S}"); ("""',
    f"\\'); open('{S}', 'w'); ('",
    f"\\\"); open('{S}', 'w'); (\"",
    f"x\nopen('{S}', 'w')\n",
    f"x\r\nopen('{S}', 'w')  # \\",
    f"\\\nopen('{S}', 'w')",
    f"{{__import__('os').system('touch {S}')}}",
    f"{{{{ __import__('os').system('touch {S}') }}}}",
    f"{{% for x in ().__class__.__base__.__subclasses__() %}}{{% endfor %}}{S}",
    f"$(touch {S})",
    f"`touch {S}`",
    f"\x00'); open('{S}', 'w'); #",
    f"\u2028open('{S}', 'w')\u2029",
    f"\\N{{LATIN SMALL LETTER A}}'); open('{S}', 'w'); ('",
]
TEXT_THAT_MUST_PASS_VERBATIM = [
    "{{ ds }}",
    "{{ ds_nodash }}",
    "{% if x %}yes{% else %}no{% endif %}",
    "{# a Jinja comment #}",
    '{"a": {"b": 1}}',
    r"^\d{3}-\d{2,4}$",
    "{0}",
    "{}",
    "{ name }",
    "{name",
    "SELECT * FROM `p.d.t` WHERE day = '{{ ds }}' AND x LIKE '%{%'",
    "'",
    '"',
    "'''",
    '"""',
    "\\",
    "\\\\'",
    "\n",
    "\r\n\t",
    "\x00",
    "\x7f\x1b[31m",
    "\ufeff\u202e",
    "é🎓中文",
    " ",
]
ALL_EXAMPLES = PAYLOADS + TEXT_THAT_MUST_PASS_VERBATIM


def no_placeholder(value: object) -> bool:
    return not placeholders(value)


nasty_text = st.one_of(
    st.text(),
    st.sampled_from(ALL_EXAMPLES),
    st.builds(lambda a, b, c: a + b + c, st.text(), st.sampled_from(ALL_EXAMPLES), st.text()),
).filter(no_placeholder)
names = st.text(min_size=1).filter(lambda n: n.strip() != "")
keys = st.text().filter(
    lambda k: not looks_like_credential(k) and k not in ("data", "raw", "nested", "json")
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | nasty_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
).filter(no_placeholder)


def snapshot_for(
    customer_value: str,
    integration_value: str,
    override_value: str,
    json_value: object,
    key: str,
    name: str,
) -> Snapshot:
    """One district whose every config surface carries the values: a customer param and
    an integration param (reached through `{free_c}` / `{free_i}` / `{free_j}`), raw
    override args at several depths (a key too), and the customer's name."""
    patch = {
        "export_grades": {
            "args": {
                "function_id": "{free_c}",
                "location": "{free_i}",
                "project_id": override_value,
                "input_data": {
                    "raw": override_value,
                    "nested": [override_value, {key: override_value}],
                    "json": "{free_j}",
                    key: "k",
                },
            }
        }
    }
    return Snapshot(
        (
            CustomerRow(
                CID,
                name,
                "America/Chicago",
                True,
                params=json.dumps({"free_c": customer_value, "free_j": json_value}),
            ),
        ),
        (
            IntegrationRow(
                CID,
                "grades",
                "powerschool_grades",
                True,
                params=json.dumps(
                    {"sis_base_url": "https://x.example", "free_i": integration_value}
                ),
                task_overrides=json.dumps(patch),
            ),
            IntegrationRow(
                CID,
                "classroom",
                "google_classroom",
                True,
                schedule="@hourly",
                params=json.dumps({"classroom_domain": "x.example"}),
            ),
        ),
    )


def built_files(snapshot: Snapshot) -> dict[str, bytes]:
    builder = FleetBuilder(snapshot, TEMPLATES)
    assert builder.errors == []
    build = builder.build(CID)
    assert build.errors == []
    return {f.path: f.content for f in build.files}


def dagbag_of(files: dict[str, bytes]):
    from airflow.dag_processing.dagbag import DagBag

    with tempfile.TemporaryDirectory() as folder:
        for path, content in files.items():
            (Path(folder) / path).parent.mkdir(parents=True, exist_ok=True)
            (Path(folder) / path).write_bytes(content)
        bag = DagBag(dag_folder=folder)
    assert bag.import_errors == {}
    assert sorted(bag.dags) == [f"{CID}__classroom", f"{CID}__main"]
    return bag


def assert_calls_only_what_the_renderer_imported(source: str) -> None:
    """Structural proof, without running anything: the file is the layout's fixed header
    and footer around parts that hold only builder functions and their `DAGS['<dag_id>']
    = <builder>` lines; in a builder, the only calls are to the names its own
    `from ... import` lines bound (operators, DAG, TaskGroup, the timetable) and
    pendulum.datetime; every other expression is a literal."""
    header, footer = layout.module(["\x00"], 3).split("\x00")
    # The header also imports (names no object) the Airflow modules the builders use.
    pre_imports = re.compile(r"^import airflow\.[\w.]+  # noqa: F401\n", re.MULTILINE)
    source = pre_imports.sub("", source)
    assert source.startswith(header) and source.endswith(footer)
    tree = ast.parse(source[len(header) : len(source) - len(footer)])
    builders = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    names = {f.name for f in builders}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            continue
        assert isinstance(node, ast.Assign), ast.unparse(node)
        (target,) = node.targets
        assert isinstance(target, ast.Subscript) and ast.unparse(target.value) == "DAGS"
        assert isinstance(target.slice, ast.Constant) and isinstance(target.slice.value, str)
        assert isinstance(node.value, ast.Name) and node.value.id in names
    for builder in builders:
        assert not builder.args.args and ast.unparse(builder.body[-1]) == "return dag"
        imported = {
            alias.asname or alias.name
            for node in builder.body
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        for node in ast.walk(builder):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Attribute):
                    assert (ast.unparse(func.value), func.attr) == ("pendulum", "datetime")
                else:
                    assert isinstance(func, ast.Name) and func.id in imported, ast.unparse(node)
            assert not isinstance(
                node, ast.Lambda | ast.JoinedStr | ast.Subscript | ast.Starred | ast.NamedExpr
            ), ast.unparse(node)


def at_run_time(value: object, context: dict) -> object:
    """What Airflow renders a store value in a templated field to: the same text, with
    only the plain run-date variables (`{{ ds }}`) filled in (mapping keys are not
    rendered)."""
    if isinstance(value, str):
        return SAFE_MACRO.sub(lambda m: str(context[m.group(1)]), value)
    if isinstance(value, dict):
        return {k: at_run_time(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [at_run_time(v, context) for v in value]
    return value


def check_held_exactly(
    customer_value: str,
    integration_value: str,
    override_value: str,
    json_value: object,
    key: str,
    name: str,
) -> None:
    files = built_files(
        snapshot_for(customer_value, integration_value, override_value, json_value, key, name)
    )
    for content in files.values():
        assert_calls_only_what_the_renderer_imported(content.decode())
    bag = dagbag_of(files)
    assert not SENTINEL.exists(), "an injected payload ran"
    main = bag.dags[f"{CID}__main"]
    # Every value checked below lands in a templated field: what counts is what
    # Airflow renders at run time (composer/compose/inert.py), with the run-date variables.
    export, context = render(main.get_task("grades.export_grades"))
    assert not SENTINEL.exists(), "an injected payload ran when Airflow rendered it"
    customer_value, integration_value, override_value, json_value = (
        at_run_time(v, context)
        for v in (customer_value, integration_value, override_value, json_value)
    )
    assert export.function_id == customer_value
    assert export.location == integration_value
    assert export.project_id == override_value
    assert export.input_data["raw"] == override_value
    assert export.input_data["nested"] == [override_value, {key: override_value}]
    assert export.input_data["json"] == json_value
    assert export.input_data[key] == "k"
    assert main.description == f"{name}: nightly main DAG"
    assert main.task_group_dict["grades"].tooltip == f"PowerSchool grades for {name}"
    assert bag.dags[f"{CID}__classroom"].description == f"Google Classroom sync for {name}"


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    customer_value=nasty_text,
    integration_value=nasty_text,
    override_value=nasty_text,
    json_value=json_values,
    key=keys,
    name=names,
)
@example(PAYLOADS[0], PAYLOADS[3], PAYLOADS[4], {"a": [PAYLOADS[9]]}, PAYLOADS[1], PAYLOADS[6])
@example("\x00", "\u2028", "'''\"\"\"", None, "\\", "\nName\n")
def test_arbitrary_values_are_held_exactly_and_never_run(
    customer_value, integration_value, override_value, json_value, key, name
):
    check_held_exactly(customer_value, integration_value, override_value, json_value, key, name)


@pytest.mark.parametrize("text", ALL_EXAMPLES, ids=repr)
def test_payloads_jinja_and_brace_text_pass_verbatim_everywhere(text):
    check_held_exactly(text, text, text, {"v": [text]}, "key", f"Name {text}")


def test_a_lone_surrogate_from_json_is_held_exactly_and_serializes():
    """JSON may carry `\\ud800`; it must not crash publishing or Airflow's serializer."""
    from airflow.serialization.serialized_objects import DagSerialization

    text = "a\ud800b"
    files = built_files(snapshot_for(text, text, text, [text], "k2", "N"))
    assert all(content.isascii() for content in files.values())
    bag = dagbag_of(files)
    export = bag.dags[f"{CID}__main"].get_task("grades.export_grades")
    assert (export.function_id, export.project_id, export.input_data["json"]) == (
        text,
        text,
        [text],
    )
    serialized = json.dumps(DagSerialization.to_dict(bag.dags[f"{CID}__main"]))
    assert "a\\ud800b" in serialized


def test_a_placeholder_inside_a_value_is_substituted_by_design_not_evaluated():
    """The one thing a value may do: name a param. Its result is text, never code."""
    files = built_files(
        snapshot_for("{customer_id}", "{project}'); open('x', 'w'); ('", "o", None, "k", "N")
    )
    export = dagbag_of(files).dags[f"{CID}__main"].get_task("grades.export_grades")
    project = load_settings(TEMPLATES).params["project"]
    assert export.function_id == CID
    assert export.location == f"{project}'); open('x', 'w'); ('"
