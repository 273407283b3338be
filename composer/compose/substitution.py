"""Recursive format substitution of `{name}` placeholders.

Only `{identifier}` is a placeholder. Everything else with braces is text that
must survive verbatim: Airflow's Jinja (`{{ ds }}`, `{% if %}`, `{# #}`), JSON,
regex quantifiers (`\\d{3}`), SQL. Substituted values are never re-scanned, so a
value can never smuggle in another placeholder (or code).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_JINJA_OPEN = {"{{": "}}", "{%": "%}", "{#": "#}"}


class UnknownPlaceholder(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class ParamCycle(ValueError):
    def __init__(self, chain: list[str]) -> None:
        super().__init__(" -> ".join(chain))
        self.chain = chain


# Longer chains are refused: nothing real nests references this far, and with values
# nested up to composer.model.fleet.MAX_JSON_DEPTH they stay well inside Python's recursion limit.
MAX_REFERENCE_DEPTH = 16


class ParamTooDeep(ValueError):
    """A reference chain longer than MAX_REFERENCE_DEPTH: refused before Python's own
    recursion limit turns it into a crash of the whole run."""

    def __init__(self, chain: list[str]) -> None:
        super().__init__(
            f"param reference chain deeper than {MAX_REFERENCE_DEPTH}: {chain[0]} -> ... -> {chain[-1]}"
        )
        self.chain = chain


@lru_cache(maxsize=65536)
def _segments(text: str) -> tuple[tuple[bool, str], ...]:
    """Split text into (is_placeholder, piece); Jinja blocks are kept as text. Cached:
    a template's strings are the same for every customer."""
    out: list[tuple[bool, str]] = []
    i, n, start = 0, len(text), 0
    while i < n:
        ch = text.find("{", i)
        if ch < 0:
            break
        closer = _JINJA_OPEN.get(text[ch : ch + 2])
        if closer:
            end = text.find(closer, ch + 2)
            if end >= 0:
                i = end + 2
                continue
            # An opener that never closes is plain text, not Jinja: it must not hide
            # the placeholders after it (e.g. SQL `LIKE '{%'`).
        m = _PLACEHOLDER.match(text, ch)
        if m:
            if ch > start:
                out.append((False, text[start:ch]))
            out.append((True, m.group(1)))
            i = start = m.end()
        else:
            i = ch + 1
    if start < n:
        out.append((False, text[start:]))
    return tuple(out)


def segments(text: str) -> tuple[tuple[bool, str], ...]:
    """(is_placeholder, piece) of a string: placeholder names and verbatim text."""
    return _segments(text)


def placeholders(value: Any) -> set[str]:
    """Every placeholder name referenced anywhere in a nested value."""
    found: set[str] = set()
    if isinstance(value, str):
        found.update(piece for is_ph, piece in _segments(value) if is_ph)
    elif isinstance(value, Mapping):
        for item in value.values():
            found |= placeholders(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= placeholders(item)
    return found


def substitute(value: Any, lookup: Callable[[str], Any]) -> Any:
    """Format every string in `value`; a string that is exactly one placeholder keeps
    the looked-up value's type. Mapping keys are not formatted."""
    if isinstance(value, str):
        if "{" not in value:
            return value
        segments = _segments(value)
        if len(segments) == 1 and segments[0][0]:
            return lookup(segments[0][1])
        if not any(is_ph for is_ph, _ in segments):
            return value
        return "".join(str(lookup(piece)) if is_ph else piece for is_ph, piece in segments)
    if isinstance(value, Mapping):
        return {key: substitute(item, lookup) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [substitute(item, lookup) for item in value]
    return value


class ParamResolver:
    """Resolves params that may reference each other, lazily and with cycle detection."""

    def __init__(self, raw: Mapping[str, Any], fixed: Mapping[str, Any]) -> None:
        self._raw = raw
        self._resolved: dict[str, Any] = dict(fixed)
        self._stack: list[str] = []

    def __call__(self, name: str) -> Any:
        if name in self._resolved:
            return self._resolved[name]
        if name not in self._raw:
            raise UnknownPlaceholder(name)
        if name in self._stack:
            raise ParamCycle([*self._stack[self._stack.index(name) :], name])
        if len(self._stack) >= MAX_REFERENCE_DEPTH:
            raise ParamTooDeep([*self._stack, name])
        self._stack.append(name)
        try:
            value = substitute(self._raw[name], self)
        finally:
            self._stack.pop()
        self._resolved[name] = value
        return value

    def resolve_all(self) -> dict[str, Any]:
        for name in self._raw:
            self(name)
        return dict(self._resolved)
