"""Model: the snapshot's raw rows turned into a typed, validated fleet.

Every row-level rule lives here (ids, timezones, crons, JSON, parents); a customer
that breaks one is set aside with a ConfigError and the rest of the fleet goes on.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from composer.errors import ConfigError
from composer.schedule import normalize_cron
from composer.store import CustomerRow, IntegrationRow, Snapshot

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
LEGACY_FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.py\Z")


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


@lru_cache(maxsize=1024)
def valid_timezone(name: str) -> bool:
    if not name or name != name.strip():
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _json_object(value: Any, field_name: str, errors: list[str]) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, bytes | str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            errors.append(f"{field_name}|is not valid JSON ({exc.msg} at char {exc.pos})")
            return None
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append(f"{field_name}|must be a JSON object, not {type(value).__name__}")
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
    if not isinstance(row.integration_id, str) or not ID_RE.match(row.integration_id):
        problems.append(
            f"integration_id|{row.integration_id!r} is outside [A-Za-z0-9][A-Za-z0-9_-]{{0,63}}"
        )
    if not isinstance(row.template, str) or not row.template:
        problems.append("template|is empty")
    schedule = _cron(row.schedule, "schedule", problems)
    params = _json_object(row.params, "params", problems)
    overrides = _json_object(row.task_overrides, "task_overrides", problems)
    ident = row.integration_id if isinstance(row.integration_id, str) else repr(row.integration_id)
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
    built = [
        _integration(i, errors) for i in sorted(integrations, key=lambda r: str(r.integration_id))
    ]
    if problems or any(b is None for b in built):
        return None
    enabled_ids = {i.integration_id for i in integrations if i.enabled}
    return Customer(
        customer_id=row.customer_id,
        name=row.name,
        timezone=row.timezone,
        parent_customer_id=row.parent_customer_id,
        active=bool(row.active),
        main_schedule=main_schedule,
        legacy_dag_file=row.legacy_dag_file,
        params=params or {},
        integrations=tuple(b for b in built if b is not None and b.integration_id in enabled_ids),
    )


def build_fleet(snapshot: Snapshot) -> Fleet:
    """Validate every row. Invalid customers are listed, never silently dropped."""
    fleet = Fleet()

    def fail(customer_id: str, integration_id: str | None, field_name: str, message: str) -> None:
        fleet.errors.append(ConfigError(customer_id, integration_id, field_name, message))
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
