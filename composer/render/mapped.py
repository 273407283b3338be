"""A mapped task as code: `Operator.partial(task_id=..., **args).expand(arg=[...])`.

Both Airflow majors take this form; every expanded value is a literal list, so the
number of task instances is fixed when the file is generated (no XCom-driven mapping:
the generator writes data, never code that computes it).
"""

from __future__ import annotations

from collections.abc import Callable

from composer.compose.dagspec import CodeRef, TaskSpec
from composer.render.literals import INDENT, literal


def mapped_call(
    pad: str,
    var: str,
    operator: str,
    call: list[str],
    task: TaskSpec,
    name_of: Callable[[CodeRef], str],
) -> list[str]:
    """The lines of `var = operator.partial(call...).expand(...)` at indent `pad`;
    `call` holds the partial keyword arguments already written as `name=literal`."""
    depth = len(task.groups) + 2
    mapped = [
        f"{key}={literal(value, name_of, depth)}"
        for key, value in sorted((task.expand or {}).items())
    ]
    one_line = f"{pad}{var} = {operator}.partial({', '.join(call)}).expand({', '.join(mapped)})"
    if len(one_line) <= 100 and "\n" not in one_line:
        return [one_line]
    return [
        f"{pad}{var} = {operator}.partial(",
        *(f"{pad}{INDENT}{item}," for item in call),
        f"{pad}).expand(",
        *(f"{pad}{INDENT}{item}," for item in mapped),
        f"{pad})",
    ]
