"""What importing the operator classes taught us, kept on disk between runs.

Checking a template's arguments needs each operator's signature, and getting it means
importing Airflow and the provider (~3 s, ~250 MB). The answers only change when the
installed packages or the files defining those classes change, so a run stores them
with that evidence and the next run (an onboarding, a small sync) reuses them without
importing anything. Only successful look-ups are kept: an unknown operator is imported
again on every run, so its error is always current.

An entry is valid while (a) the interpreter and the set of installed distributions
(the names of the `*.dist-info` folders on sys.path, versions included) are the same
and (b) every file it was learned from has the same size and mtime. Location:
$FLEET_CACHE_DIR, else $XDG_CACHE_HOME/dagfleet, else ~/.cache/dagfleet;
FLEET_CACHE_DIR=off turns it off. A cache that cannot be read or written is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

FORMAT = 1


def cache_dir() -> Path | None:
    configured = os.environ.get("FLEET_CACHE_DIR")
    if configured is not None:
        return None if configured.strip().lower() in ("", "off") else Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dagfleet"


@cache
def environment_key() -> str:
    """The interpreter and every installed distribution's name and version, cheaply:
    a listing of sys.path, no metadata read and nothing imported. Folders without
    distributions and the order of sys.path do not count (a build worker started
    with PYTHONPATH sees the same packages through a longer path)."""
    found: set[tuple[str, str]] = set()
    for entry in sys.path:
        try:
            names = [n for n in os.listdir(entry or ".") if n.endswith(".dist-info")]
        except OSError:
            continue
        folder = os.path.realpath(entry or ".")
        found.update((folder, name) for name in names)
    digest = hashlib.sha256(f"{FORMAT}|{os.path.realpath(sys.executable)}|{sys.version}".encode())
    for folder, name in sorted(found):
        digest.update(f"\n{folder}/{name}".encode())
    return digest.hexdigest()[:16]


def _stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


class FactCache:
    """A small JSON file of facts, each with the files it was learned from."""

    def __init__(self, directory: Path | None) -> None:
        self.path = directory / f"operators-{environment_key()}.json" if directory else None
        self._entries: dict[str, dict[str, Any]] | None = None
        # Entries whose files were checked in this process: checked once, not on every
        # look-up (a 10,000-customer sync looks up ~200,000 times, each a stat per file),
        # since this process has imported those files already and will not re-import them.
        self._checked: dict[str, Any] = {}

    @classmethod
    def default(cls) -> FactCache:
        return cls(cache_dir())

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None:
                try:
                    data = json.loads(self.path.read_bytes())
                    if data.get("format") == FORMAT and isinstance(data.get("entries"), dict):
                        self._entries = data["entries"]
                except (OSError, ValueError, AttributeError):
                    pass
        return self._entries

    def get(self, key: str) -> Any | None:
        """The value stored under key, or None when absent or any of its files changed."""
        if key in self._checked:
            return self._checked[key]
        entry = self._load().get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get("files"), dict):
            return None
        if any(_stamp(path) != stamp for path, stamp in entry["files"].items()):
            return None
        self._checked[key] = value = entry.get("value")
        return value

    def put(self, key: str, value: Any, files: list[str]) -> None:
        """Store value, learned from files; written through at once (atomically)."""
        stamps = {path: _stamp(path) for path in sorted(set(files))}
        if any(stamp is None for stamp in stamps.values()):
            return  # learned from something that is not a plain file: do not keep it
        entries = self._load()
        entries[key] = {"value": value, "files": stamps}
        self._checked[key] = value
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".operators-", dir=self.path.parent)
        except OSError:
            return
        try:
            with os.fdopen(fd, "w") as out:
                json.dump({"format": FORMAT, "entries": entries}, out, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
