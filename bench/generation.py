"""Part 1: generating the fleet into a local folder.

Cases, each a fresh process, interleaved per round:
- full: `fleet sync` of N customers into an empty folder (operator-signature cache warm,
  as on every run after the first);
- full_cold: the same with the operator-signature cache emptied first (the first run on
  a machine, or after a package upgrade: Airflow and the providers are imported);
- floor: a plain loop that compile()s and writes the same bytes (read from a packed
  copy of the reference output, so it does no generation work);
- noop: `fleet sync` again onto a folder that already holds the fleet;
- onboard: `fleet sync` with one more customer in the store (then undone);
- imports: the import floor, a process importing what the sync imports;
- full_verified, onboard_verified: full and onboard as shipped, each file imported by
  Airflow before it is written (composer/verify/verifier.py, issue 9).

The other syncs run with `_FLEET_SKIP_VERIFY=1` (a switch for benchmarks only): the
generation targets (3x the floor, no-op <= 1/5, onboarding ~ a no-op, memory) were set
and first met before verify-by-import existed, and they measure what the layout and the
pipeline cost; the verified pair puts verification's own price beside them, paired in
the same rounds.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from bench import targetstate
from bench.context import Context, template_operator_modules
from bench.fleetgen import ONBOARDED_ID, write_store
from bench.measure import Case, MeasurementFailed, Sample, probe_command, run_process, run_rounds

UNVERIFIED = {"_FLEET_SKIP_VERIFY": "1"}  # composer.verify.verifier.SKIP_ENV
SYNC_LINE = re.compile(
    r"(\d+) added, (\d+) changed, (\d+) removed, (\d+) unchanged;.* in ([\d.]+)s"
)


def sync_counts(sample: Sample) -> dict[str, Any]:
    match = SYNC_LINE.search(sample.stdout)
    if not match:
        raise MeasurementFailed(f"{sample.case}: no summary line in {sample.stdout[-300:]!r}")
    added, changed, removed, unchanged, seconds = match.groups()
    return {
        "added": int(added),
        "changed": int(changed),
        "removed": int(removed),
        "unchanged": int(unchanged),
        "cli_seconds": float(seconds),
    }


def sync_imports() -> list[str]:
    """What a sync imports: the CLI and pipeline, the local target and SQLite store, and
    every operator module the templates use (composition imports them to check args)."""
    return [
        "composer.cli.main",
        "composer.pipeline",
        "composer.store.sqlite",
        "composer.targets.local",
        "composer.callbacks",
        "airflow.sdk",
    ]


def reference_output(ctx: Context, n: int) -> tuple[Path, str, Sample]:
    """The fleet of N synced once into <work>/gen/N<n>/ref (the warm-up sync); reused
    by the floor, the no-op and onboarding cases and by the parse benchmark."""
    base = ctx.work / "gen" / f"N{n}"
    store = write_store(base / "fleet.db", n)
    ref = base / "ref"
    targetstate.reset(ref)
    ctx.say(f"generation N={n}: reference sync (warm-up, not counted)")
    sample = run_process(
        f"gen{n}.reference",
        ctx.sync_command(store, f"file://{ref}"),
        {**ctx.env, **UNVERIFIED},  # verification is measured in cases of its own
        ctx.work,
        ctx.logs,
    )
    if sample.rc != 0:
        raise MeasurementFailed(
            f"reference sync of N={n} exited {sample.rc}: {sample.stdout[-500:]}"
        )
    sample.extra = sync_counts(sample)
    ctx.say(f"  reference sync: {sample.wall:.1f}s, {sample.extra['added']} files")
    return ref, store, sample


def run(ctx: Context, n: int, rounds: int, only: set[str] | None = None) -> dict[str, Any]:
    """The cases above (`only`: a subset of them, by name) over `rounds` rounds."""
    base = ctx.work / "gen" / f"N{n}"
    ref, store, warm = reference_output(ctx, n)
    onboard_store = write_store(base / "fleet_onboard.db", n, onboard=True)
    blob = base / "reference.pickle"
    files = targetstate.pack(ref, blob)
    full_dir, floor_dir = base / "full", base / "floor"
    modules = sync_imports() + template_operator_modules(ctx.templates)
    checked: dict[str, bool] = {}

    def check_full(sample: Sample, _: Any) -> dict[str, Any]:
        counts = sync_counts(sample)
        if counts["added"] + 2 != files:  # + the manifest and .airflowignore
            raise MeasurementFailed(
                f"full sync wrote {counts['added']} files, expected {files - 2}"
            )
        if "full" not in checked:  # byte-for-byte once: identical input, identical output
            checked["full"] = targetstate.same_content(full_dir, blob)
        return {**counts, "same_bytes_as_reference": checked["full"]}

    def check_floor(sample: Sample, _: Any) -> dict[str, Any]:
        if "floor" not in checked:
            checked["floor"] = targetstate.same_content(floor_dir, blob)
        return {"same_bytes_as_reference": checked["floor"]}

    def noop_after(sample: Sample, before: dict) -> dict[str, Any]:
        changed = targetstate.changes(before, targetstate.snapshot(ref))
        return {**sync_counts(sample), "files_touched": len(changed), "touched": changed[:5]}

    reference = targetstate.packed(blob)

    def onboard_after(sample: Sample, before: dict) -> dict[str, Any]:
        effect = targetstate.onboarding_effect(ref, before, reference, ONBOARDED_ID)
        targetstate.undo(ref, before, reference)
        return {**sync_counts(sample), **effect}

    def full_sync(name: str, *, cold_cache: bool, verified: bool = False) -> Case:
        def before() -> None:
            targetstate.reset(full_dir)
            if cold_cache:
                shutil.rmtree(ctx.cache_dir, ignore_errors=True)

        command = lambda: ctx.sync_command(store, f"file://{full_dir}")  # noqa: E731
        env = {} if verified else UNVERIFIED
        return Case(name, command, env=env, before=before, after=check_full)

    def onboarding(name: str, *, verified: bool) -> Case:
        return Case(
            name,
            lambda: ctx.sync_command(onboard_store, f"file://{ref}"),
            env={} if verified else UNVERIFIED,
            before=lambda: targetstate.snapshot(ref),
            after=onboard_after,
        )

    cases = [
        full_sync("full", cold_cache=False),
        full_sync("full_cold", cold_cache=True),
        full_sync("full_verified", cold_cache=False, verified=True),
        Case(
            "floor",
            lambda: probe_command("write", str(blob), str(floor_dir)),
            before=lambda: targetstate.reset(floor_dir),
            after=check_floor,
        ),
        Case(
            "noop",
            lambda: ctx.sync_command(store, f"file://{ref}"),
            env=UNVERIFIED,  # verifies nothing either way: it writes nothing
            before=lambda: targetstate.snapshot(ref),
            after=noop_after,
        ),
        onboarding("onboard", verified=False),
        onboarding("onboard_verified", verified=True),
        Case("imports", lambda: probe_command("imports", *_flags(modules))),
    ]
    if only:
        unknown = only - {c.name for c in cases}
        if unknown:
            raise SystemExit(f"unknown generation case(s): {', '.join(sorted(unknown))}")
        cases = [c for c in cases if c.name in only]
    ctx.say(f"generation N={n}: {rounds} rounds of {', '.join(c.name for c in cases)}")
    samples = run_rounds(
        [[c] for c in cases],
        rounds,
        env=ctx.env,
        cwd=ctx.work,
        log_dir=ctx.logs / f"gen{n}",
        warmup=False,  # the reference sync above warmed every cache
        say=ctx.say,
    )
    for name in ("full", "floor"):
        targetstate.reset(base / name)
    return {
        "n": n,
        "files": files,
        "warmup_sync": {"wall": warm.wall, "rss_mb": warm.rss_mb},
        "import_modules": modules,
        "samples": samples,
    }


def _flags(modules: list[str]) -> list[str]:
    return [arg for m in modules for arg in ("--import", m)]
