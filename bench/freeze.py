"""Measure one version of the code: a copy of composer/ and templates/ taken at the start.

The tree is shared and changes while a run takes half an hour; measuring the live
files would mix versions between rounds (and dagfleet's own inputs digest, which covers
its code, would turn a no-op sync into a full rebuild mid-run). `bench.run` copies
composer/ and templates/ to bench/work/code/<digest>/ and re-executes itself from
bench/work with that copy first on PYTHONPATH, so the harness and every measured
process import the copy, and the generated DAG files' `composer.callbacks` with them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

FROZEN_ENV = "DAGFLEET_BENCH_CODE"
PARTS = ("composer", "templates")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def digest(root: Path) -> str:
    """A digest of composer/ and templates/ under root, as they are on disk now."""
    h = hashlib.sha256()
    for part in PARTS:
        for path in sorted((root / part).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def freeze(repo: Path, work: Path) -> Path:
    """The copy for the code as it is now (made once per digest; retried if the tree
    changed while it was copied)."""
    for _ in range(5):
        before = digest(repo)
        dest = work / "code" / before
        if dest.is_dir():
            return dest
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for part in PARTS:
            shutil.copytree(repo / part, tmp / part, ignore=_IGNORE)
        if digest(tmp) == before == digest(repo):
            tmp.rename(dest)
            return dest
        shutil.rmtree(tmp, ignore_errors=True)
    raise RuntimeError("composer/ kept changing while it was being copied; try again")


def describe(repo: Path, frozen: Path) -> str:
    """The commit the copy was taken from and what differed from it (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", *PARTS],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return f"copy {frozen.name} (no git)"
    changed = sorted(line[3:] for line in status.splitlines() if line.strip())
    base = f"composer/ and templates/ as of commit {head}"
    if changed:
        base += f" plus uncommitted changes to {', '.join(changed)}"
    return f"{base}, copied at the start (digest {frozen.name})"


def active() -> Path | None:
    value = os.environ.get(FROZEN_ENV)
    return Path(value) if value else None
