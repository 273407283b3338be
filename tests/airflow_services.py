"""Test support: Airflow 3's own services, running, over a DAG folder.

`AirflowServices` starts `airflow dag-processor`, `airflow scheduler` (LocalExecutor)
and `airflow api-server` as separate processes, the way a deployment runs them, with a
fresh AIRFLOW_HOME, a SQLite metadata DB copied from one `airflow db migrate` per
session (`migrate_metadata_db`), and intervals short enough for a test (the DAG folder
is listed every 2 s, the scheduler loops every second). The api-server listens on
127.0.0.1 at a free port with the simple auth manager making every user an admin; the
scheduler's log server is not started (`--skip-serve-logs`: logs are local files), so
nothing listens anywhere else.

Airflow's state is read only where Airflow keeps it: its metadata DB (read-only
sqlite3 connections) and its REST API (`/api/v2`, a JWT from `/auth/token`). Each
service logs to a file under the home; `log_tails()` gives their ends for a failure
message. `stop()` ends every process group (SIGTERM, then SIGKILL after a grace
period: the 3.3 dag-processor sometimes swallows SIGTERM) and is safe to call twice.

The default pool has no slots, so the scheduler creates and queues runs but never
starts a task: nothing here has Google Cloud credentials, and every task of the fleet
would fail at authentication after costing a task process. What these services prove
is registration and scheduling, not BigQuery.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

BIN = Path(sys.executable).parent
AIRFLOW = BIN / "airflow"
HOST = "127.0.0.1"
SERVICES = ("dag-processor", "scheduler", "api-server")
T = TypeVar("T")


def free_port() -> int:
    """A port nothing on 127.0.0.1 listens on right now (the api-server binds it next)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def precompile_airflow() -> None:
    """Write Airflow's bytecode once, before three services import it at the same time
    (each would otherwise compile the same modules; a no-op when already compiled)."""
    folders = [
        Path(importlib.util.find_spec(name).origin).parent for name in ("airflow", "composer")
    ]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", *map(str, folders)],
        check=False,
        stdout=subprocess.DEVNULL,
        env=_child_env({}),
        timeout=900,
    )


def _child_env(airflow_settings: dict[str, str]) -> dict[str, str]:
    """This environment minus any Airflow settings of the caller, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # imports are ~3x slower without bytecode
    env["NO_GCE_CHECK"] = "True"  # google-auth: do not probe a metadata server
    env.update(airflow_settings)
    return env


def airflow_settings(home: Path, dags_folder: Path, port: int) -> dict[str, str]:
    """Everything the services are configured with (`airflow config list --defaults`
    names). Paused-at-creation is left at Airflow's default on purpose: the fleet must be
    unpaused by its own files, not by this harness."""
    base_url = f"http://{HOST}:{port}"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DEFAULT_POOL_TASK_SLOT_COUNT": "0",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        # the scheduler signs task tokens the api-server checks: one secret for both
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "0",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
    }


def migrate_metadata_db(folder: Path) -> Path:
    """`airflow db migrate` into a fresh SQLite file under `folder` (once per session;
    tests copy the file). Returns the file."""
    home = folder / "home"
    home.mkdir(parents=True)
    env = _child_env(airflow_settings(home, folder / "dags", free_port()))
    done = subprocess.run(
        [str(AIRFLOW), "db", "migrate"],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"airflow db migrate failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return home / "airflow.db"


class AirflowServices:
    """dag-processor, scheduler and api-server over `dags_folder`, on a copy of a
    migrated metadata DB."""

    def __init__(self, workdir: Path, dags_folder: Path, migrated_db: Path) -> None:
        self.home = workdir / "airflow-home"
        self.home.mkdir(parents=True)
        shutil.copyfile(migrated_db, self.home / "airflow.db")
        self.db_path = self.home / "airflow.db"
        self.dags_folder = dags_folder
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.env = _child_env(airflow_settings(self.home, dags_folder, self.port))
        self._procs: dict[str, subprocess.Popen] = {}
        self._token: str | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 150) -> AirflowServices:
        commands = {
            "dag-processor": [str(AIRFLOW), "dag-processor"],
            "scheduler": [str(AIRFLOW), "scheduler", "--skip-serve-logs"],
            "api-server": [str(AIRFLOW), "api-server", "--host", HOST, "--port", str(self.port)],
        }
        try:
            for name, command in commands.items():
                with open(self.log_path(name), "wb") as log:
                    self._procs[name] = subprocess.Popen(
                        command,
                        env=self.env,
                        cwd=self.home,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,  # its own process group, stopped as one
                    )
            self.wait_for(
                self._api_healthy, timeout, "the api-server to answer /api/v2/monitor/health"
            )
            self.wait_for(self._scheduler_heartbeating, timeout, "a running scheduler job")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, grace: float = 8) -> None:
        for proc in self._procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for proc in self._procs.values():
            _signal_group(proc, signal.SIGKILL)  # children too, even if the leader exited
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self._procs.clear()

    def __enter__(self) -> AirflowServices:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- logs ------------------------------------------------------------------------------

    def log_path(self, service: str) -> Path:
        return self.home / f"{service}.log"

    def log_tails(self, lines: int = 40) -> str:
        parts = []
        for service in SERVICES:
            path = self.log_path(service)
            text = path.read_text(errors="replace") if path.exists() else "(no log)"
            tail = "\n".join(text.splitlines()[-lines:])
            parts.append(f"----- {service} ({path}), last {lines} lines -----\n{tail}")
        return "\n".join(parts)

    def dead_services(self) -> list[str]:
        return [
            f"{n} (exit {p.returncode})" for n, p in self._procs.items() if p.poll() is not None
        ]

    # -- waiting ----------------------------------------------------------------------------

    def wait_for(self, probe: Callable[[], T], timeout: float, what: str, every: float = 0.5) -> T:
        """The first truthy value of `probe()`; fails naming `what`, with the services'
        logs, on timeout or when a service has died."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            try:
                value = probe()
                if value:
                    return value
            except (sqlite3.OperationalError, OSError) as exc:  # locked DB, server not up yet
                last_error = exc
            if dead := self.dead_services():
                raise AssertionError(
                    f"while waiting for {what}: {', '.join(dead)} died\n{self.log_tails()}"
                )
            if time.monotonic() > deadline:
                why = f" (last error: {last_error})" if last_error else ""
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what}{why}\n{self.log_tails()}"
                )
            time.sleep(every)

    def _api_healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=5) as resp:
            return resp.status == 200

    def _scheduler_heartbeating(self) -> bool:
        return bool(
            self.query("SELECT 1 FROM job WHERE job_type = 'SchedulerJob' AND state = 'running'")
        )

    # -- Airflow's state --------------------------------------------------------------------

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        """Rows from the metadata DB, through a read-only connection."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            conn.row_factory = sqlite3.Row
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """A call to Airflow's public REST API (`path` under /api/v2), as an admin."""
        if self._token is None:
            with urllib.request.urlopen(f"{self.base_url}/auth/token", timeout=30) as resp:
                self._token = json.load(resp)["access_token"]
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base_url}/api/v2/{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            raise AssertionError(
                f"{method} /api/v2/{path}: HTTP {exc.code}: {exc.read()[:500]!r}"
            ) from None


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def utc(value: str | None) -> dt.datetime | None:
    """A metadata-DB timestamp (SQLite text, UTC) as an aware datetime."""
    if value is None:
        return None
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
