"""The same DAGs written the other ways people write DAG fleets, for the parse benchmark.

Every peer is generated from the DagSpecs dagfleet composes: each customer's main DAG
(`main_specs`, the in-process figures of bench/parsing.py) or every DAG the fleet
publishes, main, cron and roll-up (`fleet_specs`, the DAG processor benchmark of record,
bench/dagproc.py: like for like with the shard files). All peers build the same DAGs
(bench/verify.py checks it):

- ours: dagfleet's rendering of each main DAG as a file of its own
  (`<customer>/<customer>__main.py`, its layout before shard files; the shard files
  `fleet sync` writes are measured by bench/dagproc.py, the benchmark of record).
- hand: one hand-written-style static file per DAG (constants, `with DAG(...) as dag`,
  nested `with TaskGroup`, `>>` lines).
- loop: one `dags.py` that reads `dag_configs.json` and builds every DAG in a loop,
  skipping all but one when `airflow.sdk.get_parsing_context().dag_id` is set.
- dagfactory: one dag-factory YAML per DAG plus `loader.py`, which loads all of them,
  or only `<dag_id>.yaml` when the parsing context names a DAG.
"""

from __future__ import annotations

import json
import keyword
import shutil
from pathlib import Path
from typing import Any

import yaml

from composer.build import FleetBuilder
from composer.compose.dagspec import AssetRef, Call, CodeRef, DagSpec
from composer.render import render_dag
from composer.store import Snapshot

PEERS = ("ours", "hand", "loop", "dagfactory")
LOOP_FILE = "dags.py"
LOOP_CONFIG = "dag_configs.json"
DAGFACTORY_LOADER = "loader.py"
DAGFACTORY_CONFIGS = "configs"
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def fleet_specs(snapshot: Snapshot, templates_dir: Path) -> list[DagSpec]:
    """Every DagSpec the fleet publishes (main, cron and roll-up DAGs), in customer order."""
    builder = FleetBuilder(snapshot, templates_dir)
    specs = []
    for cid in builder.customer_ids():
        composed, errors = builder.composer.compose(builder.fleet.customers[cid])
        if errors:
            raise ValueError(f"customer {cid}: {errors[0]}")
        for spec in composed:
            if spec.timetable is not None or spec.settings:
                raise ValueError(f"{spec.dag_id}: the peers write cron and asset schedules only")
            specs.append(spec)
    return specs


def main_specs(snapshot: Snapshot, templates_dir: Path) -> list[DagSpec]:
    """The main DagSpec of every customer that gets files, in customer order."""
    return [s for s in fleet_specs(snapshot, templates_dir) if s.variant == "main"]


def _seconds(call: Call) -> Any:
    """A duration (dagfleet writes `timedelta(seconds=N)`) as the peers write it: N
    seconds, which Airflow turns into the same timedelta."""
    if call.callee.dotted != "datetime.timedelta":
        raise ValueError(f"the benchmark peers cannot write {call.callee.dotted}(...)")
    return call.kwargs["seconds"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Call):
        return _seconds(value)
    if isinstance(value, CodeRef):
        return {"__code__": value.dotted}
    if isinstance(value, AssetRef):
        return {"__asset__": value.uri}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def spec_config(spec: DagSpec) -> dict[str, Any]:
    """One DAG as plain data (callables as {"__code__": dotted path})."""
    return {
        "dag_id": spec.dag_id,
        "description": spec.description,
        "schedule": spec.schedule,
        "assets": [a.uri for a in spec.assets],
        "timezone": spec.timezone,
        "start_date": spec.start_date.isoformat(),
        "tags": list(spec.tags),
        "paused_at_creation": spec.paused_at_creation,
        "default_args": _jsonable(spec.default_args),
        "groups": [
            {"path": list(g.path), "tooltip": g.tooltip, "default_args": _jsonable(g.default_args)}
            for g in spec.groups
        ],
        "tasks": [
            {
                "task_id": t.task_id,
                "groups": list(t.groups),
                "operator": t.operator,
                "args": _jsonable(t.args),
                "upstream": list(t.upstream),
            }
            for t in spec.tasks
        ],
    }


def per_dag_path(spec: DagSpec) -> str:
    """Where a one-file-per-DAG layout puts the DAG: `<customer>/<dag_id>.py`."""
    return f"{spec.customer_id}/{spec.dag_id}.py"


def write_ours_per_dag(out: Path, specs: list[DagSpec]) -> None:
    """dagfleet's rendering of each main DAG as a file of its own (its layout before the
    shard files of composer/render/layout.py), for comparison with the other per-file peers."""
    for spec in specs:
        dest = out / per_dag_path(spec)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(render_dag(spec, 3))


