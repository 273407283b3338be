"""`fleet`: the command line. Thin: parse options, call the pipeline, map failures to
exit codes (0 ok, 1 invalid config, 2 usage, 3 store or target failure / refused prune)."""

from __future__ import annotations

import argparse
import os
import sys
import time
import tomllib
from pathlib import Path

from composer.cli.args import DEFAULT_STORE, DEFAULT_TARGET, build_parser
from composer.errors import (
    BadUrl,
    BuildFailed,
    ConfigError,
    PruneRefused,
    SettingsError,
    StoreError,
    TargetError,
)

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_FAILURE = 0, 1, 2, 3


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _warnings(warnings: list[str]) -> None:
    for warning in warnings:
        _say(f"warning: {warning}")


def _errors(errors: list[ConfigError]) -> None:
    from composer.error_lines import error_lines  # a broken template: one line

    for line in error_lines(errors):
        _say(f"error: {line}")


def _store_url(args: argparse.Namespace) -> str:
    """--store, else $FLEET_STORE, else the default store, which is created and seeded
    with the demo fleet only inside a dagfleet checkout (never elsewhere by surprise)."""
    url = args.store or os.environ.get("FLEET_STORE")
    if url:
        return url
    path = Path(DEFAULT_STORE.removeprefix("sqlite:///")).absolute()
    if path.exists():
        return DEFAULT_STORE
    if not _in_checkout(Path.cwd()):
        raise StoreError(
            f"store {DEFAULT_STORE}: no such SQLite file {path}, and the demo fleet is only "
            "seeded inside a dagfleet checkout: pass --store URL or set FLEET_STORE, or "
            f"create it with `fleet store init --demo --store sqlite:///{path}`"
        )
    from composer.store import open_store
    from composer.store.demo import DEMO_FILE, snapshot_from_yaml

    store = open_store(DEFAULT_STORE, create=True)
    store.init_schema()
    store.insert(snapshot_from_yaml())
    _say(f"created {path} with the demo fleet from {DEMO_FILE}")
    return DEFAULT_STORE


def _in_checkout(folder: Path) -> bool:
    """Whether `folder` is the root of a dagfleet checkout (its pyproject.toml)."""
    try:
        with open(folder / "pyproject.toml", "rb") as handle:
            return tomllib.load(handle).get("project", {}).get("name") == "dagfleet"
    except (OSError, tomllib.TOMLDecodeError):
        return False


def _target_url(args: argparse.Namespace) -> str:
    return args.target or os.environ.get("FLEET_TARGET") or DEFAULT_TARGET


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("plan", "sync", "report"):
        args.environment = args.environment or os.environ.get("FLEET_ENVIRONMENT") or None
    try:
        return _run(args)
    except BadUrl as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    except (StoreError, TargetError, BuildFailed) as exc:
        _say(f"error: {exc}")
        return EXIT_FAILURE
    except SettingsError as exc:
        _say(f"error: {exc}")
        from composer.plan.fleetenvs import UnknownEnvironment

        return EXIT_USAGE if isinstance(exc, UnknownEnvironment) else EXIT_INVALID
    except KeyboardInterrupt:
        return 130


def _templates(args: argparse.Namespace) -> Path:
    from composer.pipeline import default_templates_dir

    return args.templates or default_templates_dir()


def _run(args: argparse.Namespace) -> int:
    if args.command == "store":
        return _store_init(args)
    if args.command == "deploy":
        return _deploy(args)
    if args.command in ("lint", "schema", "docs"):
        from composer.cli.authoring import run

        return run(args)
    if args.command in ("validate", "render"):
        return _validate_or_render(args, _store_url(args))
    if args.command in ("plan", "sync") and _environments_wanted(args):
        from composer.cli.envs import run_environments

        return run_environments(args, _store_url(args), _templates(args))
    from composer.store import open_store
    from composer.targets import open_target

    target = open_target(_target_url(args))  # parses the URL: no I/O yet
    store_url = _store_url(args)
    if args.command in ("plan", "report"):  # they write nothing to the target
        return _plan_or_sync(args, store_url)
    open_store(store_url)  # a bad URL or a missing file fails before the target is touched
    # Held from before the store is read until the manifest is written: a run that read
    # an older store can never publish after a newer one.
    with target.lock(args.lock_wait, on_wait=_say):
        return _plan_or_sync(args, store_url)


