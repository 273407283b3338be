"""A second Python environment with Airflow 2.11 (Composer 2), for the target-2 tests.

The project's own venv holds Airflow 3, so target-2 files are proven against a
separate venv, built once with `uv venv` + `uv pip install` and reused while its
requirements stay the same (the directory name is a hash of them). Airflow's official
constraint files live on GitHub, which these machines cannot reach, so the install
is resolved without them; `--exclude-newer` pins that resolution to a date, so a
rebuild on another machine gets the same versions a working one got.

dagfleet itself is not installed there: generated files and the meta-DAG import
`composer` through PYTHONPATH, and its runtime dependencies (from pyproject.toml,
minus Airflow) are installed beside Airflow.

Also runnable in either environment as `python tests/airflow2_env.py report DIR...`:
it builds a DagBag over each directory and prints one JSON report (see dagbag_report),
so the Airflow 2 and Airflow 3 results can be compared as data.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
AIRFLOW_REQUIREMENTS = (
    "apache-airflow==2.11.*",
    # Newest google provider that still supports Airflow 2 (requires apache-airflow>=2.11.0);
    # the same version the project's Airflow 3 venv locks.
    "apache-airflow-providers-google==22.8.0",
)
RESOLVED_AS_OF = "2026-11-21T00:00:00Z"  # uv --exclude-newer: bump to pick up new releases
CACHE_ENV = "DAGFLEET_AIRFLOW2_CACHE"  # where the venvs live; default <repo>/.cache
PYTHON_ENV = "DAGFLEET_AIRFLOW2_PYTHON"  # the interpreter for the venv, when the suite's is too new
NEWEST_SUPPORTED = (3, 12)  # Airflow 2.11 supports Python 3.9-3.12
RECIPE = 1  # bump when the build steps below change


class Airflow2EnvError(RuntimeError):
    """The Airflow 2.11 environment cannot be built or does not work."""


def runtime_requirements() -> tuple[str, ...]:
    """dagfleet's own runtime dependencies except Airflow (the env brings its own)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return tuple(sorted(d for d in project["dependencies"] if not d.startswith("apache-airflow")))


def requirements() -> tuple[str, ...]:
    return (*AIRFLOW_REQUIREMENTS, *runtime_requirements())


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or REPO / ".cache") / "airflow2-venv"


