"""The pipeline the CLI and the meta-DAG share: store -> build -> verify -> plan -> publish.

Only `plan_fleet` (reads the store and the target) and `apply_fleet` (writes the
target) touch the outside world; everything they call in between is pure.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from composer.build import FleetBuilder
from composer.dagspec import RenderedFile
from composer.environments import DEFAULT_NAME, Environment
from composer.errors import ConfigError, SettingsError, TargetError
from composer.parallel import BuildRunner, PackedFile
from composer.plan import MANIFEST, Desired, Manifest, Plan, make_plan
from composer.publish import DEFAULT_JOBS, DEFAULT_LOCK_WAIT, ApplyResult, Progress, apply_plan
from composer.store import open_store
from composer.targets import ObjectState, Target, open_target

REPO_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# Rendered source kept (zlib-compressed, ~3x) between planning and applying; past it,
# customers are rendered again.
KEEP_BUDGET_BYTES = 48 * 1024 * 1024
_REBUILD_LOCK = threading.Lock()


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
    share: Share | None = None  # which environment's part of the fleet, and its moves

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
        if not rebuild:
            return
        # Environments are applied in threads sharing one FleetBuilder: rebuilding (past
        # the keep budget) is done by one of them at a time.
        with _REBUILD_LOCK:
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
    """Read one snapshot and the target, build every customer, and plan.

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
    from composer.fleetenvs import environment_shares

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
    wanted: dict[str, Share] = {}
    unchanged: dict[int, list[Desired]] = {i: [] for i in range(len(shares))}
    inputs: dict[int, dict[str, str]] = {i: {} for i in range(len(shares))}
    digests: dict[str, str] = {}
    where: dict[str, int] = {}
    for index, share in enumerate(shares):
        owned_paths = share.manifest.paths_by_customer()
        for customer_id in builder.customer_ids():
            if share.customers is not None and customer_id not in share.customers:
                continue
            digest = builder.inputs_digest(customer_id)
            same = share.manifest.unchanged_files(
                customer_id, digest, owned_paths.get(customer_id, []), share.objects
            )
            if same is not None:  # same inputs, same files: nothing to build
                unchanged[index].extend(same)
                inputs[index][customer_id] = digest
            else:
                digests[customer_id] = digest
                where[customer_id] = index
                wanted[customer_id] = share
    desired: dict[int, list[Desired]] = {i: list(d) for i, d in unchanged.items()}
    kept: dict[int, dict[str, list[PackedFile]]] = {i: {} for i in range(len(shares))}
    budget = KEEP_BUDGET_BYTES
    runner = BuildRunner(builder, build_jobs)
    progress = Progress(len(digests), "building")
    # What the target holds of each customer to build: its files that differ are imported
    # by Airflow before anything is planned (composer/verify.py); unchanged ones are not.
    held: dict[str, dict[str, str]] = {cid: {} for cid in digests}
    for index, share in enumerate(shares):
        for path, state in share.objects.items():
            owner = path.split("/", 1)[0]
            if where.get(owner) == index:
                held[owner][path] = state.md5
    with runner:
        for build in runner.builds(list(digests), verify_against=held):
            progress.step()
            index = where[build.customer_id]
            objects = shares[index].objects
            if not build.errors:
                inputs[index][build.customer_id] = digests[build.customer_id]
            errors.extend(build.errors)
            desired[index].extend(Desired(f.path, f.customer_id, f.md5) for f in build.files)
            differing = [
                f for f in build.files if (o := objects.get(f.path)) is None or o.md5 != f.md5
            ]
            if differing and budget > 0:
                kept[index][build.customer_id] = differing
                budget -= sum(len(f.packed) for f in differing)
    plans = []
    for index, share in enumerate(shares):
        plan = make_plan(
            desired[index],
            share.objects,
            share.manifest,
            builder.invalid,
            force_prune=force_prune,
            inputs=inputs[index],
            moving=set(share.moving_out),
        )
        if share.environment is not None:  # record moves in the manifest
            plan.manifest = dataclasses.replace(
                plan.manifest, moved_out=share.moved_out, moved_in=share.moved_in
            )
            plan.manifest_changed = plan.manifest != share.manifest
        share_errors = [*errors, *plan.errors]
        plans.append(
            FleetPlan(
                plan,
                builder,
                share.target,
                share.objects,
                share.manifest,
                share_errors,
                kept[index],
                BuildRunner(builder, build_jobs),
                share,
            )
        )
    return plans


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