def _plan_or_sync(args: argparse.Namespace, store_url: str) -> int:
    from composer.pipeline import apply_fleet, plan_fleet
    from composer.publish.apply import refusal

    started = time.monotonic()
    # A report of every environment reads each one's own target from fleet.yaml.
    spread = args.command == "report" and not args.target and _environments_wanted(args)
    target = None if spread else _target_url(args)
    force = getattr(args, "force_prune", False)
    fleet_plan = plan_fleet(
        store_url,
        target,
        _templates(args),
        force_prune=force,
        build_jobs=args.build_jobs,
        environment=args.environment or _first_environment(args),
    )
    plan = fleet_plan.plan
    _warnings(fleet_plan.builder.fleet.warnings)
    if args.command == "report":
        return _report(args, fleet_plan)
    invalid = len(fleet_plan.invalid_customers)
    if args.command == "plan":
        _errors(fleet_plan.errors)
        for label, paths in (("+", plan.added), ("~", plan.changed), ("-", plan.removed)):
            for path in paths:
                print(f"{label} {path}")
        from composer.model.versions import plan_lines

        for line in plan_lines(fleet_plan.builder):  # who runs which template version
            print(line)
        if args.diff:
            sys.stdout.writelines(fleet_plan.diff())
        refused = " (removal refused without --force-prune)" if plan.prune_refused else ""
        print(f"Plan: {plan.summary()}{refused}; {invalid} invalid customers")
        if plan.prune_refused:
            _say(f"error: target {target}: sync would stop, {refusal(plan)}")
            return EXIT_FAILURE
        if fleet_plan.errors:
            return EXIT_INVALID
        return 2 if args.detailed_exitcode and plan.has_changes else EXIT_OK
    if args.strict and fleet_plan.errors:
        _errors(fleet_plan.errors)
        _say(f"sync --strict: {invalid} invalid customers, nothing published")
        return EXIT_INVALID
    try:
        result = apply_fleet(fleet_plan, jobs=args.jobs, force_prune=force, lock_wait=0)
    except PruneRefused as exc:
        _errors(fleet_plan.errors)
        _say(f"error: target {target}: {exc}")
        print(
            f"Not synced {target}: nothing changed (the plan: {plan.summary()}); "
            f"{invalid} invalid customers, in {time.monotonic() - started:.1f}s"
        )
        return EXIT_FAILURE
    except BaseException:
        _errors(fleet_plan.errors)  # planning's, and any found while applying
        raise
    _errors(fleet_plan.errors)
    elapsed = time.monotonic() - started
    print(
        f"Synced {target}: {len(plan.added)} added, {len(plan.changed)} changed, "
        f"{result.deleted} removed, {plan.unchanged} unchanged; "
        f"{len(fleet_plan.builder.customer_ids())} customers published, "
        f"{len(fleet_plan.invalid_customers)} invalid, in {elapsed:.1f}s"
    )
    return EXIT_INVALID if fleet_plan.errors else EXIT_OK


def _environments_wanted(args: argparse.Namespace) -> bool:
    """--environment given, or fleet.yaml spreads the fleet over environments."""
    from composer.model.settings import load_settings

    if args.environment and args.environment != "default":
        return True

    return bool(load_settings(_templates(args)).environments)


def _first_environment(args: argparse.Namespace) -> str | None:
    """A report of every environment plans through the first one (the report reads the
    shared build, not that environment's files)."""
    if args.command != "report":
        return None
    from composer.model.settings import load_settings

    environments = load_settings(_templates(args)).environments
    return environments[0].name if environments else None


