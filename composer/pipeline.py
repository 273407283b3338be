"""The pipeline the CLI and the meta-DAG share: store -> build -> verify -> plan -> publish.

Only `plan_fleet` (reads the store and the target) and `apply_fleet` (writes the
target) touch the outside world; everything they call in between is pure.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from composer import PACKAGE_DIR
from composer.build import FleetBuilder
from composer.errors import ConfigError, SettingsError, TargetError
from composer.parallel import BuildRunner, PackedFile
from composer.plan.changes import MANIFEST, Built, Entry, Manifest, Plan, make_plan
from composer.plan.environments import DEFAULT_NAME, Environment
from composer.publish.apply import (
    DEFAULT_JOBS,
    DEFAULT_LOCK_WAIT,
    ApplyResult,
    Progress,
    apply_plan,
)
from composer.render import layout
from composer.store import open_store
from composer.targets import ObjectState, Target, open_target

REPO_TEMPLATES = PACKAGE_DIR.parent / "templates"


def default_templates_dir() -> Path:
    """FLEET_TEMPLATES, else ./templates, else the templates beside this package."""
    env = os.environ.get("FLEET_TEMPLATES")
    if env:
        return Path(env)
    local = Path("templates")
    return local if (local / "fleet.yaml").is_file() else REPO_TEMPLATES


@dataclass
class FleetPlan:
    """A plan with everything needed to apply it or explain it."""

    plan: Plan
    builder: FleetBuilder
    target: Target
    objects: dict[str, ObjectState]
    manifest: Manifest
    errors: list[ConfigError] = field(default_factory=list)
    share: Share | None = None  # which environment's part of the fleet, and its moves

    @property
    def invalid_customers(self) -> list[str]:
        return sorted({e.customer_id for e in self.errors})

    def render(self, paths: set[str]) -> Iterator[PackedFile]:
        """The files to write, each assembled and compiled when it was planned. Contents
        stay compressed until a writer reads them."""
        for path in sorted(paths):
            packed = self.plan.contents[path]
            yield PackedFile(path, "", "", packed)

    def diff(self) -> Iterator[str]:
        """Unified diffs of every file the plan adds, changes or removes."""
        new = {f.path: f.content for f in self.render(set(self.plan.writes))}
        for path in sorted([*self.plan.writes, *self.plan.removed]):
            before = (self.target.read(path) or b"") if path in self.objects else b""
            after = new.get(path, b"")
            yield from difflib.unified_diff(
                before.decode(errors="replace").splitlines(keepends=True),
                after.decode(errors="replace").splitlines(keepends=True),
                fromfile=f"a/{path}" if before else "/dev/null",
                tofile=f"b/{path}" if after else "/dev/null",
            )


@dataclass
class Share:
    """One target's part of the fleet: which customers it gets (None: every one), what
    the target holds now, and the environment it belongs to."""

    target_url: str
    customers: set[str] | None = None
    environment: Environment | None = None
    moving_out: dict[str, str] = field(default_factory=dict)  # customer -> new environment
    held: set[str] = field(default_factory=set)  # assigned here, still owned elsewhere
    moved_out: dict[str, dict[str, str]] = field(default_factory=dict)  # the manifest's
    moved_in: dict[str, str] = field(default_factory=dict)
    target: Target | None = None
    objects: dict[str, ObjectState] = field(default_factory=dict)
    manifest: Manifest = field(default_factory=Manifest)

    def read(self) -> Share:
        """List the target and read its manifest (one listing, one read)."""
        self.target = open_target(self.target_url)
        self.objects = self.target.list_objects()
        data = self.target.read(MANIFEST) if MANIFEST in self.objects else None
        try:
            self.manifest = Manifest.from_bytes(data)
        except ValueError as exc:
            raise TargetError(f"target {self.target_url}: unreadable {MANIFEST}: {exc}") from exc
        return self


def plan_fleet(
    store_url: str,
    target_url: str | None,
    templates_dir: Path,
    *,
    force_prune: bool = False,
    create_store: bool = False,
    build_jobs: int | None = None,
    environment: str | None = None,
) -> FleetPlan:
    """Read one snapshot and the target, build every changed customer, and plan.

    `environment`: plan only that environment's share (fleet.yaml `environments:`),
    against its target; `target_url`, when given, must be that target.
    `build_jobs`: processes that build changed customers (default: one per core; a
    few customers are always built in-process). Raises StoreError, TargetError or
    SettingsError before anything is written."""
    snapshot = open_store(store_url, create=create_store).read_snapshot()
    builder = FleetBuilder(snapshot, templates_dir)
    if environment in (None, DEFAULT_NAME) and not builder.settings.environments:
        return plan_shares(builder, [Share(target_url or "").read()], force_prune, build_jobs)[0]
    if environment is None:
        raise SettingsError(
            "fleet.yaml lists environments: name the one to plan (--environment NAME; "
            "the meta-DAG: FLEET_ENVIRONMENT)"
        )
    from composer.plan.fleetenvs import environment_shares

    shares = environment_shares(builder, [environment], target_url)
    return plan_shares(builder, shares, force_prune, build_jobs)[0]


def plan_shares(
    builder: FleetBuilder,
    shares: list[Share],
    force_prune: bool = False,
    build_jobs: int | None = None,
) -> list[FleetPlan]:
    """Plan each share against its target (already read). Customers whose inputs and
    files are unchanged in their target are taken as they are; the others are built
    once, by one set of build workers, whichever target they go to."""
    errors = list(builder.errors)
    counts = [_shard_count(builder, share) for share in shares]
    if len(shares) == 1:
        builder.shards = counts[0]  # what build workers name the customers' files after
    unchanged: list[dict[str, Entry]] = [{} for _ in shares]
    digests: dict[str, str] = {}
    where: dict[str, int] = {}
    for index, share in enumerate(shares):
        for customer_id in _members(builder, share):
            digest = builder.inputs_digest(customer_id)
            shard = _shard_path(builder, customer_id, counts[index])
            entry = share.manifest.unchanged(customer_id, digest, shard, share.objects)
            if entry is not None:  # same inputs, same file: nothing to build
                unchanged[index][customer_id] = entry
            else:
                digests[customer_id] = digest
                where[customer_id] = index
    built: list[dict[str, Built]] = [{} for _ in shares]
    plans: list[FleetPlan] = []
    with BuildRunner(builder, build_jobs) as runner:
        errors += _build(runner, builder, shares, counts, digests, where, built)
        for index, share in enumerate(shares):
            share_errors = list(errors)
            while True:
                plan = make_plan(
                    built[index],
                    unchanged[index],
                    share.objects,
                    share.manifest,
                    builder.invalid,
                    share.target.read,  # type: ignore[union-attr]
                    builder.settings.airflow_target,
                    counts[index],
                    force_prune=force_prune,
                    moving=set(share.moving_out),
                )
                if not plan.copy_missing:  # an unchanged part missing from its file: build it
                    break
                again = {c: builder.inputs_digest(c) for c in sorted(plan.copy_missing)}
                for cid in again:
                    del unchanged[index][cid]
                share_errors += _build(
                    runner, builder, shares, counts, again, dict.fromkeys(again, index), built
                )
            if share.environment is not None:  # record moves in the manifest
                plan.manifest = dataclasses.replace(
                    plan.manifest, moved_out=share.moved_out, moved_in=share.moved_in
                )
                plan.manifest_changed = plan.manifest != share.manifest
            share_errors.extend(plan.errors)
            plans.append(
                FleetPlan(
                    plan,
                    builder,
                    share.target,  # type: ignore[arg-type]
                    share.objects,
                    share.manifest,
                    share_errors,
                    share,
                )
            )
    return plans


def _members(builder: FleetBuilder, share: Share) -> list[str]:
    """The buildable customers of the share, in customer order."""
    return [c for c in builder.customer_ids() if share.customers is None or c in share.customers]


def _shard_count(builder: FleetBuilder, share: Share) -> int:
    """fleet.yaml's `shards`, else sized by the share's customers (kept at the count its
    target is laid out with while that fits: composer/render/layout.py)."""
    if builder.settings.shards:
        return builder.settings.shards
    return layout.shard_count(len(_members(builder, share)), share.manifest.shards)


def _shard_path(builder: FleetBuilder, customer_id: str, shards: int) -> str:
    return layout.shard_path(layout.tree_root(builder.fleet, customer_id), shards)


def _build(
    runner: BuildRunner,
    builder: FleetBuilder,
    shares: list[Share],
    counts: list[int],
    digests: dict[str, str],
    where: dict[str, int],
    built: list[dict[str, Built]],
) -> list[ConfigError]:
    """Build the customers (in workers when many), each verified where its part or files
    differ from what its target holds, and add each valid one to its share's `built`."""
    errors: list[ConfigError] = []
    held: dict[str, dict[str, str]] = {}
    for cid in digests:
        share = shares[where[cid]]
        entry = share.manifest.customers.get(cid)
        held[cid] = {}
        if entry is not None:
            # The part as published was verified when written: the same part is not again.
            if entry.part:
                held[cid][builder.shard_of(cid)] = entry.part
            for path in entry.legacy:
                if (state := share.objects.get(path)) is not None:
                    held[cid][path] = state.md5
    progress = Progress(len(digests), "building")
    for build in runner.builds(list(digests), verify_against=held):
        progress.step()
        errors.extend(build.errors)
        if build.errors:
            continue
        index = where[build.customer_id]
        parts = [f for f in build.files if f.part]
        legacy = {f.path: (f.md5, f.packed) for f in build.files if not f.part}
        entry = Entry(
            digests[build.customer_id],
            _shard_path(builder, build.customer_id, counts[index]) if parts else None,
            parts[0].md5 if parts else "",
            (*build.dag_ids, *sorted(legacy)),
            tuple(sorted(legacy)),
            parts[0].airflow if parts else (),
        )
        module = (parts[0].module_md5, parts[0].module) if parts and parts[0].module else None
        built[index][build.customer_id] = Built(build.customer_id, entry, module, legacy)
    return errors


def apply_fleet(
    fleet_plan: FleetPlan,
    *,
    jobs: int = DEFAULT_JOBS,
    force_prune: bool = False,
    lock_wait: float = DEFAULT_LOCK_WAIT,
) -> ApplyResult:
    """Publish the plan, holding the target's lock (waiting up to `lock_wait` seconds)."""
    return apply_plan(
        fleet_plan.plan,
        fleet_plan.target,
        fleet_plan.objects,
        fleet_plan.manifest,
        fleet_plan.render,
        jobs=jobs,
        force_prune=force_prune,
        lock_wait=lock_wait,
    )
