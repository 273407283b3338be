"""What a local target holds, and what a sync changed in it (for the no-op checks)."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

from composer.plan import MANIFEST
from composer.targets.lock import LOCK_FILE

FileState = tuple[int, int, int]  # inode, mtime_ns, size


def snapshot(root: Path) -> dict[str, FileState]:
    """Every file under root (caches and the empty lock file excluded) with its inode,
    mtime and size: a file rewritten in place or replaced by rename changes at least one."""
    found: dict[str, FileState] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name == LOCK_FILE and dirpath == str(root):
                continue
            full = os.path.join(dirpath, name)
            st = os.stat(full)
            found[os.path.relpath(full, root)] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return found


def changes(before: dict[str, FileState], after: dict[str, FileState]) -> list[str]:
    """Paths added, removed or rewritten between two snapshots."""
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


def pack(root: Path, blob: Path) -> int:
    """Every file under root as (relative path, bytes), in one pickle; the file count."""
    files = []
    for rel in sorted(snapshot(root)):
        files.append((rel, (root / rel).read_bytes()))
    with blob.open("wb") as handle:
        pickle.dump(files, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return len(files)


def same_content(root: Path, blob: Path) -> bool:
    """True when root holds exactly the packed files, byte for byte."""
    with blob.open("rb") as handle:
        files = dict(pickle.load(handle))
    on_disk = snapshot(root)
    return set(on_disk) == set(files) and all((root / p).read_bytes() == files[p] for p in files)


def restore_after_onboarding(root: Path, customer_id: str, manifest: bytes) -> None:
    """Undo an onboarding sync: drop the new customer's folder, put the manifest back."""
    shutil.rmtree(root / customer_id)
    tmp = root / (MANIFEST + ".bench-tmp")
    tmp.write_bytes(manifest)
    os.replace(tmp, root / MANIFEST)


def reset(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
