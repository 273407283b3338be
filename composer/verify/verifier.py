"""Verification: every file a sync would write is imported by Airflow's own DagBag, under
the fleet's Airflow major, before it is published. A file Airflow refuses sets its
customer aside (one ConfigError naming customer, integration and field where the file
tells them, with Airflow's message), so a district's DAGs never vanish from Airflow
because of one bad override.

The import runs in a fresh interpreter (composer/verify/child.py), one per building
process (the CLI's, or each build worker's), started on the first file to verify, so a
no-op sync imports no Airflow. That interpreter is the fleet's Airflow: $FLEET_VERIFY_PYTHON,
else this one when its Airflow major is the target's. Its import path holds the `composer`
package exactly as `fleet deploy` ships it (copied to a temporary DAG folder) and not the
checkout, so a callback module that imports something the deployed folder lacks fails here.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from composer import PACKAGE_DIR
from composer.errors import BuildFailed, ConfigError, one_line
from composer.render import layout

if TYPE_CHECKING:
    from composer.build import CustomerBuild, FleetBuilder

log = logging.getLogger("dagfleet")

PYTHON_ENV = "FLEET_VERIFY_PYTHON"  # an interpreter with the target's Airflow
SKIP_ENV = "_FLEET_SKIP_VERIFY"  # benchmarks only (bench/): the peer without verification
FOLDER = "fleet"  # where files are verified inside the temporary DAG folder
BOOTSTRAP = """\
import os, sys
dags = sys.argv[1]
# Any other place that holds a `composer` package (the checkout, an editable install)
# is not on Composer's path: only the staged copy of what deploy ships is.
sys.path[:] = [dags] + [
    p for p in sys.path if p and not os.path.isfile(os.path.join(p, "composer", "__init__.py"))
]
from composer.verify.child import main
main(int(sys.argv[2]), int(sys.argv[3]))
"""


class VerifyFailed(BuildFailed):
    """Verification itself could not run (its interpreter is missing or wrong, or died):
    nothing is written."""


@dataclass(frozen=True)
class Problem:
    """Why Airflow refused one file: its message on one line, and the file's line."""

    message: str
    line: int | None


class BuiltFile(Protocol):
    path: str
    customer_id: str
    md5: str
    content: bytes
    part: bool  # the customer's DAGs for a shard file, as a file of their own


def verify_python(airflow_target: int) -> str | None:
    """The interpreter that verifies, or None when files cannot be verified here (then
    say so once, loudly: a target-2 fleet synced from an Airflow 3 checkout)."""
    if os.environ.get(SKIP_ENV):
        return None
    configured = os.environ.get(PYTHON_ENV, "").strip()
    if configured:
        return configured
    running = _airflow_major()
    if running == airflow_target:
        return sys.executable
    log.warning(
        "warning: files are only compiled, not imported by Airflow, before publishing: "
        "the fleet targets Airflow %d and this environment has %s; set %s to a Python "
        "with Airflow %d to verify them",
        airflow_target,
        f"Airflow {running}" if running else "no Airflow",
        PYTHON_ENV,
        airflow_target,
    )
    return None


def _airflow_major() -> int | None:
    for dist in ("apache-airflow-core", "apache-airflow"):
        try:
            return int(version(dist).split(".")[0])
        except (PackageNotFoundError, ValueError):
            continue
    return None


def shipped_package_files(package_dir: Path = PACKAGE_DIR) -> dict[str, bytes]:
    """The `composer` package as `fleet deploy` puts it in the DAG folder."""
    from composer.publish.deploy import PACKAGE_FOLDER, deploy_files

    meta = package_dir.parent / "dags" / "fleet_meta.py"
    if meta.is_file():
        files = deploy_files(package_dir.parent / "templates", meta, package_dir)
        return {p: data for p, data in files.items() if p.startswith(f"{PACKAGE_FOLDER}/")}
    # Inside a deployed DAG folder (the meta-DAG on Composer) the package is the shipped one.
    return {
        f"{PACKAGE_FOLDER}/{p.relative_to(package_dir).as_posix()}": p.read_bytes()
        for p in sorted(package_dir.rglob("*"))
        if p.is_file() and (p.suffix == ".py" or p.name == "schema.sql")
        if "__pycache__" not in p.parts
    }


