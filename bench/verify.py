"""Check that the parse-benchmark peers build the same DAGs, so the timings compare like
with like: same dag ids, task ids, task groups, upstreams, operator classes and
templated arguments, retries, schedule, timezone, start date, tags and default_args.

    uv run --group bench python -m bench.verify bench/work/parse/N100

Exit status 1 when any peer differs from `ours`. The one difference it ignores:
dag-factory always adds a `dagfactory` tag.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

IGNORED_TAGS = {"dagfactory"}


def _plain(value: Any) -> Any:
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "total_seconds"):  # a duration, written as timedelta or in seconds
        return value.total_seconds()
    return str(value)


def fingerprint(dag: Any) -> dict[str, Any]:
    """What must be equal across peers for one DAG."""
    tasks = {}
    for task_id, task in sorted(dag.task_dict.items()):
        tasks[task_id] = {
            "type": f"{type(task).__module__}.{type(task).__name__}",
            "upstream": sorted(task.upstream_task_ids),
            "group": task.task_group.group_id if task.task_group else None,
            "retries": task.retries,
            "retry_delay": str(task.retry_delay),
            "trigger_rule": str(task.trigger_rule),
            "on_failure_callback": _plain(task.on_failure_callback),
            "fields": {f: _plain(getattr(task, f, None)) for f in sorted(task.template_fields)},
        }
    groups = {}
    for group_id, group in sorted(
        dag.task_group.get_task_group_dict().items(), key=lambda kv: str(kv[0])
    ):
        if group_id:
            groups[group_id] = {"tooltip": group.tooltip}
    return {
        "schedule": repr(dag.timetable),  # class, cron expression and timezone
        "timezone": str(dag.timezone),
        "start_date": dag.start_date.isoformat(),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "is_paused_upon_creation": dag.is_paused_upon_creation,
        "description": dag.description,
        "tags": sorted(set(dag.tags) - IGNORED_TAGS),
        "default_args": _plain(dict(dag.default_args)),
        "groups": groups,
        "tasks": tasks,
    }


def fingerprints(folder: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Every DAG in the folder's DagBag, and its import errors."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(folder), bundle_path=folder)
    return {dag_id: fingerprint(d) for dag_id, d in bag.dags.items()}, dict(bag.import_errors)


def differences(reference: dict[str, Any], other: dict[str, Any], limit: int = 3) -> list[str]:
    """Human-readable differences between two fingerprint maps (first `limit`)."""
    out = []
    for dag_id in sorted(set(reference) | set(other)):
        if dag_id not in other:
            out.append(f"{dag_id}: missing")
        elif dag_id not in reference:
            out.append(f"{dag_id}: not in the reference")
        elif reference[dag_id] != other[dag_id]:
            ref, got = reference[dag_id], other[dag_id]
            keys = [k for k in ref if ref[k] != got.get(k)]
            detail = keys[0]
            if detail == "tasks":
                bad = [t for t in ref["tasks"] if ref["tasks"][t] != got["tasks"].get(t)]
                bad += [t for t in got["tasks"] if t not in ref["tasks"]]
                task = bad[0]
                r, g = ref["tasks"].get(task, {}), got["tasks"].get(task, {})
                fields = [k for k in set(r) | set(g) if r.get(k) != g.get(k)]
                detail = f"task {task}: {fields[0]}: {r.get(fields[0])!r} != {g.get(fields[0])!r}"
            else:
                detail = f"{detail}: {ref[detail]!r} != {got.get(detail)!r}"
            out.append(f"{dag_id}: {detail}")
        if len(out) >= limit:
            break
    return out


def verify(folders: dict[str, Path], reference: str = "ours") -> dict[str, Any]:
    """Parse every peer folder; report DAG counts, import errors and differences."""
    prints = {}
    report: dict[str, Any] = {}
    for name, folder in folders.items():
        found, errors = fingerprints(folder)
        prints[name] = found
        report[name] = {
            "dags": len(found),
            "import_errors": [str(e)[-300:] for e in errors.values()],
        }
    for name, found in prints.items():
        report[name]["differences"] = differences(prints[reference], found)
    report["ok"] = all(
        not r["differences"] and not r["import_errors"] and r["dags"] == len(prints[reference])
        for r in report.values()
        if isinstance(r, dict)
    ) and bool(prints[reference])
    sample = next(iter(prints[reference].values()), None)
    if sample:
        report["sample"] = {
            "schedule": sample["schedule"],
            "timezone": sample["timezone"],
            "tags": sample["tags"],
            "tasks": list(sample["tasks"]),
        }
    return report


def main(argv: list[str]) -> int:
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY", "False")
    from bench.peers import PEERS

    root = Path(argv[0])
    report = verify({name: root / name for name in PEERS})
    for name in PEERS:
        r = report[name]
        print(
            f"{name}: {r['dags']} DAGs, {len(r['import_errors'])} import errors, {len(r['differences'])} differences"
        )
        for line in r["differences"] + r["import_errors"][:2]:
            print(f"   {line}")
    print("OK" if report["ok"] else "DIFFERENT")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
