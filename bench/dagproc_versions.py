"""The DAG processor over the same fleet written by two versions of the code.

    uv run --group bench python -m bench.dagproc_versions --before 6a4013b --n 300

Did a change to the code (e.g. issue 12's template features: `retry_delay` written as
`timedelta(seconds=...)`, ...) change what Airflow's own DAG processor pays to parse the
shipped fleet? The same store (N customers) is synced twice with the same shard count:
once by the code of this tree (AFTER, frozen as bench.dagproc does) and once by the
composer/ and templates/ of commit `--before` (BEFORE, `git archive` into
bench/work/code/rev-<sha>/, run with this venv and that copy first on PYTHONPATH, for the
sync and for the DAG processor parsing its files, which import `composer.callbacks`).
Then bench.dagproc's cases (first pass from a fresh seeded DB, then steady state) over
BEFORE's folder, AFTER's folder and the empty folder, interleaved, order rotated per
round; per DAG net of the floor; AFTER/BEFORE paired per round. Results:
bench/work/dagproc_versions/N<n>/ (results.json, RESULTS.md, rewritten every round).
"""

from __future__ import annotations

import argparse
import compileall
import copy
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import freeze
from bench.context import REPO, WORK, Context
from bench.dagproc import (
    DESCRIPTION_ENV,
    Processor,
    one_round,
    ratios,
    seed_db,
    stat,
    summarize,
    synced_fleet,
)
from bench.fleetgen import write_store
from bench.measure import Sample


def archived(rev: str) -> tuple[Path, str]:
    """composer/ and templates/ of `rev`, extracted once under bench/work/code/."""
    sha = subprocess.run(
        ["git", "rev-parse", rev], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = WORK / "code" / f"rev-{sha[:12]}"
    if not dest.is_dir():
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha, *freeze.PARTS], cwd=REPO, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
        tmp.rename(dest)
    return dest, sha[:12]


def version_ctx(ctx: Context, code: Path, cache: Path) -> Context:
    """ctx with `code` first on PYTHONPATH and its templates (its own signature cache)."""
    other = copy.copy(ctx)
    other.templates = code / "templates"
    rest = [p for p in ctx.env.get("PYTHONPATH", "").split(os.pathsep) if p]
    frozen = os.environ.get(freeze.FROZEN_ENV)
    rest = [p for p in rest if p != frozen]
    other.env = {
        **ctx.env,
        "PYTHONPATH": os.pathsep.join([str(code), *rest]),
        "FLEET_CACHE_DIR": str(cache),
    }
    return other


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.dagproc_versions")
    ap.add_argument("--before", default="6a4013b", help="the BEFORE commit")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shards", default="auto", help="fleet.yaml `shards:` for both versions")
    args = ap.parse_args(argv)
    if freeze.active() is None:  # AFTER = a copy of this tree's code, as bench.dagproc
        code = freeze.freeze(REPO, WORK)
        env = {**os.environ, freeze.FROZEN_ENV: str(code)}
        env[DESCRIPTION_ENV] = freeze.describe(REPO, code)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), env.get("PYTHONPATH")) if p)
        os.chdir(WORK)
        os.execve(
            sys.executable, [sys.executable, "-m", "bench.dagproc_versions", *sys.argv[1:]], env
        )
    ctx = Context()
    started, load_start = time.monotonic(), os.getloadavg()[0]
    base = ctx.work / "dagproc_versions" / f"N{args.n}"
    base.mkdir(parents=True, exist_ok=True)
    store = write_store(base / "fleet.db", args.n)
    before_code, before_sha = archived(args.before)
    after_code = freeze.active()
    assert after_code is not None
    versions = {
        "before": version_ctx(ctx, before_code, base / "cache_before"),
        "after": version_ctx(ctx, after_code, base / "cache_after"),
    }
    folders: dict[str, tuple[Path, int]] = {}
    for name, vctx in versions.items():
        ctx.say(f"fleet sync of N={args.n} by {name}'s code, shards: {args.shards}")
        folders[name] = synced_fleet(vctx, base / name, store, args.shards)  # type: ignore[arg-type]
    files = {name: len(list(f.rglob("*.py"))) for name, (f, _) in folders.items()}
    if folders["before"][1] != folders["after"][1]:
        raise SystemExit(f"DAG counts differ: {folders}")
    empty = base / "empty"
    empty.mkdir(exist_ok=True)
    folders["empty"] = (empty, 0)
    for folder, _ in folders.values():
        compileall.compile_dir(str(folder), quiet=1, workers=1)
    processor = Processor(ctx, base, seed_db(ctx, base))
    groups = []
    for name, (folder, count) in folders.items():
        cases = processor.cases(name, folder, count)
        if name in versions:  # its files import composer: that version's copy
            for case in cases:
                case.env["PYTHONPATH"] = versions[name].env["PYTHONPATH"]
        groups.append(cases)
    dags = {name: count for name, (_, count) in folders.items() if name != "empty"}
    meta = {
        "n": args.n,
        "shards": args.shards,
        "files": files,
        "before": before_sha,
        "after": os.environ.get(DESCRIPTION_ENV, "?"),
        "command": "uv run --group bench python -m bench.dagproc_versions "
        + " ".join(sys.argv[1:]),
        "load_start": load_start,
    }
    samples: list[Sample] = []
    for done in range(1, args.rounds + 1):
        samples += one_round(ctx, groups, done - 1, "dagproc_versions")
        meta["rounds"] = done
        meta["loads"] = [*meta.get("loads", []), os.getloadavg()[0]]
        meta["minutes"] = (time.monotonic() - started) / 60
        meta["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        summary = summarize(samples, dags, done)
        text = markdown(meta, summary)
        raw = {
            "meta": meta,
            "summary": summary,
            "samples": [dataclasses.asdict(s) for s in samples],
        }
        (base / "results.json").write_text(json.dumps(raw, indent=1, default=str))
        (base / "RESULTS.md").write_text(text)
        print(text, flush=True)
    return 0


def markdown(meta: dict, summary: dict) -> str:
    per_round = lambda xs: " / ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    out = [
        f"`{meta['command']}`, {meta['date']} ({meta['minutes']:.0f} min); BEFORE "
        f"{meta['before']}, AFTER {meta['after']}; N={meta['n']:,}, shards: {meta['shards']} "
        f"(files {meta['files']}); {meta['rounds']} rounds; 1-min load {meta['load_start']:.2f} "
        f"at the start, after each round {per_round(meta['loads'])}.",
        "",
        f"Empty folder (floor), per round: first {per_round(summary['floor'].values())} s, "
        f"steady {per_round(summary['floor_steady'].values())} s.",
        "",
        "| folder | DAGs | first wall s | first net ms/DAG | steady wall s | steady net ms/DAG |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in summary["peers"].items():
        out.append(
            f"| {name} | {row['dags']:,} | {per_round(row['first']['wall'])} | "
            f"{per_round(row['first']['ms_per_dag'])} | {per_round(row['steady']['wall'])} | "
            f"{per_round(row['steady']['ms_per_dag'])} |"
        )
    out += ["", "| AFTER ÷ BEFORE, per DAG net | per round | median [min, max] |", "|---|---|---|"]
    for kind in ("first", "steady"):
        r = ratios(summary, "after", "before", kind)
        out.append(f"| {kind} | {per_round(r)} | {stat(r)} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
