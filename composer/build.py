"""Build: the validated fleet turned into rendered files, one customer at a time.

Customers are built on demand, one at a time (and can be built again), so a sync never
needs the whole fleet's source in memory; composer/parallel.py runs the same builds in
worker processes when many customers changed.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import importlib.util
import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from composer import PACKAGE_DIR
from composer.compose.allowlist import legacy_problem
from composer.compose.composition import Composer
from composer.compose.dagspec import RenderedFile
from composer.compose.operator_cache import FactCache
from composer.compose.operators import OperatorCatalog
from composer.errors import ConfigError
from composer.model.fleet import Customer, Integration, build_fleet, too_big
from composer.model.settings import FleetSettings, load_settings
from composer.model.templates import TemplateCatalog
from composer.model.versions import check_rollout
from composer.render import builder_name, layout, render_builder
from composer.render.literals import NotALiteral
from composer.store import Snapshot


@dataclass
class CustomerBuild:
    customer_id: str
    files: list[RenderedFile] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)
    dag_ids: list[str] = field(default_factory=list)  # the DAGs of its part


class FleetBuilder:
    def __init__(
        self,
        snapshot: Snapshot,
        templates_dir: Path,
        settings: FleetSettings | None = None,
        operators: OperatorCatalog | None = None,
    ) -> None:
        self.snapshot = snapshot  # what worker processes build from (composer/parallel.py)
        self.templates_dir = templates_dir
        self.settings = settings or load_settings(templates_dir)
        self.fleet = build_fleet(snapshot, self.settings.limits)
        catalog = TemplateCatalog(templates_dir, frozenset(self.settings.params))
        check_rollout(self.settings, catalog)  # a rollout naming no version stops the run
        # What importing taught earlier runs: operator signatures and checked legacy files.
        self.facts = FactCache.default()
        operators = operators or OperatorCatalog(self.settings.airflow_target, self.facts)
        self.composer = Composer(self.fleet, self.settings, catalog, operators)
        self.errors: list[ConfigError] = list(self.fleet.errors)
        self._check_dag_id_collisions()
        self.shards = 1
        self.size_shards(None)

    def inputs_digest(self, customer_id: str) -> str:
        """A digest of everything this customer's files are made from: its rows, its
        active descendants, the template files it uses, the fleet settings and legacy
        file, dagfleet's own code and the Airflow and provider versions it checks
        against. Equal digests mean equal files, so an unchanged customer is not rebuilt."""
        customer = self.fleet.customers[customer_id]
        descendants = self.fleet.active_descendants(customer_id)
        # Disabled integrations' templates and a parent's roll-up template decide which
        # customer params are used (composer/compose/params.py), so they are inputs too.
        templates = {i.template for i in customer.integrations} | set(customer.disabled_templates)
        if self.fleet.children.get(customer_id) and self.settings.rollup_template:
            templates.add(self.settings.rollup_template)
        digest = hashlib.sha256(_environment_digest(self.templates_dir).encode())
        row = json.dumps(_plain(customer), sort_keys=True, default=repr)
        digest.update(row.encode())
        digest.update(json.dumps(descendants).encode())
        moved = self.composer.start_after.get(customer_id)
        if moved is not None:  # only then: every other digest stays as it was
            digest.update(f"start_after {moved.isoformat()}".encode())
        if descendants and self.settings.rollup_template:
            # The roll-up DAG reads each descendant's resolved tables: its rows, and the
            # template its roll-up sources use.
            templates.add(self.settings.rollup_template)
            templates.update(filter(None, [self.composer.rollup_sources_template()]))
            for descendant_id in descendants:
                child = self.fleet.customers.get(descendant_id)
                plain = _plain(child) if child else None
                digest.update(json.dumps(plain, sort_keys=True, default=repr).encode())
        for name in sorted(templates):
            digest.update(_file_digest(self.templates_dir / f"{name}.yaml").encode())
        if customer.legacy_dag_file:
            digest.update(
                _file_digest(self.templates_dir / "legacy" / customer.legacy_dag_file).encode()
            )
        if any(i.task_overrides for i in customer.integrations):
            # Which operators an override may name depends on every template.
            digest.update("\n".join(sorted(self.composer.operator_allow_list())).encode())
        return digest.hexdigest()

    @property
    def invalid(self) -> set[str]:
        return self.fleet.invalid

    def customer_ids(self) -> list[str]:
        """Customers that get files: active and valid so far, sorted."""
        return sorted(
            cid for cid, c in self.fleet.customers.items() if c.active and cid not in self.invalid
        )

    def builds(self, only: set[str] | None = None) -> Iterator[CustomerBuild]:
        for cid in self.customer_ids():
            if only is None or cid in only:
                yield self.build(cid)

    def build(self, customer_id: str) -> CustomerBuild:
        """Compose, render and compile one customer: a file that does not compile is
        an error of its customer, found before anything is published."""
        customer = self.fleet.customers[customer_id]
        result = CustomerBuild(customer_id)
        specs, result.errors = self.composer.compose(customer)
        if customer.legacy_dag_file:
            legacy = self.legacy_file(customer)
            if isinstance(legacy, ConfigError):
                result.errors.append(legacy)
            else:
                result.files.append(legacy)
        builders = []
        for spec in specs:
            try:
                source = render_builder(spec, self.settings.airflow_target)
            except (NotALiteral, SyntaxError, ValueError) as exc:
                result.errors.append(
                    ConfigError(customer_id, None, "template", f"{spec.dag_id}: {exc}")
                )
                continue
            builders.append((spec.dag_id, builder_name(spec.dag_id), source))
            result.dag_ids.append(spec.dag_id)
        if builders and not result.errors:
            text = layout.part(customer_id, builders)
            solo = layout.module([text], self.settings.airflow_target)
            rendered = RenderedFile(self.shard_of(customer_id), customer_id, solo.encode(), True)
            error = self._size_error(rendered, size=len(text)) or compile_error(rendered)
            if error:
                result.errors.append(error)
            else:
                result.files.append(rendered)
        paths = [f.path for f in result.files]
        if len(paths) != len(set(paths)):
            result.errors.append(
                ConfigError(
                    customer_id, None, "legacy_dag_file", "has the name of a generated file"
                )
            )
        if result.errors:
            self.invalid.add(customer_id)
            result.files, result.dag_ids = [], []
        return result

    def legacy_file(self, customer: Customer) -> RenderedFile | ConfigError:
        """The customer's static file, once it is shown to compile and import."""
        name = customer.legacy_dag_file or ""
        refused = legacy_problem(self.settings, customer)  # before the file is read or run
        if refused:
            return ConfigError(customer.customer_id, None, "legacy_dag_file", refused)
        path = self.templates_dir / "legacy" / name
        try:
            content = path.read_bytes()
            tree = ast.parse(content, filename=str(path))
        except OSError:
            return ConfigError(
                customer.customer_id, None, "legacy_dag_file", f"no file {name} in {path.parent}"
            )
        except SyntaxError as exc:
            return ConfigError(
                customer.customer_id, None, "legacy_dag_file", f"{name}:{exc.lineno}: {exc.msg}"
            )
        rendered = RenderedFile(f"{customer.customer_id}/{name}", customer.customer_id, content)
        too_large = self._size_error(rendered, "legacy_dag_file")
        if too_large:
            return too_large
        # The checks below import what the file imports (Airflow, providers): once per
        # content and environment, like the operator signatures.
        checked = f"legacy:{self.settings.airflow_target}:{hashlib.sha256(content).hexdigest()}"
        if self.facts.get(checked):
            return rendered
        missing = sorted(_unresolved_imports(tree))
        if missing:
            return ConfigError(
                customer.customer_id,
                None,
                "legacy_dag_file",
                f"{name} imports {missing[0]}, which is not installed",
            )
        problem = _import_problem(path, self.settings.airflow_target)
        if problem:
            return ConfigError(customer.customer_id, None, "legacy_dag_file", f"{name}: {problem}")
        self.facts.put(checked, True, [str(path)])
        return rendered

    def _size_error(
        self, rendered: RenderedFile, field: str = "dag_file", size: int | None = None
    ) -> ConfigError | None:
        """A file (or a customer's part of a shard file) over the cap is refused before it
        is compiled or published."""
        cap = self.settings.limits.dag_file_bytes
        size = len(rendered.content) if size is None else size
        problem = too_big(size, cap, "dag_file_bytes")
        if problem is None:
            return None
        what = f"its part of {rendered.path}" if rendered.part else rendered.path
        return ConfigError(rendered.customer_id, None, field, f"{what} {problem}")

    def shard_of(self, customer_id: str) -> str:
        """The file that holds the customer's DAGs (composer/render/layout.py)."""
        root = layout.tree_root(self.fleet, customer_id)
        return layout.shard_path(root, self.shards)

    def size_shards(self, previous: int | None) -> int:
        """Fix the shard count: fleet.yaml's, else sized by the fleet (kept at `previous`,
        the published count, while it fits). Builders in worker processes are given it."""
        self.shards = self.settings.shards or layout.shard_count(len(self.customer_ids()), previous)
        return self.shards

    def _check_dag_id_collisions(self) -> None:
        """Refuse every customer involved: onboarding one must never take over another's DAG."""
        owners: dict[str, list[tuple[str, str | None]]] = {}
        for cid, customer in self.fleet.customers.items():
            if customer.active:
                for dag_id, integration_id in self.composer.dag_ids(customer):
                    owners.setdefault(dag_id, []).append((cid, integration_id))
        for dag_id, claims in sorted(owners.items()):
            if len(claims) < 2:
                continue
            for cid, integration_id in sorted(claims, key=str):
                others = ", ".join(
                    f"customer {c}" + (f" integration {i}" if i else " (main DAG)")
                    for c, i in sorted(claims, key=str)
                    if (c, i) != (cid, integration_id)
                )
                self.errors.append(
                    ConfigError(
                        cid,
                        integration_id,
                        "integration_id" if integration_id else "customer_id",
                        f"dag_id {dag_id} is also generated for {others}",
                    )
                )
                self.invalid.add(cid)