# -- hand-written style ---------------------------------------------------------

_CONSTANTS = (
    ("PROJECT", "project_id"),
    ("DATASET", "dataset_id"),
    ("LOCATION", "location"),
    ("GCP_CONN_ID", "gcp_conn_id"),
)


def _py(value: Any, names: dict[str, str], depth: int) -> str:
    """A literal the way a person formats it: constants by name, SQL triple-quoted."""
    pad, inner = "    " * depth, "    " * (depth + 1)
    if isinstance(value, str):
        if value in names:
            return names[value]
        if "\n" in value and "\\" not in value and '"""' not in value and value[-1:] != '"':
            return '"""' + value + '"""'
        return json.dumps(value, ensure_ascii=False) if "\\" not in value else repr(value)
    if isinstance(value, Call):
        return repr(_seconds(value))
    if isinstance(value, CodeRef):
        return value.dotted.rsplit(".", 1)[-1]
    if isinstance(value, AssetRef):
        return f"Asset({value.uri!r})"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f"{inner}{_py(k, {}, depth + 1)}: {_py(v, names, depth + 1)}," for k, v in value.items()
        ]
        return "{\n" + "\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list | tuple):
        if all(isinstance(v, str | int | float) for v in value) and len(value) <= 3:
            return "[" + ", ".join(_py(v, names, depth) for v in value) + "]"
        items = [f"{inner}{_py(v, names, depth + 1)}," for v in value]
        return "[\n" + "\n".join(items) + f"\n{pad}]"
    return repr(value)


def _var(task_id: str, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() or c == "_" else "_" for c in task_id)
    if not base or base[0].isdigit() or keyword.iskeyword(base):
        base = f"t_{base}"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def hand_file(spec: DagSpec) -> str:
    """One DAG as a person would write it by hand (same DAG, different source)."""
    imports: dict[str, set[str]] = {"airflow.sdk": {"DAG", "CronTriggerTimetable"}}
    if spec.groups:
        imports["airflow.sdk"].add("TaskGroup")
    if spec.assets or any(
        isinstance(a, AssetRef) for t in spec.tasks for a in t.args.get("outlets", [])
    ):
        imports["airflow.sdk"].add("Asset")
    if spec.assets:
        imports["airflow.sdk"].add("AssetOrTimeSchedule")
    for task in spec.tasks:
        module, name = task.operator.rsplit(".", 1)
        imports.setdefault(module, set()).add(name)
    callables = sorted({v.dotted for v in _code_refs(spec)})
    constants: dict[str, str] = {}
    for name, arg in _CONSTANTS:
        values = {t.args.get(arg) for t in spec.tasks if isinstance(t.args.get(arg), str)}
        if len(values) == 1:
            constants[values.pop()] = name
    lines = [f'"""{spec.description}."""', "", "import pendulum"]
    for module in sorted(imports):
        lines.append(f"from {module} import {', '.join(sorted(imports[module]))}")
    lines.append("")
    for dotted in callables:
        module, name = dotted.rsplit(".", 1)
        lines.append(f"from {module} import {name}")
    lines.append("")
    lines.append(f"TZ = {spec.timezone!r}")
    lines.extend(f"{name} = {json.dumps(value)}" for value, name in constants.items())
    lines.append("")
    lines.append(f"default_args = {_py(spec.default_args, {}, 0)}")
    lines.append("")
    start = spec.start_date
    schedule = f"CronTriggerTimetable({spec.schedule!r}, timezone=TZ)"
    if spec.assets:
        assets = ", ".join(f"Asset({a.uri!r})" for a in spec.assets)
        schedule = f"AssetOrTimeSchedule(timetable={schedule}, assets=[{assets}])"
    lines += [
        "with DAG(",
        f"    dag_id={spec.dag_id!r},",
        f"    description={spec.description!r},",
        f"    schedule={schedule},",
        f"    start_date=pendulum.datetime({start.year}, {start.month}, {start.day}, tz=TZ),",
        "    catchup=False,",
        "    max_active_runs=1,",
        f"    is_paused_upon_creation={spec.paused_at_creation!r},",
        f"    tags={list(spec.tags)!r},",
        "    default_args=default_args,",
        ") as dag:",
    ]
    groups = {g.path: g for g in spec.groups}
    taken: set[str] = {"dag", "default_args", "pendulum", "TZ", *constants.values()}
    var_of: dict[str, str] = {}
    open_path: tuple[str, ...] = ()
    for task in sorted(spec.tasks, key=lambda t: t.groups):
        common = 0
        while common < min(len(open_path), len(task.groups)) and (
            open_path[common] == task.groups[common]
        ):
            common += 1
        for depth in range(common, len(task.groups)):
            path = task.groups[: depth + 1]
            group = groups.get(path)
            args = [repr(path[-1])]
            if group and group.tooltip:
                args.append(f"tooltip={group.tooltip!r}")
            if group and group.default_args:
                args.append(f"default_args={_py(group.default_args, {}, depth + 1)}")
            lines.append("")
            lines.append(f"{'    ' * (depth + 1)}with TaskGroup({', '.join(args)}):")
        open_path = task.groups
        pad = "    " * (len(task.groups) + 1)
        var_of[task.ref] = var = _var(task.task_id, taken)
        lines.append(f"{pad}{var} = {task.operator.rsplit('.', 1)[-1]}(")
        lines.append(f"{pad}    task_id={task.task_id!r},")
        for key, value in task.args.items():
            lines.append(f"{pad}    {key}={_py(value, constants, len(task.groups) + 2)},")
        lines.append(f"{pad})")
    lines.append("")
    for task in spec.tasks:
        ups = [var_of[u] for u in task.upstream]
        if ups:
            left = ups[0] if len(ups) == 1 else f"[{', '.join(ups)}]"
            lines.append(f"    {left} >> {var_of[task.ref]}")
    return "\n".join(lines) + "\n"


