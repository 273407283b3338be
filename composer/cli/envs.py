"""`fleet plan` / `fleet sync` over fleet.yaml's environments: one section per
environment (its files, its moves, its capacity), exit codes as for one target, with a
refused environment (capacity, prune, target failure) exit 3 while the others proceed."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from composer.build import FleetBuilder
from composer.errors import ConfigError
from composer.plan.fleetenvs import (
    EnvironmentResult,
    dag_count,
    move_lines,
    plan_environments,
    sync_environments,
)
from composer.store import open_store

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_FAILURE = 0, 1, 2, 3


def run_environments(args: argparse.Namespace, store_url: str, templates: Path) -> int:
    started = time.monotonic()
    builder = FleetBuilder(open_store(store_url).read_snapshot(), templates)
    names = [args.environment] if args.environment else None
    if args.target and names:
        from composer.plan.fleetenvs import environment_shares

        environment_shares(builder, names, args.target)  # refuses a mismatched --target
    force = getattr(args, "force_prune", False)
    if args.command == "plan":
        results = plan_environments(builder, names, force_prune=force, build_jobs=args.build_jobs)
        for line in builder.fleet.warnings:
            _say(f"warning: {line}")
        _errors(_all_errors(results))
        changes = False
        for result in results:
            _print_environment(builder, result)
            plan = result.plan.plan if result.plan else None
            changes |= bool(plan and plan.has_changes)
        for line in move_lines(results):
            print(line)
        from composer.model.versions import plan_lines

        for line in plan_lines(builder):  # who runs which template version, fleet-wide
            print(line)
        if args.diff:
            for result in results:
                if result.plan is not None:
                    sys.stdout.writelines(result.plan.diff())
        code = _exit(results)
        if code == EXIT_OK and args.detailed_exitcode and changes:
            return 2
        return code
    if args.strict:
        results = plan_environments(builder, names, force_prune=force, build_jobs=args.build_jobs)
        if _all_errors(results):
            _errors(_all_errors(results))
            _say("sync --strict: invalid customers, nothing published")
            return EXIT_INVALID
    sync = sync_environments(
        builder, names, force_prune=force, build_jobs=args.build_jobs, jobs=args.jobs
    )
    results = list(sync.results.values())
    for line in builder.fleet.warnings:
        _say(f"warning: {line}")
    _errors(_all_errors(results))
    for line in move_lines(results):
        print(f"moved {line}")
    for result in results:
        if result.error:
            _say(f"error: {result.error}")
            continue
        print(
            f"Synced {result.environment.name} ({result.environment.target}): "
            f"{result.written} written, {result.deleted} removed; "
            f"{_dags(builder, result)} DAGs{_capacity(result)}"
        )
    print(
        f"Synced {len(results)} environment(s) in {time.monotonic() - started:.1f}s, "
        f"{sync.passes} pass(es); {len({e.customer_id for e in _all_errors(results)})} invalid customers"
    )
    return _exit(results)


def _print_environment(builder: FleetBuilder, result: EnvironmentResult) -> None:
    env = result.environment
    print(
        f"== environment {env.name} ({env.target}): {_dags(builder, result)} DAGs{_capacity(result)}"
    )
    if result.plan is None:
        return
    plan = result.plan.plan
    for label, paths in (("+", plan.added), ("~", plan.changed), ("-", plan.removed)):
        for path in paths:
            print(f"{label} {path}")
    for customer_id in sorted(result.plan.share.held if result.plan.share else ()):
        print(f"  customer {customer_id}: held until its old environment has removed it")
    refused = " (removal refused without --force-prune)" if plan.prune_refused else ""
    print(f"Plan {env.name}: {plan.summary()}{refused}")
    if result.error:
        print(f"Refused {env.name}: {result.error}")


def _dags(builder: FleetBuilder, result: EnvironmentResult) -> int:
    share = result.plan.share if result.plan else None
    customers = set(share.customers or ()) | set(share.held) if share else set()
    return sum(dag_count(builder, c) for c in customers if c in builder.fleet.customers)


def _capacity(result: EnvironmentResult) -> str:
    capacity = result.environment.capacity
    return f" of {capacity}" if capacity is not None else ""


def _all_errors(results: list[EnvironmentResult]) -> list[ConfigError]:
    seen: dict[str, ConfigError] = {}
    for result in results:
        for error in result.plan.errors if result.plan else ():
            seen.setdefault(str(error), error)
    return list(seen.values())


def _exit(results: list[EnvironmentResult]) -> int:
    if any(r.error for r in results):
        return EXIT_FAILURE
    return EXIT_INVALID if _all_errors(results) else EXIT_OK


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _errors(errors: list[ConfigError]) -> None:
    from composer.error_lines import error_lines  # a broken template: one line

    for line in error_lines(errors):
        _say(f"error: {line}")
