"""Plan: what applying the fleet would change in the target, decided from digests.

Pure: it compares the files the build wants (path, owner, md5) with one listing of
the target and the manifest of owned files, and applies the ownership and prune
rules. Nothing here reads or writes the target.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from composer.errors import ConfigError
from composer.targets import ObjectState

MANIFEST = ".dagfleet-manifest.json"
AIRFLOWIGNORE = ".airflowignore"
IGNORE_LINE = ".dagfleet-manifest.json"  # valid as both a regexp and a glob pattern
PRUNE_FRACTION = 0.10
PRUNE_MIN_FILES = 5


@dataclass(frozen=True)
class Manifest:
    """The files the fleet wrote, each with the customer it belongs to."""

    files: dict[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        body = {"generator": "dagfleet", "version": 1, "files": dict(sorted(self.files.items()))}
        return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Manifest:
        if not data:
            return cls()
        body = json.loads(data)
        if body.get("generator") != "dagfleet" or not isinstance(body.get("files"), dict):
            raise ValueError("not a dagfleet manifest")
        return cls({str(k): str(v) for k, v in body["files"].items()})


@dataclass(frozen=True)
class Desired:
    path: str
    customer_id: str
    md5: str


@dataclass
class Plan:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    owned_before: int = 0
    manifest: Manifest = field(default_factory=Manifest)  # what the fleet owns after applying
    manifest_changed: bool = False
    errors: list[ConfigError] = field(default_factory=list)  # found while planning
    owner: dict[str, str] = field(default_factory=dict)  # path -> customer, for writes
    prune_refused: bool = False

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    @property
    def writes(self) -> list[str]:
        return [*self.added, *self.changed]

    def customers_to_render(self) -> set[str]:
        return {self.owner[p] for p in self.writes}

    def summary(self) -> str:
        return (
            f"{len(self.added)} to add, {len(self.changed)} to change, "
            f"{len(self.removed)} to remove, {self.unchanged} unchanged"
        )


def prune_limit(owned: int) -> int:
    """The most files a plan may remove without --force-prune."""
    return max(PRUNE_MIN_FILES, int(owned * PRUNE_FRACTION))


def make_plan(
    desired: Iterable[Desired],
    objects: dict[str, ObjectState],
    manifest: Manifest,
    invalid: set[str],
    *,
    force_prune: bool = False,
) -> Plan:
    """Compare the wanted files with the target.

    - A wanted file is added, changed or unchanged by md5 against the listing.
    - A wanted path that exists but is not owned is never overwritten: its customer
      is reported and set aside, like any invalid customer.
    - Owned files that are no longer wanted are removed, except those of invalid
      customers, which stay exactly as they were.
    """
    plan = Plan(owned_before=len(manifest.files))
    wanted: dict[str, Desired] = {}
    for item in desired:
        wanted[item.path] = item
    conflicted = {
        d.customer_id for d in wanted.values() if d.path in objects and d.path not in manifest.files
    }
    for path in sorted(p for p, d in wanted.items() if d.customer_id in conflicted):
        if path in objects and path not in manifest.files:
            plan.errors.append(
                ConfigError(
                    wanted[path].customer_id,
                    None,
                    "customer_id",
                    f"{path} already exists in the target and was not written by dagfleet: "
                    "move it away, then sync again",
                )
            )
    keep = invalid | conflicted
    owned: dict[str, str] = {}
    for path, item in sorted(wanted.items()):
        if item.customer_id in keep:
            continue
        owned[path] = item.customer_id
        plan.owner[path] = item.customer_id
        current = objects.get(path)
        if current is None:
            plan.added.append(path)
        elif current.md5 != item.md5:
            plan.changed.append(path)
        else:
            plan.unchanged += 1
    for path, customer_id in sorted(manifest.files.items()):
        if path in owned:
            continue
        if customer_id in keep:
            owned[path] = customer_id  # untouched while the customer is invalid
        elif path in objects:
            plan.removed.append(path)
    plan.manifest = Manifest(owned)
    plan.manifest_changed = owned != manifest.files
    if len(plan.removed) > prune_limit(plan.owned_before) and not force_prune:
        plan.prune_refused = True
    return plan
