"""The JSON Schemas of templates and fleet.yaml: generated from the loader's keys,
committed under docs/, and what every shipped and example template validates against."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from composer.model import template_schema as schemas
from composer.model.templates import PARAM_KEYS, TASK_KEYS, TEMPLATE_KEYS
from composer.model.yamlio import load_yaml

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p for p in (REPO / "templates").glob("*.yaml") if p.name != "fleet.yaml")
EXAMPLES = sorted((REPO / "examples" / "features").glob("*/templates/*.yaml"))
FIRST_LINE = "# yaml-language-server: $schema=../docs/template.schema.json"


def _plain(path: Path) -> Any:
    """The file as an editor's YAML server sees it: JSON data (a date is its text)."""
    return json.loads(json.dumps(load_yaml(path), default=str))


def _problems(schema: dict, value: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(value)
    ]


@pytest.mark.parametrize(
    ("committed", "generate"),
    [
        ("docs/template.schema.json", schemas.template_schema),
        ("docs/fleet.schema.json", schemas.fleet_schema),
    ],
)
def test_the_committed_schema_is_what_the_code_generates(committed, generate):
    """Run `uv run fleet schema --out docs/template.schema.json` (and `--fleet --out
    docs/fleet.schema.json`) when this fails."""
    text = (REPO / committed).read_text(encoding="utf-8")
    assert text == schemas.schema_text(generate())
    jsonschema.Draft202012Validator.check_schema(json.loads(text))


def test_the_schema_lists_every_key_the_loader_accepts():
    schema = schemas.template_schema()
    assert set(schema["properties"]) == TEMPLATE_KEYS
    assert set(schema["$defs"]["task"]["properties"]) == TASK_KEYS
    assert set(schema["$defs"]["param"]["properties"]) == PARAM_KEYS


def test_a_key_without_a_description_is_still_listed(monkeypatch):
    monkeypatch.setattr(schemas, "TASK_KEYS", TASK_KEYS | {"future_key"})
    task = schemas.template_schema()["$defs"]["task"]
    assert task["properties"]["future_key"] == {}
    assert (
        _problems(
            schemas.template_schema(),
            {"template": "t", "tasks": {"a": {"operator": "x.Y", "future_key": 1}}},
        )
        == []
    )


@pytest.mark.parametrize("path", SHIPPED + EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_and_example_template_validates(path):
    assert _problems(schemas.template_schema(), _plain(path)) == []


def test_fleet_yaml_validates_against_its_schema():
    assert _problems(schemas.fleet_schema(), _plain(REPO / "templates" / "fleet.yaml")) == []


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_templates_point_editors_at_the_schema(path):
    assert path.read_text().splitlines()[0] == FIRST_LINE
    assert (
        path.parent / FIRST_LINE.split("=", 1)[1]
    ).resolve() == REPO / "docs" / "template.schema.json"


@pytest.mark.parametrize(
    ("where", "key"),
    [
        ((), "paramz"),
        (("tasks", "merge_grades"), "upstreams"),
        (("params", "grades_table"), "defualt"),
    ],
)
def test_a_template_with_an_unknown_key_does_not_validate(where, key):
    template = _plain(REPO / "templates" / "powerschool_grades.yaml")
    node = template
    for step in where:
        node = node[step]
    node[key] = 1
    problems = _problems(schemas.template_schema(), template)
    assert len(problems) == 1 and f"'{key}' was unexpected" in problems[0], problems


def test_fleet_yaml_with_an_unknown_key_does_not_validate():
    fleet = _plain(REPO / "templates" / "fleet.yaml")
    fleet["stagger_minute"] = 5
    assert any(
        "'stagger_minute' was unexpected" in p for p in _problems(schemas.fleet_schema(), fleet)
    )