def base_python() -> tuple[str, str]:
    """The interpreter to build the venv with (for `uv venv --python`) and its minor version.

    The suite's own interpreter while Airflow 2.11 supports it; under a newer one (the
    Python 3.14 CI run) Composer 2's Python 3.11, which uv finds on PATH."""
    if sys.version_info[:2] <= NEWEST_SUPPORTED:
        return sys.executable, f"{sys.version_info.major}.{sys.version_info.minor}"
    request = os.environ.get(PYTHON_ENV) or "3.11"
    if os.sep not in request:
        return request, request
    probe = "import sys; print(f'{sys.version_info.major}.{sys.version_info.minor}')"
    version = subprocess.run(
        [request, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    return request, version


def env_key() -> str:
    """Hash of everything the environment is built from."""
    python = base_python()[1]
    blob = json.dumps([RECIPE, python, RESOLVED_AS_OF, list(requirements())])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Airflow2Env:
    root: Path
    airflow_version: str
    build_seconds: float  # what building it took (0 when it was reused)

    @property
    def python(self) -> Path:
        return self.root / "venv" / "bin" / "python"

    @property
    def bin(self) -> Path:
        return self.root / "venv" / "bin"

    def environ(self, airflow_home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A clean environment for this venv: dagfleet on PYTHONPATH, Airflow at airflow_home."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "VIRTUAL_ENV", "UV_PROJECT", "PYTHON"))
        }
        env.update(
            PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}",
            PYTHONPATH=str(REPO),
            AIRFLOW_HOME=str(airflow_home),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__UNIT_TEST_MODE="False",
            # 2.11 warns about the old timer unit at every start; this is the 3.x default.
            AIRFLOW__METRICS__TIMER_UNIT_CONSISTENCY="True",
        )
        env.update(extra or {})
        return env

    def run(
        self,
        args: Sequence[str],
        airflow_home: Path,
        *,
        extra_env: Mapping[str, str] | None = None,
        timeout: float = 600,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command of this venv (`python ...`, `airflow ...`); never raises on exit code."""
        exe = self.bin / args[0]
        return subprocess.run(
            [str(exe), *args[1:]],
            env=self.environ(airflow_home, extra_env),
            cwd=cwd or airflow_home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def dagbag_report(self, folders: Sequence[Path], airflow_home: Path) -> dict[str, Any]:
        """dagbag_report() run inside this venv."""
        return run_report(self.python, folders, self.environ(airflow_home), airflow_home)


def run_report(
    python: Path | str, folders: Sequence[Path], env: Mapping[str, str], cwd: Path
) -> dict[str, Any]:
    proc = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "report", *map(str, folders)],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    marker = "DAGBAG-REPORT:"
    lines = [line for line in proc.stdout.splitlines() if line.startswith(marker)]
    if proc.returncode != 0 or not lines:
        raise AssertionError(
            f"dagbag report failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return json.loads(lines[-1][len(marker) :])


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        raise Airflow2EnvError("uv is not on PATH")
    return uv


def _step(args: list[str], what: str, timeout: float, **extra_env: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_PROJECT"))}
    env.update(extra_env)
    try:
        proc = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Airflow2EnvError(f"{what}: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise Airflow2EnvError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail))
    return proc.stdout


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time across processes (several test runs may share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _reuse(env_dir: Path) -> Airflow2Env | None:
    """The environment in env_dir if it was built to the end and its Python still runs."""
    ready = env_dir / "ready.json"
    env = Airflow2Env(env_dir, "", 0.0)
    if not (ready.is_file() and env.python.exists()):  # exists() follows the symlink
        return None
    return Airflow2Env(env_dir, json.loads(ready.read_text())["airflow_version"], 0.0)


def ensure_airflow2_env(*, timeout: float = 480) -> Airflow2Env:
    """The cached environment, built first if missing. Raises Airflow2EnvError.

    The install timeout stays below pytest's (600 s) so a stuck install is reported
    as this error, not as a killed test."""
    root = cache_root()
    env_dir = root / env_key()
    found = _reuse(env_dir)  # warm: no lock, no subprocess
    if found:
        return found
    root.mkdir(parents=True, exist_ok=True)
    ignore = root.parent / ".gitignore"
    if root.parent == REPO / ".cache" and not ignore.exists():
        ignore.write_text("# dagfleet test caches (tests/airflow2_env.py)\n*\n")
    with _locked(root / ".lock"):
        found = _reuse(env_dir)  # another process built it while we waited
        if found:
            return found
        started = time.monotonic()
        shutil.rmtree(env_dir, ignore_errors=True)  # a half-built one from a crash
        venv = env_dir / "venv"
        uv = _uv()
        python = base_python()[0]
        _step([uv, "venv", "--quiet", "--python", python, str(venv)], "uv venv", 120)
        _step(
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--python",
                str(venv / "bin" / "python"),
                "--exclude-newer",
                RESOLVED_AS_OF,
                *requirements(),
            ],
            "uv pip install " + " ".join(AIRFLOW_REQUIREMENTS),
            timeout,
        )
        version = _step(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import airflow, airflow.providers.google, json_merge_patch;"
                "print(airflow.__version__)",
            ],
            "import airflow in the new env",
            300,
            AIRFLOW_HOME=str(env_dir / "check-home"),  # not ~/airflow
        ).strip()
        if not version.startswith("2.11."):
            raise Airflow2EnvError(f"expected Airflow 2.11.x in the new env, got {version!r}")
        seconds = round(time.monotonic() - started, 1)
        info = {
            "airflow_version": version,
            "requirements": list(requirements()),
            "resolved_as_of": RESOLVED_AS_OF,
            "build_seconds": seconds,
        }
        (env_dir / "ready.json").write_text(json.dumps(info, indent=2) + "\n")
        for other in root.iterdir():  # older requirement sets: ~1 GB each
            if other.is_dir() and other != env_dir:
                shutil.rmtree(other, ignore_errors=True)
        return Airflow2Env(env_dir, version, seconds)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# -- the report (runs inside the Airflow 2 or 3 interpreter; stdlib + Airflow only) ----

DEPRECATION_CLASSES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
GENERATED_MODULES = r"unusual_prefix_"  # how DagBag names the modules of the files it loads


def is_deprecation(category: type[Warning]) -> bool:
    """Python's deprecation classes, and Airflow's (RemovedInAirflow3Warning,
    AirflowProviderDeprecationWarning, DeprecatedImportWarning, ...) by their bases or name."""
    name = category.__name__
    return issubclass(category, DEPRECATION_CLASSES) or "Deprecat" in name or "Removed" in name


def _dagbag_class() -> type:
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3
    except ImportError:
        from airflow.models.dagbag import DagBag  # Airflow 2
    return DagBag


def _seconds(value: Any) -> float | None:
    return None if value is None else float(getattr(value, "total_seconds", lambda: value)())


def _callables(value: Any) -> list[str]:
    items = value if isinstance(value, list | tuple) else [] if value is None else [value]
    return [f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}" for f in items]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if callable(value):
        return _callables(value)[0]
    if hasattr(value, "total_seconds"):
        return {"seconds": value.total_seconds()}
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def _attr(obj: Any, name: str) -> Any:
    """`name` in the Airflow 3 SDK, `_name` in Airflow 2's timetables."""
    return getattr(obj, name) if hasattr(obj, name) else getattr(obj, f"_{name}", None)


def _uris(assets: Any) -> list[str]:
    """Asset (Airflow 2: dataset) URIs of an outlet list or an asset condition."""
    items = getattr(assets, "objects", assets) or []
    return sorted(a.uri for a in items if hasattr(a, "uri"))


def _timetable(timetable: Any) -> dict[str, Any]:
    condition = getattr(timetable, "asset_condition", None) or getattr(
        timetable, "dataset_condition", None
    )
    if condition is not None and hasattr(timetable, "timetable"):
        # AssetOrTimeSchedule (Airflow 3) / DatasetOrTimeSchedule (Airflow 2): one shape.
        return {
            "class": "AssetOrTimeSchedule",
            "timetable": _timetable(timetable.timetable),
            "assets": _uris(condition),
        }
    tz = _attr(timetable, "timezone")
    return {
        "class": type(timetable).__name__,
        "expression": _attr(timetable, "expression"),
        "timezone": getattr(tz, "name", None) or str(tz),
        "interval": _seconds(_attr(timetable, "interval")),
    }


def _groups(group: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for child in group.children.values():
        if hasattr(child, "children"):
            found[child.group_id] = {
                "tooltip": child.tooltip,
                "children": sorted(child.children),
                "default_args": _plain(child.default_args),
            }
            found.update(_groups(child))
    return found


def describe_dag(dag: Any) -> dict[str, Any]:
    """What a DAG is, as plain data both Airflow majors can produce."""
    return {
        "timetable": _timetable(dag.timetable),
        "timezone": getattr(dag.timezone, "name", None) or str(dag.timezone),
        "start_date": dag.start_date.isoformat() if dag.start_date else None,
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "is_paused_upon_creation": dag.is_paused_upon_creation,
        "tags": sorted(dag.tags),
        "description": dag.description,
        "default_args": _plain(dag.default_args),
        "groups": _groups(dag.task_group),
        "tasks": {
            t.task_id: {
                "operator": type(t).__name__,
                "group": t.task_group.group_id if t.task_group else None,
                "upstream": sorted(t.upstream_task_ids),
                "owner": t.owner,
                "retries": t.retries,
                "retry_delay": _seconds(t.retry_delay),
                "max_retry_delay": _seconds(t.max_retry_delay),
                "retry_exponential_backoff": bool(t.retry_exponential_backoff),
                "on_failure_callback": _callables(t.on_failure_callback),
                "trigger_rule": str(getattr(t.trigger_rule, "value", t.trigger_rule)),
                "outlets": _uris(t.outlets),
            }
            for t in dag.tasks
        },
    }


CAPTURED_RE = re.compile(
    r"(?P<file>.+?):(?P<line>\d+): (?P<category>[\w.]+): (?P<message>.*)\Z", re.S
)


def _category(dotted: str) -> type[Warning] | None:
    module, _, name = dotted.rpartition(".")
    try:
        found = getattr(importlib.import_module(module or "builtins"), name)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) and issubclass(found, Warning) else None


def generated_warnings(bag: Any, caught: Sequence[Any], folder: Path) -> list[dict[str, Any]]:
    """Warnings whose filename is a file in `folder`, with their real category.

    DagBag keeps the warnings each file raised in `captured_warnings` ("file:line:
    module.Category: message"); that is the source to trust, because Airflow 3.3
    re-emits them all as UserWarning, so a recording of Python's warnings alone cannot
    tell a deprecation there. Recorded warnings add what DagBag raised outside a file's
    import (while it processed the file's DAGs)."""
    root = folder.resolve()
    found: dict[tuple[str, int, str], dict[str, Any]] = {}

    def add(filename: str, lineno: int, category: type | None, name: str, message: str) -> None:
        path = Path(filename) if Path(filename).is_absolute() else root / filename
        if not str(path.resolve()).startswith(f"{root}{os.sep}"):
            return
        key = (str(path.resolve()), lineno, message)
        deprecation = is_deprecation(category) if category else "Deprecat" in name
        found.setdefault(
            key,
            {
                "category": name,
                "deprecation": deprecation,
                "filename": key[0],
                "lineno": lineno,
                "message": message,
            },
        )

    for lines in bag.captured_warnings.values():
        for line in lines:
            match = CAPTURED_RE.match(line)
            if match:
                name = match["category"]
                add(match["file"], int(match["line"]), _category(name), name, match["message"])
    for w in caught:
        name = f"{w.category.__module__}.{w.category.__name__}"
        add(str(w.filename), w.lineno or 0, w.category, name, str(w.message))
    return sorted(found.values(), key=lambda w: (w["filename"], w["lineno"]))


def dagbag_report(folder: Path) -> dict[str, Any]:
    """Import every file in `folder` twice with Airflow's DagBag: once recording every
    warning (see generated_warnings), once with deprecation warnings raised as errors
    in the generated modules only (Airflow's own, e.g. pathspec's on .airflowignore,
    stay warnings), which turns a deprecation into an import error."""
    import warnings

    import airflow  # first: Airflow 2 replaces warnings.showwarning when it initialises

    dagbag_class = _dagbag_class()
    root = str(folder.resolve())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = dagbag_class(dag_folder=root)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        for category in DEPRECATION_CLASSES:
            warnings.filterwarnings("error", category=category, module=GENERATED_MODULES)
        strict = dagbag_class(dag_folder=root)
    return {
        "airflow_version": airflow.__version__,
        "dag_ids": sorted(bag.dags),
        "files": {d.dag_id: os.path.relpath(d.fileloc, root) for d in bag.dags.values()},
        "import_errors": dict(bag.import_errors),
        "warnings": generated_warnings(bag, caught, folder),
        "strict_import_errors": dict(strict.import_errors),
        "dags": {dag_id: describe_dag(dag) for dag_id, dag in sorted(bag.dags.items())},
    }


def _main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "report":
        print("usage: airflow2_env.py report DIR...", file=sys.stderr)
        return 2
    report = {folder: dagbag_report(Path(folder)) for folder in argv[1:]}
    print("DAGBAG-REPORT:" + json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
