"""Publish: apply a plan to a target, in an order that survives a crash anywhere.

1. The manifest first lists every file about to be written (old and new), so a file
   that lands before a crash is already owned and the next run simply converges.
2. Changed and added files are written in parallel, each atomically.
3. Removed files are deleted.
4. The final manifest is written; `.airflowignore` keeps Airflow off the manifest.
An unchanged fleet writes nothing at all. All of it happens under the target's lock
(a local folder's; on GCS the generation preconditions stand in for it), after checking
that the manifest is still the one the plan was made from: a run planned before another
run published stops instead of writing a manifest that forgets that run's files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass
from typing import Protocol

from composer.errors import PruneRefused, TargetError
from composer.plan.changes import AIRFLOWIGNORE, IGNORE_LINES, MANIFEST, Manifest, Plan, prune_limit
from composer.render.layout import PARTS_DIR
from composer.targets import ObjectState, Target

DEFAULT_JOBS = 16
MAX_JOBS = 64  # the GCS client's connection pool (composer.targets.gcs.POOL_SIZE)
DEFAULT_LOCK_WAIT = 60.0  # seconds a run waits for another one publishing to the target


class FileToWrite(Protocol):
    """A RenderedFile, or a file kept compressed until it is written (PackedFile)."""

    path: str

    @property
    def content(self) -> bytes: ...


@dataclass
class ApplyResult:
    written: int = 0
    deleted: int = 0


class Progress:
    """A one-line progress counter on a terminal; silent elsewhere."""

    def __init__(self, total: int, label: str, stream=None) -> None:
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stderr
        self.enabled = total >= 50 and self.stream.isatty()

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.enabled and (self.done == self.total or self.done % 25 == 0):
            width = 30
            filled = width * self.done // max(self.total, 1)
            self.stream.write(
                f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
            )
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()


def apply_plan(
    plan: Plan,
    target: Target,
    objects: dict[str, ObjectState],
    manifest_before: Manifest,
    render: Callable[[set[str]], Iterable[FileToWrite]],
    *,
    jobs: int = DEFAULT_JOBS,
    force_prune: bool = False,
    lock_wait: float = DEFAULT_LOCK_WAIT,
) -> ApplyResult:
    """Write what the plan says. `render(paths)` gives the files to write."""
    if plan.prune_refused and not force_prune:
        raise PruneRefused(refusal(plan))
    if not 1 <= jobs <= MAX_JOBS:
        raise ValueError(f"jobs must be between 1 and {MAX_JOBS}, not {jobs}")
    with target.lock(lock_wait):
        return _apply_locked(plan, target, objects, manifest_before, render, jobs)


def refusal(plan: Plan) -> str:
    """The one line that says why a plan's removals are refused."""
    return (
        f"refusing to remove {len(plan.removed_dags) - plan.moved} of {plan.owned_before} owned DAGs "
        f"(more than {prune_limit(plan.owned_before)}): check the store, then run with "
        "--force-prune if the removal is intended"
    )


def _apply_locked(
    plan: Plan,
    target: Target,
    objects: dict[str, ObjectState],
    manifest_before: Manifest,
    render: Callable[[set[str]], Iterable[FileToWrite]],
    jobs: int,
) -> ApplyResult:
    result = ApplyResult()
    if not plan.has_changes and not plan.manifest_changed:
        _ensure_airflowignore(target, objects)
        return result
    manifest_state = objects.get(MANIFEST)
    _check_manifest(target, manifest_state)
    if plan.added:
        # New files are owned before they exist; digests stay as they were, so nothing
        # about them is trusted until the final manifest.
        intent = dataclasses.replace(
            manifest_before, files={**manifest_before.files, **dict.fromkeys(plan.added, "")}
        )
        manifest_state = _write_manifest(target, intent, manifest_state)
    _ensure_airflowignore(target, objects)

    writes = set(plan.writes)
    progress = Progress(len(writes), "writing")
    # The customers' modules before the shard files that load them, removals last: a
    # shard file never names a module that is not there yet.
    modules = {p for p in writes if p.startswith(f"{PARTS_DIR}/")}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for batch in (modules, writes - modules):
            pending = set()
            for rendered in render(batch) if batch else ():
                if rendered.path in batch:
                    pending.add(pool.submit(_write, target, rendered, objects.get(rendered.path)))
                    if len(pending) >= jobs * 4:  # bounded: never the whole fleet in memory
                        pending = _drain(pending, progress, result, block_until=jobs * 2)
            _drain(pending, progress, result, block_until=0)
        # Fewer only when a file failed its final compile check: its customer is reported
        # as invalid by the caller; the previous version of the file stays as it was.
        deletes = [pool.submit(target.delete, path, objects.get(path)) for path in plan.removed]
        for future in as_completed(deletes):
            future.result()
            result.deleted += 1
    if plan.manifest_changed or plan.added:
        _write_manifest(target, plan.manifest, manifest_state)
    return result


def _check_manifest(target: Target, listed: ObjectState | None) -> None:
    """Stop before writing anything when another run published since this one listed
    the target: its plan no longer knows every owned file."""
    current = target.read(MANIFEST)
    now = None if current is None else hashlib.md5(current, usedforsecurity=False).hexdigest()
    if now != (listed.md5 if listed else None):
        raise TargetError(
            f"target {target.url}: cannot publish {MANIFEST}: another run changed it since "
            "this run listed it; nothing was written: run the sync again"
        )


def _drain(pending: set, progress: Progress, result: ApplyResult, block_until: int) -> set:
    while len(pending) > block_until:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            future.result()  # re-raises the first TargetError
            result.written += 1
            progress.step()
    return pending


def _write(target: Target, rendered: FileToWrite, state: ObjectState | None) -> ObjectState:
    # `content` may decompress: done here, in the writer thread, since zlib releases the
    # GIL and the main thread would wait for it back after every file.
    return target.write(rendered.path, rendered.content, state)


def _write_manifest(target: Target, manifest: Manifest, state: ObjectState | None) -> ObjectState:
    return target.write(MANIFEST, manifest.to_bytes(), state)


def _ensure_airflowignore(target: Target, objects: dict[str, ObjectState]) -> None:
    """Add our lines (the manifest, the report) to .airflowignore, keeping whatever else
    is in it."""
    current = target.read(AIRFLOWIGNORE) if AIRFLOWIGNORE in objects else None
    lines = (current or b"").decode().splitlines()
    missing = [line for line in IGNORE_LINES if line not in lines]
    if not missing:
        return
    comment = "# dagfleet's list of owned files and its fleet report"
    text = "\n".join([*lines, comment, *missing]) + "\n"
    target.write(AIRFLOWIGNORE, text.encode(), objects.get(AIRFLOWIGNORE))
