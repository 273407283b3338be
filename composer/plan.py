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
REPORT = "fleet-report.html"  # the fleet report (composer/report), beside the manifest
IGNORE_LINES = (IGNORE_LINE, REPORT)  # what .airflowignore must hold for the fleet
PRUNE_FRACTION = 0.10
PRUNE_MIN_FILES = 5


@dataclass(frozen=True)
class Manifest:
    """What the fleet wrote: each file's customer and md5, and each customer's inputs
    digest, so a customer whose inputs and files are unchanged need not be built again."""

    files: dict[str, str] = field(default_factory=dict)  # path -> customer_id
    md5: dict[str, str] = field(default_factory=dict)  # path -> md5 hex, as written
    inputs: dict[str, str] = field(default_factory=dict)  # customer_id -> inputs digest
    # Moves between Composer environments (composer/fleetenvs.py): customers this one let
    # go ({"to": environment, "at": UTC ISO time}), and when those that moved in may start.
    moved_out: dict[str, dict[str, str]] = field(default_factory=dict)
    moved_in: dict[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        body: dict = {
            "generator": "dagfleet",
            "version": 2,
            "files": self.files,
            "md5": self.md5,
            "inputs": self.inputs,
        }
        if self.moved_out:
            body["moved_out"] = self.moved_out
        if self.moved_in:
            body["moved_in"] = self.moved_in
        return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Manifest:
        if not data:
            return cls()
        body = json.loads(data)
        if body.get("generator") != "dagfleet" or not isinstance(body.get("files"), dict):
            raise ValueError("not a dagfleet manifest")
        return cls(
            {str(k): str(v) for k, v in body["files"].items()},
            {str(k): str(v) for k, v in (body.get("md5") or {}).items()},
            {str(k): str(v) for k, v in (body.get("inputs") or {}).items()},
            {
                str(k): {"to": str(v.get("to")), "at": str(v.get("at"))}
                for k, v in (body.get("moved_out") or {}).items()
                if isinstance(v, dict)
            },
            {str(k): str(v) for k, v in (body.get("moved_in") or {}).items()},
        )

    def unchanged_files(
        self, customer_id: str, digest: str, paths: list[str], objects: dict[str, ObjectState]
    ) -> list[Desired] | None:
        """The customer's files, when its inputs digest is the recorded one and every
        file it owns is still in the target exactly as written; else None (build it)."""
        if not paths or self.inputs.get(customer_id) != digest:
            return None
        found = []
        for path in paths:
            current, written = objects.get(path), self.md5.get(path)
            if current is None or written is None or current.md5 != written:
                return None
            found.append(Desired(path, customer_id, written))
        return found

    def paths_by_customer(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for path, customer_id in self.files.items():
            index.setdefault(customer_id, []).append(path)
        return index


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
    moved: int = 0  # of `removed`: files of customers moving to another environment

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
    inputs: dict[str, str] | None = None,
    moving: set[str] | frozenset[str] = frozenset(),
) -> Plan:
    """Compare the wanted files with the target.

    - A wanted file is added, changed or unchanged by md5 against the listing.
    - A wanted path that exists but is not owned is never overwritten: its customer
      is reported and set aside, like any invalid customer.
    - Owned files that are no longer wanted are removed, except those of invalid
      customers, which stay exactly as they were.
    - Files of `moving` customers (assigned to another environment) are removed too, but
      do not count against the prune limit: they are not leaving the fleet.
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
    md5: dict[str, str] = {}
    for path, item in sorted(wanted.items()):
        if item.customer_id in keep:
            continue
        owned[path] = item.customer_id
        md5[path] = item.md5
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
            if path in manifest.md5:
                md5[path] = manifest.md5[path]
        elif path in objects:
            plan.removed.append(path)
            plan.moved += customer_id in moving
    digests = {c: d for c, d in (inputs or {}).items() if c not in keep}
    digests.update({c: d for c, d in manifest.inputs.items() if c in keep})
    plan.manifest = Manifest(owned, md5, digests)
    plan.manifest_changed = plan.manifest != manifest
    if len(plan.removed) - plan.moved > prune_limit(plan.owned_before) and not force_prune:
        plan.prune_refused = True
    return plan
