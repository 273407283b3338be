"""One measurement = one fresh process, timed from outside; rounds of them, interleaved.

Wall time runs from spawn to reap; CPU time and peak RSS come from the child's rusage
(`os.wait4`: CPU includes its reaped worker processes), taken by a small spawner
process (see `Spawner`). Peak memory is the larger of the child's own peak and the
peak of its whole process tree summed (sampled every 25 ms from /proc), so a sync that
builds in worker processes is charged for all of them at once. A probe may also print one `PROBE_RESULT {json}` line with in-process
figures. Every round runs every case once, in an order rotated by one each round, so
slow drift of a shared machine lands on every case alike; ratios are taken between
cases of the same round, then summarised (median, min, max).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROBE_PREFIX = "PROBE_RESULT "


@dataclass
class Sample:
    case: str
    round: int  # -1: warm-up, discarded
    wall: float  # seconds, spawn to reap
    cpu: float  # seconds, user + system of the child
    rss_mb: float  # peak resident set size of the child, with its worker processes summed
    rc: int
    probe: dict[str, Any] = field(default_factory=dict)  # the child's own figures
    extra: dict[str, Any] = field(default_factory=dict)  # what the case's checks found
    stdout: str = ""


class MeasurementFailed(RuntimeError):
    pass


SPAWNER_SOURCE = r"""
import json, os, sys, time
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

