"""A fleet over several Composer environments: each environment's share, its moves, its
capacity, and a sync that moves a customer out of its old environment before writing it
into the new one.

The rule that keeps a moved district from running in two environments at once: an
environment writes a customer only when no other environment's manifest owns it. A
customer assigned here but still owned elsewhere is *held*; its old environment removes
it (as a move, outside the prune limit) in the same run, and the next pass (the CLI's
second pass, or the next meta-DAG run) writes it here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from composer.build import FleetBuilder
from composer.errors import SettingsError, TargetError
from composer.pipeline import FleetPlan, Share, apply_fleet, plan_shares
from composer.plan.changes import MANIFEST, Manifest
from composer.plan.environments import DEFAULT_NAME, Assignment, Environment, Member, assign
from composer.targets import open_target

T = TypeVar("T")


# How long an old environment's DAG processor may keep scheduling a deleted file, and
# how long a manifest remembers a customer it let go.
MOVE_MARGIN = dt.timedelta(minutes=10)
TOMBSTONE_DAYS = dt.timedelta(days=30)


class UnknownEnvironment(SettingsError):
    """--environment / FLEET_ENVIRONMENT names no environment of fleet.yaml (usage)."""


class CapacityExceeded(TargetError):
    pass


def assignment_of(builder: FleetBuilder) -> Assignment:
    """Assign every customer row once per builder; bad pins make their customer invalid."""
    cached = getattr(builder, "_assignment", None)
    if cached is not None:
        return cached
    members = [
        Member(c.customer_id, c.parent_customer_id, getattr(c, "environment", None))
        for c in builder.snapshot.customers
        if isinstance(c.customer_id, str)
    ]
    result = assign(members, list(builder.settings.environments))
    builder.errors.extend(result.errors)
    builder.fleet.invalid.update(e.customer_id for e in result.errors)
    builder.fleet.warnings.extend(result.warnings)
    builder._assignment = result  # type: ignore[attr-defined]
    return result


def dag_count(builder: FleetBuilder, customer_id: str) -> int:
    """DAGs a customer owns, known before building (what capacity is counted in)."""
    customer = builder.fleet.customers[customer_id]
    return len(builder.composer.dag_ids(customer)) + bool(customer.legacy_dag_file)


def environment_shares(
    builder: FleetBuilder, names: list[str] | None = None, target_url: str | None = None
) -> list[Share]:
    """The shares of the named environments (all when None), each target read, with
    their moves out and the customers held until their old environment lets go."""
    environments = {e.name: e for e in builder.settings.environments}
    if not environments:
        raise UnknownEnvironment(
            f"--environment {names[0] if names else ''}: this fleet has one environment, "
            f"'{DEFAULT_NAME}' (fleet.yaml lists no environments)"
        )
    for name in names or []:
        if name not in environments:
            raise UnknownEnvironment(
                f"environment {name!r} is not in fleet.yaml (one of: {', '.join(environments)})"
            )
    selected = [environments[n] for n in (names or environments)]
    if (
        target_url
        and len(selected) == 1
        and target_url.rstrip("/") != selected[0].target.rstrip("/")
    ):
        raise SettingsError(
            f"environment {selected[0].name}: target {target_url} is not its target "
            f"{selected[0].target} in fleet.yaml"
        )
    assignment = assignment_of(builder)
    buildable = set(builder.customer_ids())  # active and valid: the ones with files
    shares = [Share(e.target, assignment.members(e.name) & buildable, e) for e in selected]
    _parallel([s.read for s in shares])
    manifests = {s.environment.name: s.manifest for s in shares}  # type: ignore[union-attr]
    others = [e for e in environments.values() if e.name not in manifests]
    for env, manifest in zip(others, _parallel([_manifest_reader(e) for e in others]), strict=True):
        manifests[env.name] = manifest
    owner: dict[str, str] = {}
    for name, manifest in manifests.items():
        for customer_id in manifest.paths_by_customer():
            owner.setdefault(customer_id, name)
    for share in shares:
        name = share.environment.name  # type: ignore[union-attr]
        for customer_id in manifests[name].paths_by_customer():
            new = assignment.environment.get(customer_id)
            if customer_id in buildable and new not in (None, name):
                share.moving_out[customer_id] = new
        share.held = {c for c in share.customers or () if owner.get(c, name) != name}
        share.customers = (share.customers or set()) - share.held
        _record_moves(builder, share, manifests)
    return shares


def _record_moves(builder: FleetBuilder, share: Share, manifests: dict[str, Manifest]) -> None:
    """The moves the share's manifest keeps: customers it lets go now or let go lately
    (tombstones, for their new environment), and when customers that moved in may start:
    MOVE_MARGIN after their old environment removed them, the time its DAG processor may
    take to notice a deleted file. Their DAGs' start_date is that time, so the first run
    here is the first tick after it (catchup=False would otherwise run the latest past
    tick at once: one the old environment already ran)."""
    name = share.environment.name  # type: ignore[union-attr]
    own = manifests[name]
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    mine = set(share.customers or ()) | share.held
    kept = {
        c: t
        for c, t in own.moved_out.items()
        if c not in mine and _when(t.get("at")) > now - TOMBSTONE_DAYS
    }
    for customer_id, new in share.moving_out.items():
        previous = own.moved_out.get(customer_id)
        if previous is None or previous.get("to") != new:
            previous = {"to": new, "at": (now + MOVE_MARGIN).isoformat()}
        kept[customer_id] = previous
    share.moved_out = kept
    owned_here = own.paths_by_customer()
    moved_in = {c: at for c, at in own.moved_in.items() if c in mine}
    for other, manifest in manifests.items():
        if other == name:
            continue
        for customer_id, tomb in manifest.moved_out.items():
            if (
                tomb.get("to") == name
                and customer_id in mine
                and customer_id not in owned_here
                and customer_id not in moved_in
            ):
                moved_in[customer_id] = str(tomb.get("at"))
    share.moved_in = moved_in
    builder.composer.start_after.update({c: _when(at) for c, at in moved_in.items()})


def _when(text: str | None) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(str(text))
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclass
class EnvironmentResult:
    environment: Environment
    plan: FleetPlan | None = None
    error: str | None = None  # a refused capacity or prune, or a target failure
    written: int = 0
    deleted: int = 0


@dataclass
class FleetSync:
    results: dict[str, EnvironmentResult] = field(default_factory=dict)
    passes: int = 0


def plan_environments(
    builder: FleetBuilder,
    names: list[str] | None = None,
    *,
    force_prune: bool = False,
    build_jobs: int | None = None,
) -> list[EnvironmentResult]:
    """Plan every selected environment; one over its capacity is marked refused."""
    shares = environment_shares(builder, names)
    plans = plan_shares(builder, shares, force_prune, build_jobs)
    results = []
    for share, plan in zip(shares, plans, strict=True):
        env = share.environment
        assert env is not None
        result = EnvironmentResult(env, plan)
        dags = sum(dag_count(builder, c) for c in share.customers or ())
        if env.capacity is not None and dags > env.capacity:
            result.error = (
                f"environment {env.name}: {dags} DAGs would exceed its capacity of "
                f"{env.capacity}: nothing written there (raise capacity or add an environment)"
            )
        results.append(result)
    return results


def sync_environments(
    builder: FleetBuilder,
    names: list[str] | None = None,
    *,
    force_prune: bool = False,
    build_jobs: int | None = None,
    jobs: int = 16,
) -> FleetSync:
    """Plan and apply every selected environment, one thread each. A second pass writes
    the customers the first held back, once their old environment has removed them."""
    sync = FleetSync()
    pending = names
    for _ in range(2):
        sync.passes += 1
        results = plan_environments(
            builder, pending, force_prune=force_prune, build_jobs=build_jobs
        )
        _parallel([_applier(r, jobs, force_prune) for r in results])
        for result in results:
            previous = sync.results.get(result.environment.name)
            if previous is not None:
                result.written += previous.written
                result.deleted += previous.deleted
            sync.results[result.environment.name] = result
        held = [r.environment.name for r in results if r.plan and r.plan.share.held]
        moved = any(r.plan and r.plan.plan.moved and not r.error for r in results)
        if not held or not moved:
            break
        pending = held
    return sync


def _applier(result: EnvironmentResult, jobs: int, force_prune: bool) -> Callable[[], None]:
    def apply() -> None:
        if result.error or result.plan is None:
            return
        try:
            # Each environment's target lock is taken here, in its own thread (the
            # local lock is exclusive across threads), for the time of its apply.
            applied = apply_fleet(result.plan, jobs=jobs, force_prune=force_prune)
        except TargetError as exc:
            result.error = f"environment {result.environment.name}: {exc}"
            return
        result.written += applied.written
        result.deleted += applied.deleted

    return apply


def _manifest_reader(env: Environment) -> Callable[[], Manifest]:
    def read() -> Manifest:
        try:
            return Manifest.from_bytes(open_target(env.target).read(MANIFEST))
        except ValueError as exc:
            raise TargetError(f"target {env.target}: unreadable {MANIFEST}: {exc}") from exc

    return read


def _parallel(calls: list[Callable[[], T]]) -> list[T]:
    """Run I/O-bound calls in threads, one per environment; the first failure re-raises."""
    if len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [f.result() for f in futures]


def move_lines(results: list[EnvironmentResult]) -> list[str]:
    """`customer X: env-a -> env-b` for every move, from the old environment's side, and
    the held ones from the new side."""
    lines = []
    for result in results:
        share = result.plan.share if result.plan else None
        if share is None:
            continue
        for customer_id, new in sorted(share.moving_out.items()):
            lines.append(f"customer {customer_id}: {result.environment.name} -> {new}")
    return lines