def _code_refs(spec: DagSpec) -> list[CodeRef]:
    found: list[CodeRef] = []

    def walk(value: Any) -> None:
        if isinstance(value, CodeRef):
            found.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    walk(spec.default_args)
    for group in spec.groups:
        walk(group.default_args)
    for task in spec.tasks:
        walk(task.args)
    return found


def write_hand(out: Path, specs: list[DagSpec]) -> None:
    for spec in specs:
        dest = out / per_dag_path(spec)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(hand_file(spec))


# -- one file looping over a JSON config ------------------------------------------

LOOP_SOURCE = '''\
"""Every DAG of the fleet, built at parse time from dag_configs.json (one DAG file)."""

import importlib
import json
from pathlib import Path

import pendulum
from airflow.sdk import (
    DAG,
    Asset,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    TaskGroup,
    get_parsing_context,
)

CONFIG = Path(__file__).with_name("dag_configs.json")
_objects = {}


def _object(dotted):
    if dotted not in _objects:
        module, _, name = dotted.rpartition(".")
        _objects[dotted] = getattr(importlib.import_module(module), name)
    return _objects[dotted]


def _value(value):
    if isinstance(value, dict):
        if len(value) == 1 and "__code__" in value:
            return _object(value["__code__"])
        if len(value) == 1 and "__asset__" in value:
            return Asset(value["__asset__"])
        return {k: _value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value


def build(cfg):
    tz = cfg["timezone"]
    year, month, day = (int(p) for p in cfg["start_date"].split("-"))
    schedule = CronTriggerTimetable(cfg["schedule"], timezone=tz)
    if cfg["assets"]:
        assets = [Asset(uri) for uri in cfg["assets"]]
        schedule = AssetOrTimeSchedule(timetable=schedule, assets=assets)
    with DAG(
        dag_id=cfg["dag_id"],
        description=cfg["description"],
        schedule=schedule,
        start_date=pendulum.datetime(year, month, day, tz=tz),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=cfg["paused_at_creation"],
        tags=cfg["tags"],
        default_args=_value(cfg["default_args"]),
    ) as dag:
        groups = {}
        for group in sorted(cfg["groups"], key=lambda g: len(g["path"])):
            path = tuple(group["path"])
            groups[path] = TaskGroup(
                path[-1],
                tooltip=group["tooltip"],
                default_args=_value(group["default_args"]) or {},
                parent_group=groups.get(path[:-1]),
            )
        tasks = {}
        for task in cfg["tasks"]:
            path = tuple(task["groups"])
            ref = ".".join((*path, task["task_id"]))
            tasks[ref] = _object(task["operator"])(
                task_id=task["task_id"], task_group=groups.get(path), **_value(task["args"])
            )
        for task in cfg["tasks"]:
            ref = ".".join((*task["groups"], task["task_id"]))
            for up in task["upstream"]:
                tasks[up] >> tasks[ref]
    return dag


wanted = get_parsing_context().dag_id
for cfg in json.loads(CONFIG.read_bytes()):
    if wanted and cfg["dag_id"] != wanted:
        continue
    globals()[cfg["dag_id"]] = build(cfg)
'''


def write_loop(out: Path, specs: list[DagSpec]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / LOOP_FILE).write_text(LOOP_SOURCE)
    with (out / LOOP_CONFIG).open("w") as handle:
        json.dump([spec_config(s) for s in specs], handle, separators=(",", ":"))


