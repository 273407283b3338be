"""Synthetic fleets for the benchmarks: N customers as store rows, deterministic.

Every customer has the three shipped integrations (PowerSchool grades in the main
DAG, Google Classroom hourly, state assessments weekly), customers are spread over
several timezones, and every 25th customer is a parent org with four children and
one grandchild, so about 8% of the customers also get a roll-up DAG.
"""

from __future__ import annotations

import json
from pathlib import Path

from composer.store import CustomerRow, IntegrationRow, Snapshot, open_store

TIMEZONES = (
    ("America/New_York", "NY"),
    ("America/Chicago", "TX"),
    ("America/Denver", "CO"),
    ("America/Phoenix", "AZ"),
    ("America/Los_Angeles", "CA"),
    ("America/Anchorage", "AK"),
    ("Pacific/Honolulu", "HI"),
    ("America/Puerto_Rico", "PR"),
)
PARENT_EVERY = 25  # customer 0 of every block of 25 is a parent org
ONBOARDED_ID = "onboarded-district"


def customer_id(i: int) -> str:
    return f"d{i:05d}"


def _parent(i: int) -> str | None:
    """Customers 1-4 of a block are children of customer 0; customer 5 is a grandchild."""
    offset = i % PARENT_EVERY
    if 1 <= offset <= 4:
        return customer_id(i - offset)
    if offset == 5:
        return customer_id(i - 4)
    return None


def customer_rows(i: int, cid: str | None = None, parent: str | None = None) -> Snapshot:
    """One customer with its three integrations."""
    cid = cid or customer_id(i)
    tz, state = TIMEZONES[i % len(TIMEZONES)]
    customer = CustomerRow(
        customer_id=cid,
        name=f"District {cid}",
        timezone=tz,
        active=True,
        parent_customer_id=parent,
        main_schedule="0 1 * * *" if i % 7 == 3 else None,
        params=json.dumps({"state_code": state}),
    )
    integrations = (
        IntegrationRow(
            cid,
            "grades",
            "powerschool_grades",
            True,
            None,
            json.dumps({"sis_base_url": f"https://{cid}.powerschool.com"}),
        ),
        IntegrationRow(
            cid,
            "classroom",
            "google_classroom",
            True,
            "@hourly",
            json.dumps({"classroom_domain": f"{cid}.k12.example.org"}),
        ),
        IntegrationRow(
            cid,
            "assessments",
            "state_assessments",
            True,
            f"0 {4 + i % 4} * * 1",
            json.dumps({"state_code": state}),
        ),
    )
    return Snapshot((customer,), integrations)


def fleet_snapshot(n: int) -> Snapshot:
    """N customers (ids d00000..), parents before their children."""
    customers: list[CustomerRow] = []
    integrations: list[IntegrationRow] = []
    for i in range(n):
        part = customer_rows(i, parent=_parent(i))
        customers.extend(part.customers)
        integrations.extend(part.integrations)
    return Snapshot(tuple(customers), tuple(integrations))


def onboarding_snapshot(n: int) -> Snapshot:
    """The one customer the onboarding benchmark adds to a fleet of N (top level)."""
    return customer_rows(n, cid=ONBOARDED_ID)


def write_store(path: Path, n: int, *, onboard: bool = False) -> str:
    """A fresh SQLite store with the fleet of N (plus the onboarded customer); its URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    store = open_store(url, create=True)
    store.init_schema()
    store.insert(fleet_snapshot(n))
    if onboard:
        store.insert(onboarding_snapshot(n))
    return url


def parents(n: int) -> list[str]:
    """Customers of the fleet of N that have children (they get a roll-up DAG)."""
    return sorted({p for i in range(n) if (p := _parent(i)) is not None})
