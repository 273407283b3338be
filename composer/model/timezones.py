"""Timezones: only canonical IANA place names, and a hint for every other spelling.

Canonical means a name in tzdata's `zone.tab` (the Area/Location zones, at least one per
country; `zone1970.tab` is a subset) or `UTC`. Everything else zoneinfo would open is
refused: links kept for old spellings (`US/Central`, `Asia/Calcutta`), legacy rule names
(`EST`, `CST6CDT`), fixed offsets (`Etc/GMT+5`) and host files (`localtime`, `posix/...`).
A DAG's schedule then means the same wherever it is generated and parsed, and the
name says where the district is, not what its offset happened to be.
"""

from __future__ import annotations

import difflib
import importlib.resources
import re
import zoneinfo
from functools import lru_cache
from pathlib import Path

# Names tzdata keeps for old rules; what a district that wrote them almost always means.
# `EST`/`MST`/`HST` are one offset all year: a district on Eastern time is not.
_LEGACY = {
    "EST": "is UTC-5 all year, without DST: use 'America/New_York' for Eastern time",
    "MST": "is UTC-7 all year, without DST: use 'America/Denver' for Mountain time, "
    "or 'America/Phoenix'",
    "HST": "is a legacy name: use 'Pacific/Honolulu'",
    "EST5EDT": "is a legacy rule name: use 'America/New_York'",
    "CST6CDT": "is a legacy rule name: use 'America/Chicago'",
    "MST7MDT": "is a legacy rule name: use 'America/Denver'",
    "PST8PDT": "is a legacy rule name: use 'America/Los_Angeles'",
}
_OFFSET_RE = re.compile(r"(GMT|UTC|UT)\s*[+-]?\s*\d{1,2}(:?\d\d)?")
_UTC_TARGETS = frozenset({"Etc/UTC", "Etc/GMT", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "UTC"})


def _read_tzdata_file(name: str) -> str | None:
    """A tzdata text file from the `tzdata` package (pinned by uv.lock), else the
    system's zoneinfo directories."""
    try:
        return (importlib.resources.files("tzdata.zoneinfo") / name).read_text()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        pass
    for directory in zoneinfo.TZPATH:
        path = Path(directory) / name
        if path.is_file():
            return path.read_text()
    return None


@lru_cache(maxsize=1)
def canonical_zones() -> frozenset[str]:
    """zone.tab's names plus UTC (or, without tzdata's tables, every zone zoneinfo
    lists except host-dependent ones)."""
    table = _read_tzdata_file("zone.tab")
    if table is None:  # pragma: no cover - no tzdata package and no system tables
        return frozenset(zoneinfo.available_timezones()) - {"localtime", "posixrules", "Factory"}
    names = {
        line.split("\t")[2].strip()
        for line in table.splitlines()
        if line and not line.startswith("#") and line.count("\t") >= 2
    }
    return frozenset(names | {"UTC"})


@lru_cache(maxsize=1)
def _links() -> dict[str, str]:
    """Link name -> target, from tzdata.zi's `L TARGET NAME` lines."""
    links: dict[str, str] = {}
    for line in (_read_tzdata_file("tzdata.zi") or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "L":
            links[parts[2]] = parts[1]
    return links


@lru_cache(maxsize=1)
def _by_lower() -> dict[str, str]:
    return {name.lower(): name for name in canonical_zones()}


@lru_cache(maxsize=1024)
def timezone_problem(name: object) -> str | None:
    """Why `name` is not a canonical IANA zone (one line, with the name to use when one
    is known), or None when it is one."""
    if not isinstance(name, str) or not name:
        return f"unknown IANA timezone {name!r}"
    if name in canonical_zones():
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return f"unknown IANA timezone {name!r} (not in this machine's tz database)"
        return None
    if name in _LEGACY:
        return f"{name!r} {_LEGACY[name]}"
    target = _links().get(name)
    if name in _UTC_TARGETS or target in _UTC_TARGETS:
        return f"{name!r} is an alias, not a canonical IANA zone: use 'UTC'"
    if target in canonical_zones():
        return f"{name!r} is an alias, not a canonical IANA zone: use {target!r}"
    if name.startswith("Etc/") or _OFFSET_RE.fullmatch(name):
        return f"{name!r} is a fixed UTC offset, not a place: use the district's Area/Location zone"
    return f"unknown IANA timezone {name!r}{_did_you_mean(name)}"


def _did_you_mean(name: str) -> str:
    stripped = name.strip()
    for prefix in ("posix/", "right/"):
        stripped = stripped.removeprefix(prefix)
    exact = _by_lower().get(stripped.lower())
    if exact:
        return f" (did you mean {exact!r}?)"
    close = difflib.get_close_matches(stripped, sorted(canonical_zones()), n=1, cutoff=0.8)
    return f" (did you mean {close[0]!r}?)" if close else ""
