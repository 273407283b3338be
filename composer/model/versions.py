"""Template versions, staged rollout and the kill switch.

A template file may carry versions: its body is the default version (`version: 3`) and
`versions: {2: patch, 4: patch}` describes the others as RFC 7396 merge patches over the
body, so an old or coming version is a small diff, not a copy. Every version is parsed
and checked as a template on its own when the file is loaded: a broken version breaks
the template once, never a customer at a time.

Which version an integration runs, first match wins:
1. its pin (`integrations.template_version`);
2. fleet.yaml `rollout: {<template>: {version: 4, percent: 10}}`: the districts whose
   hash of (template, customer_id) falls under the percent;
3. the file's `version:`.

fleet.yaml `disabled_templates: [x]` is the kill switch: x's groups leave main DAGs and
x's own DAGs (cron, roll-up) stay published with `schedule=None` and a `disabled` tag,
so Airflow keeps their history and manual runs; removing it restores the files.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import json_merge_patch

from composer.compose.timetables import Schedule
from composer.errors import InvalidConfig, SettingsError, invalid
from composer.model.keys import unknown_keys
from composer.model.templates import NAME_RE, Template, TemplateError, parse_template

if TYPE_CHECKING:
    from composer.compose.dagspec import DagSpec
    from composer.model.fleet import Customer, Fleet, Integration
    from composer.model.settings import FleetSettings
    from composer.model.templates import TemplateCatalog

VERSION_KEYS = ("version", "versions")
ROLLOUT_KEYS = frozenset({"version", "percent"})
DISABLED_TAG = "disabled"
# The rollout hash is read as a number in [0, 100) with this many steps: percents may
# have two decimals (0.25 %).
_BUCKETS = 10_000


# -- template files -------------------------------------------------------------------


def load_versioned(raw: Any, name: str, known: frozenset[str], source: Path | None) -> Template:
    """The file's default version, carrying every version (`.versions`, by number).
    Raises TemplateError naming `version`, `versions.<n>` or the field inside one."""
    if not isinstance(raw, dict) or not any(k in raw for k in VERSION_KEYS):
        return parse_template(raw, name, known, source)
    if "version" not in raw:
        raise TemplateError("versions", "needs `version:`, the number of the file's body")
    default = raw["version"]
    if not _is_version(default):
        raise TemplateError("version", f"must be a positive integer, not {default!r}")
    patches = raw.get("versions") or {}
    if not isinstance(patches, dict):
        raise TemplateError("versions", "must map a version number to a merge patch")
    body = {k: v for k, v in raw.items() if k not in VERSION_KEYS}
    template = dataclasses.replace(parse_template(body, name, known, source), version=default)
    found: dict[int, Template] = {default: template}
    for key, patch in patches.items():
        number = int(key) if isinstance(key, str) and key.isdigit() else key
        where = f"versions.{key}"
        if not _is_version(number):
            raise TemplateError(where, "a version is a positive integer")
        if number == default or number in found:
            raise TemplateError(
                where, f"version {number} is defined twice (`version:` is the body)"
            )
        if not isinstance(patch, dict):
            raise TemplateError(where, "must be a merge patch (a mapping) over the file's body")
        for key_ in ("template", *VERSION_KEYS):
            if key_ in patch:
                raise TemplateError(f"{where}.{key_}", "a version cannot change this")
        merged = json_merge_patch.merge(copy.deepcopy(body), copy.deepcopy(patch))
        try:
            parsed = parse_template(merged, name, known, source)
        except TemplateError as exc:
            raise TemplateError(f"{where}.{exc.field}", str(exc)) from None
        found[number] = dataclasses.replace(parsed, version=number)
    ordered = dict(sorted(found.items()))
    for one in ordered.values():
        one.versions.update(ordered)  # the same mapping on each: any version finds the others
    return ordered[default]


def _is_version(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


_VIEWS: dict[int, tuple[Template, Template]] = {}


def param_view(template: Template) -> Template:
    """The template as the unused-param check sees it: every version's params and
    placeholders. A district's rows may set a param of a version it is not on yet (rows
    are prepared before the rollout reaches them); a typo is used by no version."""
    if len(template.versions) < 2:
        return template
    hit = _VIEWS.get(id(template))
    if hit is not None and hit[0] is template:
        return hit[1]
    others = [t for t in template.versions.values() if t is not template]
    params: dict[str, Any] = {}
    for one in [*others, template]:  # the default version's declaration wins
        params.update(one.params)
    every = [template, *others]
    view = dataclasses.replace(
        template,
        params=params,
        default_args={f"v{t.version}": t.default_args for t in every},
        tasks={f"v{t.version}.{k}": v for t in every for k, v in t.tasks.items()},
        main={f"v{t.version}": t.main for t in every},
        cron={f"v{t.version}": t.cron for t in every},
        description=" ".join(t.description for t in every),
    )
    if len(_VIEWS) > 256:
        _VIEWS.clear()
    _VIEWS[id(template)] = (template, view)  # the entry keeps the id from being reused
    return view


def version_names(template: Template) -> str:
    return ", ".join(str(n) for n in template.versions) or "none"


# -- fleet.yaml: rollout and kill switch ------------------------------------------------


@dataclass(frozen=True)
class Rollout:
    """Move `percent` of the districts (a stable share, by hash) to `version`."""

    version: int
    percent: float


def rollout_settings(path: Path, raw: Mapping[str, Any]) -> dict[str, Any]:
    """fleet.yaml `rollout:` and `disabled_templates:`, checked for shape (that the
    templates and versions exist is checked once the templates load: check_rollout)."""
    rollout: dict[str, Rollout] = {}
    spec = raw.get("rollout") or {}
    if not isinstance(spec, dict):
        raise SettingsError(f"{path}: rollout must map a template to {{version: N, percent: P}}")
    for name, entry in spec.items():
        where = f"{path}: rollout.{name}"
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise SettingsError(f"{where}: not a template name")
        if not isinstance(entry, dict):
            raise SettingsError(f"{where}: expected {{version: N, percent: P}}")
        for key, message in unknown_keys(entry, ROLLOUT_KEYS):
            raise SettingsError(f"{where}.{key}: {message}")
        version, percent = entry.get("version"), entry.get("percent")
        if not _is_version(version):
            raise SettingsError(f"{where}.version: must be a positive integer, not {version!r}")
        if (
            isinstance(percent, bool)
            or not isinstance(percent, int | float)
            or not 0 <= percent <= 100
            or round(percent * 100) != percent * 100
        ):
            raise SettingsError(
                f"{where}.percent: must be a number from 0 to 100 (two decimals at most), "
                f"not {percent!r}"
            )
        rollout[name] = Rollout(version, float(percent))
    disabled = raw.get("disabled_templates") or []
    if not isinstance(disabled, list) or not all(
        isinstance(n, str) and NAME_RE.match(n) for n in disabled
    ):
        raise SettingsError(f"{path}: disabled_templates must be a list of template names")
    return {"rollout": rollout, "disabled_templates": tuple(sorted(set(disabled)))}


def check_rollout(settings: FleetSettings, templates: TemplateCatalog) -> None:
    """A rollout or kill switch naming no template, or a version its file lacks, stops
    the run (SettingsError: one line, exit 1): it would otherwise silently do nothing.
    A template that does not load is its customers' error, reported by composition."""
    names = set(templates.names())
    for name in settings.disabled_templates:
        if name not in names:
            raise SettingsError(
                f"fleet.yaml: disabled_templates: no template {name!r} in {templates.directory}"
            )
    for name, rollout in settings.rollout.items():
        where = f"fleet.yaml: rollout.{name}"
        if name not in names:
            raise SettingsError(f"{where}: no template {name!r} in {templates.directory}")
        try:
            template = templates.get(name)
        except TemplateError:
            continue
        if rollout.version not in template.versions:
            raise SettingsError(
                f"{where}.version: {name}.yaml has no version {rollout.version} "
                f"(versions: {version_names(template)})"
            )


