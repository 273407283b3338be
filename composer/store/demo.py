"""The demo fleet in examples/, as store rows (JSON columns as JSON text, as SQL holds them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from composer import PACKAGE_DIR
from composer.model.yamlio import load_yaml
from composer.store import CustomerRow, IntegrationRow, Snapshot

DEMO_FILE = PACKAGE_DIR.parent / "examples" / "demo_fleet.yaml"


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def snapshot_from_yaml(path: Path = DEMO_FILE) -> Snapshot:
    """Rows from a fleet file shaped like examples/demo_fleet.yaml."""
    customers: list[CustomerRow] = []
    integrations: list[IntegrationRow] = []
    for c in load_yaml(path)["customers"]:
        customers.append(
            CustomerRow(
                customer_id=c["customer_id"],
                name=c["name"],
                timezone=c["timezone"],
                active=c.get("active", True),
                parent_customer_id=c.get("parent_customer_id"),
                main_schedule=c.get("main_schedule"),
                legacy_dag_file=c.get("legacy_dag_file"),
                params=_json(c.get("params")),
            )
        )
        for i in c.get("integrations") or []:
            integrations.append(
                IntegrationRow(
                    customer_id=c["customer_id"],
                    integration_id=i["integration_id"],
                    template=i["template"],
                    enabled=i.get("enabled", True),
                    schedule=i.get("schedule"),
                    params=_json(i.get("params")),
                    task_overrides=_json(i.get("task_overrides")),
                    template_version=i.get("template_version"),
                )
            )
    return Snapshot(tuple(customers), tuple(integrations))
