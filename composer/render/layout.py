"""The file layout: which file holds which customer's DAGs, and how a file is put together.

Airflow's DAG processor parses every file in a child process of its own, so its cost is
mostly per file (bench/RESULTS.md, "the DAG processor"). A customer's DAGs therefore go
into one of a fixed number of shard files (`shards` in fleet.yaml), chosen by a hash of
the id at the root of its org tree, so a parent and its children (whose changes rebuild
the parent's roll-up) share a file. A customer's DAGs are never split over files.

A customer's part (its DAGs as builder functions that register in `DAGS`, between
marker comments) is a module of its own, `fleet_parts/<customer_id>.py`, which the DAG
processor never parses as a DAG file (`.airflowignore`). A shard file is a loader of a
few lines: the Airflow modules its customers' builders use (imported at the top, so the
processor pre-imports them once), which customer owns which DAG, and a loop that loads
each customer's module and builds every DAG, or only the one a task worker asks for
through the parsing context. Why not the builders in the shard file itself (the layout
before 2026-12-01): for every file, on every pass, the processor's one manager process
`ast.parse`s the whole file before forking its parse, and Airflow stores the whole
defining file with every DAG (`dag_code`): both grow with the bytes in the file
(bench/RESULTS.md, "The DAG processor"). A part's bytes depend only on its customer, so
it is rewritten only when its customer changes, and an invalid customer's module stays
as published (its last good DAGs keep running).
"""

from __future__ import annotations

import ast
import hashlib
import math
import re
from collections.abc import Iterable

from composer.model.fleet import Fleet

# `shards: auto` (the default): about this many customers (~50 DAGs) a file, and the
# count kept while a file holds 8 to 32 of them, so it changes only when the fleet has
# halved or doubled (bench/RESULTS.md, "The DAG processor": why files stay this small).
CUSTOMERS_PER_FILE = 16
MAX_SHARDS = 4096
_PARSING_CONTEXT = {
    3: "from airflow.sdk import get_parsing_context",
    2: "from airflow.utils.dag_parsing_context import get_parsing_context",
}
PARTS_DIR = "fleet_parts"  # the customers' modules, beside the shard files
# .airflowignore lines that keep the processor out of PARTS_DIR, one per syntax Airflow
# may read the file with (glob: Airflow 3's default; regexp: Airflow 2's), each anchored
# at the DAG folder and inert under the other syntax.
IGNORE_PARTS = (f"/{PARTS_DIR}/", f"^{PARTS_DIR}/")
_BEGIN = "# --- dagfleet customer {}: begin ---\n"
_END = "# --- dagfleet customer {}: end ---\n"
# A builder's import of an Airflow module (indented: inside its function), and a part's
# first line. Both are matched line by line, never by a regex scanning a whole file: the
# main process splits 10,000 modules a full sync, and a MULTILINE/DOTALL scan costs
# ~0.3-0.4 ms per 10 KB module there.
_AIRFLOW_IMPORT_RE = re.compile(r"from (airflow\.[\w.]+) import ")
_BEGIN_RE = re.compile(r"# --- dagfleet customer ([A-Za-z0-9_-]+): begin ---\n")
_MARKER = "# --- dagfleet customer "


def shard_count(customers: int, previous: int | None) -> int:
    """How many shard files `shards: auto` spreads `customers` over: `previous` (the count
    the published fleet uses) while each file holds 8 to 32 customers, else the power of
    two nearest to 16 a file. Changing the count moves most customers to another file
    (one full rewrite), so it must not flip back and forth as districts come and go."""
    if previous and 8 * previous <= customers <= 32 * previous:
        return previous
    target = max(1.0, customers / CUSTOMERS_PER_FILE)
    return min(MAX_SHARDS, 2 ** round(math.log2(target)))


def shard_path(key: str, shards: int) -> str:
    """The shard file for a tree root's id: stable for a given shard count."""
    number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % shards
    return f"fleet_shard_{number:03d}.py"


def tree_root(fleet: Fleet, customer_id: str) -> str:
    """The top of the customer's org tree (itself without a parent)."""
    node, seen = customer_id, {customer_id}
    while True:
        customer = fleet.customers.get(node)
        parent = customer.parent_customer_id if customer else None
        if parent is None or parent in seen or parent not in fleet.customers:
            return node
        seen.add(parent)
        node = parent


def part(customer_id: str, builders: Iterable[tuple[str, str, str]]) -> str:
    """A customer's part: (dag_id, function name, function source) for each DAG."""
    lines = [_BEGIN.format(customer_id)]
    for dag_id, name, source in builders:
        lines.append(source)
        lines.append(f"\n\nDAGS[{dag_id!r}] = {name}\n\n\n")
    lines.append(_END.format(customer_id))
    return "".join(lines)


def module(parts: Iterable[str], airflow_target: int) -> str:
    """A whole DAG file from parts (already in customer order).

    The Airflow modules the parts import are also imported at the top: the DAG processor
    imports a file's top-level `airflow.*` imports in its own process before it forks
    the child that parses the file (`parsing_pre_import_modules`), so the operator
    modules are imported once, not once per file."""
    parts = list(parts)
    modules = sorted({m for part in parts for m in _imported_airflow(part)})
    header = (
        "# Generated by dagfleet: do not edit; change the store or the templates and run\n"
        "# `fleet sync`. Each customer's DAGs are between its markers below. Airflow's DAG\n"
        "# processor builds every DAG here; a task worker builds only the DAG it runs.\n"
        f"{_PARSING_CONTEXT[airflow_target]}\n"
        + "".join(f"import {m}  # noqa: F401\n" for m in modules)
        + "\n"
        "DAGS = {}  # dag_id -> the function that builds it\n"
        "\n\n"
    )
    footer = (
        "_only = get_parsing_context().dag_id\n"
        "for _dag_id, _build in DAGS.items():\n"
        "    if _only is None or _only == _dag_id:\n"
        "        _build()\n"
    )
    return header + "".join(parts) + "\n\n" + footer