# -- which version an integration runs ----------------------------------------------------


def rollout_bucket(template: str, customer_id: str) -> float:
    """Where a district falls in a template's rollout, in [0, 100): sha256 of
    `<template>/<customer_id>`, its first 8 bytes as an integer, modulo 10,000, over 100.
    It depends on nothing else, so onboarding or removing a district moves nobody, and a
    district under 10 % is under 20 % too."""
    digest = hashlib.sha256(f"{template}/{customer_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") % _BUCKETS) / (_BUCKETS / 100)


def choose(
    settings: FleetSettings, customer: Customer, integration: Integration, template: Template
) -> tuple[Template, str]:
    """The version this integration runs and why (`pinned`, `rollout`, `default`).
    A pin to a version the file lacks is an error naming `template_version`."""
    pin = integration.template_version
    if pin is not None:
        found = template.versions.get(pin)
        if found is None:
            have = f"versions: {version_names(template)}" if template.versions else "no versions"
            raise invalid(
                customer.customer_id,
                integration.integration_id,
                "template_version",
                f"template {template.name!r} has no version {pin} ({have})",
            )
        return found, "pinned"
    rollout = settings.rollout.get(template.name)
    if (
        rollout is not None
        and rollout.version in template.versions
        and rollout_bucket(template.name, customer.customer_id) < rollout.percent
    ):
        return template.versions[rollout.version], "rollout"
    return template, "default"


