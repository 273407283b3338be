"""One DagSpec as one small static DAG file.

The file imports only what it uses and reads nothing at parse time: every value
is a literal. Output depends on the spec alone (no timestamps), so identical input
gives byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from composer.compose.dagspec import CodeRef, DagSpec, TaskSpec
from composer.render.literals import ASSET_CLASS, INDENT, literal
from composer.render.mapped import mapped_call

# Operators Airflow 3 moved from its core into the standard provider: Airflow 3 still
# resolves the old path but warns (DeprecatedImportWarning), and Airflow 2.11 has no
# standard provider unless it is installed. A template may name either spelling; each
# target imports the one that is native there (the Python-callable ones take an
# allow-listed callable: composer/compose/callables.py).
_MOVED = (  # same path below airflow.providers.standard
    "operators.bash.BashOperator",
    "operators.datetime.BranchDateTimeOperator",
    "operators.empty.EmptyOperator",
    "operators.latest_only.LatestOnlyOperator",
    "operators.python.BranchPythonOperator",
    "operators.python.PythonOperator",
    "operators.python.ShortCircuitOperator",
    "operators.trigger_dagrun.TriggerDagRunOperator",
    "operators.weekday.BranchDayOfWeekOperator",
    "sensors.bash.BashSensor",
    "sensors.date_time.DateTimeSensor",
    "sensors.external_task.ExternalTaskMarker",
    "sensors.external_task.ExternalTaskSensor",
    "sensors.filesystem.FileSensor",
    "sensors.time_delta.TimeDeltaSensor",
    "sensors.weekday.DayOfWeekSensor",
)
_RENAMED = {"sensors.time_sensor.TimeSensor": "sensors.time.TimeSensor"}
STANDARD_PROVIDER_MOVES = {  # Airflow 2 path -> Airflow 3 path
    f"airflow.{path}": f"airflow.providers.standard.{_RENAMED.get(path, path)}"
    for path in (*_MOVED, *_RENAMED)
}


@dataclass(frozen=True)
class AirflowApi:
    """Where the DAG-level names and the relocated operators live for one Airflow major."""

    imports: dict[str, str]  # name -> module (or module.OtherName where it is renamed)
    operators: dict[str, str]  # operator path a template may name -> the path to import

    def operator(self, dotted: str) -> str:
        return self.operators.get(dotted, dotted)

    def path(self, name: str) -> str:
        """The dotted path to import for one of the DAG-level names."""
        where = self.imports[name]
        return where if where.rsplit(".", 1)[-1][:1].isupper() else f"{where}.{name}"


AIRFLOW_APIS = {
    3: AirflowApi(
        {
            "DAG": "airflow.sdk",
            "TaskGroup": "airflow.sdk",
            "CronTriggerTimetable": "airflow.sdk",
            "Asset": "airflow.sdk",
            "AssetOrTimeSchedule": "airflow.sdk",
        },
        STANDARD_PROVIDER_MOVES,
    ),
    # Airflow 2.11 (Composer 2): the public 2.x paths, none of them deprecated there.
    2: AirflowApi(
        {
            "DAG": "airflow.models.dag",
            "TaskGroup": "airflow.utils.task_group",
            "CronTriggerTimetable": "airflow.timetables.trigger",
            "Asset": "airflow.datasets.Dataset",
            "AssetOrTimeSchedule": "airflow.timetables.datasets.DatasetOrTimeSchedule",
        },
        {new: old for old, new in STANDARD_PROVIDER_MOVES.items()},
    ),
}


class _Names:
    """Import aliases: one local name per imported object, stable and collision-free."""

    def __init__(self) -> None:
        self.by_path: dict[str, str] = {}
        self.taken: set[str] = {"pendulum", "dag"}

    def add(self, dotted: str) -> str:
        if ":" in dotted:  # module:Outer.Inner, a nested class (composer/compose/typed_models.py)
            module, _, qualname = dotted.partition(":")
            outer, _, inner = qualname.partition(".")
            return f"{self.add(f'{module}.{outer}')}.{inner}"
        if dotted not in self.by_path:
            base = dotted.rsplit(".", 1)[-1]
            name, n = base, 2
            while name in self.taken:
                name, n = f"{base}_{n}", n + 1
            self.taken.add(name)
            self.by_path[dotted] = name
        return self.by_path[dotted]

    def import_lines(self) -> list[str]:
        modules: dict[str, list[str]] = {}
        for dotted, name in self.by_path.items():
            module, attr = dotted.rsplit(".", 1)
            modules.setdefault(module, []).append(attr if attr == name else f"{attr} as {name}")
        return [
            f"from {m} import {', '.join(sorted(names))}" for m, names in sorted(modules.items())
        ]


def _ordered(tasks: tuple[TaskSpec, ...]) -> list[TaskSpec]:
    """Tasks grouped by task group (groups before nested groups), in spec order within."""
    return sorted(tasks, key=lambda t: (t.groups, 0))


def render_dag(spec: DagSpec, airflow_target: int = 3) -> str:
    """`spec` as a file of its own, importing from the Airflow major it will run under.

    Values are literals (typed ones, such as durations, as calls of allow-listed
    classes with literal arguments: composer/compose/typed_values.py).
    """
    imports, body = _render(spec, airflow_target, 0)
    return "\n".join([*_header(spec), "import pendulum", *imports, "", *body]) + "\n"


def render_builder(spec: DagSpec, airflow_target: int = 3) -> str:
    """`spec` as one function that builds and returns its DAG (composer/render/layout.py puts
    many in one file). Its imports are inside it, so the function depends on nothing
    around it: its bytes are the same whatever other DAGs share the file."""
    imports, body = _render(spec, airflow_target, 1)
    lines = [
        f"def {builder_name(spec.dag_id)}():",
        *(f"{INDENT}{line}" for line in _header(spec)),
        f"{INDENT}import pendulum",
        *(f"{INDENT}{line}" for line in imports),
        "",
        *body,
        f"{INDENT}return dag",
    ]
    return "\n".join(lines) + "\n"


def builder_name(dag_id: str) -> str:
    """The builder function's name: the dag_id as an identifier ("-" is not one; a dag_id
    with "-" gets a digest suffix, so `a-b` and `a_b` never share a name)."""
    if "-" not in dag_id:
        return f"dag_{dag_id}"
    suffix = hashlib.sha256(dag_id.encode()).hexdigest()[:8]
    return f"dag_{dag_id.replace('-', '_')}_{suffix}"


def _header(spec: DagSpec) -> list[str]:
    return [
        f"# {spec.dag_id}: generated by dagfleet from "
        + (", ".join(f"templates/{t}.yaml" for t in spec.templates) or "templates/fleet.yaml")
        + ".",
        "# Do not edit: change the store or the templates and run `fleet sync`.",
    ]


def _render(spec: DagSpec, airflow_target: int, level: int) -> tuple[list[str], list[str]]:
    """The import lines and the `with DAG(...) as dag:` block, indented `level` levels."""
    try:
        api = AIRFLOW_APIS[airflow_target]
    except KeyError:
        raise ValueError(f"airflow_target must be 2 or 3, not {airflow_target!r}") from None
    names = _Names()
    for name in ("DAG", "CronTriggerTimetable") if spec.timetable is None else ("DAG",):
        names.add(api.path(name))
    if spec.groups:
        names.add(api.path("TaskGroup"))
    for task in spec.tasks:
        names.add(api.operator(task.operator))

    def name_of(ref: CodeRef) -> str:
        return names.add(api.path("Asset") if ref == ASSET_CLASS else ref.dotted)

    body: list[str] = []
    cron = (
        f"{names.add(api.path('CronTriggerTimetable'))}"
        f"({spec.schedule!r}, timezone={spec.timezone!r})"
        if spec.timetable is None
        else ""
    )
    if spec.assets:
        # Every asset updated since the last asset-triggered run, or the deadline tick.
        keyword = "assets" if airflow_target == 3 else "datasets"
        assets = literal(list(spec.assets), name_of, 2)
        schedule = (
            f"{names.add(api.path('AssetOrTimeSchedule'))}(\n"
            f"{INDENT * 2}timetable={cron},\n{INDENT * 2}{keyword}={assets},\n{INDENT})"
        )
    else:
        schedule = cron
    if spec.timetable is not None:  # manual, @once, @continuous, a timetable (timetables.py)
        schedule = literal(spec.timetable.value, name_of, 1)
    dag_args = {
        "dag_id": repr(spec.dag_id),
        "description": repr(spec.description),
        "schedule": schedule,
        "start_date": _start_date(spec),
        "catchup": "False",
        "max_active_runs": "1",
        "is_paused_upon_creation": repr(spec.paused_at_creation),
        "tags": literal(list(spec.tags), name_of, 1),
        "default_args": literal(spec.default_args, name_of, 1),
    }
    for key, value in sorted(spec.settings.items()):  # composer/compose/dag_settings.py
        dag_args.setdefault(key, literal(value, name_of, 1))
    body.append(f"with {names.add(api.path('DAG'))}(")
    body.extend(f"{INDENT}{key}={value}," for key, value in dag_args.items())
    body.append(") as dag:" if level else "):")

    var_of: dict[str, str] = {}
    for n, task in enumerate(spec.tasks, start=1):
        var_of[task.ref] = f"t{n}"
    groups = {g.path: g for g in spec.groups}
    open_groups: tuple[str, ...] = ()
    group_names = names.by_path.get(api.path("TaskGroup"), "TaskGroup")
    for task in _ordered(spec.tasks):
        common = 0
        while (
            common < min(len(open_groups), len(task.groups))
            and open_groups[common] == task.groups[common]
        ):
            common += 1
        open_groups = open_groups[:common]
        for depth in range(common, len(task.groups)):
            path = task.groups[: depth + 1]
            group = groups.get(path)
            args = [repr(path[-1])]
            if group and group.tooltip:
                args.append(f"tooltip={group.tooltip!r}")
            if group and group.default_args:
                args.append(f"default_args={literal(group.default_args, name_of, depth + 2)}")
            body.append(f"{INDENT * (depth + 1)}with {group_names}({', '.join(args)}):")
            open_groups = path
        pad = INDENT * (len(task.groups) + 1)
        call = [f"task_id={task.task_id!r}"]
        call += [
            f"{key}={literal(value, name_of, len(task.groups) + 2)}"
            for key, value in sorted(task.args.items())
        ]
        operator = names.add(api.operator(task.operator))
        if task.expand:  # a mapped task (composer/compose/taskgraph.py)
            body.extend(mapped_call(pad, var_of[task.ref], operator, call, task, name_of))
            continue
        one_line = f"{pad}{var_of[task.ref]} = {operator}({', '.join(call)})"
        if len(one_line) <= 100 and "\n" not in one_line:
            body.append(one_line)
        else:
            body.append(f"{pad}{var_of[task.ref]} = {operator}(")
            body.extend(f"{pad}{INDENT}{item}," for item in call)
            body.append(f"{pad})")

    edges: dict[str, list[str]] = {}
    for task in spec.tasks:
        for up in task.upstream:
            edges.setdefault(var_of[up], []).append(var_of[task.ref])
    if edges:
        body.append("")
        for up in sorted(edges, key=lambda v: int(v[1:])):
            downs = edges[up]
            target = downs[0] if len(downs) == 1 else f"[{', '.join(downs)}]"
            body.append(f"{INDENT}{up} >> {target}")

    if level:  # values are repr()s, so every newline in the body is layout, never data
        pad = INDENT * level
        body = [f"{pad}{line}" if line else line for line in "\n".join(body).split("\n")]
    return names.import_lines(), body


def _start_date(spec: DagSpec) -> str:
    """The fleet's start date in the customer's zone; after a move between Composer
    environments, the UTC minute the DAG may first run in its new one."""
    start = spec.start_date
    if isinstance(start, dt.datetime):
        return (
            f"pendulum.datetime({start.year}, {start.month}, {start.day}, {start.hour}, "
            f"{start.minute}, tz='UTC')"
        )
    return f"pendulum.datetime({start.year}, {start.month}, {start.day}, tz={spec.timezone!r})"
