"""What every benchmark section shares: paths, the child environment, logging."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
WORK = REPO / "bench" / "work"


def _templates() -> Path:
    """The templates of the code being measured (bench/freeze.py), else the repo's."""
    from bench.freeze import active

    frozen = active()
    return frozen / "templates" if frozen else TEMPLATES


@dataclass
class Context:
    work: Path = WORK
    templates: Path = field(default_factory=_templates)
    started: float = field(default_factory=time.monotonic)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        home = self.work / "airflow-home"
        home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # Bytecode caches are written in the warm-up and used afterwards (the steady
        # state of a real Airflow host); without them every process recompiles Airflow.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("_AIRFLOW_PARSING_CONTEXT_DAG_ID", None)
        env.pop("STORAGE_EMULATOR_HOST", None)
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "1200",
                "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
                "PYTHONUNBUFFERED": "1",
                # The operator-signature cache (composer/compose/operator_cache.py) of this run
                # only: the warm-up sync fills it, the `full_cold` case empties it first.
                "FLEET_CACHE_DIR": str(self.cache_dir),
            }
        )
        self.env = env
        from bench.measure import spawner

        spawner()  # started now, while this process is small (see measure.Spawner)

    @property
    def cache_dir(self) -> Path:
        return self.work / "fleet-cache"

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    def say(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed / 60:5.1f} min] {message}", file=sys.stderr, flush=True)

    def sync_command(self, store_url: str, target_url: str, *extra: str) -> list[str]:
        """`fleet sync` in a fresh interpreter of the project venv (no `uv run` overhead)."""
        return [
            sys.executable,
            "-m",
            "composer.cli.main",
            "sync",
            "--store",
            store_url,
            "--target",
            target_url,
            "--templates",
            str(self.templates),
            *extra,
        ]


def template_operator_modules(templates: Path) -> list[str]:
    """Every module a template (or the fleet settings) takes an operator from."""
    modules: set[str] = set()

    def walk(tasks: object) -> None:
        if isinstance(tasks, dict):
            for task in tasks.values():
                if isinstance(task, dict) and isinstance(task.get("operator"), str):
                    modules.add(task["operator"].rsplit(".", 1)[0])

    for path in sorted(templates.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        walk(data.get("tasks"))
        walk(data.get("setup_tasks"))
        for dotted in data.get("imports") or []:
            modules.add(dotted.rsplit(".", 1)[0])
    return sorted(modules)
