"""Part 3: publishing the fleet to GCS (gcp-storage-emulator on 127.0.0.1).

Per round, each case against a fresh in-memory emulator process (an empty bucket):
- sync_parallel: `fleet sync` of N customers to an empty gs:// prefix (default --jobs),
  then noop: the same sync again, nothing changed (same emulator);
- sync_serial: the same initial sync with `--jobs 1`;
- upload_parallel / upload_serial: the upload alone (no build, no plan): the packed
  files written through composer's GCS target with 16 threads / 1 thread;
- upload_*_latency: the same through a proxy that adds LATENCY_MS to every request,
  standing in for the network round trip every real GCS upload waits on (the bare
  emulator answers one request at a time in a few ms, which no client can overlap).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import targetstate
from bench.context import Context
from bench.fleetgen import write_store
from bench.gcs_server import EmulatorProcess
from bench.generation import sync_counts
from bench.measure import Case, MeasurementFailed, Sample, probe_command, run_process, run_rounds

BUCKET = "dagfleet-bench"
PREFIX = "dags"
LATENCY_MS = 50
JOBS = 16  # composer.publish.apply.DEFAULT_JOBS, the CLI's default


def available(repo: Path) -> bool:
    return (repo / "composer" / "targets" / "gcs.py").is_file()


class Emulators:
    """One fresh emulator per case; its STORAGE_EMULATOR_HOST goes into the case's env."""

    def __init__(self, ctx: Context, log: Path) -> None:
        self.ctx, self.log = ctx, log
        self.running: dict[str, EmulatorProcess] = {}
        self.envs: dict[str, dict[str, str]] = {}

    def env(self, key: str) -> dict[str, str]:
        return self.envs.setdefault(key, {})

    def fresh(self, key: str, latency_ms: float = 0) -> None:
        self.stop(key)
        self.running[key] = EmulatorProcess(BUCKET, self.ctx.env, self.log, latency_ms).start()
        self.env(key)["STORAGE_EMULATOR_HOST"] = self.running[key].host

    def stop(self, key: str) -> None:
        if key in self.running:
            self.running.pop(key).stop()

    def stop_all(self) -> None:
        for key in list(self.running):
            self.stop(key)


def run(ctx: Context, n: int, rounds: int, ref: Path) -> dict[str, Any]:
    """`ref`: the fleet of N synced to a local folder (its bytes are what `upload` sends)."""
    base = ctx.work / "publish" / f"N{n}"
    store = write_store(base / "fleet.db", n)
    blob = base / "reference.pickle"
    targetstate.pack(ref, blob)
    target = f"gs://{BUCKET}/{PREFIX}"
    emulators = Emulators(ctx, ctx.logs / f"publish{n}" / "emulator.log")

    def initial(key: str) -> Any:
        def check(sample: Sample, _: Any) -> dict[str, Any]:
            counts = sync_counts(sample)
            if key != "parallel":
                emulators.stop(key)
            if counts["added"] != 3 * n:
                raise MeasurementFailed(
                    f"{sample.case} uploaded {counts['added']} files, not {3 * n}"
                )
            return counts

        return check

    def check_noop(sample: Sample, _: Any) -> dict[str, Any]:
        counts = sync_counts(sample)
        emulators.stop("parallel")
        if counts["added"] or counts["changed"] or counts["removed"]:
            raise MeasurementFailed(f"no-op publish changed files: {counts}")
        return counts

    def upload_case(name: str, jobs: int, latency_ms: float) -> Case:
        def after(sample: Sample, _: Any) -> dict[str, Any]:
            emulators.stop(name)
            return {"files": sample.probe.get("files")}

        return Case(
            name,
            lambda: probe_command("upload", str(blob), target, "--jobs", str(jobs)),
            env=emulators.env(name),
            before=lambda: emulators.fresh(name, latency_ms),
            after=after,
        )

    groups = [
        [
            Case(
                "sync_parallel",
                lambda: ctx.sync_command(store, target),
                env=emulators.env("parallel"),
                before=lambda: emulators.fresh("parallel"),
                after=initial("parallel"),
            ),
            Case(
                "noop",
                lambda: ctx.sync_command(store, target),
                env=emulators.env("parallel"),
                after=check_noop,
            ),
        ],
        [
            Case(
                "sync_serial",
                lambda: ctx.sync_command(store, target, "--jobs", "1"),
                env=emulators.env("serial"),
                before=lambda: emulators.fresh("serial"),
                after=initial("serial"),
            )
        ],
        [upload_case("upload_parallel", JOBS, 0)],
        [upload_case("upload_serial", 1, 0)],
        [upload_case("upload_parallel_latency", JOBS, LATENCY_MS)],
        [upload_case("upload_serial_latency", 1, LATENCY_MS)],
    ]
    try:
        warm_store = write_store(base / "warmup.db", 10)
        emulators.fresh("warmup")
        ctx.say("publish: warm-up sync of 10 customers (writes the GCS client's bytecode caches)")
        warm = run_process(
            "publish.warmup",
            ctx.sync_command(warm_store, target),
            {**ctx.env, **emulators.env("warmup")},
            ctx.work,
            ctx.logs / f"publish{n}",
        )
        emulators.stop("warmup")
        if warm.rc != 0:
            raise MeasurementFailed(f"warm-up publish exited {warm.rc}: {warm.stdout[-300:]}")
        ctx.say(f"publish N={n}: {rounds} rounds of {', '.join(c.name for g in groups for c in g)}")
        samples = run_rounds(
            groups,
            rounds,
            env=ctx.env,
            cwd=ctx.work,
            log_dir=ctx.logs / f"publish{n}",
            warmup=False,
            say=ctx.say,
        )
    finally:
        emulators.stop_all()
    return {"n": n, "files": 3 * n, "latency_ms": LATENCY_MS, "jobs": JOBS, "samples": samples}
