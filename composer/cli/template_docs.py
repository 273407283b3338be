"""`fleet docs`: the template reference page (docs/templates.md), generated from the
templates themselves, so what onboarding reads is what the generator runs.

Per template: its description, its params (required or default, type, description),
its tasks and operators, whether it runs in a customer's main DAG or as its own cron
DAG, and its roll-up. Every template is loaded through the catalog first: a page is
never generated from a file the generator would refuse. Output depends on the files
alone, so tests/test_template_docs.py can keep the committed page current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from composer.model.settings import SETTINGS_FILE, load_settings
from composer.model.templates import BUILTINS, Template, TemplateCatalog
from composer.model.yamlio import load_yaml

DOCS_FILE = "docs/templates.md"


def _cell(text: Any) -> str:
    """Text for one markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(value: Any) -> str:
    """A YAML value as inline code in a table cell (long values shortened)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    if len(text) > 70:
        text = text[:67] + "..."
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return _cell(f"{fence}{pad}{text}{pad}{fence}")


def _param_type(spec: dict[str, Any]) -> str:
    parts = [str(spec["type"])] if "type" in spec else []
    if "enum" in spec:
        parts.append("one of " + ", ".join(_code(v) for v in spec["enum"]))
    if "pattern" in spec:
        parts.append(f"matches {_code(spec['pattern'])}")
    if "min_length" in spec:
        parts.append(f"at least {spec['min_length']} characters")
    if "max_length" in spec:
        parts.append(f"at most {spec['max_length']} characters")
    if spec.get("runtime"):
        parts.append("runtime Jinja")
    return ", ".join(parts) or "any"


def _params_table(template: Template, raw: dict[str, Any]) -> list[str]:
    if not template.params:
        return ["No params of its own (fleet params and built-ins only).", ""]
    lines = [
        "| param | required | default | type | description |",
        "|---|---|---|---|---|",
    ]
    raw_params = raw.get("params") or {}
    for name, param in template.params.items():
        spec = raw_params.get(name) or {}
        default = "" if param.required or "default" not in spec else _code(param.default)
        lines.append(
            f"| `{name}` | {'yes' if param.required else 'no'} | {default} | "
            f"{_param_type(spec)} | {_cell(spec.get('description', ''))} |"
        )
    return [*lines, ""]


def _tasks_table(template: Template) -> list[str]:
    lines = ["| task | operator | upstream | group |", "|---|---|---|---|"]
    for task_id, task in template.tasks.items():
        operator = str(task.get("operator", ""))
        upstream = ", ".join(f"`{u}`" for u in task.get("upstream") or [])
        group = f"`{task['group']}`" if task.get("group") else ""
        lines.append(f"| `{task_id}` | `{_cell(operator)}` | {upstream} | {group} |")
    return [*lines, ""]


def _runs(template: Template) -> list[str]:
    lines = []
    if template.main is not None:
        shown = ", ".join(f"{k}: {_code(v)}" for k, v in sorted(template.main.items()))
        lines.append(
            "- **Main DAG**: an integration with a NULL schedule runs as a task group "
            "of the customer's main DAG" + (f" ({shown})." if shown else ".")
        )
    if template.cron is not None:
        shown = ", ".join(f"{k}: {_code(v)}" for k, v in sorted(template.cron.items()))
        lines.append(
            "- **Own cron DAG**: an integration with a schedule gets "
            "`<customer_id>__<integration_id>`" + (f" ({shown})." if shown else ".")
        )
    if template.rollup is not None:
        rollup = template.rollup
        lines.append(
            f"- **Roll-up**: the `<customer_id>__rollup` DAG of a parent org rolls up its "
            f"active descendants' `{rollup['sources']}` integrations, scheduled on the "
            f"assets their tasks emit, at the latest at {_code(rollup['deadline'])}."
        )
        for name, value in (rollup.get("per_source") or {}).items():
            how = "joined" if isinstance(value, dict) else "one per source"
            lines.append(f"  - per source: `{name}` ({how})")
    if not lines:
        lines.append("- Not used in any DAG on its own.")
    return [*lines, ""]


def _template_section(template: Template, raw: dict[str, Any]) -> list[str]:
    lines = [f"## `{template.name}`", ""]
    if template.description:
        lines += [template.description, ""]
    lines += [f"File: `templates/{template.name}.yaml`", "", "How it runs:", ""]
    lines += _runs(template)
    lines += ["### Params", "", *_params_table(template, raw)]
    lines += ["### Tasks", "", *_tasks_table(template)]
    if template.default_args:
        args = ", ".join(f"`{k}`: {_code(v)}" for k, v in template.default_args.items())
        lines += [f"Task defaults (`default_args`): {args}.", ""]
    if template.imports:
        lines += ["Callables it may name: " + ", ".join(f"`{i}`" for i in template.imports), ""]
    return lines


def templates_reference(directory: Path) -> str:
    """The reference page for every template of `directory` (TemplateError if one
    does not load: fix it first, `fleet lint` says how)."""
    settings = load_settings(directory)
    catalog = TemplateCatalog(directory, frozenset(settings.params))
    templates = [catalog.get(name) for name in catalog.names()]
    lines = [
        "# Template reference",
        "",
        "<!-- Generated by `fleet docs` from templates/; do not edit by hand. -->",
        "",
        "Each integration row names one of these templates. Its params are set, lowest "
        "first, by fleet.yaml `params`, the template's defaults, the customer's params and "
        "the integration's params. A template may also use every fleet param and the "
        "built-ins. `fleet lint` checks a template alone; the JSON Schema "
        "[`template.schema.json`](template.schema.json) lets an editor check it while "
        "typing.",
        "",
        "Templates: " + ", ".join(f"[`{t.name}`](#{t.name})" for t in templates),
        "",
        "Built-in params: " + ", ".join(f"`{b}`" for b in sorted(BUILTINS)) + ".",
        "",
        f"Fleet params ({SETTINGS_FILE}): "
        + ", ".join(f"`{name}`" for name in settings.params)
        + ".",
        "",
    ]
    for template in templates:
        raw = load_yaml(template.source) if template.source else {}
        lines += _template_section(template, raw if isinstance(raw, dict) else {})
    return "\n".join(lines).rstrip("\n") + "\n"
