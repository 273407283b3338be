"""Which Composer environment each customer belongs to. Pure: rows and settings in,
an assignment out.

Weighted rendezvous (highest random weight) hashing of the org tree's root id: every
environment scores the root, `capacity / -ln(u)` with `u` a uniform hash of (environment,
root), and the highest score wins. So a customer's environment depends only on its root
and the set of environments: onboarding or off-boarding a customer moves nobody else,
adding an environment moves only the trees that now score highest there (about
capacity_new / total of them), and removing one moves only its own trees. A parent and
all its descendants share the root, hence the environment, so a roll-up sees its
children's assets.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from composer.errors import ConfigError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# The one environment of a fleet.yaml without `environments:`: the --target.
DEFAULT_NAME = "default"


@dataclass(frozen=True)
class Environment:
    name: str
    target: str
    capacity: int | None = None  # DAGs; None = unbounded (the single --target environment)


@dataclass
class Assignment:
    """Every customer row's environment (inactive ones too, so a plan can say where an
    off-boarded customer's files were), plus the pins that could not be honoured."""

    environment: dict[str, str] = field(default_factory=dict)  # customer_id -> name
    root: dict[str, str] = field(default_factory=dict)  # customer_id -> its tree's root
    errors: list[ConfigError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def members(self, name: str) -> set[str]:
        return {c for c, env in self.environment.items() if env == name}


def score(environment: Environment, key: str) -> float:
    """The weighted rendezvous score of `key` on `environment` (higher wins)."""
    digest = hashlib.sha256(f"{environment.name}\x00{key}".encode()).digest()
    u = (int.from_bytes(digest[:8], "big") + 1) / (2**64 + 1)  # in (0, 1)
    return (environment.capacity or 1) / -math.log(u)


def rendezvous(key: str, environments: Iterable[Environment]) -> str:
    """The environment that scores `key` highest (ties: the smaller name). One with
    capacity 0 is draining: it wins nothing."""
    candidates = [e for e in environments if e.capacity != 0]
    return max(candidates, key=lambda e: (score(e, key), [-ord(ch) for ch in e.name])).name


def roots(parents: Mapping[str, str | None]) -> dict[str, str]:
    """Each customer's top-most ancestor among the rows (itself when it has none). A parent
    id with no row ends the climb; a cycle (an error elsewhere) roots at its smallest id."""
    found: dict[str, str] = {}
    for start in parents:
        chain, seen, node = [], set(), start
        while True:
            if node in found:
                root = found[node]
                break
            chain.append(node)
            seen.add(node)
            parent = parents.get(node)
            if parent is None or parent not in parents:
                root = node
                break
            if parent in seen:
                root = min(chain[chain.index(parent) :])
                break
            node = parent
        for member in chain:
            found[member] = root
    return found


@dataclass(frozen=True)
class Member:
    """What assignment needs of a customer row."""

    customer_id: str
    parent_customer_id: str | None = None
    environment: str | None = None  # the pin


def assign(members: Iterable[Member], environments: list[Environment]) -> Assignment:
    """Each customer's environment: its tree's pin, else rendezvous on its tree's root.

    A tree has one pin: the one nearest its root (ties: the smaller customer id); another
    member pinning elsewhere is overruled, with a warning, since a tree never splits. A pin
    naming no environment is an error for that customer (its files stay as they are)."""
    result = Assignment()
    rows = {m.customer_id: m for m in members}
    result.root = roots({cid: m.parent_customer_id for cid, m in rows.items()})
    names = {e.name for e in environments}
    depth = _depths(rows, result.root)
    pins: dict[str, tuple[int, str, str]] = {}  # root -> (depth, customer, environment)
    for cid, member in sorted(rows.items()):
        pin = member.environment
        if pin is None:
            continue
        if len(environments) == 1 and environments[0].name == DEFAULT_NAME:
            continue  # one environment: nothing to choose
        if pin not in names:
            result.errors.append(
                ConfigError(
                    cid,
                    None,
                    "environment",
                    f"{pin!r} is not an environment of fleet.yaml (one of: {', '.join(sorted(names))})",
                )
            )
            continue
        candidate = (depth[cid], cid, pin)
        root = result.root[cid]
        if root not in pins or candidate < pins[root]:
            pins[root] = candidate
    for cid, member in sorted(rows.items()):
        root = result.root[cid]
        pinned = pins.get(root)
        if pinned is not None:
            result.environment[cid] = pinned[2]
            if member.environment in names and member.environment != pinned[2]:
                result.warnings.append(
                    f"customer {cid}: pinned to {member.environment}, but its org tree "
                    f"(root {root}) is pinned to {pinned[2]} by {pinned[1]}: it stays with its tree"
                )
        else:
            result.environment[cid] = rendezvous(root, environments)
    return result


def _depths(rows: Mapping[str, Member], root: Mapping[str, str]) -> dict[str, int]:
    depth: dict[str, int] = {}
    for cid in rows:
        steps, node, seen = 0, cid, {cid}
        while node != root[cid]:
            parent = rows[node].parent_customer_id
            if parent is None or parent in seen or parent not in rows:
                break
            seen.add(parent)
            node, steps = parent, steps + 1
        depth[cid] = steps
    return depth
