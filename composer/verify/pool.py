"""Verification interpreters kept for the life of the process.

Starting one costs an Airflow import (~3-5 s of CPU). A process that syncs more than
once (a test session, a long-lived tool calling the pipeline) reuses the interpreter
that verified last time, as long as everything that decides its answers is the same:
the target's Airflow major, the interpreter, the `composer` package as deploy ships it,
and the AIRFLOW_* settings it inherits. One that died, or failed a request, is replaced.
"""

from __future__ import annotations

import atexit
import hashlib
import os
from collections.abc import Sequence

from composer import PACKAGE_DIR
from composer.verify.verifier import Problem, Verifier, shipped_package_files


class _SharedVerifier(Verifier):
    def verify(self, files: Sequence[tuple[str, bytes]]) -> dict[str, Problem]:
        try:
            return super().verify(files)
        except BaseException:
            self.close()  # the next request starts a fresh interpreter
            raise

    def dead(self) -> bool:
        process = self._process
        return process is not None and process.poll() is not None


_POOL: dict[tuple[object, ...], _SharedVerifier] = {}


def shared_verifier(airflow_target: int, python: str) -> Verifier:
    """The process's verifier for this Airflow target and interpreter (started lazily)."""
    shipped = hashlib.sha256()
    for path, data in sorted(shipped_package_files(PACKAGE_DIR).items()):
        shipped.update(path.encode() + b"\0" + data)
    settings = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AIRFLOW")))
    key = (airflow_target, os.path.realpath(python), shipped.hexdigest(), settings)
    verifier = _POOL.get(key)
    if verifier is not None and verifier.dead():
        verifier.close()
        verifier = None
    if verifier is None:
        verifier = _POOL[key] = _SharedVerifier(airflow_target, python)
    return verifier


@atexit.register
def close_all() -> None:
    """Stop every kept interpreter (at exit, or when a caller wants them gone)."""
    for verifier in _POOL.values():
        verifier.close()
    _POOL.clear()
