"""The two value checks on their own: any text made inert renders back to itself in
Airflow's own Jinja environment (with only the run-date variables live), and the
declared param types accept what the shipped fleet holds and refuse what breaks out of
SQL, a URL or a path."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from composer.compose.inert import SAFE_MACRO, inert_text
from composer.compose.substitution import placeholders
from composer.model.param_types import (
    ParamType,
    namespace_problem,
    parse_param_type,
    type_problem,
)

CONTEXT = {
    "ds": "2024-05-01",
    "ds_nodash": "20240501",
    "ts": "2024-05-01T03:00:00+00:00",
    "ts_nodash": "20240501T030000",
    "data_interval_start": "2024-05-01 03:00:00+00:00",
    "data_interval_end": "2024-05-02 03:00:00+00:00",
}
JINJA_BITS = [
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "{{ ds }}",
    "{{ds_nodash}}",
    "'",
    "\\",
    "{% raw %}",
    "{% endraw %}",
    "{{ conn.x.password }}",
    "\r\n",
    "\n",
    ".sql",
    "{",
]
jinja_text = st.lists(st.one_of(st.sampled_from(JINJA_BITS), st.text(max_size=5)), max_size=8).map(
    "".join
)


def airflow_jinja():
    from airflow.sdk.definitions._internal.templater import create_template_env

    return create_template_env()


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.text(), jinja_text), ext=st.sampled_from([(), (".sql", ".json")]))
@example("{{ conn.google_cloud_default.password }}", ())
@example("{% endraw %}{{ var.value.x }}", ())
@example("x.sql", (".sql",))
@example("a\ud800b\x00", ())
def test_inert_text_renders_to_itself_in_airflows_jinja(text, ext):
    inert = inert_text(text, ext)
    assert placeholders(inert) == placeholders(text)  # params still resolve inside it
    if placeholders(text):
        return  # substituted before rendering: covered through whole builds
    assert not (ext and inert.endswith(ext)), "would be loaded as a template file"
    rendered = airflow_jinja().from_string(inert).render(**CONTEXT)
    assert rendered == SAFE_MACRO.sub(lambda m: CONTEXT[m.group(1)], text)


def test_plain_text_is_written_as_it_is():
    for text in ["grades", "https://x.example/a?b=c", "50% off", "a # b", "{{ ds }}"]:
        assert inert_text(text) == text


@pytest.mark.parametrize(
    ("spec", "good", "bad"),
    [
        (
            {"type": "identifier"},
            ["grades", "grades_{{ ds_nodash }}", "_x1"],
            ["grades` ; DROP SCHEMA y; --", "a-b", "1x", "", "a.b"],
        ),
        (
            {"type": "url"},
            ["https://tulsa.powerschool.com", "https://x.example:8443/a/b/"],
            ['https://x", "y": "z', "http://x.example", "https://x.example/a b", "https://x/../y"],
        ),
        (
            {"type": "gcs_path"},
            ["classroom/tulsa-ps", "state/TX/a/{{ ds_nodash }}/r.csv"],
            ["/abs", "a/../b", "a//b", "a/./b", "a\nb"],
        ),
        (
            {"type": "gcs_uri"},
            ["gs://edu-landing/powerschool/x"],
            ["gs://Bad_Bucket/x", "s3://x/y"],
        ),
        ({"type": "bucket"}, ["edu-data-platform-landing"], ["Edu", "a", "x/y"]),
        ({"type": "email"}, ["sync@p-1.iam.gserviceaccount.com"], ["a@b c", "a"]),
        ({"pattern": "[A-Z]{2}"}, ["TX"], ["tx", "TXX", "T'"]),
        ({"enum": ["TX", "CO"]}, ["CO"], ["AZ", 1]),
        ({"type": "int"}, [3], ["3", True]),
        ({"type": "slug", "max_length": 5}, ["us-1"], ["us-east1", "a b"]),
    ],
    ids=lambda v: str(v)[:30],
)
def test_declared_types_accept_real_values_and_refuse_break_outs(spec, good, bad):
    ptype = parse_param_type(spec)
    assert isinstance(ptype, ParamType)
    for value in good:
        assert type_problem(ptype, value) is None, value
    for value in bad:
        assert type_problem(ptype, value), value


@pytest.mark.parametrize(
    ("namespace", "value", "ok"),
    [
        ("district_austin_isd", "district_austin_isd", True),
        ("district_austin", "district_austin_isd", False),  # another district's prefix
        ("classroom/austin", "classroom/austin/2024", True),
        ("classroom/austin", "classroom/austin-isd/x", False),
        ("classroom/austin", "classroom/austin/../dallas", False),
        ("state/*/austin", "state/TX/austin/x.csv", True),
        ("state/*/austin", "state/TX/dallas/x.csv", False),
        ("state/*/austin", "state/a/b/austin", False),
    ],
)
def test_a_namespace_holds_its_tenant_and_nothing_beside_it(namespace, value, ok):
    assert (namespace_problem(namespace, value) is None) is ok
