"""One DagSpec as one small static DAG file.

The file imports only what it uses and reads nothing at parse time: every value
is a literal. Output depends on the spec alone (no timestamps), so identical input
gives byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass

from composer.dagspec import CodeRef, DagSpec, TaskSpec
from composer.rendering.literals import INDENT, literal


@dataclass(frozen=True)
class AirflowApi:
    """Where the DAG-level names live for one Airflow major version."""

    imports: dict[str, str]  # name -> module


AIRFLOW_APIS = {
    3: AirflowApi(
        {
            "DAG": "airflow.sdk",
            "TaskGroup": "airflow.sdk",
            "CronTriggerTimetable": "airflow.sdk",
        }
    ),
    2: AirflowApi(
        {
            "DAG": "airflow.models.dag",
            "TaskGroup": "airflow.utils.task_group",
            "CronTriggerTimetable": "airflow.timetables.trigger",
        }
    ),
}


class _Names:
    """Import aliases: one local name per imported object, stable and collision-free."""

    def __init__(self) -> None:
        self.by_path: dict[str, str] = {}
        self.taken: set[str] = {"pendulum", "dag"}

    def add(self, dotted: str) -> str:
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
    api = AIRFLOW_APIS[airflow_target]
    names = _Names()
    for name in ("DAG", "CronTriggerTimetable"):
        names.add(f"{api.imports[name]}.{name}")
    if spec.groups:
        names.add(f"{api.imports['TaskGroup']}.TaskGroup")
    for task in spec.tasks:
        names.add(task.operator)

    def name_of(ref: CodeRef) -> str:
        return names.add(ref.dotted)

    body: list[str] = []
    dag_args = {
        "dag_id": repr(spec.dag_id),
        "description": repr(spec.description),
        "schedule": f"{names.add(api.imports['CronTriggerTimetable'] + '.CronTriggerTimetable')}"
        f"({spec.schedule!r}, timezone={spec.timezone!r})",
        "start_date": f"pendulum.datetime({spec.start_date.year}, {spec.start_date.month}, "
        f"{spec.start_date.day}, tz={spec.timezone!r})",
        "catchup": "False",
        "max_active_runs": "1",
        "tags": literal(list(spec.tags), name_of, 1),
        "default_args": literal(spec.default_args, name_of, 1),
    }
    body.append(f"with {names.add(api.imports['DAG'] + '.DAG')}(")
    body.extend(f"{INDENT}{key}={value}," for key, value in dag_args.items())
    body.append("):")

    var_of: dict[str, str] = {}
    for n, task in enumerate(spec.tasks, start=1):
        var_of[task.ref] = f"t{n}"
    groups = {g.path: g for g in spec.groups}
    open_groups: tuple[str, ...] = ()
    group_names = names.by_path.get(f"{api.imports['TaskGroup']}.TaskGroup", "TaskGroup")
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
        one_line = f"{pad}{var_of[task.ref]} = {names.add(task.operator)}({', '.join(call)})"
        if len(one_line) <= 100 and "\n" not in one_line:
            body.append(one_line)
        else:
            body.append(f"{pad}{var_of[task.ref]} = {names.add(task.operator)}(")
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

    header = [
        f"# {spec.dag_id}: generated by dagfleet from "
        + (", ".join(f"templates/{t}.yaml" for t in spec.templates) or "templates/fleet.yaml")
        + ".",
        "# Do not edit: change the store or the templates and run `fleet sync`.",
        "import pendulum",
        *names.import_lines(),
        "",
    ]
    return "\n".join([*header, *body]) + "\n"
