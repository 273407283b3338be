"""Deploy: put the meta-DAG, the `composer` package and the templates into an Airflow
DAG folder (a Composer environment's gs://<bucket>/dags, or a local folder).

The layout is the one terraform/main.tf configures:
  <dags>/fleet_meta.py        the meta-DAG
  <dags>/composer/            the package (.py files and schema.sql); importable
                              because Airflow puts the DAG folder on sys.path
  <dags>/fleet_templates/     templates/ (FLEET_TEMPLATES points here)
  <dags>/.airflowignore       keeps Airflow from parsing composer/ and fleet_templates/
                              (the legacy DAG files in there must never run twice)
Order, so that no moment of a deploy is broken: .airflowignore first; the package and
the templates in parallel; files of those two folders that are no longer in the
source are removed; fleet_meta.py last. Files are compared by md5 against one listing
of the target, so an unchanged deploy uploads nothing, and every write carries the
target's precondition (on GCS: two deploys at once cannot overwrite each other).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from composer import PACKAGE_DIR
from composer.errors import SettingsError
from composer.model.settings import load_settings
from composer.plan.changes import AIRFLOWIGNORE
from composer.targets import ObjectState, Target, open_target

REPO = PACKAGE_DIR.parent
META_DAG = REPO / "dags" / "fleet_meta.py"
TEMPLATES = REPO / "templates"
PACKAGE_FOLDER = "composer"
TEMPLATES_FOLDER = "fleet_templates"
OWNED_FOLDERS = (f"{PACKAGE_FOLDER}/", f"{TEMPLATES_FOLDER}/")
# One pattern per folder, anchored at the DAG folder so that a customer folder of the
# fleet that happens to be named "composer" is never ignored. Airflow 3 reads
# .airflowignore as globs by default, Airflow 2 as regexps: the two need different lines.
IGNORE_LINES = {
    "glob": (f"/{PACKAGE_FOLDER}/", f"/{TEMPLATES_FOLDER}/"),
    "regexp": (f"^{PACKAGE_FOLDER}/", f"^{TEMPLATES_FOLDER}/"),
}
IGNORE_COMMENT = "# dagfleet deploy: the composer package and the templates are not DAGs"
DEFAULT_JOBS = 16


@dataclass
class DeployResult:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def uploaded(self) -> list[str]:
        return [*self.added, *self.changed]

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.changed)} changed, "
            f"{len(self.removed)} removed, {self.unchanged} unchanged"
        )


def ignore_syntax_for(templates_dir: Path) -> str:
    """The .airflowignore syntax of the fleet's Airflow (fleet.yaml airflow_target):
    glob for Airflow 3, regexp for Airflow 2 (each one's default)."""
    return "glob" if load_settings(templates_dir).airflow_target == 3 else "regexp"


def deploy_files(
    templates_dir: Path = TEMPLATES, meta_dag: Path = META_DAG, package_dir: Path = PACKAGE_DIR
) -> dict[str, bytes]:
    """Every file a deploy puts in the DAG folder (.airflowignore aside), by path."""
    if not meta_dag.is_file():
        raise SettingsError(f"{meta_dag}: not found: run `fleet deploy` from a dagfleet checkout")
    files = {"fleet_meta.py": meta_dag.read_bytes()}
    for path in _walk(package_dir):
        if path.suffix == ".py" or path.name == "schema.sql":
            files[f"{PACKAGE_FOLDER}/{path.relative_to(package_dir).as_posix()}"] = (
                path.read_bytes()
            )
    for path in _walk(templates_dir):
        if path.suffix != ".pyc":
            files[f"{TEMPLATES_FOLDER}/{path.relative_to(templates_dir).as_posix()}"] = (
                path.read_bytes()
            )
    return files


def airflowignore(current: bytes | None, syntax: str) -> bytes | None:
    """`current` with our lines added (every other line kept); None when nothing to add."""
    lines = (current or b"").decode().splitlines()
    missing = [line for line in IGNORE_LINES[syntax] if line not in lines]
    if not missing:
        return None
    if IGNORE_COMMENT not in lines:
        missing.insert(0, IGNORE_COMMENT)
    return ("\n".join([*lines, *missing]) + "\n").encode()


def deploy(
    dags_url: str,
    *,
    templates_dir: Path = TEMPLATES,
    ignore_syntax: str | None = None,
    jobs: int = DEFAULT_JOBS,
    dry_run: bool = False,
    meta_dag: Path = META_DAG,
    package_dir: Path = PACKAGE_DIR,
) -> DeployResult:
    """Make `dags_url` hold this checkout's meta-DAG, package and templates.

    Raises SettingsError (bad templates folder) before touching the target, and
    TargetError when the target cannot be listed or written."""
    syntax = ignore_syntax or ignore_syntax_for(templates_dir)
    if syntax not in IGNORE_LINES:
        raise SettingsError(f"ignore syntax must be glob or regexp, not {syntax!r}")
    files = deploy_files(templates_dir, meta_dag, package_dir)
    target = open_target(dags_url)
    objects = target.list_objects()
    changed = sorted(p for p, data in files.items() if _md5(objects.get(p)) != _digest(data))
    stale = sorted(
        p
        for p in objects
        if p.startswith(OWNED_FOLDERS) and p not in files and "/__pycache__/" not in f"/{p}"
    )
    ignore = airflowignore(target.read(AIRFLOWIGNORE) if AIRFLOWIGNORE in objects else None, syntax)
    uploads = ([AIRFLOWIGNORE] if ignore else []) + changed
    result = DeployResult(
        added=[p for p in uploads if p not in objects],
        changed=[p for p in uploads if p in objects],
        removed=stale,
        unchanged=len(files) - len(changed),
    )
    if dry_run:
        return result
    if ignore is not None:
        target.write(AIRFLOWIGNORE, ignore, objects.get(AIRFLOWIGNORE))
    last = [p for p in changed if p == "fleet_meta.py"]
    _parallel(target, jobs, ((p, files[p], objects.get(p)) for p in changed if p not in last))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(target.delete, p, objects[p]) for p in stale]:
            future.result()
    for path in last:
        target.write(path, files[path], objects.get(path))
    return result


def _md5(state: ObjectState | None) -> str | None:
    return state.md5 if state else None


def _digest(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _parallel(
    target: Target, jobs: int, writes: Iterable[tuple[str, bytes, ObjectState | None]]
) -> None:
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(target.write, *w) for w in writes]:
            future.result()  # the first TargetError stops the deploy


def _walk(root: Path) -> list[Path]:
    if not root.is_dir():
        raise SettingsError(f"{root}: not a folder")
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
