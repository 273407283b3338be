"""The types between composition and rendering: what one generated file holds."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

Variant = Literal["main", "cron", "rollup", "legacy"]


@dataclass(frozen=True)
class CodeRef:
    """A callable the generated file imports by name (only ever from an allow-list)."""

    dotted: str


@dataclass(frozen=True)
class AssetRef:
    """A data asset by URI (`bigquery://project/dataset/table`): written as `Asset(uri)`
    for Airflow 3 and `Dataset(uri)` for Airflow 2, in outlets and in asset schedules."""

    uri: str


@dataclass(frozen=True)
class Call:
    """A typed value: `callee(*args, **kwargs)` written as a constructor call whose
    arguments are literals (plain data, AssetRefs or nested Calls). `callee` is always a
    class or function the generator chose from an allow-list (a timedelta, an Asset, a
    provider's model class), never a name a store value supplied."""

    callee: CodeRef
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    task_id: str
    groups: tuple[str, ...]  # enclosing task groups, outermost first
    operator: str  # dotted import path of the operator class
    args: dict[str, Any]
    upstream: tuple[str, ...]  # refs of upstream tasks in the same DAG
    # A mapped task: argument -> the list it maps over (`args` are then the partial ones).
    expand: dict[str, Any] | None = None

    @property
    def ref(self) -> str:
        """The task id Airflow shows: group ids, then the task id, joined by dots."""
        return ".".join((*self.groups, self.task_id))


@dataclass(frozen=True)
class GroupSpec:
    path: tuple[str, ...]
    tooltip: str = ""
    default_args: dict[str, Any] | None = None


@dataclass(frozen=True)
class DagSpec:
    dag_id: str
    customer_id: str
    variant: Variant
    schedule: str  # 5-field cron, in `timezone` (for a roll-up: its deadline tick)
    timezone: str
    start_date: dt.date  # a UTC datetime for a customer that moved in (start after the move)
    description: str
    tags: tuple[str, ...]
    default_args: dict[str, Any]
    groups: tuple[GroupSpec, ...]
    tasks: tuple[TaskSpec, ...]
    templates: tuple[str, ...]  # template names, for the file header
    paused_at_creation: bool = False  # fleet.yaml `paused_at_creation`
    # Non-empty: scheduled when every one of these assets was updated, or at `schedule`
    # (AssetOrTimeSchedule / DatasetOrTimeSchedule).
    assets: tuple[AssetRef, ...] = ()
    # Non-None: `schedule=` is this instead of the cron (composer/compose/timetables.py Schedule:
    # manual only, @once, @continuous or a timetable Call).
    timetable: Any = None
    # DAG-level settings (composer/compose/dag_settings.py): extra DAG(...) arguments, typed.
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderedFile:
    """One file for the target: where it goes, who owns it, and its exact bytes. With
    `part`, the content is the customer's DAGs as a file of their own (composer/render/layout.py),
    whose part between the markers goes into the shard file `path` with other customers'."""

    path: str
    customer_id: str
    content: bytes
    part: bool = False

    @property
    def md5(self) -> str:
        return hashlib.md5(self.content, usedforsecurity=False).hexdigest()
