"""Where a sync's time and memory go, by phase (diagnostics for bench/README.md#findings).

    uv run python -m bench.profile_sync N [--noop] [--memory]

Profiles the live tree (or, with DAGFLEET_BENCH_CODE and PYTHONPATH set to a copy made
by bench/freeze.py, that copy). Runs `plan_fleet` + `apply_fleet` in-process on the synthetic fleet of N into a local
folder under bench/work/profile (a full sync; with --noop, the folder is synced first
and the second, unchanged sync is profiled). Default: cProfile, printing the
cumulative time of each phase. --memory: tracemalloc instead, printing the peak of
traced Python allocations and the biggest allocation sites at that peak.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import time
import tracemalloc

from bench.context import WORK, _templates
from bench.fleetgen import write_store

PHASES = (  # (label, file fragment, function name) as cProfile names them
    ("plan_fleet (everything before writing)", "pipeline.py", "plan_fleet"),
    ("  read the store", "store/sqlite.py", "read_snapshot"),
    ("  validate rows (build_fleet)", "model/fleet.py", "build_fleet"),
    ("  list the target (+ md5 of every file)", "targets/local.py", "list_objects"),
    ("  inputs digests", "composer/build.py", "inputs_digest"),
    ("  manifest: unchanged customers", "plan/changes.py", "unchanged"),
    ("build customers (plan + apply)", "composer/build.py", "build"),
    ("  compose (templates + params)", "compose/composition.py", "compose"),
    ("    import operator modules (once)", "compose/operators.py", "import_object"),
    ("    substitute placeholders", "compose/task_args.py", "_substitute"),
    ("    check operator arguments", "compose/task_args.py", "_checked_args"),
    ("  render the Python source", "render/dagfile.py", "render_builder"),
    ("  compile() every file", "~", "<built-in method builtins.compile>"),
    ("make_plan", "plan/changes.py", "make_plan"),
    ("apply_plan (main thread)", "publish/apply.py", "apply_plan"),
    ("  files handed to the writers", "pipeline.py", "render"),
)


def _phase_times(stats: pstats.Stats) -> list[tuple[str, float, int]]:
    rows = []
    table = stats.stats  # type: ignore[attr-defined]
    for label, fragment, name in PHASES:
        total, calls = 0.0, 0
        for (path, _line, func), (_cc, nc, _tt, ct, _callers) in table.items():
            if func == name and (fragment == "~" or path.endswith(fragment)):
                total, calls = total + ct, calls + nc
        rows.append((label, total, calls))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_sync")
    ap.add_argument("n", type=int)
    ap.add_argument("--stats", help="also save the raw cProfile stats here (pstats)")
    ap.add_argument("--noop", action="store_true")
    ap.add_argument("--memory", action="store_true")
    args = ap.parse_args()
    templates = _templates()
    os.environ.setdefault("AIRFLOW_HOME", str(WORK / "airflow-home"))
    base = WORK / "profile" / f"N{args.n}"
    store = write_store(base / "fleet.db", args.n)
    target_dir = base / "dags"
    shutil.rmtree(target_dir, ignore_errors=True)
    target = f"file://{target_dir}"

    from composer.compose.operators import import_object
    from composer.pipeline import apply_fleet, plan_fleet

    for module in ("composer.callbacks", "airflow.sdk"):  # imports are not the question here
        __import__(module)
    if args.noop:
        apply_fleet(plan_fleet(store, target, templates, build_jobs=1))
    else:  # import the operator modules up front too, so the profile shows the sync itself
        import yaml

        for path in templates.glob("*.yaml"):
            data = yaml.safe_load(path.read_text()) or {}
            for section in ("tasks", "setup_tasks"):
                for task in (data.get(section) or {}).values():
                    import_object(task["operator"])

    def sync() -> None:
        apply_fleet(plan_fleet(store, target, templates, build_jobs=1))

    what = "no-op" if args.noop else "full"
    if args.memory:
        tracemalloc.start(1)
        started = time.perf_counter()
        fleet_plan = plan_fleet(store, target, templates, build_jobs=1)
        after_plan = tracemalloc.take_snapshot()
        held_plan, peak_plan = tracemalloc.get_traced_memory()
        apply_fleet(fleet_plan)
        _, peak = tracemalloc.get_traced_memory()
        print(
            f"{what} sync of N={args.n}: {time.perf_counter() - started:.1f}s under tracemalloc; "
            f"peak traced {peak / 2**20:.1f} MiB (planning {peak_plan / 2**20:.1f} MiB); "
            f"held once planned {held_plan / 2**20:.1f} MiB"
        )
        print("  held once planned, by file:")
        for st in after_plan.statistics("filename")[:8]:
            print(
                f"    {st.size / 2**20:7.1f} MiB  {st.count:>9} blocks  {st.traceback[0].filename}"
            )
        print("  held once planned, by line:")
        for st in after_plan.statistics("lineno")[:8]:
            frame = st.traceback[0]
            print(f"    {st.size / 2**20:7.1f} MiB  {frame.filename}:{frame.lineno}")
        tracemalloc.stop()
        return
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    sync()
    profile.disable()
    wall = time.perf_counter() - started
    if args.stats:
        profile.dump_stats(args.stats)
    print(f"{what} sync of N={args.n} ({3 * args.n} DAG files): {wall:.1f}s under cProfile")
    for label, seconds, calls in _phase_times(pstats.Stats(profile)):
        print(
            f"  {label:<40} {seconds:7.2f}s  {calls:>8} calls  {seconds / args.n * 1000:6.2f} ms/customer"
        )


if __name__ == "__main__":
    main()
