"""Unknown keys are refused everywhere (templates, fleet.yaml, overrides), each with a
"did you mean" when a known key is close: a typo must never be silently ignored."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(str(name), sorted(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_keys(value: Mapping[str, Any], known: Iterable[str]) -> list[tuple[str, str]]:
    """(key, message) for every key of `value` not in `known`, in sorted order."""
    known = frozenset(known)
    return [
        (key, f"unknown key {key!r}{did_you_mean(key, known)}")
        for key in sorted(str(k) for k in value)
        if key not in known
    ]
