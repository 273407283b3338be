"""Typed values reach generated code only as constructor calls with literal arguments."""

import ast

import pytest

from composer.compose.dagspec import Call, CodeRef
from composer.model.keys import unknown_keys
from composer.render.literals import NotALiteral, literal

TIMEDELTA = CodeRef("datetime.timedelta")


def _short(ref: CodeRef) -> str:
    return ref.dotted.rsplit(".", 1)[-1]


def test_a_call_is_written_as_the_imported_name_called_with_literals() -> None:
    text = literal(Call(TIMEDELTA, kwargs={"seconds": 300, "days": 1}), _short)
    assert text == "timedelta(days=1, seconds=300)"


def test_a_long_nested_call_splits_one_argument_per_line_and_stays_valid_python() -> None:
    inner = Call(CodeRef("k8s.V1SecretVolumeSource"), kwargs={"secret_name": "y" * 60})
    value = [Call(CodeRef("k8s.V1Volume"), kwargs={"name": "x" * 60, "secret": inner})]
    text = literal(value, _short, 2)
    assert "\n" in text
    tree = ast.parse(text, mode="eval")
    calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert calls == ["V1Volume", "V1SecretVolumeSource"]


def test_a_keyword_that_is_not_an_identifier_is_refused() -> None:
    with pytest.raises(NotALiteral, match="not an identifier"):
        literal(Call(TIMEDELTA, kwargs={"x); import os; (": 1}), _short)


def test_an_unknown_key_names_the_closest_known_one() -> None:
    assert unknown_keys({"schedul": 1, "tags": []}, ["schedule", "tags"]) == [
        ("schedul", "unknown key 'schedul' (did you mean 'schedule'?)")
    ]
    assert unknown_keys({"zzz": 1}, ["schedule"]) == [("zzz", "unknown key 'zzz'")]
