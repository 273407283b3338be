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
from composer.dagspec import RenderedFile
from composer.errors import ConfigError, TargetError
from composer.plan import MANIFEST, Desired, Manifest, Plan, make_plan
from composer.publish import DEFAULT_JOBS, ApplyResult, apply_plan
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

    def render(self, customers: set[str]) -> Iterator[RenderedFile]:
        for build in self.builder.builds(customers):
            yield from build.files

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
) -> FleetPlan:
    """Read one snapshot and the target, build every customer, and plan.

    Raises StoreError, TargetError or SettingsError before anything is written."""
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
    for build in builder.builds(compiled=False):
        errors.extend(build.errors)
        desired.extend(Desired(f.path, f.customer_id, f.md5) for f in build.files)
    plan = make_plan(desired, objects, manifest, builder.invalid, force_prune=force_prune)
    errors.extend(plan.errors)
    return FleetPlan(plan, builder, target, objects, manifest, errors)


def apply_fleet(
    fleet_plan: FleetPlan, *, jobs: int = DEFAULT_JOBS, force_prune: bool = False
) -> ApplyResult:
    return apply_plan(
        fleet_plan.plan,
        fleet_plan.target,
        fleet_plan.objects,
        fleet_plan.manifest,
        fleet_plan.render,
        jobs=jobs,
        force_prune=force_prune,
    )
