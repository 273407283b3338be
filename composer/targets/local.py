"""A local folder as a target: for development, tests, and a mounted DAG folder.

Safe against a crash and against a second run: every file is written to a temp file
of its own (unique name, never `.py`), fsynced, renamed into place and its folder
fsynced; a run publishes only while it holds the folder's lock (`composer.targets.lock`),
and every write and delete checks that the file is still what the listing saw (the
local counterpart of GCS's generation preconditions).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

from composer.errors import TargetError
from composer.targets import ObjectState
from composer.targets.lock import LOCK_FILE, folder_lock, holds, pid_alive

TMP_PREFIX = ".dagfleet-tmp-"
_serial = itertools.count()  # with the pid and a random token: names never collide


def temp_name(name: str) -> str:
    """`.dagfleet-tmp-<name>.<pid>-<token>`: hidden, not `.py`, and says whose it is."""
    return f"{TMP_PREFIX}{name}.{os.getpid()}-{secrets.token_hex(3)}{next(_serial):x}"


def temp_writer_pid(name: str) -> int | None:
    """The pid in a temp file's name (None when the name holds none)."""
    tail = name.rpartition(".")[2]
    head = tail.partition("-")[0]
    return int(head) if head.isdigit() else None


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

    @contextlib.contextmanager
    def lock(
        self,
        wait: float,
        *,
        on_wait: Callable[[str], None] | None = None,
    ) -> Iterator[None]:
        """Hold the folder's lock (re-entrant); TargetError naming the holder after `wait`."""
        with folder_lock(self.root, self.url, wait=wait, on_wait=on_wait):
            yield

    def list_objects(self) -> dict[str, ObjectState]:
        """Every file but temp files and the lock file. Temp files are removed only by a
        listing under the lock (a sync's), and only those whose writer process is gone
        (a crash's leftovers): a plan, which takes no lock, never touches a sync's files,
        and every writer of this folder holds the lock."""
        if not self.root.exists():
            return {}
        if not self.root.is_dir():
            raise TargetError(f"target {self.url}: not a folder")
        sweep = holds(self.root)
        found: dict[str, ObjectState] = {}
        try:
            for dirpath, _dirnames, filenames in os.walk(self.root):
                for name in filenames:
                    full = os.path.join(dirpath, name)
                    if name.startswith(TMP_PREFIX):
                        if sweep and not _writer_alive(name):
                            with contextlib.suppress(FileNotFoundError):
                                os.unlink(full)
                        continue
                    rel = os.path.relpath(full, self.root).replace(os.sep, "/")
                    if rel == LOCK_FILE:
                        continue
                    with open(full, "rb") as handle:
                        found[rel] = ObjectState(_md5(handle.read()))
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
        wanted = _md5(data)
        try:
            if self._unchanged_since_listing(path, dest, expected, wanted):
                return ObjectState(wanted)  # already holds these bytes
            try:
                self._replace(dest, data)
            except FileNotFoundError:  # its folder was just removed (an emptied customer)
                self._made.discard(os.path.dirname(dest))
                self._replace(dest, data)
        except OSError as exc:
            raise TargetError(f"target {self.url}: cannot write {path}: {exc}") from exc
        return ObjectState(wanted)

    def delete(self, path: str, expected: ObjectState | None) -> None:
        dest = self._path(path)
        try:
            if self._unchanged_since_listing(path, str(dest), expected, None):
                return
            dest.unlink(missing_ok=True)
            _fsync_dir(str(dest.parent))
        except FileNotFoundError:
            return
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

    # -- internals -------------------------------------------------------------------

    def _replace(self, dest: str, data: bytes) -> None:
        """Temp file, fsync, rename over `dest`, fsync the folder: after a crash the
        name holds the old bytes or the new ones, never a torn file."""
        folder, name = os.path.split(dest)
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)
        tmp = os.path.join(folder, temp_name(name))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(fd, 0o644)  # whatever the umask: the scheduler must read it
                handle.write(data)
                handle.flush()
                os.fsync(fd)
            os.replace(tmp, dest)  # atomic: readers see the old file or the new one
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # only its writer removes a temp file
            raise
        _fsync_dir(folder)

    def _unchanged_since_listing(
        self, path: str, dest: str, expected: ObjectState | None, wanted: str | None
    ) -> bool:
        """Raise TargetError when the file is no longer what the listing saw (None:
        absent). True when it already holds the wanted bytes (our own earlier write)."""
        try:
            with open(dest, "rb") as handle:
                current: str | None = _md5(handle.read())
        except FileNotFoundError:
            current = None
        if current == (expected.md5 if expected else None):
            return wanted is not None and current == wanted
        if wanted is not None and current == wanted:
            return True
        if wanted is None and current is None:
            return True  # deleting: already gone
        seen = f"md5 {expected.md5}" if expected else "absent"
        raise TargetError(
            f"target {self.url}: cannot {'write' if wanted else 'delete'} {path}: it changed "
            f"since this run listed it ({seen}); left it as it is: run the sync again"
        )


def _writer_alive(name: str) -> bool:
    pid = temp_writer_pid(name)
    return pid is not None and pid_alive(pid)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