def part_path(customer_id: str) -> str:
    """Where a customer's module goes: the same whatever shard file loads it."""
    return f"{PARTS_DIR}/{customer_id}.py"


def airflow_modules(text: str) -> tuple[str, ...]:
    """The Airflow modules a part's builders import."""
    return tuple(sorted(set(_imported_airflow(text))))


def _imported_airflow(text: str) -> list[str]:
    found = []
    at = 0
    while (start := text.find("from airflow.", at)) >= 0:
        at = start + 1
        line_start = text.rfind("\n", 0, start) + 1
        if start > line_start and not text[line_start:start].strip(" "):
            match = _AIRFLOW_IMPORT_RE.match(text, start)
            if match:
                found.append(match.group(1))
    return found


def part_module(customer_id: str, part_text: str) -> str:
    """A customer's module: its part, loaded by the shard file that lists the customer."""
    return (
        f"# Generated by dagfleet: customer {customer_id}'s DAGs, built by the shard file\n"
        "# that lists it (this folder is in .airflowignore). Do not edit: change the store\n"
        "# or the templates and run `fleet sync`.\n"
        "DAGS = {}  # dag_id -> the function that builds it\n"
        "\n\n" + part_text
    )


_LOADER = """
_PARTS = Path(__file__).resolve().parent / {parts!r}


def _load(customer_id):
    path = _PARTS / f"{{customer_id}}.py"
    spec = importlib.util.spec_from_file_location(f"dagfleet_part_{{customer_id}}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DAGS


_only = get_parsing_context().dag_id
if _only is None:
    _wanted = CUSTOMERS
else:
    _wanted = [c for c, dag_ids in CUSTOMERS.items() if _only in dag_ids]
for _customer in _wanted:
    for _dag_id, _build in _load(_customer).items():
        if _only is None or _only == _dag_id:
            _build()
"""


def loader(
    customers: Iterable[tuple[str, Iterable[str], str]], modules: Iterable[str], airflow_target: int
) -> str:
    """A shard file: (customer_id, its dag_ids, its module's md5) in customer order, and
    the Airflow modules their builders use, imported at the top: the DAG processor imports
    a file's top-level `airflow.*` imports in its own process before it forks the child
    that parses the file (`parsing_pre_import_modules`), so the operator modules are
    imported once, not once per file. The md5 (a comment) makes a customer's change
    rewrite its shard file too, so the processor, which parses recently modified files
    first, picks the change up at once rather than at the file's next turn."""
    table = "".join(
        f"    {cid!r}: {sorted(dag_ids)!r},  # md5 {md5}\n" for cid, dag_ids, md5 in customers
    )
    return (
        "# Generated by dagfleet: do not edit; change the store or the templates and run\n"
        f"# `fleet sync`. Each customer below has its DAGs in {PARTS_DIR}/<customer>.py.\n"
        "# Airflow's DAG processor builds every DAG listed here; a task worker builds only\n"
        "# the DAG it runs.\n"
        "import importlib.util\n"
        "from pathlib import Path\n"
        "\n"
        f"{_PARSING_CONTEXT[airflow_target]}\n"
        + "".join(f"import {m}  # noqa: F401\n" for m in sorted(set(modules)))
        + "\n"
        "CUSTOMERS = {  # customer_id -> its dag_ids\n"
        f"{table}"
        "}\n" + _LOADER.format(parts=PARTS_DIR)
    )


def listed(content: bytes | str) -> dict[str, list[str]]:
    """The customers a shard file loads, each with its dag_ids (its CUSTOMERS table)."""
    tree = ast.parse(content)
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == [
            "CUSTOMERS"
        ]:
            return ast.literal_eval(node.value)
    return {}


def split(content: bytes | str) -> dict[str, str]:
    """The parts of a published file, by customer (what lies between its markers)."""
    text = content.decode() if isinstance(content, bytes) else content
    parts: dict[str, str] = {}
    at = 0
    while (start := text.find(_MARKER, at)) >= 0:
        line_end = text.find("\n", start) + 1 or len(text)
        begin = _BEGIN_RE.fullmatch(text, start, line_end)
        if begin is None or (start and text[start - 1] != "\n"):
            at = line_end
            continue
        end_marker = _END.format(begin.group(1))
        end = text.find("\n" + end_marker, line_end - 1)  # the first, at a line's start
        if end < 0:
            at = line_end
            continue
        at = end + 1 + len(end_marker)
        parts[begin.group(1)] = text[start:at]
    return parts


_BUILDER_RE = re.compile(r"^def (\w+)\(\):$", re.MULTILINE)
_REGISTER_RE = re.compile(r"^DAGS\[('[^'\n]*'|\"[^\"\n]*\")\] = (\w+)$", re.MULTILINE)


def dag_at(text: str, line: int | None, message: str = "") -> str | None:
    """The dag_id whose builder function holds `line` of a shard file (or of a part as a
    file of its own), else the one Airflow's message names: what a refusal reports."""
    names = {m.group(2): ast.literal_eval(m.group(1)) for m in _REGISTER_RE.finditer(text)}
    if line is not None:
        owner = None
        for match in _BUILDER_RE.finditer(text):
            if text.count("\n", 0, match.start()) + 1 > line:
                break
            owner = match.group(1)
        if owner in names:
            return names[owner]
    named = [d for d in names.values() if d in message]
    return max(named, key=len) if named else None
