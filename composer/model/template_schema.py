"""JSON Schemas for template files and fleet.yaml, generated from the loader's own keys.

Editors (the YAML language server, through the `# yaml-language-server: $schema=...`
first line of each shipped file) then flag an unknown or misspelled key while typing.
The key sets are the loader's constants (TEMPLATE_KEYS, TASK_KEYS, PARAM_KEYS,
ROLLUP_KEYS, the param kinds, fleet.yaml's keys), so a key added there appears here
at once: with its shape and description where this module knows them, else as any
value. The loader stays the judge; the schema says only what it can say statically
(keys, basic types), not placeholders, task graphs or operators.
`fleet schema` writes it; tests/test_template_schema.py keeps docs/ current.
"""

from __future__ import annotations

import json
import re
from typing import Any

from composer.compose.taskshape import GROUP_SETTING_KEYS
from composer.model import settings as fleet_settings
from composer.model.param_types import KINDS
from composer.model.templates import (
    DOTTED_RE,
    NAME_RE,
    PARAM_KEYS,
    ROLLUP_KEYS,
    TASK_ID_RE,
    TASK_KEYS,
    TEMPLATE_KEYS,
)
from composer.render.layout import MAX_SHARDS

SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"
TEMPLATE_SCHEMA_FILE = "docs/template.schema.json"
FLEET_SCHEMA_FILE = "docs/fleet.schema.json"


def _pattern(regex: re.Pattern) -> str:
    """A Python full-match regex as an anchored JSON Schema (ECMA 262) pattern."""
    return "^" + regex.pattern.removesuffix(r"\Z") + "$"


_DOTTED = {"type": "string", "pattern": _pattern(DOTTED_RE)}
_NULLABLE_MAP = {"type": ["object", "null"]}
_STRING = {"type": "string"}
_SEGMENT = TASK_ID_RE.pattern.removesuffix(r"\Z")
_GROUP_PATH = f"^{_SEGMENT}(\\.{_SEGMENT})*$"


def _properties(keys: frozenset[str] | set[str], known: dict[str, dict[str, Any]]) -> dict:
    """Every key the loader accepts, in sorted order: its shape here, or any value."""
    return {key: known.get(key, {}) for key in sorted(keys)}


def _object(keys: frozenset[str] | set[str], known: dict[str, dict[str, Any]], **extra) -> dict:
    return {
        "type": "object",
        "properties": _properties(keys, known),
        "additionalProperties": False,
        **extra,
    }


GROUP_PROPERTIES: dict[str, dict[str, Any]] = {
    "tooltip": {"description": "What Airflow's UI shows on the group.", **_STRING},
    "default_args": {"description": "default_args of the group's tasks.", "type": "object"},
    "prefix_group_id": {
        "description": "Must stay true: ids are prefixed so integrations never collide.",
        "const": True,
    },
}