class Verifier:
    """One verification interpreter, started on first use; close() stops it."""

    def __init__(self, airflow_target: int, python: str, package_dir: Path = PACKAGE_DIR) -> None:
        self.airflow_target = airflow_target
        self.python = python
        self.package_dir = package_dir
        self.airflow_version: str | None = None
        self._root: Path | None = None
        self._process: subprocess.Popen | None = None
        self._streams: list[Any] = []
        self._batches = 0

    def verify(self, files: Sequence[tuple[str, bytes]]) -> dict[str, Problem]:
        """Import each (path, content) with the DagBag; the problems of the refused ones."""
        if not files:
            return {}
        self._start()
        assert self._root is not None
        self._batches += 1
        folder = self._root / "dags" / FOLDER / str(self._batches)
        for path, content in files:
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        try:
            answer = self._ask({"folder": str(folder), "files": [p for p, _ in files]})
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return {
            path: Problem(one_line(result["error"]), result["line"])
            for path, result in answer["results"].items()
            if result["error"]
        }

    def close(self) -> None:
        for stream in self._streams:
            stream.close()
        self._streams = []
        if self._process is not None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        if self._process is not None:
            return
        self._root = Path(tempfile.mkdtemp(prefix="dagfleet-verify-"))
        for path, content in shipped_package_files(self.package_dir).items():
            staged = self._root / "dags" / path
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_bytes(content)
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        # Inside an Airflow task (the meta-DAG's sync) the task's parsing context is set;
        # a shard file's footer would then build only that DAG (fleet_meta) and the import
        # find no DAG in any part. The DAG processor parses with none: neither does this.
        env.pop("_AIRFLOW_PARSING_CONTEXT_DAG_ID", None)
        env.pop("_AIRFLOW_PARSING_CONTEXT_TASK_ID", None)
        env.update(
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            # The whole traceback, so a failure can be traced to its line of the file.
            AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACKS="True",
            AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACK_DEPTH="50",
        )
        if os.path.realpath(self.python) != os.path.realpath(sys.executable):
            # Another Airflow: its own throw-away home, not this one's config and database.
            env["AIRFLOW_HOME"] = str(self._root / "airflow-home")
        stderr = (self._root / "stderr.log").open("wb")
        self._streams.append(stderr)
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        args = [self.python, "-I", "-c", BOOTSTRAP, str(self._root / "dags")]
        try:
            self._process = subprocess.Popen(
                [*args, str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,  # a file, never a pipe nobody reads while it imports
                env=env,
            )
        except OSError as exc:
            os.close(to_child_w)
            os.close(from_child_r)
            self.close()
            raise VerifyFailed(f"cannot start {self.python} to verify files: {exc}") from exc
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._send = os.fdopen(to_child_w, "w")
        self._receive = os.fdopen(from_child_r, "r")
        self._streams += [self._send, self._receive]
        hello = self._read()
        self.airflow_version = str(hello.get("airflow"))
        major = int(self.airflow_version.split(".")[0])
        if major != self.airflow_target:
            where = f"{PYTHON_ENV}={self.python}" if os.environ.get(PYTHON_ENV) else self.python
            self.close()
            raise VerifyFailed(
                f"{where} has Airflow {self.airflow_version}, the fleet targets Airflow "
                f"{self.airflow_target}: point {PYTHON_ENV} at a Python with Airflow "
                f"{self.airflow_target}"
            )

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            self._send.write(json.dumps(request) + "\n")
            self._send.flush()
        except OSError as exc:
            raise self._died(exc) from exc
        return self._read()

    def _read(self) -> dict[str, Any]:
        line = self._receive.readline()
        if not line:
            raise self._died(None)
        return json.loads(line)

    def _died(self, exc: Exception | None) -> VerifyFailed:
        process = self._process
        if process is not None:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        log_file = self._root / "stderr.log" if self._root else None
        stderr = log_file.read_text(errors="replace") if log_file and log_file.exists() else ""
        tail = [line for line in stderr.strip().splitlines() if line.strip()][-1:]
        why = tail[0] if tail else (str(exc) if exc else "no answer")
        self._process = None
        self.close()
        return VerifyFailed(f"the verification process ({self.python}) exited: {one_line(why)}")


def changed(files: Iterable[BuiltFile], existing: Mapping[str, str]) -> list[BuiltFile]:
    """The files a sync would write: added, or different from the target's copy."""
    return [f for f in files if existing.get(f.path) != f.md5]


def refusal(
    file: BuiltFile,
    problem: Problem,
    overrides: Mapping[str | None, Mapping[str, Any] | None],
    setup_tasks: Collection[str] = (),
) -> ConfigError:
    """One line for a refused file: the integration from the dag_id or the task group,
    the field from the task (and the argument Airflow's message names) at the failing
    line. `overrides`: each integration's task_overrides."""
    customer_id = file.customer_id
    dag_id = Path(file.path).stem
    where = file.path
    if getattr(file, "part", False):  # a shard file's part: the DAG whose builder failed
        # "" when the failing line is in no builder (the header or footer) and the message
        # names no DAG: the customer's part, with no integration to name
        dag_id = (
            layout.dag_at(file.content.decode(errors="replace"), problem.line, problem.message)
            or ""
        )
        where = f"{file.path} ({customer_id}'s part" + (f", DAG {dag_id})" if dag_id else ")")
    message = f"{where}: Airflow refuses the file: {problem.message}"
    located = _locate(file.content, problem)
    if located is None:
        integration = _integration(dag_id, customer_id, None)
        return ConfigError(customer_id, integration, "template", message)
    task_id, group, arguments = located
    if group is None and task_id in setup_tasks:
        return ConfigError(customer_id, None, f"setup_tasks.{task_id}", message)
    integration = _integration(dag_id, customer_id, group)
    patch = overrides.get(integration) or {}
    task_patch = patch.get(task_id)
    where = "task_overrides" if isinstance(task_patch, dict) else "tasks"
    candidates = list(arguments)
    if isinstance(task_patch, dict) and isinstance(task_patch.get("args"), dict):
        candidates = [*task_patch["args"], *candidates]
    text = problem.message.lower()
    named = next(
        (a for a in candidates if a.lower() in text or a.replace("_", " ").lower() in text),
        None,
    )
    field = f"{where}.{task_id}" + (f".args.{named}" if named else "")
    return ConfigError(customer_id, integration, field, message)


def _integration(dag_id: str, customer_id: str, group: str | None) -> str | None:
    suffix = dag_id.removeprefix(f"{customer_id}__") if "__" in dag_id else ""
    if suffix and suffix not in ("main", "rollup"):
        return suffix  # a cron DAG is its integration's
    return group if suffix == "main" else None


def _locate(content: bytes, problem: Problem) -> tuple[str, str | None, list[str]] | None:
    """(task_id, top-level task group, argument names) of the task whose call holds the
    failing line or whose id the message names."""
    try:
        tree = ast.parse(content)
    except (SyntaxError, ValueError):
        return None
    found: list[tuple[ast.Call, str, str | None]] = []

    def walk(node: ast.AST, group: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = group
            if isinstance(child, ast.With) and group is None:
                for item in child.items:
                    call = item.context_expr
                    if (
                        isinstance(call, ast.Call)
                        and getattr(call.func, "id", None) == "TaskGroup"
                        and call.args
                        and isinstance(call.args[0], ast.Constant)
                    ):
                        inner = str(call.args[0].value)
            if isinstance(child, ast.Call):
                task_id = next(
                    (
                        k.value.value
                        for k in child.keywords
                        if k.arg == "task_id" and isinstance(k.value, ast.Constant)
                    ),
                    None,
                )
                if isinstance(task_id, str):
                    found.append((child, task_id, group))
            walk(child, inner)

    walk(tree, None)
    for call, task_id, group in found:
        if problem.line is not None and call.lineno <= problem.line <= (call.end_lineno or 0):
            return task_id, group, [k.arg for k in call.keywords if k.arg]
    for call, task_id, group in found:
        if task_id in problem.message:
            return task_id, group, [k.arg for k in call.keywords if k.arg]
    return None


def verify_builds(
    builder: FleetBuilder,
    builds: Sequence[CustomerBuild],
    existing: Mapping[str, Mapping[str, str]],
    verifier: Verifier,
) -> None:
    """Import what these builds would write (`existing`: each customer's files in the
    target, path -> md5) in one DagBag pass; a customer with a refused file gets its
    errors and no files, as any invalid customer."""
    wanted = [
        f for b in builds if not b.errors for f in changed(b.files, existing.get(b.customer_id, {}))
    ]
    # A customer's part is imported as a file of its own (header, part, footer: what
    # ships), named apart from the other customers' parts bound for the same shard file.
    by_path = {(f"{f.customer_id}/{f.path}" if f.part else f.path): f for f in wanted}
    problems = verifier.verify([(path, f.content) for path, f in by_path.items()])
    if not problems:
        return
    setup_tasks = set(builder.settings.setup_tasks)
    for build in builds:
        refused = [p for p in sorted(problems) if by_path[p].customer_id == build.customer_id]
        if not refused:
            continue
        customer = builder.fleet.customers[build.customer_id]
        overrides = {i.integration_id: i.task_overrides for i in customer.integrations}
        for path in refused:
            build.errors.append(refusal(by_path[path], problems[path], overrides, setup_tasks))
        build.files = []
        build.dag_ids = []
        builder.invalid.add(build.customer_id)
