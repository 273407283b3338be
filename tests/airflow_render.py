"""Render a task's templated fields the way Airflow 3's task runner does before execute:
a RuntimeTaskInstance for a scheduled run on 2024-05-01 03:00 UTC, its real template
context (macros, `conn`, `var`), and `ti.render_templates()`. No metadata database is
needed: connections come from the secrets backends (`AIRFLOW_CONN_*` here)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

WHEN = dt.datetime(2024, 5, 1, 3, 0, tzinfo=dt.UTC)


def render(task: Any) -> tuple[Any, dict[str, Any]]:
    """(the rendered task, the context it was rendered with)."""
    from airflow.sdk.api.datamodels._generated import DagRun, TIRunContext
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    run = DagRun(
        dag_id=task.dag_id,
        run_id="scheduled__2024-05-01T03:00:00+00:00",
        logical_date=WHEN,
        data_interval_start=WHEN,
        data_interval_end=WHEN,
        run_after=WHEN,
        start_date=WHEN,
        end_date=None,
        run_type="scheduled",
        state="running",
        consumed_asset_events=[],
        partition_key=None,
    )
    ti = RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(),
        task_id=task.task_id,
        dag_id=task.dag_id,
        run_id=run.run_id,
        try_number=1,
        map_index=-1,
        task=task,
        max_tries=0,
        start_date=WHEN,
        _ti_context_from_server=TIRunContext(dag_run=run, max_tries=0),
    )
    context = ti.get_template_context()
    ti.render_templates(context)
    return ti.task, dict(context)
