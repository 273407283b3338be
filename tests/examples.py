"""Feature examples (`examples/features/<name>/`) as fleets the tests can build.

An example is documentation that runs: `store.yaml` (customers and integrations, in the
format of examples/demo_fleet.yaml), `templates/*.yaml` (the templates that show the
feature) and optionally `settings.yaml`, an RFC 7396 merge patch over the shipped
templates/fleet.yaml (an allow-listed callable, a rollout, ...). The example's templates
folder is the shipped one with the example's templates added and the patch applied, so
an example never copies what it does not change.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import json_merge_patch
import yaml

from composer.store import Snapshot
from composer.store.demo import snapshot_from_yaml

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "templates"
FEATURES = REPO / "examples" / "features"


def example_names() -> list[str]:
    return sorted(p.name for p in FEATURES.iterdir() if (p / "store.yaml").is_file())


def example_templates(name: str, into: Path) -> Path:
    """A templates folder for example `name` under `into`: shipped + example + patch."""
    example = FEATURES / name
    out = into / "templates"
    shutil.copytree(SHIPPED, out)
    for path in sorted((example / "templates").glob("*.yaml")):
        shutil.copy(path, out / path.name)
    patch_file = example / "settings.yaml"
    if patch_file.is_file():
        settings = yaml.safe_load((out / "fleet.yaml").read_text())
        patched = json_merge_patch.merge(settings, yaml.safe_load(patch_file.read_text()))
        (out / "fleet.yaml").write_text(yaml.safe_dump(patched, sort_keys=False))
    return out


def example_snapshot(name: str) -> Snapshot:
    return snapshot_from_yaml(FEATURES / name / "store.yaml")