def leaves_main(settings: FleetSettings, integration: Integration) -> bool:
    """The kill switch: a disabled template's group is not in the main DAG."""
    return integration.template in settings.disabled_templates


def finish(
    settings: FleetSettings,
    templates: TemplateCatalog,
    customer: Customer,
    specs: list[DagSpec],
) -> list[DagSpec]:
    """Tag each DAG with the version of each versioned template it runs
    (`template:<name>@<n>`, beside `template:<name>`), and turn the DAGs of a disabled
    template manual-only (`schedule=None`, tag `disabled`)."""
    from composer.compose.dagshape import cron_dag_id, main_dag_id

    used: dict[str, set[tuple[str, int]]] = {}
    for integration in customer.integrations:
        try:
            template = templates.get(integration.template)
            chosen, _ = choose(settings, customer, integration, template)
        except (TemplateError, InvalidConfig):  # composition reported it; no spec to tag
            continue
        if chosen.version is None:
            continue
        dag_id = (
            main_dag_id(customer.customer_id)
            if integration.schedule is None
            else cron_dag_id(customer.customer_id, integration.integration_id)
        )
        if integration.schedule is None and leaves_main(settings, integration):
            continue
        used.setdefault(dag_id, set()).add((template.name, chosen.version))
    out = []
    for spec in specs:
        if spec.variant == "rollup":  # the roll-up template runs its file's default version
            try:
                rollup = templates.get(spec.templates[0])
            except TemplateError:
                rollup = None
            if rollup is not None and rollup.version is not None:
                used.setdefault(spec.dag_id, set()).add((rollup.name, rollup.version))
        tags = list(spec.tags)
        for name, number in sorted(used.get(spec.dag_id, ())):
            at = tags.index(f"template:{name}") + 1 if f"template:{name}" in tags else len(tags)
            tags.insert(at, f"template:{name}@{number}")
        changes: dict[str, Any] = {"tags": tuple(tags)}
        if spec.variant != "main" and any(t in settings.disabled_templates for t in spec.templates):
            changes["timetable"] = Schedule(None)  # `schedule=None`: manual runs only
            changes["tags"] = (*tags, DISABLED_TAG)
        out.append(dataclasses.replace(spec, **changes))
    return out


# -- fleet plan: who is on which version ----------------------------------------------------


def summary_lines(
    settings: FleetSettings, templates: TemplateCatalog, fleet: Fleet, customer_ids: list[str]
) -> list[str]:
    """One line per template that has versions, a rollout or the kill switch:
    `template powerschool_grades: v3 180 districts, v4 20 (rollout 10%; 1 pinned)`.
    Counts districts (a district with two integrations of one template on two versions
    counts for both); from rows and settings alone, nothing is composed."""
    counts: dict[str, Counter[int]] = {}  # version (0: the file has none) -> districts
    pinned: Counter[str] = Counter()
    versioned: set[str] = set()
    for customer_id in customer_ids:
        customer = fleet.customers[customer_id]
        seen: set[tuple[str, int]] = set()
        for integration in customer.integrations:
            try:
                template = templates.get(integration.template)
                chosen, why = choose(settings, customer, integration, template)
            except (TemplateError, InvalidConfig):  # an invalid row or template: its own line
                continue
            if chosen.version is not None:
                versioned.add(template.name)
            if (template.name, chosen.version or 0) not in seen:
                seen.add((template.name, chosen.version or 0))
                counts.setdefault(template.name, Counter())[chosen.version or 0] += 1
            pinned[template.name] += why == "pinned"
    names = sorted(versioned | set(settings.rollout) | set(settings.disabled_templates))
    lines = []
    for name in names:
        on = counts.get(name, Counter())
        parts = [
            f"v{n} {c} districts" if n else f"{c} districts" for n, c in sorted(on.items())
        ] or ["no districts"]
        notes = []
        if name in settings.rollout:
            rollout = settings.rollout[name]
            notes.append(f"rollout v{rollout.version} {rollout.percent:g}%")
        if pinned[name]:
            notes.append(f"{pinned[name]} pinned")
        if name in settings.disabled_templates:
            notes.append("DISABLED: not scheduled")
        suffix = f" ({'; '.join(notes)})" if notes else ""
        lines.append(f"template {name}: {', '.join(parts)}{suffix}")
    return lines


def plan_lines(builder: Any) -> list[str]:
    """summary_lines for a FleetBuilder (composer/build.py): what `fleet plan` prints."""
    return summary_lines(
        builder.settings, builder.composer.templates, builder.fleet, builder.customer_ids()
    )
