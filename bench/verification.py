"""What verify-by-import costs a sync: each file a sync writes is imported by Airflow's
DagBag first (composer/verify/verifier.py). Measured as a ratio to the same sync without it.

    uv run --group bench python -m bench.verification [--n 10000] [--rounds 3]

Cases, each a fresh `fleet sync` process, interleaved and rotated per round (method of
bench/README.md; the ratio is taken within each round, then median [min, max]):
- full / full_unverified: N customers into an empty folder (operator cache warm);
- onboard / onboard_unverified: one more customer onto a folder that holds the fleet
  (undone after each case).
The peer without verification sets `_FLEET_SKIP_VERIFY=1`, an internal switch for this
benchmark only (not a CLI option). Checks: both full syncs write the same bytes (once),
and onboarding touches only the new customer. Writes or replaces the section
"## 4. Verify by import, N=<n>" of bench/RESULTS.md (bench.run does not run this part).
The untimed reference sync that warms the caches runs without verification.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from bench import freeze, report, targetstate
from bench.context import REPO, WORK, Context
from bench.fleetgen import ONBOARDED_ID, write_store
from bench.generation import reference_output, sync_counts
from bench.measure import Case, MeasurementFailed, Sample, paired, rss, run_rounds, stat

SKIP = {"_FLEET_SKIP_VERIFY": "1"}
SECTION = "## 4. Verify by import"  # one section per N: "## 4. Verify by import, N=10,000"


def run(ctx: Context, n: int, rounds: int) -> dict[str, Any]:
    base = ctx.work / "verify" / f"N{n}"
    plain = ctx.env
    ctx.env = {**plain, **SKIP}  # the untimed reference need not wait for verification
    try:
        ref, store, warm = reference_output(ctx, n)  # warms every cache but the verifier's
    finally:
        ctx.env = plain
    onboard_store = write_store(base / "fleet_onboard.db", n, onboard=True)
    blob = base / "reference.pickle"
    files = targetstate.pack(ref, blob)
    reference = targetstate.packed(blob)
    checked: dict[str, bool] = {}

    def full(name: str, env: dict[str, str]) -> Case:
        folder = base / name

        def after(sample: Sample, _: Any) -> dict[str, Any]:
            counts = sync_counts(sample)
            if counts["added"] + 2 != files:
                raise MeasurementFailed(f"{name} wrote {counts['added']}, expected {files - 2}")
            if name not in checked:
                checked[name] = targetstate.same_content(folder, blob)
            return {**counts, "same_bytes_as_reference": checked[name]}

        return Case(
            name,
            lambda: ctx.sync_command(store, f"file://{folder}"),
            env=env,
            before=lambda: targetstate.reset(folder),
            after=after,
        )

    def onboard(name: str, env: dict[str, str]) -> Case:
        def before() -> dict:
            return targetstate.snapshot(ref)

        def after(sample: Sample, state: dict) -> dict[str, Any]:
            effect = targetstate.onboarding_effect(ref, state, reference, ONBOARDED_ID)
            targetstate.undo(ref, state, reference)
            if effect["other_customers_touched"]:
                raise MeasurementFailed(f"{name} changed other customers' DAGs: {effect}")
            return {**sync_counts(sample), **effect}

        return Case(
            name,
            lambda: ctx.sync_command(onboard_store, f"file://{ref}"),
            env=env,
            before=before,
            after=after,
        )

    cases = [
        full("full", {}),
        full("full_unverified", SKIP),
        onboard("onboard", {}),
        onboard("onboard_unverified", SKIP),
    ]
    ctx.say(f"verify N={n}: {rounds} rounds of {', '.join(c.name for c in cases)}")
    samples = run_rounds(
        [[c] for c in cases],
        rounds,
        env=ctx.env,
        cwd=ctx.work,
        log_dir=ctx.logs / f"verify{n}",
        warmup=False,  # the reference sync warmed every cache
        say=ctx.say,
    )
    for name in ("full", "full_unverified"):
        targetstate.reset(base / name)
    return {"n": n, "files": files - 2, "warm": warm.wall, "samples": samples}


def render(meta: dict[str, Any], result: dict[str, Any]) -> str:
    s, n, files = result["samples"], result["n"], result["files"]
    rows = [
        ("full", f"full sync of {n:,} customers ({files:,} files), verified"),
        ("full_unverified", "the same, without verification"),
        ("onboard", "onboarding one district (+3 files), verified"),
        ("onboard_unverified", "the same, without verification"),
    ]
    lines = [
        f"{SECTION}, N={n:,}",
        "",
        f"Run by `{meta['command']}` on {meta['date']} ({meta['minutes']:.1f} min); code: "
        f"{meta['code']}. Rounds: {meta['rounds']} (reduced from the usual 5: each verified "
        f"full sync takes minutes); 1-min load average {meta['load_start']:.2f} at the "
        f"start, {meta['load_end']:.2f} at the end (a shared machine). Every figure is the "
        "median [min, max] over the rounds, each run a fresh process; the ratios are taken "
        "within each round. The peer without verification is the same code with "
        "`_FLEET_SKIP_VERIFY=1` (benchmarks only).",
        "",
        "| case | wall s | CPU s | peak RSS MB (process tree) |",
        "|---|---|---|---|",
    ]
    for case, label in rows:
        lines.append(
            f"| {label} | {_f(stat(s, case))} | {_f(stat(s, case, lambda x: x.cpu))} "
            f"| {_f(stat(s, case, rss), 0)} |"
        )
    per_file = paired(s, "full", "full_unverified", lambda x: x.cpu, lambda a, b: (a - b) / files)
    lines += [
        "",
        "| ratio, verified ÷ unverified | wall | CPU |",
        "|---|---|---|",
        f"| full sync, N={n:,} | {_f(paired(s, 'full', 'full_unverified'))}x "
        f"| {_f(paired(s, 'full', 'full_unverified', lambda x: x.cpu))}x |",
        f"| onboarding one district | {_f(paired(s, 'onboard', 'onboard_unverified'))}x "
        f"| {_f(paired(s, 'onboard', 'onboard_unverified', lambda x: x.cpu))}x |",
        "",
        f"Verification costs {_f(per_file and _scaled(per_file, 1000), 1)} ms of CPU per "
        "written file (all processes; the DagBag import, the serialization, the temporary "
        "files and the interpreters' start), and a sync that writes anything pays one "
        "Airflow import (~3 s) per building process. A no-op sync writes nothing, so it "
        "verifies nothing and imports no Airflow (tests/test_verify.py, "
        "tests/test_operator_cache.py).",
        "",
    ]
    return "\n".join(lines)


def _scaled(stat_: Any, k: float) -> Any:
    from bench.measure import Stat

    return Stat(stat_.median * k, stat_.low * k, stat_.high * k, stat_.n)


def _f(value: Any, digits: int = 2) -> str:
    return value.fmt(digits) if value else "-"


def write_section(out: Path, section: str) -> None:
    """Replace the section with the same heading in `out` (up to the next `## `
    heading), or append it."""
    text = out.read_text() if out.exists() else "# Benchmark results\n"
    heading = section.splitlines()[0]
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    out.write_text(text.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.verification")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    frozen = freeze.active()
    if frozen is None:  # measure a copy of the code (bench/freeze.py), as bench.run does
        code = freeze.freeze(REPO, WORK)
        env = {**os.environ, freeze.FROZEN_ENV: str(code)}
        env["DAGFLEET_BENCH_CODE_DESCRIPTION"] = freeze.describe(REPO, code)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), env.get("PYTHONPATH")) if p)
        os.chdir(WORK)
        argv = [sys.executable, "-m", "bench.verification", *sys.argv[1:], "--out", str(out)]
        os.execve(sys.executable, argv, env)
    ctx = Context()
    load_start = os.getloadavg()[0]
    started = time.monotonic()
    result = run(ctx, args.n, args.rounds)
    meta = {
        "command": "uv run --group bench python -m bench.verification "
        f"--n {args.n} --rounds {args.rounds}",
        "date": report.now(),
        "minutes": (time.monotonic() - started) / 60,
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
        "rounds": args.rounds,
        "code": os.environ.get("DAGFLEET_BENCH_CODE_DESCRIPTION", str(frozen)),
    }
    raw = {"meta": meta, "n": result["n"], "samples": [s.__dict__ for s in result["samples"]]}
    (ctx.work / f"verify-results-N{args.n}.json").write_text(json.dumps(raw, indent=1, default=str))
    write_section(out, render(meta, result))
    ctx.say(f"wrote {SECTION!r}, N={args.n:,} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