def _report(args: argparse.Namespace, fleet_plan) -> int:
    from composer.report import report_html

    page = report_html(fleet_plan, args.date, environment=args.environment)
    _errors(fleet_plan.errors)
    if args.out == "-":
        sys.stdout.write(page)
    else:
        Path(args.out).write_text(page, encoding="utf-8")
        print(
            f"Wrote {args.out}: {len(fleet_plan.builder.customer_ids())} customers, "
            f"{len(fleet_plan.invalid_customers)} invalid"
        )
    return EXIT_INVALID if fleet_plan.errors else EXIT_OK


def _validate_or_render(args: argparse.Namespace, store_url: str) -> int:
    from composer.build import FleetBuilder
    from composer.store import open_store

    builder = FleetBuilder(open_store(store_url).read_snapshot(), _templates(args))
    if builder.settings.environments:  # a pin naming no environment is a customer error
        from composer.plan.fleetenvs import assignment_of

        assignment_of(builder)
    if args.command == "render":
        cid = args.customer_id
        errors = [e for e in builder.errors if e.customer_id == cid]
        if not errors and cid not in builder.fleet.customers:
            _say(f"error: customer {cid}: not in the store")
            return EXIT_USAGE
        if not errors and not builder.fleet.customers[cid].active:
            _say(f"customer {cid} is inactive: it has no files")
            return EXIT_OK
        if not errors:
            build = builder.build(cid)
            errors = build.errors
            for rendered in build.files:
                # A part is printed as a file of its own: in the target it shares its
                # shard file with other customers' parts (composer/render/layout.py).
                note = f" (customer {cid}'s part)" if rendered.part else ""
                print(f"# ===== {rendered.path}{note} =====")
                sys.stdout.write(rendered.content.decode())
        _errors(errors)
        return EXIT_INVALID if errors else EXIT_OK
    from composer.parallel import BuildRunner

    errors = list(builder.errors)
    _warnings(builder.fleet.warnings)
    files = 0
    with BuildRunner(builder, args.build_jobs) as runner:
        for build in runner.builds(builder.customer_ids()):
            errors.extend(build.errors)
            files += len(build.dag_ids) + sum(not f.part for f in build.files)
    _errors(errors)
    invalid = len({e.customer_id for e in errors})
    # Every row once, whether it failed in the model (not in fleet.customers) or later.
    customers = len({c.customer_id for c in builder.snapshot.customers})
    print(f"Validated {customers} customers: {files} DAGs, {invalid} invalid customers")
    return EXIT_INVALID if errors else EXIT_OK


def _deploy(args: argparse.Namespace) -> int:
    from composer.publish.deploy import deploy

    result = deploy(
        args.dags_url,
        templates_dir=_templates(args),
        ignore_syntax=args.ignore_syntax,
        jobs=args.jobs,
        dry_run=args.dry_run,
    )
    for label, paths in (("+", result.added), ("~", result.changed), ("-", result.removed)):
        for path in paths:
            print(f"{label} {path}")
    verb = "Would deploy" if args.dry_run else "Deployed"
    print(f"{verb} to {args.dags_url}: {result.summary()}")
    return EXIT_OK


def _store_init(args: argparse.Namespace) -> int:
    from composer.store import open_store

    url = args.store or os.environ.get("FLEET_STORE") or DEFAULT_STORE
    store = open_store(url, create=url.startswith("sqlite:///"))
    store.init_schema()
    where = getattr(store, "path", None)  # an SQLite file: say which one
    print(f"Schema applied to {url}" + (f" ({where})" if where else ""))
    if args.demo:
        from composer.store.demo import snapshot_from_yaml

        snapshot = snapshot_from_yaml()
        store.insert(snapshot)
        print(
            f"Inserted the demo fleet: {len(snapshot.customers)} customers, {len(snapshot.integrations)} integrations"
        )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
