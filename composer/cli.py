"""`fleet`: the command line. Thin: parse options, call the pipeline, map failures to
exit codes (0 ok, 1 invalid config, 2 usage, 3 store or target failure / refused prune)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from composer.errors import BuildFailed, ConfigError, SettingsError, StoreError, TargetError

DEFAULT_STORE = "sqlite:///fleet.db"
DEFAULT_TARGET = "file://./build/dags"
EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_FAILURE = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", default=None, help=f"store URL (default {DEFAULT_STORE})")
    common.add_argument(
        "--target", default=DEFAULT_TARGET, help=f"target URL (default {DEFAULT_TARGET})"
    )
    common.add_argument(
        "--templates", type=Path, default=None, help="templates folder (default ./templates)"
    )
    common.add_argument(
        "--build-jobs",
        type=int,
        default=None,
        metavar="N",
        help="processes that build customers when many changed (default: one per core)",
    )
    parser = argparse.ArgumentParser(
        prog="fleet", description="Generate and publish the Airflow DAG fleet."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("validate", parents=[common], help="check every customer; write nothing")
    render = sub.add_parser("render", parents=[common], help="print one customer's files")
    render.add_argument("customer_id")
    plan = sub.add_parser("plan", parents=[common], help="show what a sync would change")
    plan.add_argument("--diff", action="store_true", help="show unified diffs")
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when there are changes (as terraform plan)",
    )
    sync = sub.add_parser("sync", parents=[common], help="publish the fleet to the target")
    sync.add_argument(
        "--strict", action="store_true", help="publish nothing when any customer is invalid"
    )
    sync.add_argument(
        "--force-prune", action="store_true", help="allow removing more than 10%% of the fleet"
    )
    sync.add_argument("--jobs", type=int, default=16, help="parallel uploads (default 16)")
    report = sub.add_parser(
        "report", parents=[common], help="write the fleet report (one HTML page) from the plan"
    )
    report.add_argument(
        "--out",
        default="fleet-report.html",
        help="file to write, - for stdout (default %(default)s)",
    )
    report.add_argument(
        "--date",
        type=_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="the UTC day to chart (default: tomorrow, UTC)",
    )
    report.add_argument(
        "--environment",
        default=None,
        metavar="NAME",
        help="the environment to report (the fleet has one, 'default', until fleet.yaml "
        "lists environments)",
    )
    store = sub.add_parser("store", help="manage the store")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    init = store_sub.add_parser("init", parents=[common], help="create the schema")
    init.add_argument(
        "--demo", action="store_true", help="also insert the demo fleet from examples/"
    )
    deploy = sub.add_parser(
        "deploy", help="copy the meta-DAG, the composer package and the templates to a DAG folder"
    )
    deploy.add_argument(
        "dags_url",
        help="the environment's DAG folder: gs://BUCKET/dags (terraform output dag_gcs_prefix) "
        "or file:///path/dags",
    )
    deploy.add_argument(
        "--templates", type=Path, default=None, help="templates folder (default ./templates)"
    )
    deploy.add_argument(
        "--ignore-syntax",
        choices=["glob", "regexp"],
        default=None,
        help=".airflowignore syntax of the environment (default: glob when fleet.yaml "
        "airflow_target is 3, regexp when 2)",
    )
    deploy.add_argument("--jobs", type=int, default=16, help="parallel uploads (default 16)")
    deploy.add_argument("--dry-run", action="store_true", help="show the changes; write nothing")
    return parser


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _warnings(warnings: list[str]) -> None:
    for warning in warnings:
        _say(f"warning: {warning}")


def _errors(errors: list[ConfigError]) -> None:
    for error in errors:
        _say(f"error: {error}")


def _store_url(args: argparse.Namespace) -> tuple[str, bool]:
    """The store URL, and whether it may be created (only the default one may)."""
    if args.store:
        return args.store, False
    from composer.store import open_store

    path = Path(DEFAULT_STORE.removeprefix("sqlite:///"))
    if not path.exists():
        from composer.demo import snapshot_from_yaml

        store = open_store(DEFAULT_STORE, create=True)
        store.init_schema()
        store.insert(snapshot_from_yaml())
        _say(f"created {path} with the demo fleet from examples/demo_fleet.yaml")
    return DEFAULT_STORE, False


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (StoreError, TargetError, BuildFailed) as exc:
        _say(f"error: {exc}")
        return EXIT_FAILURE
    except SettingsError as exc:
        _say(f"error: {exc}")
        return EXIT_INVALID
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
    store_url, create = _store_url(args)
    if args.command in ("validate", "render"):
        return _validate_or_render(args, store_url)
    if args.command == "report" and args.environment not in (None, "default"):
        _say(
            f"error: --environment {args.environment}: this fleet has one environment, "
            "'default' (fleet.yaml lists no environments)"
        )
        return EXIT_USAGE
    from composer.pipeline import apply_fleet, plan_fleet

    started = time.monotonic()
    force = getattr(args, "force_prune", False)
    fleet_plan = plan_fleet(
        store_url,
        args.target,
        _templates(args),
        force_prune=force,
        create_store=create,
        build_jobs=args.build_jobs,
    )
    plan = fleet_plan.plan
    _warnings(fleet_plan.builder.fleet.warnings)
    if args.command == "report":
        return _report(args, fleet_plan)
    if args.command == "plan":
        _errors(fleet_plan.errors)
        for label, paths in (("+", plan.added), ("~", plan.changed), ("-", plan.removed)):
            for path in paths:
                print(f"{label} {path}")
        if args.diff:
            sys.stdout.writelines(fleet_plan.diff())
        refused = " (removal refused without --force-prune)" if plan.prune_refused else ""
        print(
            f"Plan: {plan.summary()}{refused}; {len(fleet_plan.invalid_customers)} invalid customers"
        )
        if fleet_plan.errors:
            return EXIT_INVALID
        return 2 if args.detailed_exitcode and plan.has_changes else EXIT_OK
    if args.strict and fleet_plan.errors:
        _errors(fleet_plan.errors)
        _say(
            f"sync --strict: {len(fleet_plan.invalid_customers)} invalid customers, nothing published"
        )
        return EXIT_INVALID
    try:
        result = apply_fleet(fleet_plan, jobs=args.jobs, force_prune=force)
    finally:
        _errors(fleet_plan.errors)  # planning's, and any found while applying
    elapsed = time.monotonic() - started
    print(
        f"Synced {args.target}: {len(plan.added)} added, {len(plan.changed)} changed, "
        f"{result.deleted} removed, {plan.unchanged} unchanged; "
        f"{len(fleet_plan.builder.customer_ids())} customers published, "
        f"{len(fleet_plan.invalid_customers)} invalid, in {elapsed:.1f}s"
    )
    return EXIT_INVALID if fleet_plan.errors else EXIT_OK


def _report(args: argparse.Namespace, fleet_plan) -> int:
    from composer.report import report_html

    page = report_html(fleet_plan, args.date)
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
    if args.command == "render":
        cid = args.customer_id
        errors = [e for e in builder.errors if e.customer_id == cid]
        if not errors and cid not in builder.fleet.customers:
            _say(f"error: customer {cid}: not in the store")
            return EXIT_INVALID
        if not errors and not builder.fleet.customers[cid].active:
            _say(f"customer {cid} is inactive: it has no files")
            return EXIT_OK
        if not errors:
            build = builder.build(cid)
            errors = build.errors
            for rendered in build.files:
                # A part is printed as a file of its own: in the target it shares its
                # shard file with other customers' parts (composer/layout.py).
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
    print(
        f"Validated {len(builder.fleet.customers) + invalid} customers: {files} DAGs, {invalid} invalid customers"
    )
    return EXIT_INVALID if errors else EXIT_OK


def _deploy(args: argparse.Namespace) -> int:
    from composer.deploy import deploy

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

    url = args.store or DEFAULT_STORE
    store = open_store(url, create=url.startswith("sqlite:///"))
    store.init_schema()
    print(f"Schema applied to {url}")
    if args.demo:
        from composer.demo import snapshot_from_yaml

        snapshot = snapshot_from_yaml()
        store.insert(snapshot)
        print(
            f"Inserted the demo fleet: {len(snapshot.customers)} customers, {len(snapshot.integrations)} integrations"
        )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