def _plain(customer: Customer) -> list:
    """The customer's fields as JSON-ready data (dataclasses.asdict deep-copies every
    value, which dominated planning an unchanged fleet)."""
    fields = [getattr(customer, f.name) for f in _CUSTOMER_FIELDS]
    fields.append(
        [[getattr(i, f.name) for f in _INTEGRATION_FIELDS] for i in customer.integrations]
    )
    return fields


_CUSTOMER_FIELDS = [f for f in dataclasses.fields(Customer) if f.name != "integrations"]
_INTEGRATION_FIELDS = dataclasses.fields(Integration)


@cache
def _file_digest(path: Path) -> str:
    try:
        return f"{path.name}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    except OSError:
        return f"{path.name}:missing"


@cache
def _environment_digest(templates_dir: Path) -> str:
    """What every customer's files depend on: dagfleet's code, the fleet settings and
    the versions of what the operators are checked against."""
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.sha256()
    package = PACKAGE_DIR
    for source in sorted(package.rglob("*.py")):
        if source.parent.name == "report":  # the fleet report makes no DAG file
            continue
        digest.update(str(source.relative_to(package)).encode())
        digest.update(source.read_bytes())
    digest.update(_file_digest(templates_dir / "fleet.yaml").encode())
    for dist in ("apache-airflow-core", "apache-airflow", "apache-airflow-providers-google"):
        try:
            digest.update(f"{dist}=={version(dist)}".encode())
        except PackageNotFoundError:
            digest.update(f"{dist} absent".encode())
    return digest.hexdigest()


