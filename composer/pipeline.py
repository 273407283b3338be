"""The pipeline the CLI and the meta-DAG share: store -> build -> plan -> publish.

Only `plan_fleet` (reads the store and the target) and `apply_fleet` (writes the
target) touch the outside world; everything they call in between is pure.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from composer.build import FleetBuilder
from composer.errors import ConfigError, TargetError
from composer.parallel import BuildRunner, PackedFile
from composer.plan import MANIFEST, Built, Entry, Manifest, Plan, make_plan
from composer.publish import DEFAULT_JOBS, DEFAULT_LOCK_WAIT, ApplyResult, Progress, apply_plan
from composer.store import open_store
from composer.targets import ObjectState, Target, open_target

REPO_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


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


def plan_fleet(
    store_url: str,
    target_url: str,
    templates_dir: Path,
    *,
    force_prune: bool = False,
    create_store: bool = False,
    build_jobs: int | None = None,
) -> FleetPlan:
    """Read one snapshot and the target, build every changed customer, and plan.

    `build_jobs`: processes that build changed customers (default: one per core; a
    few customers are always built in-process). Raises StoreError, TargetError or
    SettingsError before anything is written."""
    snapshot = open_store(store_url, create=create_store).read_snapshot()
    builder = FleetBuilder(snapshot, templates_dir)
    target = open_target(target_url)
    objects = target.list_objects()
    try:
        manifest = Manifest.from_bytes(target.read(MANIFEST) if MANIFEST in objects else None)
    except ValueError as exc:
        raise TargetError(f"target {target_url}: unreadable {MANIFEST}: {exc}") from exc
    errors = list(builder.errors)
    builder.size_shards(manifest.shards)
    unchanged: dict[str, Entry] = {}
    digests: dict[str, str] = {}
    for customer_id in builder.customer_ids():
        digest = builder.inputs_digest(customer_id)
        entry = manifest.unchanged(customer_id, digest, builder.shard_of(customer_id), objects)
        if entry is not None:  # same inputs, same file: nothing to build
            unchanged[customer_id] = entry
        else:
            digests[customer_id] = digest
    built: dict[str, Built] = {}
    with BuildRunner(builder, build_jobs) as runner:
        errors += _build(runner, digests, built)
        while True:
            plan = make_plan(
                built,
                unchanged,
                objects,
                manifest,
                builder.invalid,
                target.read,
                builder.settings.airflow_target,
                builder.shards,
                force_prune=force_prune,
            )
            if not plan.copy_missing:  # an unchanged part missing from its file: build it
                break
            again = {c: builder.inputs_digest(c) for c in sorted(plan.copy_missing)}
            for cid in again:
                del unchanged[cid]
            errors += _build(runner, again, built)
    errors.extend(plan.errors)
    return FleetPlan(plan, builder, target, objects, manifest, errors)


def _build(runner: BuildRunner, digests: dict[str, str], built: dict[str, Built]) -> list:
    """Build the customers (in workers when many), adding each valid one to `built`."""
    errors: list[ConfigError] = []
    progress = Progress(len(digests), "building")
    for build in runner.builds(list(digests)):
        progress.step()
        errors.extend(build.errors)
        if build.errors:
            continue
        parts = [f for f in build.files if f.part]
        legacy = {f.path: (f.md5, f.packed) for f in build.files if not f.part}
        entry = Entry(
            digests[build.customer_id],
            parts[0].path if parts else None,
            parts[0].md5 if parts else "",
            (*build.dag_ids, *sorted(legacy)),
            tuple(sorted(legacy)),
        )
        built[build.customer_id] = Built(
            build.customer_id, entry, parts[0].packed if parts else None, legacy
        )
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
