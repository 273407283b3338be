"""Plan: what applying the fleet would change in the target, decided from digests.

Pure: it compares what the build wants with one listing of the target and the manifest
of owned files, and applies the ownership, layout and prune rules. The only read is of
a version-3 target's shard files (through the `read` it is given), to take out the part
of a customer that cannot be rebuilt (an invalid one) as its module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from composer.errors import ConfigError
from composer.render import layout
from composer.targets import ObjectState

MANIFEST = ".dagfleet-manifest.json"
AIRFLOWIGNORE = ".airflowignore"
IGNORE_LINE = ".dagfleet-manifest.json"  # valid as both a regexp and a glob pattern
REPORT = "fleet-report.html"  # the fleet report (composer/report), beside the manifest
# What .airflowignore must hold for the fleet (the customers' modules are loaded by the
# shard files, never parsed as DAG files of their own).
IGNORE_LINES = (IGNORE_LINE, REPORT, *layout.IGNORE_PARTS)
PRUNE_FRACTION = 0.10
PRUNE_MIN_DAGS = 5
VERSION = 4  # 4: a module per customer (fleet_parts/) loaded by shard files; 3: parts in them


@dataclass(frozen=True)
class Entry:
    """One customer in the manifest: what its files were made from and where they are."""

    inputs: str = ""  # inputs digest (FleetBuilder.inputs_digest); "" = always rebuild
    file: str | None = None  # the shard file holding its DAGs
    part: str = ""  # md5 of its part as a file of its own, as built
    dags: tuple[str, ...] = ()  # its dag_ids, then its legacy files (one DAG each)
    legacy: tuple[str, ...] = ()  # paths of its legacy files
    modules: tuple[str, ...] = ()  # the Airflow modules its builders import (the loader's)

    @property
    def generated(self) -> tuple[str, ...]:
        """Its dag_ids built from templates (the ones its shard file lists)."""
        return tuple(d for d in self.dags if d not in self.legacy)

    def as_json(self) -> dict:
        return {
            "inputs": self.inputs,
            "file": self.file,
            "part": self.part,
            "dags": list(self.dags),
            "legacy": list(self.legacy),
            "modules": list(self.modules),
        }


def _one_entry_a_line(body: dict[str, Any]) -> str:
    """JSON with one line per file and per customer, keys sorted: a diff of two
    manifests shows the entries that changed. Each line is encoded by json's C encoder;
    `indent=` would switch to the pure-Python one, ~1 s per write at 10,000 customers
    (and a sync that writes anything writes the manifest twice)."""
    fields = []
    for key in sorted(body):
        value = body[key]
        if isinstance(value, dict) and value:
            entries = ",\n".join(
                f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}"
                for k, v in sorted(value.items())
            )
            fields.append(f" {json.dumps(key)}: {{\n{entries}\n }}")
        else:
            fields.append(f" {json.dumps(key)}: {json.dumps(value, sort_keys=True)}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


@dataclass(frozen=True)
class Manifest:
    """What the fleet wrote: each owned file's md5 as written, and each customer's entry
    (its shard file, part digest, DAGs and inputs digest), so a customer whose inputs and
    file are unchanged need not be built again."""

    files: dict[str, str] = field(default_factory=dict)  # path -> md5 hex as written ("" unknown)
    customers: dict[str, Entry] = field(default_factory=dict)
    shards: int | None = None  # the shard count the files were laid out with
    # Moves between Composer environments (composer/plan/fleetenvs.py): customers this one let
    # go ({"to": environment, "at": UTC ISO time}), and when those that moved in may start.
    moved_out: dict[str, dict[str, str]] = field(default_factory=dict)
    moved_in: dict[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        body: dict = {
            "generator": "dagfleet",
            "version": VERSION,
            "files": self.files,
            "customers": {c: e.as_json() for c, e in self.customers.items()},
            "shards": self.shards,
        }
        if self.moved_out:
            body["moved_out"] = self.moved_out
        if self.moved_in:
            body["moved_in"] = self.moved_in
        return _one_entry_a_line(body).encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Manifest:
        if not data:
            return cls()
        body = json.loads(data)
        if body.get("generator") != "dagfleet" or not isinstance(body.get("files"), dict):
            raise ValueError("not a dagfleet manifest")
        if body.get("version", 1) < 3:
            return cls._from_one_file_per_dag(body)
        # Version 3 (parts inside the shard files) reads the same: its customers' modules
        # are missing from the target, so they are rebuilt, or taken from the old shard
        # file when they cannot be (make_plan).
        customers = {
            str(c): Entry(
                str(e.get("inputs") or ""),
                e.get("file"),
                str(e.get("part") or ""),
                tuple(e.get("dags") or ()),
                tuple(e.get("legacy") or ()),
                tuple(e.get("modules") or ()),
            )
            for c, e in (body.get("customers") or {}).items()
        }
        shards = body.get("shards")
        return cls(
            {str(k): str(v) for k, v in body["files"].items()},
            customers,
            shards if isinstance(shards, int) and shards > 0 else None,
            *_moves(body),
        )

    @classmethod
    def _from_one_file_per_dag(cls, body: dict) -> Manifest:
        """Versions 1-2 (`<customer>/<dag_id>.py`): owned files and their DAGs, no inputs,
        so every customer is rebuilt into the shard layout and the old files removed."""
        md5 = body.get("md5") or {}
        dags: dict[str, list[str]] = {}
        for path, customer_id in body["files"].items():
            name = path.rsplit("/", 1)[-1]
            dag = name[:-3] if name.startswith(f"{customer_id}__") else path
            dags.setdefault(str(customer_id), []).append(dag)
        return cls(
            {str(p): str(md5.get(p, "")) for p in body["files"]},
            {c: Entry(dags=tuple(sorted(d))) for c, d in dags.items()},
            None,
            *_moves(body),
        )

    def unchanged(
        self, customer_id: str, digest: str, shard: str, objects: dict[str, ObjectState]
    ) -> Entry | None:
        """The customer's entry, when its inputs digest is the recorded one, its DAGs are
        still meant for the same file, and its files are in the target exactly as written;
        else None (build it)."""
        entry = self.customers.get(customer_id)
        if entry is None or not entry.inputs or entry.inputs != digest:
            return None
        if entry.file is not None and entry.file != shard:
            return None
        paths = [*_files(customer_id, entry), *entry.legacy]
        if not paths:
            return None
        for path in paths:
            current, written = objects.get(path), self.files.get(path)
            if current is None or not written or current.md5 != written:
                return None
        return entry

    def all_dags(self) -> set[str]:
        return {d for e in self.customers.values() for d in e.dags}

    def paths_by_customer(self) -> dict[str, list[str]]:
        """The customers this target owns, each with the files that hold its DAGs."""
        return {c: [*_files(c, e), *e.legacy] for c, e in self.customers.items() if e.dags}


def _files(customer_id: str, entry: Entry) -> list[str]:
    """The shard file that loads the customer and its module (none without DAGs)."""
    return [entry.file, layout.part_path(customer_id)] if entry.file else []


def _moves(body: dict) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """The moved_out / moved_in records of a manifest body (any version)."""
    return (
        {
            str(k): {"to": str(v.get("to")), "at": str(v.get("at"))}
            for k, v in (body.get("moved_out") or {}).items()
            if isinstance(v, dict)
        },
        {str(k): str(v) for k, v in (body.get("moved_in") or {}).items()},
    )


@dataclass(frozen=True)
class Built:
    """A customer built in this run: its part (as a file of its own, compressed), its
    legacy files, and the entry it gets once published."""

    customer_id: str
    entry: Entry
    module: tuple[str, bytes] | None  # (md5, zlib-compressed) of fleet_parts/<id>.py; None:
    # no generated DAGs
    legacy: dict[str, tuple[str, bytes]]  # path -> (md5, zlib-compressed content)


@dataclass
class Plan:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    owned_before: int = 0  # DAGs the manifest owned
    removed_dags: list[str] = field(default_factory=list)
    manifest: Manifest = field(default_factory=Manifest)  # what the fleet owns after applying
    manifest_changed: bool = False
    errors: list[ConfigError] = field(default_factory=list)  # found while planning
    contents: dict[str, bytes] = field(default_factory=dict)  # path -> zlib content, writes
    prune_refused: bool = False
    copy_missing: set[str] = field(default_factory=set)  # unchanged parts not found
    moved: int = 0  # of `removed_dags`: DAGs of customers moving to another environment

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    @property
    def writes(self) -> list[str]:
        return [*self.added, *self.changed]

    def summary(self) -> str:
        return (
            f"{len(self.added)} to add, {len(self.changed)} to change, "
            f"{len(self.removed)} to remove, {self.unchanged} unchanged"
        )


def prune_limit(owned_dags: int) -> int:
    """The most DAGs a plan may remove without --force-prune."""
    return max(PRUNE_MIN_DAGS, int(owned_dags * PRUNE_FRACTION))


def md5_of(content: bytes) -> str:
    return hashlib.md5(content, usedforsecurity=False).hexdigest()


def make_plan(
    built: dict[str, Built],
    unchanged: dict[str, Entry],
    objects: dict[str, ObjectState],
    manifest: Manifest,
    invalid: set[str],
    read: Callable[[str], bytes | None],
    airflow_target: int,
    shards: int,
    *,
    force_prune: bool = False,
    moving: set[str] | frozenset[str] = frozenset(),
) -> Plan:
    """Lay the customers out in files and compare them with the target.

    - A customer's module (fleet_parts/) is written when it was rebuilt and its bytes
      changed; a shard file (its customers, their dag_ids and Airflow modules) when its
      list changed or it is not in the target as written. Customers not rebuilt keep
      their module exactly as published.
    - A wanted path that exists but is not owned is never overwritten: the customers that
      want it are reported and set aside, like any invalid customer.
    - An invalid customer keeps its entry and its module exactly as published.
    - Owned files no longer wanted are removed; a plan that removes more than 10% of
      the owned DAGs (and more than 5) is refused unless `force_prune`. DAGs of `moving`
      customers (assigned to another environment) are removed too, but do not count
      against that limit: they are not leaving the fleet.
    """
    plan = Plan(owned_before=len(manifest.all_dags()))
    owned = manifest.files
    conflicted: set[str] = set()
    for cid, item in sorted(built.items()):
        paths = [*(_files(cid, item.entry) if item.module is not None else []), *item.legacy]
        for path in paths:
            if path in objects and path not in owned:
                conflicted.add(cid)
                plan.errors.append(
                    ConfigError(
                        cid,
                        None,
                        "customer_id",
                        f"{path} already exists in the target and was not written by "
                        "dagfleet: move it away, then sync again",
                    )
                )
    keep = (invalid | conflicted) & set(manifest.customers)
    entries: dict[str, Entry] = dict(unchanged)
    entries.update({c: b.entry for c, b in built.items() if c not in conflicted})
    entries.update({c: manifest.customers[c] for c in keep})
    new_parts = {c: b for c, b in built.items() if c not in conflicted and b.module is not None}

    members: dict[str, set[str]] = {}
    for cid, entry in entries.items():
        if entry.file is not None:
            members.setdefault(entry.file, set()).add(cid)

    wanted: dict[str, str] = {}  # path -> md5
    for shard, cids in sorted(members.items()):
        listed = []
        for cid in sorted(cids):
            placed = _place_part(
                plan, cid, entries[cid], new_parts, unchanged, owned, objects, read
            )
            if placed is None:
                continue
            entries[cid], wanted[layout.part_path(cid)] = placed
            listed.append(cid)
        if not listed:
            continue
        content = layout.loader(
            [(c, entries[c].generated, wanted[layout.part_path(c)]) for c in listed],
            {m for c in listed for m in entries[c].modules},
            airflow_target,
        ).encode()
        wanted[shard] = md5_of(content)
        _compare(plan, shard, wanted[shard], objects, content=content)
    for cid, entry in sorted(entries.items()):
        for path in entry.legacy:
            if cid in built and cid not in conflicted:
                md5, content = built[cid].legacy[path]
                wanted[path] = md5
                _compare(plan, path, md5, objects, packed=content)
            else:
                wanted[path] = owned.get(path, "")
                plan.unchanged += 1
    for path in sorted(owned):
        if path not in wanted and path in objects:
            plan.removed.append(path)
    plan.removed_dags = sorted(manifest.all_dags() - {d for e in entries.values() for d in e.dags})
    gone = set(plan.removed_dags)
    plan.moved = sum(
        len(gone.intersection(e.dags)) for c, e in manifest.customers.items() if c in moving
    )
    plan.manifest = Manifest(wanted, entries, shards)
    plan.manifest_changed = plan.manifest != manifest
    if len(plan.removed_dags) - plan.moved > prune_limit(plan.owned_before) and not force_prune:
        plan.prune_refused = True
    return plan


def _place_part(
    plan: Plan,
    cid: str,
    entry: Entry,
    new_parts: dict[str, Built],
    unchanged: dict[str, Entry],
    owned: dict[str, str],
    objects: dict[str, ObjectState],
    read: Callable[[str], bytes | None],
) -> tuple[Entry, str] | None:
    """The customer's module in the plan: written when rebuilt, kept as published when
    not (an invalid customer keeps its last good DAGs), taken from the shard file of a
    version-3 target (parts inside the shard files) when it cannot be rebuilt. None when
    there is no module to load: an unchanged customer's module went missing is rebuilt
    (`copy_missing`); an invalid customer without one has no DAGs to keep."""
    path = layout.part_path(cid)
    module = new_parts[cid].module if cid in new_parts else None
    if module is not None:
        md5, packed = module
        _compare(plan, path, md5, objects, packed=packed)
        return entry, md5
    if objects.get(path) is not None and owned.get(path):
        plan.unchanged += 1
        return entry, owned[path]
    else:
        published = layout.split(read(entry.file) or b"") if entry.file in objects else {}
        if cid not in published:
            if cid in unchanged:
                plan.copy_missing.add(cid)  # the caller builds it and plans again
            return None
        text = published[cid]
        entry = dataclasses.replace(entry, modules=layout.airflow_modules(text))
    content = layout.part_module(cid, text).encode()
    md5 = md5_of(content)
    _compare(plan, path, md5, objects, content=content)
    return entry, md5


def _compare(
    plan: Plan,
    path: str,
    md5: str,
    objects: dict[str, ObjectState],
    content: bytes | None = None,
    packed: bytes | None = None,
) -> None:
    """Count the file as added, changed or unchanged; the first two keep its bytes
    (`packed`: already zlib-compressed, else `content` is compressed here)."""
    current = objects.get(path)
    if current is None:
        plan.added.append(path)
    elif current.md5 != md5:
        plan.changed.append(path)
    else:
        plan.unchanged += 1
        return
    plan.contents[path] = packed if packed is not None else zlib.compress(content or b"", 1)
