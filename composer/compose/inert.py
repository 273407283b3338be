"""Store values made inert for Airflow's Jinja where they land in a templated field.

Airflow renders every string in an operator's `template_fields` (nested in lists and
dicts too) with Jinja at run time, where `{{ conn.x.password }}` or `{{ var.value.y }}`
would read any connection or variable of the environment. A value from the store is
data, so where it lands in a templated field its text is written as a Jinja string
literal (`{{ '...' }}`, every brace, quote and backslash escaped), which Airflow renders
back to exactly the text that was stored. Placeholders (`{name}`) are kept, so a store
value may still reference params, and so are the plain run-date variables below
(`{{ ds }}` in an override's query): they name dates, never secrets. A string that ends
with one of the operator's `template_ext` (".sql") would be read as a template file, and
Jinja would normalise `\r\n` and drop a final newline: such text is wrapped too. Values outside templated fields are not touched here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from composer.compose.substitution import segments

# Run-date variables a store value may use as plain `{{ name }}` (no attribute access,
# filters or calls): Airflow 3's context has them for every scheduled run.
SAFE_RUNTIME_NAMES = frozenset(
    {"ds", "ds_nodash", "ts", "ts_nodash", "data_interval_start", "data_interval_end"}
)
# The fleet's run-date params (fleet.yaml `run_ds`, ...) hold the form that also renders
# in a run triggered by hand, which has no logical date in Airflow 3.
_RUN_DATE = r"\(logical_date if logical_date is defined else dag_run\.run_after\) *\| *(?:ds|ds_nodash|ts|ts_nodash)"
SAFE_MACRO = re.compile(
    r"\{\{ *(" + "|".join(sorted(SAFE_RUNTIME_NAMES)) + "|" + _RUN_DATE + r") *\}\}"
)
_KEEP = frozenset(
    'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _.,:;/-+=@!?()[]<>*&^$|~`"%#'
)


def jinja_literal(text: str) -> str:
    """`{{ '...' }}` that Airflow's Jinja renders to exactly `text` (no brace inside,
    so dagfleet's own placeholder scanner sees one opaque Jinja block)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _KEEP:
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "{{ '" + "".join(out) + "' }}"


def _risky(text: str, template_ext: tuple[str, ...]) -> bool:
    """Could this text, alone or next to its neighbours, be Jinja or a template file?"""
    return (
        "{" in text
        or "}" in text
        or text.startswith(("%", "#"))
        or (bool(template_ext) and text.endswith(template_ext))
        # Jinja turns \r\n into \n and drops a final newline: kept exactly as literals.
        or "\r" in text
        or text.endswith("\n")
    )


def inert_text(text: str, template_ext: tuple[str, ...] = ()) -> str:
    """`text` with every piece that Jinja would interpret turned into a literal;
    `{name}` placeholders and the safe run-date variables are kept as they are."""
    if not _risky(text, template_ext):
        return text
    out = []
    for is_placeholder, piece in segments(text):
        if is_placeholder:
            out.append("{" + piece + "}")
            continue
        start = 0
        for match in SAFE_MACRO.finditer(piece):
            out.append(_literal_if_risky(piece[start : match.start()], template_ext))
            out.append(match.group(0))
            start = match.end()
        out.append(_literal_if_risky(piece[start:], template_ext))
    return "".join(out)


def _literal_if_risky(text: str, template_ext: tuple[str, ...]) -> str:
    return jinja_literal(text) if text and _risky(text, template_ext) else text


def inert_value(value: Any, template_ext: tuple[str, ...] = ()) -> Any:
    """inert_text on every string of a nested value (mapping keys are never rendered)."""
    if isinstance(value, str):
        return inert_text(value, template_ext)
    if isinstance(value, dict):
        return {key: inert_value(item, template_ext) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [inert_value(item, template_ext) for item in value]
    return value


def inert_overrides(
    overrides: dict,
    template_tasks: dict[str, dict[str, Any]],
    templated: Callable[[str, str], tuple[frozenset[str], tuple[str, ...]]],
) -> dict:
    """A task_overrides patch with the text of every argument that lands in its task's
    templated fields made inert; `templated(task_id, operator)` gives an operator's
    template fields and extensions. Arguments outside them are kept exactly."""
    out = copy.deepcopy(overrides)
    for task_id, patch in out.items():
        if not isinstance(patch, dict) or not isinstance(patch.get("args"), dict):
            continue
        operator = patch.get("operator") or template_tasks.get(task_id, {}).get("operator")
        if not isinstance(operator, str) or not _DOTTED.fullmatch(operator):
            continue  # the shape check reports it
        fields, ext = templated(task_id, operator)
        patch["args"] = {
            k: inert_value(v, ext) if k in fields else v for k, v in patch["args"].items()
        }
    return out


_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
