"""Model: the snapshot's raw rows turned into a typed, validated fleet.

Every row-level rule lives here (ids, timezones, crons, JSON, parents); a customer
that breaks one is set aside with a ConfigError and the rest of the fleet goes on.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from composer.errors import ConfigError, one_line
from composer.schedule import normalize_cron
from composer.store import CustomerRow, IntegrationRow, Snapshot

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
LEGACY_FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.py\Z")
# Integration ids dagfleet uses itself: `main` would be the cron DAG `<customer>__main`,
# `rollup` the roll-up DAG `<customer>__rollup`, `setup` the setup tasks.
RESERVED_INTEGRATION_IDS = frozenset({"main", "rollup", "setup"})
# Deeper JSON is refused: nothing real nests this far, and deeper values would reach
# Python's recursion limit in substitution or rendering and crash the whole run.
MAX_JSON_DEPTH = 16
# Names zoneinfo resolves that are not a place: host-dependent (`localtime`) or no zone.
_NOT_A_PLACE = frozenset({"localtime", "posixrules", "Factory"})


@dataclass(frozen=True)
class Integration:
    customer_id: str
    integration_id: str
    template: str
    schedule: str | None  # normalized cron, or None for the main DAG
    params: dict[str, Any]
    task_overrides: dict[str, Any] | None


@dataclass(frozen=True)
class Customer:
    customer_id: str
    name: str
    timezone: str
    parent_customer_id: str | None
    active: bool
    main_schedule: str | None  # normalized cron, or None for the fleet default
    legacy_dag_file: str | None
    params: dict[str, Any]
    integrations: tuple[Integration, ...]  # enabled ones, by integration_id


@dataclass
class Fleet:
    customers: dict[str, Customer] = field(default_factory=dict)  # valid ones, by id
    errors: list[ConfigError] = field(default_factory=list)
    invalid: set[str] = field(default_factory=set)  # ids with any error
    children: dict[str, list[str]] = field(default_factory=dict)
    active_ids: set[str] = field(default_factory=set)  # active rows, valid or not

    def active_descendants(self, customer_id: str) -> list[str]:
        """Active customers anywhere below this one, through inactive ones too, sorted."""
        found: list[str] = []
        stack = list(self.children.get(customer_id, []))
        seen = {customer_id}
        while stack:
            child = stack.pop()
            if child in seen:
                continue
            seen.add(child)
            if child in self.active_ids:
                found.append(child)
            stack.extend(self.children.get(child, []))
        return sorted(found)


@lru_cache(maxsize=1)
def _iana_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - _NOT_A_PLACE


@lru_cache(maxsize=1024)
def valid_timezone(name: str) -> bool:
    """A canonical IANA name. ZoneInfo alone also opens `localtime` (whatever the host
    is set to), `posix/...` and `right/...` (leap seconds) files: a DAG must not run in
    a zone that depends on the machine that generated it."""
    if not name or name not in _iana_names():
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json_problem(value: Any, depth: int = 1) -> str | None:
    """Why a decoded JSON value cannot be used as config, or None."""
    if depth > MAX_JSON_DEPTH:
        return f"is nested more than {MAX_JSON_DEPTH} levels deep"
    if isinstance(value, float) and not math.isfinite(value):
        return f"holds {value!r}, which is not a JSON number"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"has a non-string key {key!r}"
            problem = _json_problem(item, depth + 1)
            if problem:
                return problem
    elif isinstance(value, list | tuple):
        for item in value:
            problem = _json_problem(item, depth + 1)
            if problem:
                return problem
    return None


def _json_object(value: Any, field_name: str, errors: list[str]) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, bytes | str):
        try:
            value = json.loads(value, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            errors.append(f"{field_name}|is not valid JSON ({exc.msg} at char {exc.pos})")
            return None
        except ValueError as exc:  # NaN / Infinity, or undecodable bytes
            errors.append(f"{field_name}|is not valid JSON ({exc})")
            return None
        except RecursionError:
            errors.append(f"{field_name}|is nested more than {MAX_JSON_DEPTH} levels deep")
            return None
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append(f"{field_name}|must be a JSON object, not {type(value).__name__}")
        return None
    problem = _json_problem(value)
    if problem:
        errors.append(f"{field_name}|{problem}")
        return None
    return value


def _cron(value: str | None, field_name: str, errors: list[str]) -> str | None:
    if value is None:
        return None
    try:
        return normalize_cron(value)
    except ValueError as exc:
        errors.append(f"{field_name}|{exc}")
        return None


def _integration(row: IntegrationRow, errors: list[tuple[str | None, str]]) -> Integration | None:
    problems: list[str] = []
    valid_id = isinstance(row.integration_id, str) and bool(ID_RE.match(row.integration_id))
    if not valid_id:
        problems.append(
            f"integration_id|{row.integration_id!r} is outside [A-Za-z0-9][A-Za-z0-9_-]{{0,63}}"
        )
    elif row.integration_id in RESERVED_INTEGRATION_IDS:
        problems.append(
            f"integration_id|is reserved by dagfleet ({', '.join(sorted(RESERVED_INTEGRATION_IDS))})"
        )
    if not isinstance(row.template, str) or not row.template:
        problems.append("template|is empty")
    schedule = _cron(row.schedule, "schedule", problems)
    params = _json_object(row.params, "params", problems)
    overrides = _json_object(row.task_overrides, "task_overrides", problems)
    ident = row.integration_id if valid_id else repr(row.integration_id)
    errors.extend((ident, p) for p in problems)
    if problems:
        return None
    return Integration(
        row.customer_id, row.integration_id, row.template, schedule, params or {}, overrides
    )


def _customer(
    row: CustomerRow, integrations: Iterable[IntegrationRow], errors: list[tuple[str | None, str]]
) -> Customer | None:
    problems: list[str] = []
    if not isinstance(row.name, str) or not row.name.strip():
        problems.append("name|is empty")
    if not valid_timezone(row.timezone if isinstance(row.timezone, str) else ""):
        problems.append(f"timezone|unknown IANA timezone {row.timezone!r}")
    main_schedule = _cron(row.main_schedule, "main_schedule", problems)
    params = _json_object(row.params, "params", problems)
    if row.legacy_dag_file is not None and not LEGACY_FILE_RE.match(row.legacy_dag_file):
        problems.append(
            f"legacy_dag_file|{row.legacy_dag_file!r} must be a file name ending in .py under templates/legacy/"
        )
    errors.extend((None, p) for p in problems)
    # Only enabled integrations are validated: disabling a broken one unblocks its customer.
    rows = sorted((i for i in integrations if i.enabled), key=lambda r: str(r.integration_id))
    built = [_integration(i, errors) for i in rows]
    for previous, current in itertools.pairwise(rows):
        if current.integration_id == previous.integration_id and isinstance(
            current.integration_id, str
        ):
            errors.append(
                (current.integration_id, "integration_id|appears twice for this customer")
            )
            built.append(None)
    if problems or any(b is None for b in built):
        return None
    return Customer(
        customer_id=row.customer_id,
        name=row.name,
        timezone=row.timezone,
        parent_customer_id=row.parent_customer_id,
        active=bool(row.active),
        main_schedule=main_schedule,
        legacy_dag_file=row.legacy_dag_file,
        params=params or {},
        integrations=tuple(b for b in built if b is not None),
    )


def build_fleet(snapshot: Snapshot) -> Fleet:
    """Validate every row. Invalid customers are listed, never silently dropped."""
    fleet = Fleet()

    def fail(customer_id: str, integration_id: str | None, field_name: str, message: str) -> None:
        fleet.errors.append(
            ConfigError(
                one_line(customer_id),
                None if integration_id is None else one_line(integration_id),
                one_line(field_name),
                one_line(message),
            )
        )
        fleet.invalid.add(customer_id)

    by_customer: dict[str, list[IntegrationRow]] = {}
    for row in snapshot.integrations:
        by_customer.setdefault(row.customer_id, []).append(row)
    rows = {}
    for row in sorted(snapshot.customers, key=lambda r: str(r.customer_id)):
        cid = row.customer_id
        if not isinstance(cid, str) or not ID_RE.match(cid):
            fail(
                repr(cid), None, "customer_id", "outside the charset [A-Za-z0-9][A-Za-z0-9_-]{0,63}"
            )
            continue
        if cid in rows:
            fail(cid, None, "customer_id", "appears twice in the store")
            continue
        rows[cid] = row
        if row.active:
            fleet.active_ids.add(cid)
    for cid in sorted(set(by_customer) - set(rows)):
        if isinstance(cid, str) and ID_RE.match(cid):
            for irow in by_customer[cid]:
                fail(cid, irow.integration_id, "customer_id", "integration of an unknown customer")
    for cid, row in rows.items():
        problems: list[tuple[str | None, str]] = []
        customer = _customer(row, by_customer.get(cid, []), problems)
        for integration_id, problem in problems:
            field_name, message = problem.split("|", 1)
            fail(cid, integration_id, field_name, message)
        if customer is not None:
            fleet.customers[cid] = customer
    _check_parents(fleet, rows)
    return fleet


def _check_parents(fleet: Fleet, rows: dict[str, CustomerRow]) -> None:
    parent_of = {
        cid: row.parent_customer_id
        for cid, row in rows.items()
        if row.parent_customer_id is not None
    }
    for cid, parent in sorted(parent_of.items()):
        if parent not in rows:
            fleet.errors.append(
                ConfigError(cid, None, "parent_customer_id", f"unknown parent customer {parent!r}")
            )
            fleet.invalid.add(cid)
            continue
        fleet.children.setdefault(parent, []).append(cid)
    in_cycle: set[str] = set()
    for start in sorted(parent_of):
        seen: list[str] = []
        node: str | None = start
        while node is not None and node not in seen and node not in in_cycle:
            seen.append(node)
            node = parent_of.get(node)
        if node is not None and node in seen:
            cycle = seen[seen.index(node) :]
            for member in cycle:
                if member not in in_cycle:
                    chain = " -> ".join(
                        [*cycle[cycle.index(member) :], *cycle[: cycle.index(member)], member]
                    )
                    fleet.errors.append(
                        ConfigError(member, None, "parent_customer_id", f"parent cycle {chain}")
                    )
                    fleet.invalid.add(member)
            in_cycle.update(cycle)
    for cid in fleet.invalid:
        fleet.customers.pop(cid, None)