def tree_rss_kib(root):
    # The resident memory of root and every descendant alive now (from /proc/*/stat).
    parent, rss = {}, {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as handle:
                    fields = handle.read().rpartition(")")[2].split()
            except OSError:
                continue
            parent[int(name)], rss[int(name)] = int(fields[1]), int(fields[21]) * PAGE_KIB
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(p for p, pp in parent.items() if pp == pid)
    return total

for line in sys.stdin:
    req = json.loads(line)
    out = os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(req["cwd"])
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(err, 2)
            os.execve(req["cmd"][0], req["cmd"], req["env"])
        finally:
            os._exit(127)
    tree_peak = 0
    while True:  # sample the process tree until the child is reaped
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        tree_peak = max(tree_peak, tree_rss_kib(pid))
        time.sleep(0.025)
    wall = time.perf_counter() - started
    for fd in (out, err, null):
        os.close(fd)
    print(json.dumps({
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "maxrss_kib": usage.ru_maxrss,
        "tree_rss_kib": tree_peak,
        "rc": os.waitstatus_to_exitcode(status),
    }), flush=True)
"""


class Spawner:
    """Starts every measured process from a small, long-lived helper process.

    Linux counts the memory of the process that forks a child into the child's peak
    RSS (`ru_maxrss` keeps the high-water mark of the mm the child execs from), so a
    harness holding a 30,000-file fleet in memory would add its own few hundred MB to
    every measurement. The helper stays at ~10 MB, which is below any Python process.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-c", SPAWNER_SOURCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, cmd: Sequence[str], env: dict[str, str], cwd: Path, out: Path, err: Path) -> dict:
        assert self.proc.stdin and self.proc.stdout
        executable = shutil.which(cmd[0]) or cmd[0]
        request = {
            "cmd": [executable, *cmd[1:]],
            "env": env,
            "cwd": str(cwd),
            "out": str(out),
            "err": str(err),
        }
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise MeasurementFailed("the spawner process died")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


_spawner: Spawner | None = None


def spawner() -> Spawner:
    """The helper, started on first use (call early, while the harness is small)."""
    global _spawner
    if _spawner is None:
        _spawner = Spawner()
    return _spawner


def run_process(
    name: str, cmd: Sequence[str], env: dict[str, str], cwd: Path, log_dir: Path
) -> Sample:
    """Run `cmd` in a fresh process and measure it (stdout/stderr go to files, never pipes,
    so a chatty child cannot block)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    result = spawner().run(cmd, env, cwd, out_path, err_path)
    stdout = out_path.read_text(errors="replace")
    probe: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith(PROBE_PREFIX):
            probe = json.loads(line[len(PROBE_PREFIX) :])
    return Sample(
        case=name,
        round=0,
        wall=result["wall"],
        cpu=result["cpu"],
        rss_mb=max(result["maxrss_kib"], result.get("tree_rss_kib", 0)) / 1024,
        rc=result["rc"],
        probe=probe,
        stdout=stdout[-2000:],
    )


@dataclass
class Case:
    """One thing to measure. `before` runs untimed and returns a state for `after`,
    which checks the outcome (raise to fail the run) and returns extra figures."""

    name: str
    command: Callable[[], Sequence[str]]
    env: dict[str, str] = field(default_factory=dict)
    before: Callable[[], Any] | None = None
    after: Callable[[Sample, Any], dict[str, Any] | None] | None = None
    expect_rc: int = 0


def rotated(groups: Sequence[Sequence[Case]], round_no: int) -> list[Case]:
    """Groups in an order rotated by the round number; a group's cases stay together
    (for cases that depend on the one before, e.g. a no-op publish after an upload)."""
    k = len(groups)
    shift = round_no % k if k else 0
    return [case for group in [*groups[shift:], *groups[:shift]] for case in group]


def run_rounds(
    groups: Sequence[Sequence[Case]],
    rounds: int,
    *,
    env: dict[str, str],
    cwd: Path,
    log_dir: Path,
    warmup: bool = True,
    say: Callable[[str], None] = print,
) -> list[Sample]:
    """Every case once per round, rotated; round -1 (warm-up) is run and discarded."""
    samples: list[Sample] = []
    for round_no in range(-1 if warmup else 0, rounds):
        for case in rotated(groups, max(round_no, 0)):
            state = case.before() if case.before else None
            os.sync()  # untimed: no case pays for the previous one's dirty pages
            sample = run_process(
                f"{case.name}.r{round_no}", case.command(), {**env, **case.env}, cwd, log_dir
            )
            sample.case, sample.round = case.name, round_no
            if sample.rc != case.expect_rc:
                err = (log_dir / f"{case.name}.r{round_no}.err").read_text(errors="replace")
                raise MeasurementFailed(
                    f"{case.name} (round {round_no}) exited {sample.rc}: {sample.stdout[-500:]} {err[-1500:]}"
                )
            if case.after:
                sample.extra = case.after(sample, state) or {}
            say(
                f"  {'warm-up' if round_no < 0 else f'round {round_no + 1}/{rounds}'} "
                f"{case.name}: {sample.wall:.2f}s wall, {sample.rss_mb:.0f} MB"
                + (
                    f", in-process {sample.probe['t_main']:.3f}s"
                    if "t_main" in sample.probe
                    else ""
                )
            )
            if round_no >= 0:
                samples.append(sample)
    return samples


# -- summaries ----------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat | None:
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), len(values))

    def fmt(self, digits: int = 2, unit: str = "") -> str:
        f = f"{{:.{digits}f}}"
        return f"{f.format(self.median)}{unit} [{f.format(self.low)}, {f.format(self.high)}]"


Metric = Callable[[Sample], float | None]


def wall(s: Sample) -> float:
    return s.wall


def rss(s: Sample) -> float:
    return s.rss_mb


def in_process(s: Sample) -> float | None:
    """The probe's own timing of its main work (imports excluded)."""
    return s.probe.get("t_main")


def stat(samples: Sequence[Sample], case: str, metric: Metric = wall) -> Stat | None:
    values = [v for s in samples if s.case == case and (v := metric(s)) is not None]
    return Stat.of(values)


def paired(
    samples: Sequence[Sample],
    a: str,
    b: str,
    metric: Metric = wall,
    op: Callable[[float, float], float] = lambda x, y: x / y,
) -> Stat | None:
    """op(a, b) per round (default a ÷ b), summarised."""
    by_round: dict[int, dict[str, float]] = {}
    for s in samples:
        value = metric(s)
        if s.case in (a, b) and value is not None:
            by_round.setdefault(s.round, {})[s.case] = value
    values = [op(r[a], r[b]) for r in by_round.values() if a in r and b in r and r[b]]
    return Stat.of(values)


def probe_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.probe", *args]
