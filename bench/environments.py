"""Section 10's benchmark: one fleet over several Composer environments.

    uv run --group bench python -m bench.environments [--n 10000] [--rounds 2]

Measures, on the synthetic fleet of bench/fleetgen.py (local folders as targets, like
the generation benchmark): a full sync of N customers over 4 environments against a
full sync of the same N into one; the balance (largest environment / mean, in customers
and in DAGs, equal capacities); the customers a 5th environment moves (against the ideal
1/5, and how many between old environments: must be 0), read from the real `fleet plan`;
and the moves an onboarding causes (must be 0). Prints a Markdown section for
bench/RESULTS.md (and writes it to bench/work/RESULTS.environments.md).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.context import REPO, Context
from bench.fleetgen import fleet_snapshot, write_store
from composer.plan.environments import Environment, Member, assign

CAPACITY = 30000  # equal weights; big enough that no environment is refused


def templates_with(ctx: Context, root: Path, n_envs: int) -> Path:
    folder = root / f"templates-{n_envs}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ctx.templates, folder)
    with (folder / "fleet.yaml").open("a") as fh:
        fh.write("\nenvironments:\n")
        for i in range(n_envs):
            fh.write(f"  env-{i}: {{target: 'file://{root}/env-{i}', capacity: {CAPACITY}}}\n")
    return folder


def fleet(ctx: Context, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "composer.cli.main", *args],
        env=ctx.env,
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=REPO,
    )
    elapsed = time.perf_counter() - started
    if run.returncode not in (0, 2):
        raise RuntimeError(f"fleet {' '.join(args[:1])} failed: {run.stderr[-2000:]}")
    return elapsed, run.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    ctx = Context()
    root = ctx.work / "environments"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    store = write_store(root / "fleet.db", args.n)
    four, five = templates_with(ctx, root, 4), templates_with(ctx, root, 5)

    single = root / "templates-single"  # as shipped: no environments, the --target
    shutil.copytree(ctx.templates, single)
    ctx.say("warm-up (operator cache, bytecode)")
    fleet(
        ctx, "sync", "--store", store, "--target", f"file://{root}/warm", "--templates", str(single)
    )
    one_env, four_env = [], []
    for r in range(args.rounds):
        for folder in root.glob("env-*"):
            shutil.rmtree(folder)
        shutil.rmtree(root / "single", ignore_errors=True)
        # Interleaved, so machine noise hits both alike.
        ctx.say(f"round {r + 1}: full sync into one environment")
        one_env.append(
            fleet(
                ctx,
                "sync",
                "--store",
                store,
                "--target",
                f"file://{root}/single",
                "--templates",
                str(single),
            )[0]
        )
        ctx.say(f"round {r + 1}: full sync over four environments")
        four_env.append(fleet(ctx, "sync", "--store", store, "--templates", str(four))[0])

    ctx.say("adding a fifth environment: fleet plan")
    _, plan_out = fleet(ctx, "plan", "--store", store, "--templates", str(five))
    moves = [
        line for line in plan_out.splitlines() if line.startswith("customer ") and "->" in line
    ]
    between_old = [line for line in moves if not line.endswith("-> env-4")]

    ctx.say("onboarding one customer: fleet plan over four environments")
    onboard_store = write_store(root / "onboard.db", args.n, onboard=True)
    _, onboard_out = fleet(ctx, "plan", "--store", onboard_store, "--templates", str(four))
    onboard_moves = [line for line in onboard_out.splitlines() if "->" in line]
    onboard_adds = [line for line in onboard_out.splitlines() if line.startswith("+ ")]

    snapshot = fleet_snapshot(args.n)
    members = [Member(c.customer_id, c.parent_customer_id) for c in snapshot.customers]
    envs4 = [Environment(f"env-{i}", f"file:///env-{i}", CAPACITY) for i in range(4)]
    placed = assign(members, envs4).environment
    customers = Counter(placed.values())
    dags: Counter[str] = Counter()
    for i in range(4):
        dags[f"env-{i}"] = sum(1 for _ in (root / f"env-{i}").rglob("*.py"))
    mean_c, mean_d = args.n / 4, sum(dags.values()) / 4

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} s [{min(values):.1f}, {max(values):.1f}]"

    ratio = statistics.median(four_env) / statistics.median(one_env)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    ideal = args.n / 5
    lines = [
        f"## 4. Environments (section 10): {time.strftime('%Y-%m-%d')}, commit {commit}",
        "",
        f"`python -m bench.environments --n {args.n} --rounds {args.rounds}`: the synthetic "
        f"fleet of {args.n:,} customers, local folders as targets, {args.rounds} interleaved "
        "rounds of fresh `fleet sync` processes after one warm-up sync (median [min, max]).",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| full sync, one environment | {med(one_env)} | |",
        f"| full sync, four environments | {med(four_env)} ({ratio:.2f}x one) | about 1x: one build, four writers |",
        f"| balance, customers (largest / mean) | {max(customers.values()) / mean_c:.3f} "
        f"({', '.join(f'{k} {v:,}' for k, v in sorted(customers.items()))}) | <= 1.1 |",
        f"| balance, DAGs (largest / mean) | {max(dags.values()) / mean_d:.3f} "
        f"({', '.join(f'{k} {v:,}' for k, v in sorted(dags.items()))}) | <= 1.1 |",
        f"| customers moved by a 5th environment (`fleet plan`) | {len(moves):,} = "
        f"{len(moves) / ideal:.2f}x the ideal {ideal:,.0f}; {len(between_old)} between old ones "
        f"| within 1.2x; 0 |",
        f"| customers moved by onboarding one | {len(onboard_moves)} ({len(onboard_adds)} files added) | 0 |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    (ctx.work / "RESULTS.environments.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
