"""Placeholder substitution: what is a placeholder, what is text, and how params
that reference each other resolve (or fail: unknown names, cycles, runaway chains)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from composer.compose.substitution import (
    MAX_REFERENCE_DEPTH,
    ParamCycle,
    ParamResolver,
    ParamTooDeep,
    UnknownPlaceholder,
    placeholders,
    substitute,
)
from composer.model.fleet import MAX_JSON_DEPTH

VALUES = {
    "customer_id": "austin-isd",
    "project": "edu-data",
    "retries": 3,
    "ids": ["a", "b"],
    "conf": {"k": [1, 2]},
    "flag": False,
    "nothing": None,
}


def lookup(name: str):
    if name not in VALUES:
        raise UnknownPlaceholder(name)
    return VALUES[name]


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts a runaway loop in the main thread."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- what gets substituted --------------------------------------------------------------


def test_placeholders_inside_text_are_formatted_as_strings():
    assert substitute("`{project}.{customer_id}` x{retries}", lookup) == "`edu-data.austin-isd` x3"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("retries", 3),
        ("ids", ["a", "b"]),
        ("conf", {"k": [1, 2]}),
        ("flag", False),
        ("nothing", None),
    ],
)
def test_a_string_that_is_exactly_one_placeholder_keeps_the_values_type(name, value):
    assert substitute(f"{{{name}}}", lookup) == value
    assert type(substitute(f"{{{name}}}", lookup)) is type(value)


def test_one_placeholder_with_any_other_text_is_a_string():
    assert substitute(" {retries}", lookup) == " 3"
    assert substitute("{retries}{retries}", lookup) == "33"
    assert substitute("{ids}", lookup) == ["a", "b"]
    assert substitute("in {ids}", lookup) == "in ['a', 'b']"


def test_substitution_reaches_every_string_in_nested_maps_and_lists_but_not_keys():
    value = {
        "{customer_id}": {"table": "{project}.t", "uris": ["gs://{project}/a", ["{retries}"]]},
        "n": 5,
        "b": True,
        "none": None,
    }
    assert substitute(value, lookup) == {
        "{customer_id}": {"table": "edu-data.t", "uris": ["gs://edu-data/a", [3]]},
        "n": 5,
        "b": True,
        "none": None,
    }
    assert placeholders(value) == {"project", "retries"}


def test_substituted_values_are_never_scanned_again():
    def values(name: str):
        return {"evil": "{customer_id} {__import__('os')}", "customer_id": "X"}[name]

    assert substitute("a {evil}", values) == "a {customer_id} {__import__('os')}"
    assert substitute("{evil}", values) == "{customer_id} {__import__('os')}"


def test_an_unknown_placeholder_names_itself():
    with pytest.raises(UnknownPlaceholder) as info:
        substitute({"a": ["ok {project}", "{regionn}"]}, lookup)
    assert info.value.name == "regionn"


# -- what is text and passes verbatim ---------------------------------------------------

VERBATIM = [
    "{{ ds }}",
    "{{ds_nodash}}",
    "{{ '{customer_id}' }}",
    "{% if params.full %}full{% endif %}",
    "{# {customer_id} is documented here #}",
    '{"a": {"b": 1}}',
    '{"customer_id": 1}',
    r"^\d{3}-\d{2,4}$",
    "{0} and {1}",
    "{}",
    "{ customer_id }",
    "{customer-id}",
    "{customer.id}",
    "{1abc}",
    "{customer_id",
    "customer_id}",
    "SELECT STRUCT(1 AS a) FROM t WHERE x IN UNNEST([1, 2])",
    "SELECT '{' || name || '}' FROM t",
    "}{",
    "",
]


@pytest.mark.parametrize("text", VERBATIM)
def test_brace_text_that_is_not_a_placeholder_passes_verbatim(text):
    assert placeholders(text) == set()
    assert substitute(text, lookup) == text


def test_jinja_around_a_placeholder_keeps_the_jinja_and_formats_the_placeholder():
    text = "{% if params.full %}{customer_id}{% endif %} {{ ds }} {# c #}"
    assert substitute(text, lookup) == "{% if params.full %}austin-isd{% endif %} {{ ds }} {# c #}"


def test_an_unclosed_jinja_opener_does_not_hide_the_placeholders_after_it():
    text = "WHERE name LIKE '{%' AND district = '{customer_id}'"
    assert placeholders(text) == {"customer_id"}
    assert substitute(text, lookup) == "WHERE name LIKE '{%' AND district = 'austin-isd'"


# -- params that reference params -------------------------------------------------------


def test_params_resolve_through_other_params_and_builtins():
    resolver = ParamResolver(
        {
            "dataset": "district_{customer_key}",
            "table": "{dataset}.grades",
            "uri": "gs://{bucket}/{table}",
            "bucket": "landing",
        },
        {"customer_key": "austin_isd"},
    )
    assert resolver("uri") == "gs://landing/district_austin_isd.grades"
    assert resolver.resolve_all() == {
        "customer_key": "austin_isd",
        "dataset": "district_austin_isd",
        "table": "district_austin_isd.grades",
        "uri": "gs://landing/district_austin_isd.grades",
        "bucket": "landing",
    }


def test_a_param_that_is_one_placeholder_of_another_keeps_its_type():
    resolver = ParamResolver(
        {"ids": "{descendant_ids}", "n": "{count}", "count": 3}, {"descendant_ids": ["a", "b"]}
    )
    assert resolver("ids") == ["a", "b"]
    assert resolver("n") == 3


def test_an_unknown_reference_names_the_missing_param():
    with pytest.raises(UnknownPlaceholder) as info:
        ParamResolver({"a": "{b}", "b": "x{c}"}, {})("a")
    assert info.value.name == "c"


@pytest.mark.parametrize(
    ("raw", "start", "chain"),
    [
        ({"a": "{a}"}, "a", ["a", "a"]),
        ({"a": "{b}", "b": "{a}"}, "a", ["a", "b", "a"]),
        ({"a": "x{b}", "b": ["{c}"], "c": {"k": "{a}"}}, "a", ["a", "b", "c", "a"]),
        ({"x": "{a}", "a": "{b}", "b": "{a}"}, "x", ["a", "b", "a"]),
    ],
    ids=["self", "two", "three-through-list-and-map", "entered-from-outside"],
)
def test_a_reference_cycle_is_an_error_never_a_hang(raw, start, chain):
    with deadline(5), pytest.raises(ParamCycle) as info:
        ParamResolver(raw, {})(start)
    assert info.value.chain == chain
    assert str(info.value) == " -> ".join(chain)


def test_the_resolver_is_still_usable_after_a_cycle():
    resolver = ParamResolver({"a": "{b}", "b": "{a}", "ok": "fine"}, {})
    with pytest.raises(ParamCycle):
        resolver("a")
    assert resolver("ok") == "fine"
    with pytest.raises(ParamCycle):  # and reports the same cycle again, not a stale stack
        resolver("b")


def test_a_runaway_reference_chain_is_refused_before_pythons_recursion_limit():
    raw = {f"p{i}": f"{{p{i + 1}}}" for i in range(5000)}
    raw["p5000"] = "end"
    with deadline(5), pytest.raises(ParamTooDeep) as info:
        ParamResolver(raw, {})("p0")
    assert len(info.value.chain) == MAX_REFERENCE_DEPTH + 1
    assert f"deeper than {MAX_REFERENCE_DEPTH}" in str(info.value)


def test_the_deepest_accepted_params_resolve_well_inside_the_recursion_limit():
    """The longest chain allowed, each value nested as deep as the store allows, resolves
    with room to spare (here: at 60% of Python's default recursion limit)."""

    def nest(value, depth):
        for _ in range(depth):
            value = [value]
        return value

    last = MAX_REFERENCE_DEPTH - 1
    raw = {f"p{i}": nest(f"{{p{i + 1}}}", MAX_JSON_DEPTH - 1) for i in range(last)}
    raw[f"p{last}"] = "end"
    outcome: list = []

    def resolve() -> None:
        try:
            outcome.append(ParamResolver(raw, {})("p0"))
        except RecursionError as exc:  # pragma: no cover - the failure this test guards
            outcome.append(exc)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(600)
    try:
        thread = threading.Thread(target=resolve)  # a fresh thread: a fresh stack depth
        thread.start()
        thread.join(10)
    finally:
        sys.setrecursionlimit(limit)
    expected = "end"
    for _ in range(last):
        expected = nest(expected, MAX_JSON_DEPTH - 1)
    assert outcome == [expected]
