"""What a local target holds, and what a sync changed in it (for the no-op checks)."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

from composer.render.layout import split
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


def packed(blob: Path) -> dict[str, bytes]:
    """The files `pack` wrote, by relative path."""
    with blob.open("rb") as handle:
        return dict(pickle.load(handle))


def onboarding_effect(
    root: Path, before: dict[str, FileState], reference: dict[str, bytes], customer_id: str
) -> dict[str, Any]:
    """What a sync that added `customer_id` to the reference fleet in `root` changed: the
    files it wrote, and the other customers whose DAG code changed (their parts of the
    shard files, composer/render/layout.py; must be none)."""
    changed = changes(before, snapshot(root))
    others: set[str] = set()
    for path in changed:
        if not path.endswith(".py"):
            continue
        old = split(reference.get(path, b""))
        new = split((root / path).read_bytes()) if (root / path).is_file() else {}
        others |= {
            c for c in old.keys() | new.keys() if c != customer_id and old.get(c) != new.get(c)
        }
    return {
        "files_touched": len(changed),
        "touched": changed[:5],
        "other_customers_touched": len(others),
    }


def undo(root: Path, before: dict[str, FileState], reference: dict[str, bytes]) -> None:
    """Put root back to the reference files (what a sync since `before` changed)."""
    for path in changes(before, snapshot(root)):
        if path in reference:
            tmp = root / (path + ".bench-tmp")
            tmp.write_bytes(reference[path])
            os.replace(tmp, root / path)
        else:
            (root / path).unlink(missing_ok=True)


def reset(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
