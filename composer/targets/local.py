"""A local folder as a target: for development, tests, and a mounted DAG folder."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path

from composer.errors import TargetError
from composer.targets import ObjectState

TMP_PREFIX = ".dagfleet-tmp-"


class LocalTarget:
    def __init__(self, url: str) -> None:
        self.url = url
        raw = url.removeprefix("file://")
        self.root = Path(raw).expanduser().absolute()
        self._made: set[str] = set()  # folders known to exist (writes skip the mkdir)

    def _path(self, rel: str) -> Path:
        """Lexically checked (no symlink resolution per file: 30,000 writes would lstat
        every component): a relative path of plain names stays inside the root."""
        parts = rel.split("/")
        if rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
            raise TargetError(f"{rel!r} is outside the target {self.url}")
        return self.root.joinpath(*parts)

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
        dest = str(self._path(path))
        folder, name = os.path.split(dest)
        # Unique per thread (writers run in parallel); not a .py name, so the DAG
        # processor never parses a half-written file; a crash leaves only TMP_PREFIX
        # files, which the next listing removes.
        tmp = os.path.join(folder, f"{TMP_PREFIX}{name}.{os.getpid()}-{threading.get_ident()}")
        try:
            if folder not in self._made:
                os.makedirs(folder, exist_ok=True)
                self._made.add(folder)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                with os.fdopen(fd, "wb") as handle:
                    os.fchmod(fd, 0o644)  # whatever the umask: the scheduler must read it
                    handle.write(data)
                os.replace(tmp, dest)  # atomic: readers see the old file or the new one
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
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
                self._made.discard(str(parent))
            except OSError:  # not empty, or already removed by another delete
                break
            parent = parent.parent
