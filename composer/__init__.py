"""dagfleet: generate and publish a multi-tenant Airflow DAG fleet from configuration."""

from pathlib import Path

# The package's own folder: what deploy ships, what verification stages, what the build's
# digest reads. One owner, so a module's depth in the stage folders does not matter.
PACKAGE_DIR = Path(__file__).resolve().parent