def compile_error(rendered: RenderedFile) -> ConfigError | None:
    """Every generated file is compiled when it is built, before anything is published."""
    try:
        compile(rendered.content, rendered.path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        return ConfigError(rendered.customer_id, None, "template", f"{rendered.path}: {exc}")
    return None


@cache
def _import_problem(path: Path, airflow_target: int) -> str | None:
    """Import a legacy file the way Airflow's DAG processor does, when this process runs
    the fleet's Airflow major (otherwise the static checks above are all we can do)."""
    import airflow

    if int(airflow.__version__.split(".")[0]) != airflow_target:
        return None
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3
    except ImportError:  # pragma: no cover - Airflow 2
        from airflow.models.dagbag import DagBag
    # The DagBag logs an INFO line per file; the CLI's output is ours to keep clean.
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        bag = DagBag(dag_folder=str(path), safe_mode=False)
    if bag.import_errors:
        message = next(iter(bag.import_errors.values())).strip().splitlines()
        return f"fails to import: {message[-1] if message else 'unknown error'}"
    if not bag.dags:
        return "defines no DAG"
    return None


def _unresolved_imports(tree: ast.AST) -> set[str]:
    """Top-level modules a file imports that cannot be found (a try/except ImportError
    block counts as resolved when any of its branches is)."""
    missing: set[str] = set()
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            guarded.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules = [node.module]
        for module in modules:
            try:
                if importlib.util.find_spec(module) is None:
                    missing.add(module)
            except (ImportError, ValueError):
                missing.add(module)
    return missing
