"""Errors as the CLI and the meta-DAG print them: a broken template once, not per customer.

A template file that does not load fails every integration that uses it with the same
message; at 2,000 districts that was 2,000 identical lines burying the one fix. Such
errors (field `template`, raised by the catalog as "FILE.yaml: FIELD: why") are folded
into one line naming the file and the field, then how many customers it set aside and
the first few of them. Every other error stays one line per customer, as before: the
errors themselves (and so exit codes, invalid customers, what is published) do not change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from composer.errors import ConfigError

SHOWN_CUSTOMERS = 5  # customer ids a folded line names before "and N more"

# The catalog's message for a template that does not load (composer/model/templates.py,
# TemplateCatalog._load): "NAME.yaml: FIELD: why", or "NAME.yaml: why" (YAML syntax).
_TEMPLATE_MESSAGE = re.compile(
    r"(?P<file>[A-Za-z0-9][A-Za-z0-9_.-]*\.yaml): (?:(?P<field>[A-Za-z0-9_.\[\]-]+): )?(?P<why>.*)\Z",
    re.DOTALL,
)


@dataclass(frozen=True)
class TemplateProblem:
    """Where a template file is broken, independent of any customer."""

    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"template {self.file}, field {self.field}: {self.message}"


def split_template_message(message: str) -> tuple[str, str, str] | None:
    """(file, field, why) of the catalog's error for a template file that does not load."""
    found = _TEMPLATE_MESSAGE.match(message)
    if not found:
        return None
    return found["file"], found["field"] or "(file)", found["why"]


def template_problem(error: ConfigError) -> TemplateProblem | None:
    """The template-file problem this customer error stands for, if it is one."""
    if error.field != "template":
        return None
    split = split_template_message(error.message)
    # None: e.g. "unknown template 'x'", which the store row names, per customer.
    return TemplateProblem(*split) if split else None


def error_lines(errors: Iterable[ConfigError]) -> list[str]:
    """One line per error, except one line per broken template file (where its first
    customer's error was), with the customers it set aside."""
    lines: list[str | TemplateProblem] = []
    affected: dict[TemplateProblem, dict[str, None]] = {}
    for error in errors:
        problem = template_problem(error)
        if problem is None:
            lines.append(str(error))
            continue
        if problem not in affected:
            affected[problem] = {}
            lines.append(problem)
        affected[problem][error.customer_id] = None
    return [
        line if isinstance(line, str) else _folded(line, list(affected[line])) for line in lines
    ]


def _folded(problem: TemplateProblem, customers: list[str]) -> str:
    shown = sorted(customers)
    names = ", ".join(shown[:SHOWN_CUSTOMERS])
    if len(shown) > SHOWN_CUSTOMERS:
        names += f" and {len(shown) - SHOWN_CUSTOMERS} more"
    count = f"{len(shown)} customer{'s' if len(shown) != 1 else ''}"
    return f"{problem}; set aside {count}: {names}"