TEMPLATE_PROPERTIES: dict[str, dict[str, Any]] = {
    "template": {
        "description": "The template's name: the file's name without .yaml.",
        "type": "string",
        "pattern": _pattern(NAME_RE),
    },
    "description": {"description": "One line: what the integration does.", **_STRING},
    "version": {
        "description": "The number of the file's body, its default version; required with "
        "versions.",
        "type": "integer",
        "minimum": 1,
    },
    "versions": {
        "description": "The other versions, by number: RFC 7396 merge patches over the "
        "body (null removes a key), each checked as a whole template.",
        "type": "object",
        "propertyNames": {"pattern": "^[1-9][0-9]*$"},
        "additionalProperties": {"type": "object"},
    },
    "params": {
        "description": "Declared params: {required: true} or {default: value}, with an "
        "optional type. A placeholder {name} must name one of these, a fleet param or a "
        "built-in.",
        "type": ["object", "null"],
        "additionalProperties": {"$ref": "#/$defs/param"},
    },
    "imports": {
        "description": "Callables (dotted paths) this template's *_callback arguments may "
        "name, besides fleet.yaml's imports.",
        "type": ["array", "null"],
        "items": _DOTTED,
    },
    "default_args": {
        "description": "default_args of the integration's tasks (over the fleet's).",
        **_NULLABLE_MAP,
    },
    "tasks": {
        "description": "Task id -> task: operator (dotted import path), args, upstream "
        "(task ids of this template), group.",
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": _pattern(TASK_ID_RE)},
        "additionalProperties": {"$ref": "#/$defs/task"},
    },
    "main": {
        "description": "How it runs inside the customer's main DAG (an integration with "
        "a NULL schedule); absent: it cannot.",
        **_NULLABLE_MAP,
    },
    "cron": {
        "description": "How it runs as its own cron DAG (an integration with a "
        "schedule); absent: it cannot.",
        **_NULLABLE_MAP,
    },
    "groups": {
        "description": "Task group path (dotted for nested groups) -> its settings.",
        "type": ["object", "null"],
        "propertyNames": {"pattern": _GROUP_PATH},
        "additionalProperties": _object(GROUP_SETTING_KEYS, GROUP_PROPERTIES),
    },
    "rollup": {
        "description": "A roll-up template (fleet.yaml rollup_template): what it rolls up.",
        "$ref": "#/$defs/rollup",
    },
}

TASK_PROPERTIES: dict[str, dict[str, Any]] = {
    "operator": {"description": "The operator class's dotted import path.", **_DOTTED},
    "args": {
        "description": "Operator arguments; each must be in the operator's signature.",
        "type": "object",
    },
    "upstream": {
        "description": "Task ids of the same template this task runs after.",
        "type": "array",
        "items": _STRING,
    },
    "group": {
        "description": "The task group the task is drawn in: a group id, or a dotted path "
        "of group ids for nested groups (settings under the template's `groups:`).",
        "type": "string",
        "pattern": _GROUP_PATH,
    },
    "expand": {
        "description": "Dynamic task mapping: argument -> list (usually one list param, "
        "`{schools}`); one task instance per item, the other args are partial.",
        "type": "object",
        "minProperties": 1,
    },
}

PARAM_PROPERTIES: dict[str, dict[str, Any]] = {
    "required": {"description": "A customer or integration must set it.", "type": "boolean"},
    "default": {"description": "The value when nobody sets it (may use placeholders)."},
    "description": {
        "description": "What the param is for (the template reference shows it).",
        **_STRING,
    },
    "type": {
        "description": "What the value holds, checked before generation.",
        "enum": list(KINDS),
    },
    "enum": {"description": "The allowed values.", "type": "array", "minItems": 1},
    "pattern": {"description": "A regular expression the value must fully match.", **_STRING},
    "min_length": {"description": "Minimum length of a text value.", "type": "integer"},
    "max_length": {"description": "Maximum length of a text value.", "type": "integer"},
    "runtime": {
        "description": "The value is a runtime Jinja expression (not made inert).",
        "type": "boolean",
    },
}

ROLLUP_PROPERTIES: dict[str, dict[str, Any]] = {
    "sources": {
        "description": "The template whose loads it rolls up.",
        "type": "string",
        "pattern": _pattern(NAME_RE),
    },
    "deadline": {"description": "Cron: when a missing source is an alert.", **_STRING},
    "description": {"description": "The roll-up DAG's description.", **_STRING},
    "per_source": {
        "description": "Name -> a string resolved per source, or {each, join}.",
        "type": ["object", "null"],
        "additionalProperties": {
            "anyOf": [
                _STRING,
                {
                    "type": "object",
                    "properties": {"each": _STRING, "join": _STRING},
                    "required": ["each", "join"],
                    "additionalProperties": False,
                },
            ]
        },
    },
}

