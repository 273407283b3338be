"""Declared param types, and the tenant namespaces params must lie in.

A param's value is pasted into SQL (`{project}.{dataset}.{grades_table}`), GCS paths
and JSON payloads. Text is inert for Jinja (composer/compose/inert.py) but not for SQL: a
`grades_table` of "x` ; DROP SCHEMA y; --" would end the identifier. So templates (and
fleet.yaml `param_types`, for fleet params) declare what a param holds, and its
resolved value is checked before anything is generated:

    grades_table: {default: grades, type: identifier}
    state_code:   {required: true, enum: [TX, CO, AZ]}
    function_id:  {default: x, pattern: "[a-z][a-z0-9-]*", max_length: 63}

Kinds: string (any text), identifier, slug, hostname, url, bucket, gcs_path, gcs_uri,
email, int, bool. `enum`, `pattern` (a full match), `min_length` and `max_length`
narrow any of them; `runtime: true` declares the param a runtime Jinja expression
(not made inert). The plain run-date variables (`{{ ds_nodash }}`) count as one word
character, so `grades_{{ ds_nodash }}` is an identifier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from composer.compose.inert import SAFE_MACRO

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"{_LABEL}(?:\.{_LABEL})*"
_PATH = r"[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*"
_BUCKET = r"[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]"
KINDS: dict[str, tuple[re.Pattern | None, str]] = {
    "string": (None, "text"),
    "identifier": (
        re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,1023}"),
        "an identifier (A-Z, a-z, 0-9, _)",
    ),
    "slug": (re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"), "a name (A-Z, a-z, 0-9, _, -)"),
    "hostname": (re.compile(_HOST), "a host name"),
    "url": (re.compile(rf"https://{_HOST}(?::[0-9]{{1,5}})?(?:/{_PATH})*/?"), "an https URL"),
    "bucket": (re.compile(_BUCKET), "a GCS bucket name"),
    "gcs_path": (re.compile(_PATH), "a relative object path"),
    "gcs_uri": (re.compile(rf"gs://{_BUCKET}(?:/{_PATH})?"), "a gs:// URI"),
    "email": (re.compile(rf"[A-Za-z0-9._%+-]+@{_HOST}"), "an email address"),
    "int": (None, "an integer"),
    "bool": (None, "true or false"),
}
SPEC_KEYS = frozenset({"type", "enum", "pattern", "min_length", "max_length", "runtime"})


class ParamTypeError(ValueError):
    pass


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a cheap cache key
class ParamType:
    kind: str = "string"
    enum: tuple[Any, ...] | None = None
    pattern: re.Pattern | None = None
    min_length: int | None = None
    max_length: int | None = None
    runtime: bool = False


def parse_param_type(spec: dict[str, Any]) -> ParamType | None:
    """The type declared by the SPEC_KEYS of a param declaration (None: undeclared)."""
    if not SPEC_KEYS & set(spec):
        return None
    kind = spec.get("type", "string")
    if kind not in KINDS:
        raise ParamTypeError(f"unknown type {kind!r} (one of {', '.join(KINDS)})")
    enum = spec.get("enum")
    if enum is not None and (not isinstance(enum, list) or not enum):
        raise ParamTypeError("enum must be a non-empty list")
    pattern = spec.get("pattern")
    if pattern is not None:
        try:
            pattern = re.compile(str(pattern))
        except re.error as exc:
            raise ParamTypeError(f"pattern: {exc}") from None
    lengths = [spec.get("min_length"), spec.get("max_length")]
    for length in lengths:
        if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
            raise ParamTypeError("min_length and max_length must be integers")
    runtime = spec.get("runtime", False)
    if not isinstance(runtime, bool):
        raise ParamTypeError("runtime must be true or false")
    return ParamType(kind, tuple(enum) if enum else None, pattern, *lengths, runtime)


def type_problem(ptype: ParamType, value: Any) -> str | None:
    """Why `value` is not of the declared type (None when it is). Cached for text: most
    values are the same fleet and template defaults for every customer."""
    if isinstance(value, str):
        return _text_problem(ptype, value)
    return _type_problem(ptype, value)


@lru_cache(maxsize=65536)
def _text_problem(ptype: ParamType, value: str) -> str | None:
    return _type_problem(ptype, value)


def _type_problem(ptype: ParamType, value: Any) -> str | None:
    if ptype.enum is not None:
        return None if value in ptype.enum else f"must be one of {list(ptype.enum)}"
    if ptype.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "must be an integer"
    if ptype.kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if not isinstance(value, str):
        return f"must be {KINDS[ptype.kind][1]}, not a {type(value).__name__}"
    if ptype.min_length is not None and len(value) < ptype.min_length:
        return f"must be at least {ptype.min_length} characters long"
    if ptype.max_length is not None and len(value) > ptype.max_length:
        return f"must be at most {ptype.max_length} characters long"
    checked = SAFE_MACRO.sub("x", value)
    regex, description = KINDS[ptype.kind]
    if regex is not None and not regex.fullmatch(checked):
        return f"must be {description}"
    if ptype.kind in ("gcs_path", "gcs_uri", "url") and re.search(r"(^|/)\.\.?(/|$)", checked):
        return "must not contain '.' or '..' path segments"
    if ptype.pattern is not None and not ptype.pattern.fullmatch(checked):
        return f"must match {ptype.pattern.pattern}"
    return None


def namespace_regex(namespace: str) -> re.Pattern:
    """A resolved namespace as a pattern: the value is the namespace itself or lies
    below it (`/`); `*` stands for one path segment. Ids never hold `/`, so no
    customer's namespace is a prefix of another's."""
    parts = (re.escape(part) for part in namespace.split("*"))
    return re.compile("[^/]+".join(parts) + r"(?:/.*)?", re.DOTALL)


def namespace_problem(namespace: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must lie in the customer's namespace {namespace!r}, not a {type(value).__name__}"
    if re.search(r"(^|/)\.\.?(/|$)", value) or not namespace_regex(namespace).fullmatch(value):
        return f"must lie in the customer's namespace {namespace!r}"
    return None


def shown(value: Any) -> str:
    """A value as an error message quotes it: short, one line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
