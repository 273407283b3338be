"""Targets: where the fleet's files are published (a local folder, or a GCS prefix).

A target is a flat namespace of objects under one root, addressed by relative
'/'-separated paths. It only stores bytes; what the fleet owns, what changes and in
which order is decided by `composer.plan.changes` and `composer.publish.apply`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from composer.errors import TargetUrlError


@dataclass(frozen=True)
class ObjectState:
    md5: str  # hex digest of the content
    generation: int | None = None  # GCS object generation; None where there is none


class Target(Protocol):
    url: str

    def list_objects(self) -> dict[str, ObjectState]:
        """Every object under the root, in one listing. Raises TargetError."""
        ...

    def read(self, path: str) -> bytes | None:
        """An object's content, or None when it does not exist."""
        ...

    def write(self, path: str, data: bytes, expected: ObjectState | None) -> ObjectState:
        """Replace the object atomically and return its new state. `expected` is what
        the plan saw there (None: nothing), so a target with preconditions can refuse
        a concurrent change with TargetError."""
        ...

    def delete(self, path: str, expected: ObjectState | None) -> None:
        """Remove the object; a missing object is not an error."""
        ...

    def lock(
        self,
        wait: float,
        *,
        on_wait: Callable[[str], None] | None = None,
    ) -> contextlib.AbstractContextManager[None]:
        """Keep other runs from publishing here meanwhile (re-entrant); after `wait`
        seconds, TargetError naming the holder. A no-op where preconditions do the job."""
        ...


def open_target(url: str) -> Target:
    if url.startswith("file://"):
        from composer.targets.local import LocalTarget

        return LocalTarget(url)
    if url.startswith("gs://"):
        from composer.targets.gcs import GcsTarget

        return GcsTarget(url)
    raise TargetUrlError(
        f"unsupported target URL {url!r}: use file:///path/dags or gs://bucket/prefix"
    )