FLEET_PROPERTIES: dict[str, dict[str, Any]] = {
    "airflow_target": {"description": "2: Airflow 2.11; 3: Airflow 3.", "enum": [2, 3]},
    "default_main_schedule": {"description": "Cron of main DAGs without their own.", **_STRING},
    "stagger_minutes": {
        "description": "Spread DAG starts over this many minutes.",
        "type": "integer",
        "minimum": 0,
        "maximum": 59,
    },
    "start_date": {"description": "YYYY-MM-DD.", "type": "string", "format": "date"},
    "shards": {
        "description": "How many shard files hold the generated DAGs: auto (about 16 "
        "customers a file) or a fixed count (composer/render/layout.py).",
        "anyOf": [{"const": "auto"}, {"type": "integer", "minimum": 1, "maximum": MAX_SHARDS}],
    },
    "params": {"description": "Fleet params: the lowest layer.", **_NULLABLE_MAP},
    "default_args": {"description": "default_args of every generated DAG.", **_NULLABLE_MAP},
    "imports": {
        "description": "Callables every template may name.",
        "type": ["array", "null"],
        "items": _DOTTED,
    },
    "setup_tasks": {"description": "Tasks placed first in generated DAGs.", **_NULLABLE_MAP},
    "rollup_template": {"description": "The roll-up DAG's template.", **_STRING},
    "limits": {"description": "Size caps in bytes.", **_NULLABLE_MAP},
    "environments": {"description": "Composer environments: target, capacity.", **_NULLABLE_MAP},
    "paused_at_creation": {"description": "Start generated DAGs paused.", "type": "boolean"},
    "operators": {
        "description": "Operators a task override may name besides the templates' own.",
        "type": ["array", "null"],
        "items": _DOTTED,
    },
    "param_types": {"description": "Declared types of fleet params.", **_NULLABLE_MAP},
    "tenant_namespaces": {"description": "Param -> the namespace it must lie in.", **_NULLABLE_MAP},
    "tenant_exceptions": {"description": "Customer -> {param: value} exceptions.", **_NULLABLE_MAP},
    "legacy_files": {
        "description": "Legacy file -> the customer that may publish it.",
        **_NULLABLE_MAP,
    },
    "rollout": {
        "description": "Template -> {version, percent}: that share of the districts (by "
        "hash of template and customer id) runs that version (composer/model/versions.py).",
        "type": ["object", "null"],
        "additionalProperties": {
            "type": "object",
            "properties": {
                "version": {"type": "integer", "minimum": 1},
                "percent": {"type": "number", "minimum": 0, "maximum": 100},
            },
            "required": ["version", "percent"],
            "additionalProperties": False,
        },
    },
    "disabled_templates": {
        "description": "Kill switch: these templates leave main DAGs; their own DAGs stay "
        "published, manual runs only.",
        "type": ["array", "null"],
        "items": {"type": "string", "pattern": _pattern(NAME_RE)},
    },
}


def template_schema() -> dict[str, Any]:
    """The schema of one template file."""
    return {
        "$schema": SCHEMA_DRAFT,
        "title": "dagfleet template",
        "description": "One integration type: params, tasks, and how it runs (main DAG, "
        "own cron DAG, roll-up). Generated by `fleet schema`; do not edit.",
        **_object(TEMPLATE_KEYS, TEMPLATE_PROPERTIES, required=["template"]),
        "$defs": {
            "task": _object(TASK_KEYS, TASK_PROPERTIES, required=["operator"]),
            "param": _object(PARAM_KEYS, PARAM_PROPERTIES),
            "rollup": _object(ROLLUP_KEYS, ROLLUP_PROPERTIES, required=["sources", "deadline"]),
        },
    }


def fleet_schema() -> dict[str, Any]:
    """The schema of templates/fleet.yaml (its keys; the loader checks the values)."""
    return {
        "$schema": SCHEMA_DRAFT,
        "title": "dagfleet fleet settings (fleet.yaml)",
        "description": "What every generated DAG shares. Generated by `fleet schema`; do not edit.",
        **_object(frozenset(fleet_settings.FLEET_KEYS), FLEET_PROPERTIES),
    }


def schema_text(schema: dict[str, Any]) -> str:
    """Stable text: the committed file is compared with it byte for byte."""
    return json.dumps(schema, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
