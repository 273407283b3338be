"""`fleet`'s options: the argument parser, its bounds, and the help text that states the
exit codes and environment variables. Parsing only; `composer.cli.main` runs the commands."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable
from pathlib import Path

from composer.publish.apply import MAX_JOBS  # parallel uploads: the GCS connection pool

DEFAULT_STORE = "sqlite:///fleet.db"
DEFAULT_TARGET = "file://./build/dags"
MAX_BUILD_JOBS = 64  # build worker processes
EPILOG = """\
exit codes:
  0  ok
  1  invalid config: valid customers are still published (unless --strict); an
     invalid customer's published files stay exactly as they were
  2  usage: a bad option, store or target URL, or an unknown customer; also
     `plan --detailed-exitcode` when there are changes (as terraform plan)
  3  store or target failure, target locked by another run, or a removal refused
     without --force-prune: nothing was changed

environment (an option wins over its variable):
  FLEET_STORE       store URL (default sqlite:///fleet.db, relative to the working
                    directory; an absolute path takes four slashes: sqlite:////abs/fleet.db)
  FLEET_TARGET      target URL (default file://./build/dags)
  FLEET_TEMPLATES   templates folder (default ./templates)
  FLEET_BUILD_JOBS  build worker processes (default: one per core)
  FLEET_ENVIRONMENT plan/sync/report only this environment of fleet.yaml (default: all)
  FLEET_CACHE_DIR   operator cache folder (default ~/.cache/dagfleet; "off" disables it)
  STORAGE_EMULATOR_HOST, SPANNER_EMULATOR_HOST  use local emulators instead of Google Cloud
"""


def _environment_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--environment",
        default=None,
        metavar="NAME",
        help="only this environment of fleet.yaml `environments:` (default: $FLEET_ENVIRONMENT, "
        "else all; without `environments:` the fleet has one, 'default')",
    )


def _bounded(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an int in [low, high] (else a usage error, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{value:g} is not between 0 and 86400 seconds")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"fleet (dagfleet) {version('dagfleet')}"
    except PackageNotFoundError:  # the package copied beside the DAGs, not installed
        return "fleet (dagfleet) unknown version"


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _jobs_option(parser: argparse.ArgumentParser) -> None:
    """Parallel uploads: bounded by the GCS connection pool (sync and deploy alike)."""
    parser.add_argument(
        "--jobs",
        type=_bounded(1, MAX_JOBS),
        default=16,
        metavar="N",
        help=f"parallel uploads (default 16; 1 to {MAX_JOBS})",
    )


def _template_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """lint, schema, docs: no store, no target (composer/cli/authoring.py)."""
    templates = argparse.ArgumentParser(add_help=False)
    templates.add_argument(
        "--templates",
        type=Path,
        default=None,
        help="templates folder (default $FLEET_TEMPLATES, else ./templates)",
    )
    command(
        "lint",
        "check every template of the folder alone, without a store (no DAG is imported)",
        parents=[templates],
    )
    schema = command("schema", "print the JSON Schema of template files", parents=[])
    schema.add_argument("--out", default="-", help="file to write (default: stdout)")
    schema.add_argument("--fleet", action="store_true", help="the schema of fleet.yaml instead")
    docs = command("docs", "print the template reference page (markdown)", parents=[templates])
    docs.add_argument("--out", default="-", help="file to write (default: stdout)")


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and option; out-of-range values are usage errors (exit 2)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store", default=None, help=f"store URL (default $FLEET_STORE, else {DEFAULT_STORE})"
    )
    common.add_argument(
        "--target",
        default=None,
        help=f"target URL (default $FLEET_TARGET, else {DEFAULT_TARGET})",
    )
    common.add_argument(
        "--templates",
        type=Path,
        default=None,
        help="templates folder (default $FLEET_TEMPLATES, else ./templates)",
    )
    common.add_argument(
        "--build-jobs",
        type=_bounded(1, MAX_BUILD_JOBS),
        default=None,
        metavar="N",
        help="processes that build customers when many changed (default: $FLEET_BUILD_JOBS, "
        f"else one per core; 1 to {MAX_BUILD_JOBS})",
    )
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="fleet",
        description="Generate and publish the Airflow DAG fleet.",
        epilog=EPILOG,
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, parents: list | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            parents=[common] if parents is None else parents,
            help=help,
            description=help,
            epilog=EPILOG,
            formatter_class=fmt,
        )

    command("validate", "check every customer; write nothing")
    render = command("render", "print one customer's files")
    render.add_argument("customer_id")
    plan = command("plan", "show what a sync would change; write nothing")
    _environment_option(plan)
    plan.add_argument("--diff", action="store_true", help="show unified diffs")
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when there are changes (as terraform plan)",
    )
    plan.add_argument(
        "--force-prune",
        action="store_true",
        help="plan as `sync --force-prune` would (else a large removal exits 3)",
    )
    sync = command("sync", "publish the fleet to the target")
    _environment_option(sync)
    sync.add_argument(
        "--strict", action="store_true", help="publish nothing when any customer is invalid"
    )
    sync.add_argument(
        "--force-prune", action="store_true", help="allow removing more than 10%% of the fleet"
    )
    _jobs_option(sync)
    sync.add_argument(
        "--lock-wait",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for another run publishing to a local target (default 60)",
    )
    report = command("report", "write the fleet report (one HTML page) from the plan")
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
    _environment_option(report)
    store = command("store", "manage the store", parents=[])
    store_sub = store.add_subparsers(dest="store_command", required=True)
    init = store_sub.add_parser(
        "init",
        parents=[common],
        help="create the schema",
        epilog=EPILOG,
        formatter_class=fmt,
    )
    init.add_argument(
        "--demo", action="store_true", help="also insert the demo fleet from examples/"
    )
    _template_commands(command)
    deploy = command(
        "deploy",
        "copy the meta-DAG, the composer package and the templates to a DAG folder",
        parents=[],
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
    _jobs_option(deploy)
    deploy.add_argument("--dry-run", action="store_true", help="show the changes; write nothing")
    return parser
