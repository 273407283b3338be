"""The lock that keeps two runs from publishing to one local folder at the same time.

An advisory `flock` on `<root>/.dagfleet-lock`: the kernel drops it when its process
dies, however it dies, so a lock left by a killed run is taken over at once and there is
no stale-lock timeout to tune. The file stays empty and is never written or deleted (a
no-op sync changes nothing in the folder; deleting a flocked file would let two runs
lock two different files); who holds it is read from the kernel (/proc/locks) for the
line a waiting run prints. Re-entrant per thread, so the CLI can hold it across plan
and apply while `apply_plan` takes it again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from composer.errors import TargetError

LOCK_FILE = ".dagfleet-lock"
POLL_SECONDS = 0.1
log = logging.getLogger(__name__)

_held: dict[tuple[str, int], tuple[int, int]] = {}  # (lock path, thread) -> (fd, depth)
_held_guard = threading.Lock()


def holds(root: Path) -> bool:
    """Whether this thread holds the lock of the folder `root`."""
    with _held_guard:
        return (_lock_path(root), threading.get_ident()) in _held


def _lock_path(root: Path) -> str:
    """One key per folder, however the target URL spelled it (symlinks, `./`)."""
    return os.path.join(os.path.realpath(root), LOCK_FILE)


@contextlib.contextmanager
def folder_lock(
    root: Path,
    url: str,
    *,
    wait: float,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the folder's lock; wait up to `wait` seconds for another holder, then raise
    TargetError naming it."""
    path = _lock_path(root)
    key = (path, threading.get_ident())
    with _held_guard:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            _release(key)
        return
    fd = _acquire(root, path, url, wait, on_wait or log.warning)
    with _held_guard:
        _held[key] = (fd, 1)
    try:
        yield
    finally:
        _release(key)


def _release(key: tuple[str, int]) -> None:
    with _held_guard:
        fd, depth = _held[key]
        if depth > 1:
            _held[key] = (fd, depth - 1)
            return
        del _held[key]
    os.close(fd)  # drops the flock; the file (and its last holder's note) stays


def _acquire(
    root: Path,
    path: str,
    url: str,
    wait: float,
    on_wait: Callable[[str], None],
) -> int:
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise TargetError(f"target {url}: cannot open the lock file {path}: {exc}") from exc
    deadline = time.monotonic() + max(0.0, wait)
    said = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _holder(fd)
            if time.monotonic() >= deadline:
                os.close(fd)
                raise TargetError(
                    f"target {url}: locked by {holder}; waited {wait:g}s: another run is "
                    "publishing, try again when it is done (--lock-wait waits longer)"
                ) from None
            if not said:
                on_wait(f"target {url} is locked by {holder}: waiting up to {wait:g}s")
                said = True
            time.sleep(POLL_SECONDS)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise TargetError(
                    f"target {url}: the filesystem does not support file locks ({exc.strerror}); "
                    "publish to a local disk, or to the bucket with a gs:// target"
                ) from exc
            raise TargetError(f"target {url}: cannot lock {path}: {exc}") from exc
    return fd


def _holder(fd: int) -> str:
    """Who holds the flock on this file, from the kernel's table of locks (Linux)."""
    try:
        inode = os.fstat(fd).st_ino
        with open("/proc/locks") as table:
            for line in table:
                fields = line.split()
                if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
                    continue  # a waiter, or not a flock
                pid, device = fields[4], fields[5]
                if device.rsplit(":", 1)[-1] == str(inode) and pid.isdigit():
                    return f"pid {pid} on {socket.gethostname()} ({_command(int(pid))})"
    except OSError:
        pass
    return "another process"


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return "command unknown"
    text = " ".join(a.decode(errors="replace") for a in argv if a)
    return " ".join(text.split())[:160]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
