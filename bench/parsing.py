"""Part 2: what Airflow pays to parse the fleet, against the same DAGs written other ways.

Every case is a fresh process that pre-imports Airflow and the operator modules, then
times only the DagBag (bench/probe.py), so imports are measured apart:
- fleet_<peer>: the DAG processor's view, DagBag over the peer's whole folder (N DAGs);
- one_<peer>: a worker's view before it runs a task of one DAG: one file, safe mode
  off, parsing context set to the DAG (for the loop and dag-factory peers, the one
  file that holds every DAG); one_loop_unfiltered is the loop file with no parsing
  context, i.e. a loop without the get_parsing_context() filter.
"""

from __future__ import annotations

import compileall
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import peers
from bench.context import Context, template_operator_modules
from bench.fleetgen import PARENT_EVERY, customer_id, fleet_snapshot
from bench.measure import Case, probe_command, run_rounds

CONTEXT_VAR = "_AIRFLOW_PARSING_CONTEXT_DAG_ID"
SAMPLE_FILES = 40
SUMMARY = re.compile(r"(\w+: \d+ DAGs|   \S|OK$|DIFFERENT$)")  # bench.verify's own lines


def probe_customer(n: int) -> str:
    """A plain (non-parent, non-child) customer near the middle of the fleet."""
    i = n // 2
    while i % PARENT_EVERY <= 5 and i > 0:
        i -= 1
    return customer_id(i)


def prepare(ctx: Context, n: int, generated: Path) -> dict[str, Path]:
    """The four peers for the fleet of N, under <work>/parse/N<n>."""
    base = ctx.work / "parse" / f"N{n}"
    ctx.say(f"parse N={n}: composing the main DAG specs and writing the peers")
    specs = peers.main_specs(fleet_snapshot(n), ctx.templates)
    folders = peers.write_peers(base, specs)
    return folders


def verify(ctx: Context, folders: dict[str, Path]) -> dict[str, Any]:
    """bench/verify.py in its own process over the peers (they must build the same DAGs)."""
    root = next(iter(folders.values())).parent
    ctx.say(f"verifying the peers in {root}")
    done = subprocess.run(
        [sys.executable, "-m", "bench.verify", str(root)],
        env=ctx.env,
        cwd=ctx.work,  # not the repo root: composer/ must come from the measured copy
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stdout.splitlines() if SUMMARY.match(line)]
    return {"ok": done.returncode == 0, "output": lines}


class Probes:
    """The parse cases for the peers of one fleet size."""

    def __init__(self, ctx: Context, n: int, folders: dict[str, Path]) -> None:
        self.n, self.folders = n, folders
        modules = template_operator_modules(ctx.templates)
        self.flags = [arg for m in modules for arg in ("--import", m)]
        self.df_flags = [*self.flags, "--import", "dagfactory"]
        self.dag_id = f"{probe_customer(n)}__main"
        self.spec_path = f"{probe_customer(n)}/{self.dag_id}.py"

    def sample_files(self, peer: str, k: int = SAMPLE_FILES) -> list[str]:
        """k other plain customers' main DAG files, spread over the fleet (same offset in
        every block of 25, so the same mix of DAG shapes at every N)."""
        step = max(self.n // k, PARENT_EVERY)
        ids = [customer_id(i) for i in range(7, self.n, step)][:k]
        return [str(self.folders[peer] / c / f"{c}__main.py") for c in ids]

    def _case(
        self,
        name: str,
        path: Path,
        bundle: Path,
        expect: int,
        *,
        dagfactory: bool = False,
        single: bool = False,
        context: bool = False,
        also: list[str] | None = None,
    ) -> Case:
        args = ["parse", str(path), "--bundle", str(bundle), "--expect", str(expect)]
        args += self.df_flags if dagfactory else self.flags
        if single:
            args.append("--single")
        for other in also or []:
            args += ["--also", other]
        env = {CONTEXT_VAR: self.dag_id} if context else {}
        return Case(f"{name}@{self.n}", lambda: probe_command(*args), env=env)

    def fleet(self, peer: str) -> Case:
        """DagBag over the peer's whole folder, as the DAG processor scans it."""
        folder = self.folders[peer]
        return self._case(f"fleet_{peer}", folder, folder, self.n, dagfactory=peer == "dagfactory")

    def fleet_all_dags(self, generated: Path) -> Case:
        """DagBag over everything `fleet sync` wrote (main and cron DAGs: 3 per customer)."""
        return self._case("fleet_ours_all_dags", generated, generated, 3 * self.n)

    def single(self) -> list[Case]:
        """A worker's parse before a task of one DAG."""
        f = self.folders
        loop = f["loop"] / peers.LOOP_FILE
        loader = f["dagfactory"] / peers.DAGFACTORY_LOADER
        return [
            self._case(
                "one_ours",
                f["ours"] / self.spec_path,
                f["ours"],
                1,
                single=True,
                context=True,
                also=self.sample_files("ours"),
            ),
            self._case(
                "one_hand",
                f["hand"] / self.spec_path,
                f["hand"],
                1,
                single=True,
                context=True,
                also=self.sample_files("hand"),
            ),
            self._case("one_loop_filtered", loop, f["loop"], 1, single=True, context=True),
            self._case("one_loop_unfiltered", loop, f["loop"], self.n, single=True),
            self._case(
                "one_dagfactory_one_yaml",
                loader,
                f["dagfactory"],
                1,
                dagfactory=True,
                single=True,
                context=True,
            ),
        ]

    def imports(self) -> Case:
        """The parse import floor: Airflow's DagBag and the operator modules."""
        return Case(
            f"parse_imports@{self.n}",
            lambda: probe_command(
                "imports", "--import", "airflow.dag_processing.dagbag", *self.flags
            ),
        )

    def precompile(self) -> None:
        """Write the static peers' bytecode caches (what a warm-up round would do)."""
        for name in ("ours", "hand"):
            compileall.compile_dir(str(self.folders[name]), quiet=1, workers=1)


def run(ctx: Context, label: str, cases: list[Case], rounds: int, *, warmup: bool) -> list:
    ctx.say(f"{label}: {rounds} rounds of {', '.join(c.name for c in cases)}")
    return run_rounds(
        [[c] for c in cases],
        rounds,
        env=ctx.env,
        cwd=ctx.work,
        log_dir=ctx.logs / label.replace(" ", "_"),
        warmup=warmup,
        say=ctx.say,
    )


def copy_generated(ctx: Context, n: int, generated: Path) -> Path:
    """A copy of the whole generated fleet (main and cron DAGs), so parsing it writes its
    bytecode caches somewhere other than the generation benchmark's target."""
    dest = ctx.work / "parse" / f"N{n}" / "ours_all_dags"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(generated, dest)
    return dest
