"""The one benchmark command: builds synthetic fleets, measures, writes bench/RESULTS.md.

    uv run --group bench python -m bench.run            # full run (~45-55 min on 2 cores)
    uv run --group bench python -m bench.run --quick    # smoke run (N=100, 1 round, ~3 min)

Options: --parts generation,parse,publish (default all), --rounds R (every section),
--out FILE (default bench/RESULTS.md; --quick writes bench/work/RESULTS.quick.md).
Generated fleets, logs and raw samples (results.json) go to bench/work/ (gitignored).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import freeze, generation, parsing, publishing, report
from bench.context import REPO, WORK, Context

PARTS = ("generation", "parse", "publish")
DESCRIPTION_ENV = "DAGFLEET_BENCH_CODE_DESCRIPTION"
ARGS_ENV = "_BENCH_ARGS"


@dataclass
class ParseFleet:
    n: int
    peers: tuple[str, ...]
    all_dags: bool  # also parse the whole generated fleet (main + cron DAGs)
    rounds: int
    warmup: bool  # else the DAG files' bytecode is written up front


@dataclass
class Plan:
    generation: dict[int, int]  # N -> rounds
    parse_fleet: list[ParseFleet]
    single_sizes: list[int]
    single_rounds: int  # the cheap single-DAG cases: a few ms each, so many rounds
    single_loop_rounds: int  # the loop file without the filter: builds every DAG
    publish: tuple[int, int] | None  # N, rounds
    verify_n: int
    parts: set[str] = field(default_factory=lambda: set(PARTS))

    def describe(self) -> str:
        bits = []
        if "generation" in self.parts:
            bits += [f"generation N={n:,}: {r}" for n, r in self.generation.items()]
        if "parse" in self.parts:
            bits += [
                f"full-fleet parse N={p.n:,}: {p.rounds}"
                + (" after a discarded warm-up round" if p.warmup else "")
                for p in self.parse_fleet
            ]
            bits.append(
                f"single-DAG parse: {self.single_rounds} (the unfiltered loop: {self.single_loop_rounds})"
            )
        if "publish" in self.parts and self.publish:
            bits.append(f"publish N={self.publish[0]:,}: {self.publish[1]}")
        return "; ".join(bits)


FULL = Plan(
    generation={1000: 5, 10000: 5},
    parse_fleet=[
        ParseFleet(1000, ("ours", "hand", "loop", "dagfactory"), True, 5, True),
        ParseFleet(10000, ("ours", "hand", "loop"), False, 3, False),
    ],
    single_sizes=[1000, 10000],
    single_rounds=11,
    single_loop_rounds=3,
    publish=(200, 3),
    verify_n=1000,
)
QUICK = Plan(
    generation={100: 1},
    parse_fleet=[ParseFleet(100, ("ours", "hand", "loop", "dagfactory"), True, 1, False)],
    single_sizes=[100],
    single_rounds=1,
    single_loop_rounds=1,
    publish=(100, 1),
    verify_n=100,
)


def _with_rounds(plan: Plan, rounds: int) -> Plan:
    return dataclasses.replace(
        plan,
        generation={n: rounds for n in plan.generation},
        parse_fleet=[dataclasses.replace(p, rounds=rounds) for p in plan.parse_fleet],
        single_rounds=rounds,
        single_loop_rounds=rounds,
        publish=(plan.publish[0], rounds) if plan.publish else None,
    )


class Runner:
    def __init__(self, ctx: Context, plan: Plan) -> None:
        self.ctx, self.plan = ctx, plan
        self.results: dict[str, Any] = {}
        self.refs: dict[int, Path] = {}
        self.peers: dict[int, dict[str, Path]] = {}
        self.generation_cases: set[str] | None = None  # None: every case

    def reference(self, n: int) -> Path:
        """The generated fleet of N (from the generation part, or synced now)."""
        if n not in self.refs:
            self.refs[n], _, _ = generation.reference_output(self.ctx, n)
        return self.refs[n]

    def peer_folders(self, n: int) -> dict[str, Path]:
        if n not in self.peers:
            self.peers[n] = parsing.prepare(self.ctx, n, self.reference(n))
        return self.peers[n]

    def run(self) -> None:
        plan, ctx = self.plan, self.ctx
        sizes = sorted(
            set(plan.generation)
            | {p.n for p in plan.parse_fleet}
            | ({plan.publish[0]} if plan.publish else set())
        )
        for n in sizes:
            if "generation" in plan.parts and n in plan.generation:
                result = generation.run(ctx, n, plan.generation[n], self.generation_cases)
                self.refs[n] = ctx.work / "gen" / f"N{n}" / "ref"
                self.results[f"generation_{n:06d}"] = result
            fleet = next((p for p in plan.parse_fleet if p.n == n), None)
            if "parse" in plan.parts and fleet:
                self.parse_fleet(fleet)
            if "publish" in plan.parts and plan.publish and plan.publish[0] == n:
                self.publish(*plan.publish)
        if "parse" in plan.parts and plan.single_sizes:
            cheap, loops = [], []
            for n in plan.single_sizes:
                probes = parsing.Probes(ctx, n, self.peer_folders(n))
                probes.precompile()
                for case in probes.single():
                    (loops if case.name.startswith("one_loop_unfiltered") else cheap).append(case)
            first = plan.single_sizes[0]
            cheap.append(parsing.Probes(ctx, first, self.peer_folders(first)).imports())
            samples = parsing.run(ctx, "parse single", cheap, plan.single_rounds, warmup=False)
            samples += parsing.run(
                ctx, "parse single unfiltered loop", loops, plan.single_loop_rounds, warmup=False
            )
            self.results["parse_single"] = {
                "sizes": plan.single_sizes,
                "dag_ids": {
                    str(n): f"{parsing.probe_customer(n)}__main" for n in plan.single_sizes
                },
                "samples": samples,
            }

    def parse_fleet(self, fleet: ParseFleet) -> None:
        ctx, n = self.ctx, fleet.n
        folders = self.peer_folders(n)
        if n == self.plan.verify_n:
            self.results["verify"] = {"n": n, **parsing.verify(ctx, folders)}
            if not self.results["verify"]["ok"]:
                raise SystemExit(
                    "the peers do not build the same DAGs: "
                    + "\n".join(self.results["verify"]["output"])
                )
        probes = parsing.Probes(ctx, n, folders)
        cases = [probes.fleet(peer) for peer in fleet.peers]
        if fleet.all_dags:
            cases.append(probes.fleet_all_dags(parsing.copy_generated(ctx, n, self.reference(n))))
        cases.append(probes.imports())
        if not fleet.warmup:
            probes.precompile()
        samples = parsing.run(ctx, f"parse fleet {n}", cases, fleet.rounds, warmup=fleet.warmup)
        self.results[f"parse_fleet_{n:06d}"] = {
            "n": n,
            "fleet_peers": list(fleet.peers),
            "all_dags": fleet.all_dags,
            "samples": samples,
        }

    def publish(self, n: int, rounds: int) -> None:
        if not publishing.available(REPO):
            self.results["publish"] = {"not_run": "composer/targets/gcs.py does not exist yet"}
            return
        try:
            self.results["publish"] = publishing.run(self.ctx, n, rounds, self.reference(n))
        except Exception as exc:  # the GCS target is new: report, keep parts 1 and 2
            self.ctx.say(f"publish failed: {exc}")
            self.results["publish"] = {"not_run": f"the publish run failed: {str(exc)[:300]}"}


def _load() -> float:
    return os.getloadavg()[0]


def _without_out(args: list[str]) -> list[str]:
    """The arguments less any `--out FILE` / `--out=FILE` (the re-executed run gets it resolved)."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            kept.append(arg)
    return kept


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: N=100, 1 round")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ",".join(PARTS))
    ap.add_argument("--rounds", type=int, help="rounds for every section")
    ap.add_argument("--out", type=Path, help="where to write the results markdown")
    ap.add_argument(
        "--generation-cases",
        help="only these cases of the generation part, comma-separated (default: all; "
        "e.g. full,floor,noop,onboard,imports for the targets without the verified syncs)",
    )
    ap.add_argument(
        "--generation-n",
        help="fleet sizes of the generation part, comma-separated (default: 1000,10000)",
    )
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.generation_n:
        sizes = [int(x) for x in args.generation_n.split(",")]
        rounds = max(plan.generation.values())
        plan = dataclasses.replace(plan, generation=dict.fromkeys(sizes, rounds))
    if args.rounds:
        plan = _with_rounds(plan, args.rounds)
    plan.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = plan.parts - set(PARTS)
    if unknown:
        ap.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    out = (
        Path(args.out).resolve()
        if args.out
        else (
            REPO / "bench" / "work" / "RESULTS.quick.md"
            if args.quick
            else REPO / "bench" / "RESULTS.md"
        )
    )
    frozen = freeze.active()
    if frozen is None:  # measure a copy of the code, not the live tree: re-execute on it
        code = freeze.freeze(REPO, WORK)
        env = {
            **os.environ,
            freeze.FROZEN_ENV: str(code),
            DESCRIPTION_ENV: freeze.describe(REPO, code),
        }
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), env.get("PYTHONPATH")) if p)
        os.chdir(WORK)  # not the repo root, whose composer/ would come first on sys.path
        # --out resolved here: the re-executed run starts in WORK, not in the caller's folder
        env[ARGS_ENV] = json.dumps(sys.argv[1:])  # the command as typed, for the report
        argv = [sys.executable, "-m", "bench.run", *_without_out(sys.argv[1:]), "--out", str(out)]
        os.execve(sys.executable, argv, env)
    ctx = Context()
    load_start = _load()
    code = os.environ.get(DESCRIPTION_ENV, str(frozen))
    ctx.say(f"benchmark plan: {plan.describe()}; parts: {', '.join(sorted(plan.parts))}")
    runner = Runner(ctx, plan)
    if args.generation_cases:
        runner.generation_cases = {c.strip() for c in args.generation_cases.split(",") if c.strip()}
    started = time.monotonic()
    runner.run()
    meta = {
        "command": " ".join(
            [
                "uv run --group bench python -m bench.run",
                *json.loads(os.environ.get(ARGS_ENV, "[]")),
            ]
        ),
        "date": report.now(),
        "minutes": (time.monotonic() - started) / 60,
        "load_start": load_start,
        "load_end": _load(),
        "rounds_text": plan.describe(),
        "machine": report.machine(),
        "code": code,
        "live_tree_changed": freeze.digest(REPO) != frozen.name,
    }
    raw = {
        "meta": meta,
        "results": {
            k: {**v, "samples": [dataclasses.asdict(s) for s in v.get("samples", [])]}
            for k, v in runner.results.items()
        },
    }
    (ctx.work / ("results.quick.json" if args.quick else "results.json")).write_text(
        json.dumps(raw, indent=1, default=str)
    )
    out.write_text(report.render(meta, runner.results))
    ctx.say(f"wrote {out} ({meta['minutes']:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
