"""Model: the snapshot's raw rows turned into a typed, validated fleet.

Every row-level rule lives here (ids, timezones, crons, JSON and its size, parents); a
customer that breaks one is set aside with a ConfigError and the rest of the fleet goes on.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from composer.compose.timetables import normalize_schedule
from composer.errors import ConfigError, one_line
from composer.model.timezones import timezone_problem
from composer.store import CustomerRow, IntegrationRow, Snapshot

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
LEGACY_FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.py\Z")
# Integration ids dagfleet uses itself: `main` would be the cron DAG `<customer>__main`,
# `rollup` the roll-up DAG `<customer>__rollup`, `setup` the setup tasks.
RESERVED_INTEGRATION_IDS = frozenset({"main", "rollup", "setup"})
# Deeper JSON is refused: nothing real nests this far, and deeper values would reach
# Python's recursion limit in substitution or rendering and crash the whole run.
MAX_JSON_DEPTH = 16


@dataclass(frozen=True)
class Limits:
    """Size caps (bytes), `limits:` in fleet.yaml. A JSON column is measured as stored,
    before it is parsed; a generated or legacy file before it is compiled."""

    params_bytes: int = 64 * 1024
    task_overrides_bytes: int = 64 * 1024
    dag_file_bytes: int = 1024 * 1024


def too_big(size: int, cap: int, key: str) -> str | None:
    """The one-line refusal of a value of `size` bytes over the cap `limits.<key>`."""
    if size <= cap:
        return None
    return f"is {size:,} bytes, over the {cap:,}-byte cap (limits.{key} in fleet.yaml)"


@dataclass(frozen=True)
class Integration:
    customer_id: str
    integration_id: str
    template: str
    # A normalized cron or a composer/compose/timetables.py schedule; None: the main DAG.
    schedule: str | None
    params: dict[str, Any]
    task_overrides: dict[str, Any] | None
    # Pinned version of its template (composer/model/versions.py); None: default or rollout.
    template_version: int | None = None


@dataclass(frozen=True)
class Customer:
    customer_id: str
    name: str
    timezone: str
    parent_customer_id: str | None
    active: bool
    main_schedule: str | None  # as Integration.schedule; None for the fleet default
    legacy_dag_file: str | None
    params: dict[str, Any]
    integrations: tuple[Integration, ...]  # enabled ones, by integration_id
    # Templates of disabled integrations: customer params kept for them are not unused.
    disabled_templates: tuple[str, ...] = ()


@dataclass
class Fleet:
    customers: dict[str, Customer] = field(default_factory=dict)  # valid ones, by id
    errors: list[ConfigError] = field(default_factory=list)
    invalid: set[str] = field(default_factory=set)  # ids with any error
    children: dict[str, list[str]] = field(default_factory=dict)
    active_ids: set[str] = field(default_factory=set)  # active rows, valid or not
    warnings: list[str] = field(default_factory=list)  # one line each, nothing invalid

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


def valid_timezone(name: str) -> bool:
    """A canonical IANA name (composer/model/timezones.py says which names are)."""
    return timezone_problem(name) is None


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


def _json_size(value: Any) -> int:
    """Bytes of the JSON as stored: the text itself, or (Spanner hands JSON decoded)
    its compact encoding."""
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode(errors="replace"))
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError, RecursionError):
        return 0  # not JSON: the checks below say why
    return len(text.encode(errors="replace"))


def _json_object(
    value: Any, field_name: str, errors: list[str], cap: int | None = None
) -> dict[str, Any] | None:
    if value is None:
        return None
    if cap is not None:
        problem = too_big(_json_size(value), cap, f"{field_name}_bytes")
        if problem:
            errors.append(f"{field_name}|{problem}")
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
        return normalize_schedule(value)
    except ValueError as exc:
        errors.append(f"{field_name}|{exc}")
        return None


def _integration(
    row: IntegrationRow, errors: list[tuple[str | None, str]], limits: Limits
) -> Integration | None:
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
    params = _json_object(row.params, "params", problems, limits.params_bytes)
    overrides = _json_object(
        row.task_overrides, "task_overrides", problems, limits.task_overrides_bytes
    )
    pin = row.template_version
    if pin is not None and (isinstance(pin, bool) or not isinstance(pin, int) or pin < 1):
        problems.append(f"template_version|must be a positive integer or NULL, not {pin!r}")
    ident = row.integration_id if valid_id else repr(row.integration_id)
    errors.extend((ident, p) for p in problems)
    if problems:
        return None
    return Integration(
        row.customer_id, row.integration_id, row.template, schedule, params or {}, overrides, pin
    )


def _customer(
    row: CustomerRow,
    integrations: Iterable[IntegrationRow],
    errors: list[tuple[str | None, str]],
    limits: Limits,
) -> Customer | None:
    problems: list[str] = []
    if not isinstance(row.name, str) or not row.name.strip():
        problems.append("name|is empty")
    tz_problem = timezone_problem(row.timezone)
    if tz_problem:
        problems.append(f"timezone|{tz_problem}")
    main_schedule = _cron(row.main_schedule, "main_schedule", problems)
    params = _json_object(row.params, "params", problems, limits.params_bytes)
    if row.legacy_dag_file is not None and not LEGACY_FILE_RE.match(row.legacy_dag_file):
        problems.append(
            f"legacy_dag_file|{row.legacy_dag_file!r} must be a file name ending in .py under templates/legacy/"
        )
    errors.extend((None, p) for p in problems)
    # Only enabled integrations are validated: disabling a broken one unblocks its customer.
    integrations = list(integrations)
    rows = sorted((i for i in integrations if i.enabled), key=lambda r: str(r.integration_id))
    built = [_integration(i, errors, limits) for i in rows]
    for integration_id, problem in _id_clashes(
        [i.integration_id for i in rows], "integration", "for this customer"
    ):
        errors.append((integration_id, f"integration_id|{problem}"))
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
        disabled_templates=tuple(
            sorted(
                {i.template for i in integrations if not i.enabled and isinstance(i.template, str)}
            )
        ),
    )


def _id_clashes(ids: list[Any], kind: str, where: str) -> list[tuple[str, str]]:
    """(id, problem) for ids that appear twice, or that differ only in case: they would
    share a folder or a DAG file on a case-insensitive disk. Every id involved is named."""
    groups: dict[str, list[str]] = {}
    for one in ids:
        if isinstance(one, str):
            groups.setdefault(one.lower(), []).append(one)
    found: list[tuple[str, str]] = []
    for same in groups.values():
        if len(same) < 2:
            continue
        for one in sorted(set(same)):
            if same.count(one) > 1:
                found.append((one, f"appears twice {where}"))
            others = sorted({o for o in same if o != one})
            if others:
                names = ", ".join(f"{kind} {o}" for o in others)
                found.append(
                    (
                        one,
                        f"differs only in case from {names} {where} (a case-insensitive disk would mix them)",
                    )
                )
    return found


def build_fleet(snapshot: Snapshot, limits: Limits | None = None) -> Fleet:
    """Validate every row. Invalid customers are listed, never silently dropped."""
    limits = limits or Limits()
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
            continue  # reported below, with the ids that differ only in case
        rows[cid] = row
        if row.active:
            fleet.active_ids.add(cid)
    valid_ids = [r.customer_id for r in snapshot.customers if r.customer_id in rows]
    for cid, problem in _id_clashes(valid_ids, "customer", "in the store"):
        fail(cid, None, "customer_id", problem)
    _warn_orphans(fleet, by_customer, {r.customer_id for r in snapshot.customers})
    for cid, row in rows.items():
        problems: list[tuple[str | None, str]] = []
        customer = _customer(row, by_customer.get(cid, []), problems, limits)
        for integration_id, problem in problems:
            field_name, message = problem.split("|", 1)
            fail(cid, integration_id, field_name, message)
        if customer is not None:
            fleet.customers[cid] = customer
    _check_parents(fleet, rows)
    return fleet


def _warn_orphans(
    fleet: Fleet, by_customer: dict[Any, list[IntegrationRow]], customer_ids: set[Any]
) -> None:
    """Integration rows whose customer row is gone (deleted with the sqlite3 CLI, which
    does not enforce foreign keys): the customer is off-boarded, its files are pruned as
    any off-boarded customer's; the leftover rows are named, once per customer."""
    for cid in sorted((c for c in by_customer if c not in customer_ids), key=str):
        ids = sorted(str(i.integration_id) for i in by_customer[cid])
        shown = cid if isinstance(cid, str) and ID_RE.match(cid) else repr(cid)
        fleet.warnings.append(
            one_line(
                f"customer {shown}: no customer row; ignoring its {len(ids)} integration "
                f"row(s) ({', '.join(ids)}): delete them"
            )
        )


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