# -- dag-factory ---------------------------------------------------------------------

DAGFACTORY_LOADER_SOURCE = '''\
"""dag-factory: every DAG from configs/*.yaml (airflow DAG loader), or one when the
parsing context names it (a worker about to run a task)."""

from pathlib import Path

import dagfactory
from airflow.sdk import get_parsing_context

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
wanted = get_parsing_context().dag_id
if wanted and (CONFIGS / f"{wanted}.yaml").is_file():
    dagfactory.load_yaml_dags(
        globals_dict=globals(),
        config_filepath=str(CONFIGS / f"{wanted}.yaml"),
        defaults_config_path=str(HERE),
    )
else:
    dagfactory.load_yaml_dags(
        globals_dict=globals(), dags_folder=str(CONFIGS), defaults_config_path=str(HERE)
    )
'''


def _df_value(value: Any) -> Any:
    if isinstance(value, Call):
        return _seconds(value)
    if isinstance(value, CodeRef):
        return value.dotted  # dag-factory imports callbacks given as dotted strings
    if isinstance(value, AssetRef):
        return value.uri  # dag-factory turns outlet URIs into Assets
    if isinstance(value, dict):
        return {k: _df_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_df_value(v) for v in value]
    return value


def dagfactory_config(spec: DagSpec) -> dict[str, Any]:
    """One DAG in dag-factory's YAML shape (task and group names are leaf ids)."""
    groups: dict[str, Any] = {}
    for group in sorted(spec.groups, key=lambda g: len(g.path)):
        conf: dict[str, Any] = {}
        if group.tooltip:
            conf["tooltip"] = group.tooltip
        if group.default_args:
            conf["default_args"] = _df_value(group.default_args)
        if len(group.path) > 1:
            conf["parent_group_name"] = group.path[-2]
        groups[group.path[-1]] = conf
    tasks: dict[str, Any] = {}
    leaf = {t.ref: t.task_id for t in spec.tasks}
    for task in spec.tasks:
        conf = {"operator": task.operator, **_df_value(task.args)}
        if task.groups:
            conf["task_group_name"] = task.groups[-1]
        if task.upstream:
            conf["dependencies"] = [leaf[u] for u in task.upstream]
        tasks[task.task_id] = conf
    schedule: dict[str, Any] = {
        "__type__": "airflow.sdk.CronTriggerTimetable",
        "__args__": [spec.schedule],
        "timezone": spec.timezone,
    }
    if spec.assets:
        schedule = {
            "__type__": "airflow.sdk.AssetOrTimeSchedule",
            "timetable": schedule,
            "assets": [{"__type__": "airflow.sdk.Asset", "uri": a.uri} for a in spec.assets],
        }
    return {
        spec.dag_id: {
            "description": spec.description,
            "schedule": schedule,
            "timezone": spec.timezone,
            "start_date": spec.start_date.isoformat(),
            "catchup": False,
            "max_active_runs": 1,
            "is_paused_upon_creation": spec.paused_at_creation,
            "tags": list(spec.tags),
            "default_args": _df_value(spec.default_args),
            "task_groups": groups,
            "tasks": tasks,
        }
    }


def write_dagfactory(out: Path, specs: list[DagSpec]) -> None:
    configs = out / DAGFACTORY_CONFIGS
    configs.mkdir(parents=True, exist_ok=True)
    (out / DAGFACTORY_LOADER).write_text(DAGFACTORY_LOADER_SOURCE)
    for spec in specs:
        text = yaml.dump(
            dagfactory_config(spec),
            Dumper=_Dumper,
            sort_keys=False,
            allow_unicode=True,
            width=10_000,
        )
        (configs / f"{spec.dag_id}.yaml").write_text(text)


def write_peers(out: Path, specs: list[DagSpec]) -> dict[str, Path]:
    """All four peers under `out` (replacing what was there); their folders."""
    folders = {name: out / name for name in PEERS}
    for folder in folders.values():
        shutil.rmtree(folder, ignore_errors=True)
    write_ours_per_dag(folders["ours"], specs)
    write_hand(folders["hand"], specs)
    write_loop(folders["loop"], specs)
    write_dagfactory(folders["dagfactory"], specs)
    return folders


def single_file(peer: str, folder: Path, spec: DagSpec) -> Path:
    """The file a worker parses before it runs a task of `spec`'s DAG."""
    if peer in ("ours", "hand"):
        return folder / per_dag_path(spec)
    if peer == "loop":
        return folder / LOOP_FILE
    return folder / DAGFACTORY_LOADER
