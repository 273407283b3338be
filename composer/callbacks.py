"""Callbacks generated DAGs may name (listed under `imports` in templates/fleet.yaml).

Imported by every generated DAG at parse time, so this module imports nothing heavy.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("dagfleet.alerts")


def log_failure(context: dict[str, Any]) -> None:
    """One structured ERROR line per failed task: the hook point for alerting.

    Cloud Logging picks it up (a log-based alert on logger `dagfleet.alerts` pages
    the on-call); replace or extend it to post to Slack or PagerDuty.
    """
    ti = context.get("task_instance") or context.get("ti")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    log.error(
        "dagfleet task failed: dag_id=%s task_id=%s run_id=%s try=%s error=%s",
        dag_id,
        getattr(ti, "task_id", "?"),
        context.get("run_id", "?"),
        getattr(ti, "try_number", "?"),
        str(context.get("exception", "")).splitlines()[0:1],
    )
