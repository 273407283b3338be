"""A local folder as a target: for development, tests, and a mounted DAG folder."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from composer.errors import TargetError
from composer.targets import ObjectState

TMP_PREFIX = ".dagfleet-tmp-"


class LocalTarget:
    def __init__(self, url: str) -> None:
        self.url = url
        raw = url.removeprefix("file://")
        self.root = Path(raw).expanduser().absolute()

    def _path(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if self.root.resolve() not in path.parents:
            raise TargetError(f"{rel!r} is outside the target {self.url}")
        return path

    def list_objects(self) -> dict[str, ObjectState]:
        if not self.root.exists():
            return {}
        if not self.root.is_dir():
            raise TargetError(f"target {self.url}: not a folder")
        found: dict[str, ObjectState] = {}
        try:
            for dirpath, _dirnames, filenames in os.walk(self.root):
                for name in filenames:
                    full = os.path.join(dirpath, name)
                    if name.startswith(TMP_PREFIX):
                        os.unlink(full)  # left by a crash before its rename: never published
                        continue
                    rel = os.path.relpath(full, self.root).replace(os.sep, "/")
                    with open(full, "rb") as handle:
                        found[rel] = ObjectState(
                            hashlib.md5(handle.read(), usedforsecurity=False).hexdigest()
                        )
        except OSError as exc:
            raise TargetError(f"target {self.url}: cannot list: {exc}") from exc
        return found

    def read(self, path: str) -> bytes | None:
        try:
            return self._path(path).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TargetError(f"target {self.url}: cannot read {path}: {exc}") from exc

    def write(self, path: str, data: bytes, expected: ObjectState | None) -> ObjectState:
        dest = self._path(path)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.chmod(tmp, 0o644)
                os.replace(tmp, dest)  # atomic: readers see the old file or the new one
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise TargetError(f"target {self.url}: cannot write {path}: {exc}") from exc
        return ObjectState(hashlib.md5(data, usedforsecurity=False).hexdigest())

    def delete(self, path: str, expected: ObjectState | None) -> None:
        dest = self._path(path)
        try:
            dest.unlink(missing_ok=True)
        except OSError as exc:
            raise TargetError(f"target {self.url}: cannot delete {path}: {exc}") from exc
        parent = dest.parent
        while parent != self.root:  # drop folders left empty (deletes run in parallel)
            try:
                parent.rmdir()
            except OSError:  # not empty, or already removed by another delete
                break
            parent = parent.parent
