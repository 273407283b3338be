"""The fleet report: its numbers are the generated DAGs' own schedules as Airflow's
timetable steps them, it covers customers a plan did not rebuild, and the page is
self-contained and draws its chart in a real browser."""

from __future__ import annotations

import ast
import datetime as dt
import zlib
from collections import Counter, defaultdict
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest

from composer.report import facts, publish_report, report_html
from composer.report.figures import NO_TEMPLATE, SLOT_MINUTES, SLOTS, compute
from composer.report.html import render, text
from composer.report.starts import start_minutes
from composer.store import Snapshot
from tests.browser import pixels, screenshot
from tests.conftest import TEMPLATES, make_store, replace_customer

MONDAY = dt.date(2026, 12, 7)  # the weekly state-assessment DAGs run on Mondays


@cache
def airflow_start_minutes(expression: str, timezone: str, day: dt.date) -> tuple[int, ...]:
    """Starts within the UTC day as Airflow's own CronTriggerTimetable schedules them."""
    import pendulum
    from airflow.timetables.base import DataInterval, TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable

    timetable = CronTriggerTimetable(expression, timezone=timezone)
    start = pendulum.datetime(day.year, day.month, day.day, tz="UTC")
    restriction = TimeRestriction(
        earliest=start, latest=start.add(days=1).subtract(microseconds=1), catchup=True
    )
    found, last = [], None
    while info := timetable.next_dagrun_info(
        last_automated_data_interval=last, restriction=restriction
    ):
        found.append(int((info.run_after - start).total_seconds() // 60))
        last = DataInterval(info.data_interval.start, info.data_interval.end)
    return tuple(found)


def expected_slots(dags: list[tuple[str, str, tuple[str, ...]]], day: dt.date):
    """(cron, timezone, templates) per DAG -> per-series starts per slot, independently."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * SLOTS)
    for expression, timezone, templates in dags:
        series = " + ".join(sorted(templates)) or NO_TEMPLATE  # a main DAG of setup tasks
        for minute in airflow_start_minutes(expression, timezone, day):
            counts[series][minute // SLOT_MINUTES] += 1
    return dict(counts)


def chart_counts(chart) -> dict[str, list[int]]:
    return {s: c for s, c in chart.counts.items() if any(c)}


@pytest.fixture(scope="module")
def demo_plan(tmp_path_factory, demo_snapshot: Snapshot):
    """The demo fleet published, then planned again: nothing is rebuilt."""
    from composer.pipeline import apply_fleet, plan_fleet

    root = tmp_path_factory.mktemp("report")
    store = make_store(root / "fleet.db", demo_snapshot)
    target = f"file://{root}/dags"
    first = plan_fleet(store, target, TEMPLATES)
    page_from_full_build = report_html(first, MONDAY)
    apply_fleet(first)
    again = plan_fleet(store, target, TEMPLATES)
    assert not again.plan.has_changes and not again.plan.contents  # nobody was rebuilt
    return again, root / "dags", page_from_full_build


def test_a_plan_that_rebuilds_nobody_reports_the_same_fleet(demo_plan):
    fleet_plan, _, page_from_full_build = demo_plan
    assert report_html(fleet_plan, MONDAY) == page_from_full_build


@pytest.mark.airflow
def test_demo_counts_equal_the_timetables_of_the_dags_airflow_imports(demo_plan):
    from airflow.dag_processing.dagbag import DagBag

    fleet_plan, dags_dir, _ = demo_plan
    bag = DagBag(dag_folder=str(dags_dir))
    assert bag.import_errors == {}
    generated = [
        d for d in bag.dags.values() if {"variant:main", "variant:cron"} & set(d.tags or ())
    ]
    # all but lincoln-unified's legacy file and the two asset-triggered roll-ups
    assert len(generated) == 25 == len(bag.dags) - 3
    figures = compute(facts(fleet_plan, MONDAY))
    for day in (MONDAY, MONDAY + dt.timedelta(days=1)):
        dags = [
            (
                d.timetable.expression,
                str(d.timetable.timezone),
                tuple(t.removeprefix("template:") for t in d.tags if t.startswith("template:")),
            )
            for d in generated
        ]
        want = expected_slots(dags, day)
        got = compute(facts(fleet_plan, day))
        assert chart_counts(got.charts[0]) == want
        assert got.charts[0].total == sum(map(sum, want.values())) > 0
    assert [d.starts for d in figures.week[:2]] == [
        sum(map(sum, expected_slots(dags, MONDAY + dt.timedelta(days=n)).values()))
        for n in range(2)
    ]
    assert figures.environments[0].dags == 28  # legacy and roll-ups: counted, not charted
    assert sorted(figures.uncharted) == [
        ("cascade-esd", "cascade-esd__rollup: starts when its descendants' data has loaded"),
        ("cascade-north", "cascade-north__rollup: starts when its descendants' data has loaded"),
        ("lincoln-unified", "legacy file lincoln_unified_legacy.py: its schedule is its own code"),
    ]
    # the stagger is visible: the busiest 5 minutes hold a handful of the 28 DAGs
    assert figures.charts[0].busiest[0].starts == max(figures.charts[0].totals) < 6


def _builders(source: bytes) -> dict[str, ast.FunctionDef]:
    """The DAG builder functions of a customer's generated module (composer/render/layout.py)."""
    return {
        n.name: n
        for n in ast.parse(source).body
        if isinstance(n, ast.FunctionDef) and n.name.startswith("dag_")
    }


def _schedule_and_tags(tree: ast.AST) -> tuple[str, str, tuple[str, ...]]:
    """The CronTriggerTimetable(...) arguments and template tags of a generated DAG."""
    cron = timezone = None
    templates: tuple[str, ...] = ()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "CronTriggerTimetable":
            cron = ast.literal_eval(node.args[0])
            timezone = next(ast.literal_eval(k.value) for k in node.keywords if k.arg == "timezone")
        if isinstance(node, ast.keyword) and node.arg == "tags":
            tags = ast.literal_eval(node.value)
            templates = tuple(
                t.removeprefix("template:") for t in tags if t.startswith("template:")
            )
    assert cron and timezone
    return cron, timezone, templates


def test_2000_customer_counts_equal_the_schedules_in_the_generated_files(tmp_path):
    from bench.fleetgen import write_store
    from composer.pipeline import plan_fleet

    store = write_store(tmp_path / "fleet.db", 2000)
    fleet_plan = plan_fleet(store, f"file://{tmp_path}/dags", TEMPLATES)
    assert fleet_plan.errors == []
    files = [zlib.decompress(packed) for packed in fleet_plan.plan.contents.values()]
    builders = {name: f for content in files for name, f in _builders(content).items()}
    rollups = [name for name in builders if "__rollup" in name]  # started by assets
    assert len(builders) - len(rollups) == 6000 and rollups  # every DAG was built
    dags = [_schedule_and_tags(f) for name, f in builders.items() if name not in rollups]

    figures = compute(facts(fleet_plan, MONDAY))

    want = expected_slots(dags, MONDAY)
    assert chart_counts(figures.charts[0]) == want
    assert figures.environments[0].dags == len(builders) and figures.districts == 2000
    assert len(figures.uncharted) == len(rollups)
    by_template = Counter()
    for _, _, templates in dags:
        by_template.update(templates)
    assert {r.name: r.dags for r in figures.templates} == dict(by_template)
    assert sum(r.districts for r in figures.timezones) == 2000


@pytest.mark.parametrize(
    ("timezone", "day"),
    [
        ("America/New_York", dt.date(2026, 3, 8)),  # spring forward
        ("America/New_York", dt.date(2026, 11, 1)),  # fall back
        ("America/Chicago", dt.date(2026, 11, 2)),  # the UTC day after the change
        ("Europe/London", dt.date(2026, 3, 29)),
        ("Australia/Lord_Howe", dt.date(2026, 4, 4)),  # a 30-minute change
        ("America/Phoenix", dt.date(2026, 3, 8)),  # no DST
        ("Asia/Kolkata", dt.date(2026, 12, 7)),  # a half-hour offset
    ],
)
def test_starts_match_airflows_timetable_on_dst_days(timezone, day):
    crons = [
        "0 * * * *",
        "7 * * * *",
        "*/15 * * * *",
        "30 1 * * *",
        "30 2 * * *",
        "15 3 * * *",
        "0 0 * * 0",
        "5 4 * * 1-5",
        "0 0 1,15 * 1",
        "0 23 L * *",
    ]
    for cron in crons:
        for offset in (-1, 0, 1):
            when = day + dt.timedelta(days=offset)
            assert start_minutes(cron, timezone, when) == airflow_start_minutes(
                cron, timezone, when
            ), (cron, timezone, when)


def test_values_quoted_in_errors_never_become_urls_in_the_page():
    assert "://" not in text("field sis_base_url: 'https://x.example' <b>")
    assert "&lt;b&gt;" in text("<b>")


def test_the_page_is_self_contained_and_lists_invalid_customers(tmp_path, demo_snapshot):
    from composer.pipeline import plan_fleet

    broken = replace_customer(demo_snapshot, "dallas-isd", timezone="Mars/Olympus")
    fleet_plan = plan_fleet(
        make_store(tmp_path / "f.db", broken), f"file://{tmp_path}/d", TEMPLATES
    )
    page = report_html(fleet_plan, MONDAY)
    lowered = page.lower()
    for external in ("http://", "https://", "src=", "href=", "url(", "@import", "<script", "<link"):
        assert external not in lowered, external
    assert "customer dallas-isd, field timezone: unknown IANA timezone" in page
    assert "<svg" in page and "@media print" in page


def test_publish_writes_beside_the_manifest_once_and_airflow_ignores_it(tmp_path, demo_snapshot):
    from composer.pipeline import apply_fleet, plan_fleet

    store, target = make_store(tmp_path / "f.db", demo_snapshot), tmp_path / "dags"
    fleet_plan = plan_fleet(store, f"file://{target}", TEMPLATES)
    apply_fleet(fleet_plan)
    assert publish_report(fleet_plan, MONDAY).startswith("report written")
    assert (target / "fleet-report.html").read_text().startswith("<!DOCTYPE html>")
    assert "fleet-report.html" in (target / ".airflowignore").read_text().splitlines()
    again = plan_fleet(store, f"file://{target}", TEMPLATES)
    assert publish_report(again, MONDAY) == "report unchanged: fleet-report.html"
    assert not again.plan.has_changes  # the report is not a file of the fleet's


def test_cli_writes_the_report_and_refuses_an_unknown_environment(fleet_cli, tmp_path, demo_store):
    out = tmp_path / "r.html"
    common = ("--store", demo_store, "--target", f"file://{tmp_path}/dags")
    code, stdout, _ = fleet_cli("report", *common, "--out", str(out), "--date", "2026-12-07")
    assert code == 0 and f"Wrote {out}" in stdout
    assert "Monday 2026-12-07" in out.read_text()
    code, _, err = fleet_cli("report", *common, "--environment", "eu", "--out", str(out))
    assert code == 2 and "--environment eu: this fleet has one environment" in err
    assert fleet_cli("report", *common, "--date", "tomorrow")[0] == 2


def _bar_columns(png: Path) -> set[int]:
    """Screen columns holding a pixel of exactly a series colour (bars, legend swatches)."""
    from composer.report.html import PALETTE

    colours = [bytes.fromhex(c[1:]) for c in PALETTE]
    _, _, rows = pixels(png)
    found: set[int] = set()
    for row in rows:
        for colour in colours:
            at = row.find(colour)
            while at >= 0:
                if at % 3 == 0:
                    found.add(at // 3)
                at = row.find(colour, at + 1)
    return found


def test_the_chart_draws_in_headless_chromium(tmp_path, demo_plan):
    fleet_plan, _, _ = demo_plan
    page = tmp_path / "report.html"
    page.write_text(report_html(fleet_plan, MONDAY))
    shot = screenshot(page, tmp_path / "report.png", 1000, 520)
    columns = _bar_columns(shot)
    # hourly classroom starts put bars across the whole day, not just legend swatches
    assert len(columns) > 100 and min(columns) < 150 and max(columns) > 850, sorted(columns)

    # the same page for a fleet with no DAGs: axes and legend, no bars
    no_dags = replace(facts(fleet_plan, MONDAY), timings=())
    blank = tmp_path / "blank.html"
    blank.write_text(render(compute(no_dags), source="file:///nowhere"))
    assert len(_bar_columns(screenshot(blank, tmp_path / "blank.png", 1000, 520))) < 100


def test_on_gcs_the_report_is_html_beside_the_manifest(gcs_emulator, bucket, demo_store):
    from composer.pipeline import apply_fleet, plan_fleet

    target = f"gs://{bucket}/dags/fleet"
    fleet_plan = plan_fleet(demo_store, target, TEMPLATES)
    apply_fleet(fleet_plan)
    assert publish_report(fleet_plan, MONDAY).startswith("report written")
    blob = gcs_emulator.client().bucket(bucket).get_blob("dags/fleet/fleet-report.html")
    assert blob.content_type == "text/html"
    again = plan_fleet(demo_store, target, TEMPLATES)
    assert publish_report(again, MONDAY) == "report unchanged: fleet-report.html"
    assert publish_report(again, MONDAY + dt.timedelta(days=1)).startswith("report written")


def test_cli_exits_1_with_invalid_customers_and_still_writes_the_report(
    fleet_cli, tmp_path, demo_snapshot
):
    broken = replace_customer(demo_snapshot, "dallas-isd", timezone="Mars/Olympus")
    out = tmp_path / "r.html"
    code, _, err = fleet_cli(
        "report",
        *("--store", make_store(tmp_path / "f.db", broken), "--target", f"file://{tmp_path}/d"),
        *("--out", str(out)),
    )
    assert code == 1 and "error: customer dallas-isd, field timezone" in err
    assert "Invalid customers (1)" in out.read_text()
