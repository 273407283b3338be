"""The pipeline the CLI and the meta-DAG share: store -> build -> verify -> plan -> publish.

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
from composer.dagspec import RenderedFile
from composer.errors import ConfigError, TargetError
from composer.parallel import BuildRunner, PackedFile
from composer.plan import MANIFEST, Desired, Manifest, Plan, make_plan
from composer.publish import DEFAULT_JOBS, DEFAULT_LOCK_WAIT, ApplyResult, Progress, apply_plan
from composer.store import open_store
from composer.targets import ObjectState, Target, open_target

REPO_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# Rendered source kept (zlib-compressed, ~3x) between planning and applying; past it,
# customers are rendered again.
KEEP_BUDGET_BYTES = 48 * 1024 * 1024


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
    # Files that differ from the target, kept from planning while they fit the budget,
    # so applying does not compose those customers twice.
    kept: dict[str, list[PackedFile]] = field(default_factory=dict)
    runner: BuildRunner | None = None

    def __post_init__(self) -> None:
        if self.runner is None:
            self.runner = BuildRunner(self.builder, jobs=1)

    @property
    def invalid_customers(self) -> list[str]:
        return sorted({e.customer_id for e in self.errors})

    def render(self, customers: set[str]) -> Iterator[RenderedFile | PackedFile]:
        """The customers' files, each compiled (once, when it was built) before it is
        handed out for publishing. Contents stay compressed until a writer reads them."""
        rebuild = sorted(c for c in customers if c not in self.kept)
        for customer_id in sorted(customers - set(rebuild)):
            yield from self.kept[customer_id]
        for build in self.runner.builds(rebuild):
            self.errors.extend(build.errors)
            yield from build.files
        self.runner.close()

    def diff(self) -> Iterator[str]:
        """Unified diffs of every file the plan adds, changes or removes."""
        new = {f.path: f.content for f in self.render(self.plan.customers_to_render())}
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
    """Read one snapshot and the target, build every customer, and plan.

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
    desired: list[Desired] = []
    inputs: dict[str, str] = {}
    owned_paths = manifest.paths_by_customer()
    digests: dict[str, str] = {}
    for customer_id in builder.customer_ids():
        digest = builder.inputs_digest(customer_id)
        unchanged = manifest.unchanged_files(
            customer_id, digest, owned_paths.get(customer_id, []), objects
        )
        if unchanged is not None:  # same inputs, same files: nothing to build
            desired.extend(unchanged)
            inputs[customer_id] = digest
        else:
            digests[customer_id] = digest
    kept: dict[str, list[PackedFile]] = {}
    budget = KEEP_BUDGET_BYTES
    runner = BuildRunner(builder, build_jobs)
    progress = Progress(len(digests), "building")
    # What the target holds of each customer to build: its files that differ are imported
    # by Airflow before anything is planned (composer/verify.py); unchanged ones are not.
    held: dict[str, dict[str, str]] = {cid: {} for cid in digests}
    for path, state in objects.items():
        if (owner := path.split("/", 1)[0]) in held:
            held[owner][path] = state.md5
    with runner:
        for build in runner.builds(list(digests), verify_against=held):
            progress.step()
            if not build.errors:
                inputs[build.customer_id] = digests[build.customer_id]
            errors.extend(build.errors)
            desired.extend(Desired(f.path, f.customer_id, f.md5) for f in build.files)
            differing = [
                f for f in build.files if (o := objects.get(f.path)) is None or o.md5 != f.md5
            ]
            if differing and budget > 0:
                kept[build.customer_id] = differing
                budget -= sum(len(f.packed) for f in differing)
    plan = make_plan(
        desired, objects, manifest, builder.invalid, force_prune=force_prune, inputs=inputs
    )
    errors.extend(plan.errors)
    return FleetPlan(plan, builder, target, objects, manifest, errors, kept, runner)


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
