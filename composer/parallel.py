"""Building many customers on every core: composing, rendering, compiling and verifying
is CPU-bound work, one customer independent of the next.

Workers are fresh interpreters, not forks (the Spanner client's gRPC threads do not
survive a fork), and each makes its own FleetBuilder from the same snapshot, so a
customer is built by exactly the code that builds it in-process. Files come back
compiled, verified (composer/verify/verifier.py: each building process imports the files it
would write with its own verification interpreter) and zlib-compressed, in customer
order. Small batches (an onboarding, a few
changed customers) are built in-process: starting workers would cost more than it saves.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
import sys
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from composer.build import FleetBuilder
from composer.compose.callables import callable_arguments
from composer.compose.dagspec import RenderedFile
from composer.compose.operators import UnknownOperator
from composer.errors import BuildFailed, ConfigError
from composer.model.templates import TemplateError
from composer.render import layout
from composer.verify.pool import shared_verifier
from composer.verify.verifier import Verifier, verify_builds, verify_python

# Per customer, the files the target holds (path -> md5): what building verifies against.
Existing = Mapping[str, Mapping[str, str]]

log = logging.getLogger("dagfleet")

CHUNK = 50  # customers per task sent to a worker
MIN_PER_WORKER = 150  # fewer customers than this per worker: build in-process
# Verifying costs ~10 ms of CPU per file (bench/RESULTS.md), ~5x building: workers pay
# for their start far sooner when what they build is also imported.
MIN_PER_WORKER_VERIFYING = 40


def default_jobs() -> int:
    """$FLEET_BUILD_JOBS, else the cores this process may run on."""
    configured = os.environ.get("FLEET_BUILD_JOBS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass
class PackedFile:
    path: str
    customer_id: str
    md5: str
    packed: bytes  # zlib-compressed content, already compiled once
    part: bool = False  # the customer's DAGs as a file of their own (RenderedFile.part)
    # For a part, what it is published as, made here in the building process so that the
    # main process (one, serial) only routes bytes: the customer's module
    # (fleet_parts/<id>.py) zlib-compressed, its md5, and the Airflow modules its builders
    # import (which the shard file that loads it imports at the top).
    module: bytes | None = None
    module_md5: str = ""
    airflow: tuple[str, ...] = ()

    @property
    def content(self) -> bytes:
        return zlib.decompress(self.packed)


@dataclass
class PackedBuild:
    customer_id: str
    files: list[PackedFile] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)
    dag_ids: list[str] = field(default_factory=list)


def pack(builder: FleetBuilder, customer_id: str) -> PackedBuild:
    return pack_chunk(builder, [customer_id], None, None)[0]


def pack_chunk(
    builder: FleetBuilder,
    customer_ids: list[str],
    existing: Existing | None,
    verifier: Verifier | None,
) -> list[PackedBuild]:
    """Build customers; with `existing` and a verifier, import what they would write
    first (one DagBag pass for the chunk). The same function in-process and in workers."""
    builds = [builder.build(cid) for cid in customer_ids]
    if existing is not None and verifier is not None:
        verify_builds(builder, builds, existing, verifier)
    return [
        PackedBuild(b.customer_id, [_packed(f) for f in b.files], b.errors, b.dag_ids)
        for b in builds
    ]


def _packed(file: RenderedFile) -> PackedFile:
    packed = PackedFile(
        file.path, file.customer_id, file.md5, zlib.compress(file.content, 1), file.part
    )
    if file.part:
        text = layout.split(file.content)[file.customer_id]
        module = layout.part_module(file.customer_id, text).encode()
        packed.module = zlib.compress(module, 1)
        packed.module_md5 = hashlib.md5(module, usedforsecurity=False).hexdigest()
        packed.airflow = layout.airflow_modules(text)
    return packed


class _Worker:
    """One `python -m composer.build_worker` process, spoken to over a pipe pair: a
    fresh interpreter that imports only composer (never the caller's __main__, as
    multiprocessing's spawn would) and may be started from a daemonic process."""

    def __init__(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "composer.build_worker", str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.send = Connection(to_child_w, readable=False)
        self.receive = Connection(from_child_r, writable=False)

    def submit(self, customer_ids: list[str], existing: Existing | None) -> None:
        try:
            self.send.send((customer_ids, existing))
        except OSError as exc:
            raise WorkerFailed(f"build worker exited ({self.process.poll()}): {exc}") from exc

    def result(self) -> list[PackedBuild]:
        try:
            kind, payload = self.receive.recv()
        except (EOFError, OSError) as exc:
            raise WorkerFailed(f"build worker exited ({self.process.poll()}): {exc}") from exc
        if kind == "error":
            raise WorkerFailed(f"build worker failed: {payload}")
        return payload

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send.close()  # the worker exits at end of input
        self.receive.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class WorkerFailed(BuildFailed):
    def __init__(self, message: str) -> None:
        super().__init__(f"{message}; run again, or with --build-jobs 1 to build in one process")


class BuildRunner:
    """Builds customers for a FleetBuilder, in worker processes when there are many."""

    def __init__(self, builder: FleetBuilder, jobs: int | None = None) -> None:
        self.builder = builder
        self.jobs = max(1, jobs if jobs is not None else default_jobs())
        self._workers: list[_Worker] = []
        self._verify_python: str | None = None
        self._verifier: Verifier | None = None

    def builds(
        self, customer_ids: list[str], verify_against: Existing | None = None
    ) -> Iterator[PackedBuild]:
        """Each customer's build, in the order given. With `verify_against` (per
        customer, the target's files), every file that differs from the target is
        imported by Airflow before it is handed out (composer/verify/verifier.py)."""
        if verify_against is not None and customer_ids and self._verify_python is None:
            self._verify_python = verify_python(self.builder.settings.airflow_target) or ""
        existing = verify_against if self._verify_python else None
        chunks = [customer_ids[i : i + CHUNK] for i in range(0, len(customer_ids), CHUNK)]
        per_worker = MIN_PER_WORKER if existing is None else MIN_PER_WORKER_VERIFYING
        workers = self._start(min(self.jobs, len(customer_ids) // per_worker), customer_ids)
        if not workers:
            verifier = self._local_verifier() if existing is not None else None
            for chunk in chunks:
                for build in pack_chunk(self.builder, chunk, existing, verifier):
                    yield self._record(build)
            return
        sent = 0
        for received in range(len(chunks)):
            # Chunk i goes to worker i % n, which answers in order: two chunks ahead
            # per worker keep every core busy without queueing the whole fleet.
            while sent < len(chunks) and sent < received + 2 * len(workers):
                chunk = chunks[sent]
                mine = None if existing is None else {c: existing.get(c, {}) for c in chunk}
                workers[sent % len(workers)].submit(chunk, mine)
                sent += 1
            for build in workers[received % len(workers)].result():
                yield self._record(build)

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._workers = []
        self._verifier = None  # kept by composer/verify/pool.py for the next sync

    def _local_verifier(self) -> Verifier:
        if self._verifier is None:
            target = self.builder.settings.airflow_target
            self._verifier = shared_verifier(target, self._verify_python or sys.executable)
        return self._verifier

    def __enter__(self) -> BuildRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, build: PackedBuild) -> PackedBuild:
        if build.errors:  # as FleetBuilder.build does in-process
            self.builder.invalid.add(build.customer_id)
        return build

    def _start(self, count: int, customer_ids: list[str]) -> list[_Worker]:
        if count < 2 or self._workers:
            return self._workers
        self._warm_operator_cache(customer_ids)
        try:
            for _ in range(count):
                self._workers.append(_Worker())
            for worker in self._workers:  # all started first: they import in parallel
                worker.send.send(
                    (
                        self.builder.snapshot,
                        self.builder.templates_dir,
                        self._verify_python,
                        self.builder.composer.start_after,
                        self.builder.shards,
                    )
                )
            log.info("building %d customers in %d worker processes", len(customer_ids), count)
        except OSError as exc:
            log.warning("building in one process: cannot start build workers (%s)", exc)
            self.close()
        return self._workers

    def _warm_operator_cache(self, customer_ids: list[str]) -> None:
        """Check every operator, callback and legacy file once here, so a cold cache
        is filled by this process instead of every worker importing Airflow."""
        composer = self.builder.composer
        tasks = list(composer.settings.setup_tasks.values())
        callables = set(composer.settings.imports)
        for name in composer.templates.names():
            try:
                template = composer.templates.get(name)
            except TemplateError:
                continue
            tasks.extend(template.tasks.values())
            callables.update(template.imports)
        operators = {t.get("operator") for t in tasks if isinstance(t, dict)}
        operators.update(composer.settings.operators)  # what overrides may add
        for operator in sorted(o for o in operators if isinstance(o, str)):
            with contextlib.suppress(UnknownOperator):  # reported per customer by composition
                composer.operators.missing_arguments(operator, set())
                callable_arguments(composer.operators, operator)
                composer.typed.warm(operator)
        composer.typed.warm(None)  # BaseOperator's, for default_args
        for dotted in sorted(callables):
            with contextlib.suppress(UnknownOperator):
                composer.operators.check_callable(dotted)
        composer.operators.value_problems({"trigger_rule": "all_success"})
        for cid in customer_ids:
            customer = self.builder.fleet.customers[cid]
            if customer.legacy_dag_file:
                self.builder.legacy_file(customer)
