"""The fleet report's figures, computed from the fleet's DAG schedules. Pure: no I/O.

Each DAG start is counted in the 5-minute UTC slot it falls in (composer/report/starts.py
says when a cron starts); the figures are per environment, template mix and timezone.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from composer.report.starts import start_minutes, utc_day_bounds

SLOT_MINUTES = 5
SLOTS = 24 * 60 // SLOT_MINUTES
DEFAULT_ENVIRONMENT = "default"
MAX_SERIES = 7  # template mixes drawn in their own colour; the rest are "other"
OTHER = "other"
NO_TEMPLATE = "(setup tasks only)"
BUSIEST = 5
WEEK = 7


@dataclass(frozen=True)
class DagTiming:
    """One generated DAG as the scheduler sees it: when it starts, and what it runs."""

    dag_id: str
    customer_id: str
    variant: str  # main | cron
    schedule: str  # 5-field cron, local time
    timezone: str
    templates: tuple[str, ...]
    environment: str = DEFAULT_ENVIRONMENT

    @property
    def series(self) -> str:
        """The stack a DAG is drawn in: its template mix (a main DAG can run several)."""
        return " + ".join(self.templates) if self.templates else NO_TEMPLATE


@dataclass(frozen=True)
class Environment:
    name: str
    target: str
    capacity: int | None  # DAGs; None when fleet.yaml sets none


@dataclass(frozen=True)
class District:
    """An active customer whose DAGs the plan publishes."""

    customer_id: str
    timezone: str
    templates: tuple[str, ...]
    environment: str = DEFAULT_ENVIRONMENT


@dataclass(frozen=True)
class FleetFacts:
    """Everything the report is computed from, gathered from one plan."""

    day: dt.date
    environments: tuple[Environment, ...]
    timings: tuple[DagTiming, ...]
    districts: tuple[District, ...]
    uncharted: tuple[tuple[str, str], ...] = ()  # (customer_id, why its DAG is not charted)
    errors: tuple[tuple[str, str], ...] = ()  # (customer_id, one-line error)


@dataclass(frozen=True)
class Slot:
    index: int
    starts: int
    by_series: tuple[tuple[str, int], ...]  # most first
    customers: int

    @property
    def label(self) -> str:
        return slot_label(self.index)


@dataclass
class Chart:
    """Starts per 5-minute UTC slot over the day, stacked by series, for one environment."""

    environment: str
    series: list[str]
    counts: dict[str, list[int]]  # series -> starts per slot
    totals: list[int]
    busiest: list[Slot]

    @property
    def total(self) -> int:
        return sum(self.totals)

    @property
    def peak(self) -> int:
        return max(self.totals, default=0)


@dataclass(frozen=True)
class EnvironmentLoad:
    environment: Environment
    dags: int
    districts: int

    @property
    def share(self) -> float | None:
        cap = self.environment.capacity
        return self.dags / cap if cap else None


@dataclass(frozen=True)
class Row:
    name: str
    districts: int
    dags: int
    starts: int
    note: str = ""


@dataclass(frozen=True)
class Day:
    day: dt.date
    starts: int
    peak: int
    peak_slot: int


@dataclass
class Figures:
    day: dt.date
    charts: list[Chart]
    environments: list[EnvironmentLoad]
    templates: list[Row]
    timezones: list[Row]
    week: list[Day]
    uncharted: list[tuple[str, str]]
    errors: dict[str, list[str]] = field(default_factory=dict)  # customer -> lines
    series: list[str] = field(default_factory=list)  # every chart's series, one colour each

    @property
    def dags(self) -> int:
        return sum(e.dags for e in self.environments)

    @property
    def districts(self) -> int:
        return sum(e.districts for e in self.environments)


def slot_label(index: int) -> str:
    minute = index * SLOT_MINUTES
    return f"{minute // 60:02d}:{minute % 60:02d}"


def slots_of(timing: DagTiming, day: dt.date) -> list[int]:
    return [m // SLOT_MINUTES for m in start_minutes(timing.schedule, timing.timezone, day)]


def compute(facts: FleetFacts) -> Figures:
    """Every figure the report shows."""
    by_env: dict[str, list[DagTiming]] = defaultdict(list)
    for timing in facts.timings:
        by_env[timing.environment].append(timing)
    starts_by_series: Counter[str] = Counter()
    slot_cache: dict[DagTiming, list[int]] = {}
    for timing in facts.timings:
        slot_cache[timing] = slots_of(timing, facts.day)
        starts_by_series[timing.series] += len(slot_cache[timing])
    dag_series = Counter(t.series for t in facts.timings)
    ranked = sorted(dag_series, key=lambda s: (-starts_by_series[s], -dag_series[s], s))
    shown = ranked if len(ranked) <= MAX_SERIES + 1 else ranked[:MAX_SERIES]
    series = [*shown, OTHER] if len(ranked) > len(shown) else shown
    charts = [
        _chart(env.name, by_env.get(env.name, []), series, slot_cache) for env in facts.environments
    ]
    return Figures(
        day=facts.day,
        charts=charts,
        environments=_loads(facts),
        templates=_templates(facts, slot_cache),
        timezones=_timezones(facts, slot_cache),
        week=_week(facts),
        uncharted=sorted(facts.uncharted),
        errors=_errors(facts),
        series=series,
    )


def _chart(
    name: str, timings: list[DagTiming], series: list[str], slots: dict[DagTiming, list[int]]
) -> Chart:
    counts = {s: [0] * SLOTS for s in series}
    customers: list[set[str]] = [set() for _ in range(SLOTS)]
    for timing in timings:
        key = timing.series if timing.series in counts else OTHER
        for slot in slots[timing]:
            counts[key][slot] += 1
            customers[slot].add(timing.customer_id)
    totals = [sum(counts[s][i] for s in series) for i in range(SLOTS)]
    top = sorted((i for i in range(SLOTS) if totals[i]), key=lambda i: (-totals[i], i))[:BUSIEST]
    busiest = [
        Slot(
            i,
            totals[i],
            tuple(
                sorted(
                    ((s, counts[s][i]) for s in series if counts[s][i]), key=lambda x: (-x[1], x[0])
                )
            ),
            len(customers[i]),
        )
        for i in top
    ]
    return Chart(name, series, counts, totals, busiest)


def _loads(facts: FleetFacts) -> list[EnvironmentLoad]:
    dags = Counter(t.environment for t in facts.timings)
    home = {d.customer_id: d.environment for d in facts.districts}
    uncharted_dags = Counter(home.get(cid, DEFAULT_ENVIRONMENT) for cid, _ in facts.uncharted)
    districts = Counter(d.environment for d in facts.districts)
    return [
        EnvironmentLoad(env, dags[env.name] + uncharted_dags[env.name], districts[env.name])
        for env in facts.environments
    ]


def _templates(facts: FleetFacts, slots: dict[DagTiming, list[int]]) -> list[Row]:
    """Per template: districts using it, DAGs running it, and its runs on the day (a
    main DAG that runs two templates counts once for each: that is the vendor's load)."""
    districts: Counter[str] = Counter()
    for district in facts.districts:
        districts.update(set(district.templates))
    dags: Counter[str] = Counter()
    starts: Counter[str] = Counter()
    for timing in facts.timings:
        for template in set(timing.templates):
            dags[template] += 1
            starts[template] += len(slots[timing])
    names = sorted(set(districts) | set(dags), key=lambda n: (-districts[n], n))
    return [Row(n, districts[n], dags[n], starts[n]) for n in names]


def _timezones(facts: FleetFacts, slots: dict[DagTiming, list[int]]) -> list[Row]:
    districts = Counter(d.timezone for d in facts.districts)
    dags: Counter[str] = Counter()
    starts: Counter[str] = Counter()
    for timing in facts.timings:
        dags[timing.timezone] += 1
        starts[timing.timezone] += len(slots[timing])
    names = sorted(set(districts) | set(dags), key=lambda n: (-districts[n], n))
    return [Row(n, districts[n], dags[n], starts[n], utc_offsets(n, facts.day)) for n in names]


def utc_offsets(timezone: str, day: dt.date) -> str:
    """The zone's UTC offset over the UTC day: 'UTC-05:00', or 'UTC-05:00 → UTC-04:00'
    on a day the clocks change."""
    zone = ZoneInfo(timezone)
    start, end = utc_day_bounds(day)
    first = start.astimezone(zone).utcoffset() or dt.timedelta()
    last = (end - dt.timedelta(seconds=1)).astimezone(zone).utcoffset() or dt.timedelta()
    text = _offset(first)
    return text if first == last else f"{text} → {_offset(last)}"


def _offset(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _week(facts: FleetFacts) -> list[Day]:
    """The week from the day: weekly and monthly crons make some days far busier."""
    days = []
    for offset in range(WEEK):
        day = facts.day + dt.timedelta(days=offset)
        totals = [0] * SLOTS
        for timing in facts.timings:
            for slot in slots_of(timing, day):
                totals[slot] += 1
        peak = max(totals, default=0)
        days.append(Day(day, sum(totals), peak, totals.index(peak) if peak else 0))
    return days


def _errors(facts: FleetFacts) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for customer_id, line in facts.errors:
        errors.setdefault(customer_id, []).append(line)
    return dict(sorted(errors.items()))
