"""Static checks of terraform/ (SPEC section 9).

`terraform init`/`validate` need the Google provider, which cannot be downloaded
here, so the wiring is checked on the parsed HCL (python-hcl2) instead:
the Secret Manager secrets backend, the FLEET_* variables the meta-DAG reads,
the Spanner DDL coming from the one schema file, and the least-privilege IAM
of the environment's service account. Two tests run the real `terraform`
binary when it is on PATH: `terraform fmt -check`, and `terraform console` on
schema.tf (which needs no provider) to prove the HCL splits the schema file
the way this test expects.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parent.parent
TF_DIR = ROOT / "terraform"
SCHEMA_FILE = ROOT / "composer" / "schema.sql"

SECRETS_BACKEND = "airflow.providers.google.cloud.secrets.secret_manager.CloudSecretManagerBackend"
SPANNER_DDL_LOCAL = "spanner_ddl"

# role -> the IAM resource type that must grant it (i.e. its scope).
LEAST_PRIVILEGE_ROLES = {
    "roles/composer.worker": "google_project_iam_member",
    "roles/spanner.databaseReader": "google_spanner_database_iam_member",
    "roles/storage.objectAdmin": "google_storage_bucket_iam_member",
    "roles/storage.objectViewer": "google_storage_bucket_iam_member",
    "roles/secretmanager.secretAccessor": "google_project_iam_member",
}
# The one grant to another principal: Composer's service agent may act as the
# environment's service account (required by Composer 2, harmless on 3).
COMPOSER_AGENT_ROLE = "roles/composer.ServiceAgentV2Ext"
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}

IAM_RESOURCE = re.compile(r"^google_\w+_iam_(member|binding|policy)$")
# Every environment's account: indexed by the environment (each.key), or by the reader
# of a peer-bucket grant (each.value.reader).
SA_MEMBER = re.compile(
    r"^serviceAccount:\$\{google_service_account\.(\w+)\[each\.(key|value\.reader)\]\.email\}$"
)
EACH_BUCKET = r"\$\{google_storage_bucket\.(\w+)\[each\.key\]\.name\}"


# --------------------------------------------------------------------------
# Loading the module
# --------------------------------------------------------------------------


def _load_hcl(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        try:
            from hcl2.utils import SerializationOptions
        except ImportError:  # python-hcl2 < 8 strips quotes and has no options
            return hcl2.load(fh)
        options = SerializationOptions(
            with_comments=False,
            explicit_blocks=False,
            strip_string_quotes=True,
            preserve_heredocs=False,
        )
        return hcl2.load(fh, serialization_options=options)


class Module:
    """The terraform/ root module, every .tf file merged."""

    def __init__(self, directory: Path) -> None:
        self.files = sorted(directory.glob("*.tf"))
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.locals: dict[str, Any] = {}
        for path in self.files:
            doc = _load_hcl(path)
            for block in doc.get("resource", []):
                for rtype, by_name in block.items():
                    for name, body in by_name.items():
                        self.resources[(rtype, name)] = body
            for block in doc.get("variable", []):
                self.variables.update(block)
            for block in doc.get("output", []):
                self.outputs.update(block)
            for block in doc.get("locals", []):
                self.locals.update(block)

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    def one(self, rtype: str) -> tuple[str, dict[str, Any]]:
        found = self.of_type(rtype)
        assert len(found) == 1, f"expected exactly one {rtype}, found {sorted(found)}"
        return next(iter(found.items()))

    def expand(self, value: Any) -> Any:
        """Inline `${local.x}` references (whole values and string interpolations)."""
        for _ in range(10):
            if isinstance(value, str):
                whole = re.fullmatch(r"\$\{local\.(\w+)\}", value)
                if whole:
                    value = self.locals[whole.group(1)]
                    continue

                def inline(m: re.Match[str]) -> str:
                    target = self.locals[m.group(1)]
                    return target if isinstance(target, str) else m.group(0)

                expanded = re.sub(r"\$\{local\.(\w+)\}", inline, value)
                if expanded == value:
                    return value
                value = expanded
            else:
                return value
        raise AssertionError(f"local references do not settle: {value!r}")


def _block(body: dict[str, Any], name: str) -> dict[str, Any]:
    blocks = body.get(name)
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one `{name}` block"
    return blocks[0]


@pytest.fixture(scope="module")
def tf() -> Module:
    module = Module(TF_DIR)
    assert module.files, f"no .tf files in {TF_DIR}"
    return module


@pytest.fixture(scope="module")
def environment(tf: Module) -> dict[str, Any]:
    return tf.one("google_composer_environment")[1]


@pytest.fixture(scope="module")
def software_config(environment: dict[str, Any]) -> dict[str, Any]:
    return _block(_block(environment, "config"), "software_config")


@pytest.fixture(scope="module")
def env_sa(tf: Module) -> str:
    return tf.one("google_service_account")[0]


# --------------------------------------------------------------------------
# Helpers for the schema split
# --------------------------------------------------------------------------

_HCL_STR = r'"((?:[^"\\]|\\.)*)"'


def _hcl_unescape(text: str) -> str:
    escapes = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(0)), text)


def _ddl_pipeline(tf: Module) -> tuple[str, str, str]:
    """The (comment regex, replacement, separator) the HCL applies to the schema."""
    expr = tf.locals[SPANNER_DDL_LOCAL]
    m = re.search(
        rf"split\({_HCL_STR},\s*replace\(file\([^)]*\),\s*\"/((?:[^\"\\]|\\.)*)/\",\s*{_HCL_STR}\)\)",
        expr,
    )
    assert m, (
        f"local.{SPANNER_DDL_LOCAL} is no longer split(sep, replace(file(...), /re/, s)): {expr}"
    )
    assert "trimspace(" in expr and '!= ""' in expr, "the DDL must be trimmed and empties dropped"
    separator, regex, replacement = (_hcl_unescape(g) for g in m.groups())
    return regex, replacement, separator


def _split_schema(text: str, regex: str, replacement: str, separator: str) -> list[str]:
    """Python twin of schema.tf: strip comments, split, trimspace, drop empties."""
    without_comments = re.sub(regex, replacement, text)
    return [s.strip() for s in without_comments.split(separator) if s.strip()]


def _terraform_or_skip() -> str:
    exe = shutil.which("terraform")
    if exe:
        return exe
    if os.environ.get("CI"):
        pytest.fail(
            "terraform is not on PATH but CI is set: install terraform >= 1.5 in the CI image "
            "so the terraform/ checks run"
        )
    pytest.skip("terraform is not on PATH (with CI set, this is a failure instead of a skip)")


def _run_terraform(args: list[str], cwd: Path, stdin: str | None = None):
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    return subprocess.run(
        args, cwd=cwd, input=stdin, capture_output=True, text=True, env=env, timeout=300
    )


# --------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------


def test_module_has_the_provider_example_layout() -> None:
    names = {p.name for p in TF_DIR.glob("*.tf")}
    assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf"} <= names


# --------------------------------------------------------------------------
# Secret Manager backend
# --------------------------------------------------------------------------


def test_airflow_uses_the_secret_manager_secrets_backend(software_config: dict) -> None:
    overrides = software_config["airflow_config_overrides"]
    assert overrides.get("secrets-backend") == SECRETS_BACKEND


def test_secrets_backend_kwargs_set_prefixes_and_project(tf: Module, software_config: dict) -> None:
    raw = software_config["airflow_config_overrides"].get("secrets-backend_kwargs", "")
    m = re.fullmatch(r"\$\{jsonencode\((.+)\)\}", raw, re.S)
    assert m, f"secrets-backend_kwargs must be jsonencode(...), got {raw!r}"
    arg = m.group(1).strip()
    local_ref = re.fullmatch(r"local\.(\w+)", arg)
    if local_ref:
        kwargs = tf.locals[local_ref.group(1)]
    else:  # an inline object literal
        kwargs = dict(re.findall(r"(\w+)\s*=\s*([^,\n}]+)", arg))
    assert isinstance(kwargs, dict)
    assert {"connections_prefix", "variables_prefix", "project_id"} <= set(kwargs)
    assert str(kwargs["project_id"]).strip() in {"${var.project_id}", "var.project_id"}
    assert "secrets_connections_prefix" in str(kwargs["connections_prefix"])
    assert "secrets_variables_prefix" in str(kwargs["variables_prefix"])


def test_secret_access_is_limited_to_the_backend_prefixes(tf: Module, env_sa: str) -> None:
    grants = [
        body
        for body in tf.of_type("google_project_iam_member").values()
        if body["role"] == "roles/secretmanager.secretAccessor"
    ]
    assert len(grants) == 1
    expression = tf.expand(_block(grants[0], "condition")["expression"])
    # Secret resource names in IAM conditions carry the project NUMBER.
    root = r"projects/\$\{data\.google_project\.\w+\.number\}/secrets/"
    for prefix_var in ("secrets_connections_prefix", "secrets_variables_prefix"):
        assert re.search(
            rf'resource\.name\.startsWith\("{root}\$\{{var\.{prefix_var}\}}', expression
        ), f"no startsWith() on {prefix_var} in {expression}"


# --------------------------------------------------------------------------
# What the meta-DAG reads: FLEET_STORE, FLEET_TARGET, FLEET_TEMPLATES
# --------------------------------------------------------------------------


def test_fleet_store_points_at_the_spanner_database_created_here(
    tf: Module, software_config: dict
) -> None:
    store = tf.expand(software_config["env_variables"]["FLEET_STORE"])
    m = re.fullmatch(
        r"spanner://projects/\$\{var\.project_id\}"
        r"/instances/\$\{google_spanner_instance\.(\w+)\.name\}"
        r"/databases/\$\{google_spanner_database\.(\w+)\.name\}",
        store,
    )
    assert m, f"FLEET_STORE is not a spanner:// URL of this module's database: {store}"
    instance, database = m.groups()
    assert ("google_spanner_instance", instance) in tf.resources
    assert ("google_spanner_database", database) in tf.resources
    db = tf.resources[("google_spanner_database", database)]
    assert db["instance"] == f"${{google_spanner_instance.{instance}.name}}"


def test_fleet_target_is_the_fleet_folder_of_the_environment_bucket(
    tf: Module, environment: dict, software_config: dict
) -> None:
    target = tf.expand(software_config["env_variables"]["FLEET_TARGET"])
    m = re.fullmatch(rf"gs://{EACH_BUCKET}/dags/fleet", target)
    assert m, f"FLEET_TARGET must be gs://<environment bucket>/dags/fleet, got {target}"
    bucket_ref = f"${{google_storage_bucket.{m.group(1)}[each.key].name}}"
    # The bucket is created here and handed to Composer, so its name is known
    # without a cycle through the environment.
    assert _block(environment, "storage_config")["bucket"] == bucket_ref


def test_fleet_templates_is_the_templates_folder_beside_the_dags(
    tf: Module, software_config: dict
) -> None:
    templates = tf.expand(software_config["env_variables"]["FLEET_TEMPLATES"])
    assert templates == "/home/airflow/gcs/dags/fleet_templates"


# --------------------------------------------------------------------------
# Spanner DDL from the one schema file
# --------------------------------------------------------------------------


def test_spanner_ddl_is_read_from_the_one_schema_file(tf: Module) -> None:
    _, db = tf.one("google_spanner_database")
    assert db["ddl"] == f"${{local.{SPANNER_DDL_LOCAL}}}"
    expr = tf.locals[SPANNER_DDL_LOCAL]
    m = re.search(r"\bfile\(([^)]*)\)", expr)
    assert m, f"local.{SPANNER_DDL_LOCAL} does not read a file: {expr}"
    path_expr = m.group(1).strip()
    ref = re.fullmatch(r"local\.(\w+)", path_expr)
    path_expr = tf.locals[ref.group(1)] if ref else path_expr.strip('"')
    assert path_expr == "${path.module}/../composer/schema.sql"
    assert (TF_DIR / "../composer/schema.sql").resolve() == SCHEMA_FILE.resolve()
    assert SCHEMA_FILE.is_file()


def test_no_terraform_file_holds_a_copy_of_the_ddl() -> None:
    tf_files = list(TF_DIR.rglob("*.tf"))
    assert tf_files
    for path in tf_files:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"create\s+table", text, re.I), f"{path} holds DDL"


def test_schema_split_yields_exactly_the_two_create_table_statements(tf: Module) -> None:
    statements = _split_schema(SCHEMA_FILE.read_text(encoding="utf-8"), *_ddl_pipeline(tf))
    assert len(statements) == 4, statements
    for statement in statements:
        assert "--" not in statement and ";" not in statement, statement
    names = [re.match(r"CREATE TABLE (\w+)\s*\(", s).group(1) for s in statements[:2]]
    assert names == ["customers", "integrations"]
    assert statements[1].endswith("INTERLEAVE IN PARENT customers ON DELETE CASCADE")
    # Append-only: a column added later is a new ALTER TABLE at the end.
    assert statements[2] == "ALTER TABLE customers ADD COLUMN environment STRING(64)"
    assert statements[3] == "ALTER TABLE integrations ADD COLUMN template_version INT64"


def test_terraform_splits_the_schema_like_the_python_twin(tf: Module, tmp_path: Path) -> None:
    terraform = _terraform_or_skip()
    # schema.tf needs no provider: evaluate it as-is, with the real schema file
    # at the same relative place ("${path.module}/../composer/schema.sql").
    (tmp_path / "terraform").mkdir()
    (tmp_path / "composer").mkdir()
    shutil.copy(TF_DIR / "schema.tf", tmp_path / "terraform" / "schema.tf")
    shutil.copy(SCHEMA_FILE, tmp_path / "composer" / "schema.sql")
    result = _run_terraform(
        [terraform, "console"],
        cwd=tmp_path / "terraform",
        stdin=f"jsonencode(local.{SPANNER_DDL_LOCAL})\n",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    quoted = [line for line in result.stdout.splitlines() if line.startswith('"')]
    assert quoted, result.stdout + result.stderr
    literal = quoted[-1].replace("$${", "${").replace("%%{", "%{")
    from_terraform = json.loads(json.loads(literal))
    from_python = _split_schema(SCHEMA_FILE.read_text(encoding="utf-8"), *_ddl_pipeline(tf))
    assert from_terraform == from_python
    assert len(from_terraform) == 4


# --------------------------------------------------------------------------
# Least-privilege IAM
# --------------------------------------------------------------------------


def _iam_grants(tf: Module) -> list[tuple[str, str, dict[str, Any]]]:
    return [(t, n, b) for (t, n), b in tf.resources.items() if IAM_RESOURCE.match(t)]


def test_environment_runs_as_the_dedicated_service_account(environment: dict, env_sa: str) -> None:
    node_config = _block(_block(environment, "config"), "node_config")
    assert re.fullmatch(
        rf"\$\{{google_service_account\.{env_sa}\[each\.key\]\.(name|email)\}}",
        node_config["service_account"],
    )


def test_service_account_roles_are_exactly_the_least_privilege_set(tf: Module, env_sa: str) -> None:
    granted: dict[str, list[tuple[str, dict]]] = {}
    for rtype, _, body in _iam_grants(tf):
        m = SA_MEMBER.match(str(body.get("member", "")))
        if m and m.group(1) == env_sa:
            granted.setdefault(body["role"], []).append((rtype, body))
    assert set(granted) == set(LEAST_PRIVILEGE_ROLES)
    for role, grants in granted.items():
        assert [rtype for rtype, _ in grants] == [LEAST_PRIVILEGE_ROLES[role]], role

    _, db_grant = granted["roles/spanner.databaseReader"][0]
    db_name, _ = tf.one("google_spanner_database")
    assert db_grant["database"] == f"${{google_spanner_database.{db_name}.name}}"

    _, bucket_grant = granted["roles/storage.objectAdmin"][0]
    environment = tf.one("google_composer_environment")[1]
    assert bucket_grant["bucket"] == _block(environment, "storage_config")["bucket"]
    # Read-only on the other environments' buckets, never on its own.
    _, peer_grant = granted["roles/storage.objectViewer"][0]
    assert peer_grant["for_each"] == "${local.peer_buckets}"
    assert "pair[0] != pair[1]" in tf.locals["peer_buckets"]


def test_no_principal_gets_a_basic_role_or_an_unreviewed_grant(tf: Module, env_sa: str) -> None:
    grants = _iam_grants(tf)
    assert grants
    for rtype, name, body in grants:
        # Authoritative bindings/policies would strip other members' access.
        assert rtype.endswith("_iam_member"), f"{rtype}.{name} is authoritative"
        assert body["role"] not in BASIC_ROLES, f"{rtype}.{name} grants {body['role']}"
        if SA_MEMBER.match(str(body["member"])):
            continue
        # The only other grant: Composer's agent acting as this one account.
        assert rtype == "google_service_account_iam_member", f"{rtype}.{name}"
        assert body["role"] == COMPOSER_AGENT_ROLE
        assert body["service_account_id"] == f"${{google_service_account.{env_sa}[each.key].name}}"
        assert "@cloudcomposer-accounts.iam.gserviceaccount.com" in body["member"]


# --------------------------------------------------------------------------
# Image version and variables
# --------------------------------------------------------------------------


def test_environments_come_from_one_list_each_with_its_bucket_account_and_name(
    tf: Module, environment: dict, software_config: dict
) -> None:
    assert "list(object(" in tf.variables["environments"]["type"]
    assert tf.locals["environments"] == "${{for e in var.environments : e.name => e}}"
    per_environment = [
        ("google_composer_environment", "fleet"),
        ("google_storage_bucket", "composer"),
        ("google_service_account", "composer"),
        ("google_storage_bucket_iam_member", "bucket_object_admin"),
        ("google_spanner_database_iam_member", "store_reader"),
    ]
    for key in per_environment:
        assert tf.resources[key]["for_each"] == "${local.environments}", key
    assert environment["name"] == "${each.key}"
    assert software_config["env_variables"]["FLEET_ENVIRONMENT"] == "${each.key}"
    # One store for all: the instance and database are not per environment.
    for rtype in ("google_spanner_instance", "google_spanner_database"):
        assert "for_each" not in tf.one(rtype)[1], rtype
    assert "fleet_environments" in tf.outputs


def test_image_version_defaults_to_composer_3_with_airflow_3(
    tf: Module, software_config: dict
) -> None:
    assert software_config["image_version"] == "${var.image_version}"
    default = tf.variables["image_version"]["default"]
    assert re.fullmatch(r"composer-3-airflow-3(\.\d+(\.\d+)?(-build\.\d+)?)?", default), default


def test_every_variable_has_a_type_and_a_description(tf: Module) -> None:
    assert tf.variables
    for name, body in tf.variables.items():
        assert str(body.get("description", "")).strip(), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"


def test_outputs_expose_what_operators_and_the_deploy_need(tf: Module) -> None:
    expected = {
        "airflow_uri",
        "bucket",
        "dag_gcs_prefix",
        "fleet_store",
        "service_account_email",
        "spanner_database_id",
    }
    assert expected <= set(tf.outputs)
    for name, body in tf.outputs.items():
        assert str(body.get("description", "")).strip(), f"output {name} has no description"


# --------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------


def test_terraform_fmt_check_passes() -> None:
    terraform = _terraform_or_skip()
    result = _run_terraform(
        [terraform, "fmt", "-check", "-recursive", "-diff", "terraform/"], cwd=ROOT
    )
    assert result.returncode == 0, (
        "terraform fmt -check failed; run `terraform fmt -recursive terraform/`:\n"
        + result.stdout
        + result.stderr
    )
