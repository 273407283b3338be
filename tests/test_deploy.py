"""`composer.publish.deploy`: the meta-DAG, the package and the templates reach a DAG folder
(a local one, and a GCS bucket on the emulator), idempotently, and Airflow then parses
the meta-DAG and nothing of the package or the templates."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from composer.errors import TargetError
from composer.publish.deploy import IGNORE_COMMENT, airflowignore, deploy
from tests.conftest import REPO, TEMPLATES

PACKAGE = REPO / "composer"
# A DAG a customer named "composer" would get in the fleet's folder: never ignored.
CUSTOMER_NAMED_COMPOSER = b"""\
import pendulum
from airflow.sdk import DAG

with DAG("composer__main", schedule=None, start_date=pendulum.datetime(2024, 1, 1)):
    pass
"""


@pytest.fixture
def src(tmp_path) -> dict[str, Path]:
    """A frozen copy of what deploy reads (the tree may be edited while tests run)."""
    root = tmp_path / "src"
    shutil.copytree(PACKAGE, root / "composer", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(TEMPLATES, root / "templates", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "dags").mkdir()
    shutil.copy(REPO / "dags" / "fleet_meta.py", root / "dags" / "fleet_meta.py")
    return {
        "package_dir": root / "composer",
        "templates_dir": root / "templates",
        "meta_dag": root / "dags" / "fleet_meta.py",
    }


def expected_files(src: dict[str, Path]) -> dict[str, bytes]:
    package, templates = src["package_dir"], src["templates_dir"]
    files = {"fleet_meta.py": src["meta_dag"].read_bytes()}
    for p in package.rglob("*"):
        if p.is_file() and (p.suffix == ".py" or p.name == "schema.sql"):
            files[f"composer/{p.relative_to(package).as_posix()}"] = p.read_bytes()
    for p in templates.rglob("*"):
        if p.is_file():
            files[f"fleet_templates/{p.relative_to(templates).as_posix()}"] = p.read_bytes()
    return files


def folder_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def dagbag(folder: Path):
    try:  # Airflow 3
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2.11
        from airflow.models.dagbag import DagBag
    return DagBag(dag_folder=str(folder), safe_mode=False)  # every .py file not ignored


# -- the .airflowignore lines ---------------------------------------------------------------


def test_airflowignore_lines_are_added_once_and_other_lines_kept():
    first = airflowignore(b"scratch/\n# team notes\n", "glob")
    assert first == (
        f"scratch/\n# team notes\n{IGNORE_COMMENT}\n/composer/\n/fleet_templates/\n".encode()
    )
    assert airflowignore(first, "glob") is None
    assert airflowignore(first, "regexp").endswith(b"^composer/\n^fleet_templates/\n")


# -- a local DAG folder ----------------------------------------------------------------


def test_deploy_lays_out_meta_dag_package_and_templates(tmp_path, src):
    result = deploy(f"file://{tmp_path / 'dags'}", **src)

    files = folder_files(tmp_path / "dags")
    ignore = files.pop(".airflowignore").decode().splitlines()
    assert files == expected_files(src)
    assert "composer/schema.sql" in files and "fleet_templates/fleet.yaml" in files
    assert "fleet_templates/legacy/lincoln_unified_legacy.py" in files
    assert not [p for p in files if "__pycache__" in p or p.endswith(".pyc")]
    assert ignore == [IGNORE_COMMENT, "/composer/", "/fleet_templates/"]  # Airflow 3: glob
    assert len(result.uploaded) == len(files) + 1 and result.removed == []


def test_second_deploy_uploads_nothing(tmp_path, src):
    url = f"file://{tmp_path / 'dags'}"
    deploy(url, **src)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "dags").rglob("*")}

    result = deploy(url, **src)

    assert (result.uploaded, result.removed) == ([], [])
    assert result.unchanged == len(expected_files(src))
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "dags").rglob("*")} == before


def test_deploy_uploads_only_what_changed_and_removes_only_its_own_stale_files(tmp_path, src):
    dags = tmp_path / "dags"
    templates = src["templates_dir"]
    deploy(f"file://{dags}", **src)
    keep = {
        "fleet/austin-isd/austin-isd__main.py": b"# the fleet's\n",
        "other_team.py": b"# another team's DAG\n",
        "composer_tools/x.py": b"# not our folder\n",
    }
    for rel, data in keep.items():
        (dags / rel).parent.mkdir(parents=True, exist_ok=True)
        (dags / rel).write_bytes(data)
    (dags / "composer" / "retired_module.py").write_text("# left by an older deploy\n")
    (templates / "google_classroom.yaml").write_text(
        (templates / "google_classroom.yaml").read_text() + "# edited\n"
    )
    (templates / "state_assessments.yaml").unlink()

    result = deploy(f"file://{dags}", **src)

    assert result.uploaded == ["fleet_templates/google_classroom.yaml"]
    assert result.removed == [
        "composer/retired_module.py",
        "fleet_templates/state_assessments.yaml",
    ]
    files = folder_files(dags)
    assert {rel: files[rel] for rel in keep} == keep
    assert files["fleet_templates/google_classroom.yaml"].endswith(b"# edited\n")


def test_dry_run_writes_nothing(tmp_path):
    result = deploy(f"file://{tmp_path / 'dags'}", dry_run=True)
    assert "fleet_meta.py" in result.uploaded
    assert not (tmp_path / "dags").exists()


@pytest.mark.airflow
@pytest.mark.parametrize("syntax", ["glob", "regexp"])
def test_airflow_parses_the_meta_dag_and_nothing_deployed_beside_it(syntax, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__DAG_IGNORE_FILE_SYNTAX", syntax)
    dags = tmp_path / "dags"
    (dags / ".airflowignore").parent.mkdir()
    (dags / ".airflowignore").write_text("scratch/\n" if syntax == "glob" else "^scratch/\n")
    (dags / "scratch").mkdir()
    (dags / "scratch" / "broken.py").write_text("raise RuntimeError('an ignored file')\n")
    deploy(f"file://{dags}", ignore_syntax=syntax)
    customer = dags / "fleet" / "composer" / "composer__main.py"
    customer.parent.mkdir(parents=True)
    customer.write_bytes(CUSTOMER_NAMED_COMPOSER)

    bag = dagbag(dags)

    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == ["composer__main", "fleet_meta"]
    parsed = sorted(Path(f).relative_to(dags).as_posix() for f in bag.file_last_changed)
    assert parsed == ["fleet/composer/composer__main.py", "fleet_meta.py"]


@pytest.mark.airflow
def test_without_the_ignore_lines_airflow_would_parse_the_legacy_template(tmp_path):
    """Control for the test above: the lines are what keeps the templates out."""
    dags = tmp_path / "dags"
    deploy(f"file://{dags}")
    (dags / ".airflowignore").unlink()

    assert "lincoln-unified__legacy" in dagbag(dags).dag_ids


# -- a Composer bucket (GCS emulator) -----------------------------------------------


def test_deploy_to_gcs_matches_a_local_deploy_and_is_idempotent(
    tmp_path, src, gcs_emulator, bucket
):
    gcs_emulator.put(bucket, "dags/.airflowignore", b"scratch/\n")
    gcs_emulator.put(bucket, "dags/other_team.py", b"# another team's DAG\n")
    deploy(f"file://{tmp_path / 'local'}", **src)
    (tmp_path / "local" / ".airflowignore").write_bytes(
        b"scratch/\n" + (tmp_path / "local" / ".airflowignore").read_bytes()
    )

    deploy(f"gs://{bucket}/dags", **src)
    before = gcs_emulator.objects(bucket, "dags/")
    again = deploy(f"gs://{bucket}/dags", **src)

    in_bucket = {n.removeprefix("dags/"): data for n, (_, data) in before.items()}
    assert in_bucket.pop("other_team.py") == b"# another team's DAG\n"
    assert in_bucket == folder_files(tmp_path / "local")
    assert (again.uploaded, again.removed) == ([], [])
    assert gcs_emulator.objects(bucket, "dags/") == before  # same generations
    blob = gcs_emulator.client().bucket(bucket).get_blob("dags/composer/publish/deploy.py")
    assert blob.content_type == "text/x-python"


def test_deploy_to_a_missing_bucket_fails_and_writes_nothing(gcs_emulator, bucket):
    with pytest.raises(TargetError, match="bucket no-such-bucket does not exist"):
        deploy("gs://no-such-bucket/dags")
    assert [b.name for b in gcs_emulator.client().list_buckets()].count("no-such-bucket") == 0
