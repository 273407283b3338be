"""The fleet report as one self-contained HTML page: inline SVG and CSS, no script,
no font, no image and no URL, so it opens offline, from a bucket or an email, and prints.
"""

from __future__ import annotations

import html
import math

from composer.report.figures import (
    OTHER,
    SLOT_MINUTES,
    SLOTS,
    Chart,
    EnvironmentLoad,
    Figures,
    Row,
    slot_label,
)

# Okabe-Ito: tells apart for colour-blind readers and in greyscale print.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
OTHER_COLOUR = "#999999"
REFERENCE_CAPACITY = 3000  # Composer 3's XL preset, for scale when fleet.yaml sets none

CSS = """
:root { --ink: #1d2733; --muted: #5b6776; --line: #d8dee6; --band: #f4f6f9; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  color: var(--ink); margin: 0 auto; padding: 20px 28px 40px; max-width: 1180px; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 16px; margin: 26px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 14px; margin: 14px 0 6px; }
.sub, .note { color: var(--muted); }
.note { font-size: 12px; margin: 6px 0; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0 4px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 150px; }
.card b { display: block; font-size: 22px; font-variant-numeric: tabular-nums; }
.card span { color: var(--muted); font-size: 12px; }
.card.bad b { color: #b3261e; }
svg { display: block; width: 100%; height: auto; }
svg text { font-family: inherit; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 6px 0 2px; font-size: 13px; }
.legend svg { display: inline; width: 12px; height: 12px; vertical-align: -1px; margin-right: 5px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: var(--band); }
tr.today td { font-weight: 600; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 0 28px; }
.err td { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; }
.badge { display: inline-block; min-width: 18px; text-align: center; border-radius: 9px;
  background: var(--ink); color: #fff; font-size: 11px; font-weight: 600; padding: 0 5px; }
.ok { color: #1e7b34; } .warn { color: #9a6700; } .bad { color: #b3261e; }
@media (max-width: 820px) { .cols { grid-template-columns: 1fr; } }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { padding: 0; max-width: none; font-size: 11px; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h2 { break-after: avoid; margin-top: 14px; }
  h3 { break-after: avoid; }
  .chart, tr, .cards { break-inside: avoid; }
  .card { padding: 4px 10px; } .card b { font-size: 18px; }
  .cols { grid-template-columns: 1fr 1fr; }
  tbody tr:nth-child(even) { background: none; }
}
"""


def text(value: object) -> str:
    """Escaped text. '://' is written as an entity, so a value quoted in an error (a URL
    in a customer's params) never appears as a URL in the file: the page links nowhere."""
    return html.escape(str(value)).replace("://", "&#58;//")


def render(figures: Figures, *, source: str) -> str:
    """The whole page. `source` says where the plan came from (the target)."""
    colours = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(figures.series) if s != OTHER}
    colours[OTHER] = OTHER_COLOUR
    day = figures.day
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Fleet report {day.isoformat()}</title>",
        f"<style>{CSS}</style></head><body>",
        "<header><h1>dagfleet fleet report</h1>",
        f'<div class="sub">DAG starts on {day:%A} {day.isoformat()}, 00:00-24:00 UTC, '
        f"as planned for {text(source)}</div></header>",
        _cards(figures),
        _starts(figures, colours),
        _week(figures),
        _environments(figures.environments),
        '<div class="cols"><section>',
        _table(
            "Districts per template",
            "template",
            figures.templates,
            "A main DAG that runs two templates counts for each: runs are the vendor's load.",
        ),
        "</section><section>",
        _table(
            "Districts per timezone",
            "timezone",
            figures.timezones,
            "Schedules are local time; the offset is the zone's on this UTC day.",
            note_column="UTC offset",
        ),
        "</section></div>",
        _invalid(figures.errors),
        _uncharted(figures.uncharted),
        "<p class=\"note\">Starts are counted from each DAG's cron in its customer's timezone "
        "(as Airflow's CronTriggerTimetable steps it) in the 5-minute UTC slot it falls in. "
        "Generated by <code>fleet report</code>; the meta-DAG writes it beside the manifest "
        "on every run.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _cards(figures: Figures) -> str:
    starts = sum(c.total for c in figures.charts)
    busiest = max(
        (s for c in figures.charts for s in c.busiest[:1]), key=lambda s: s.starts, default=None
    )
    cards = [
        (f"{figures.dags:,}", "DAGs"),
        (f"{figures.districts:,}", "districts"),
        (f"{starts:,}", "DAG starts this day"),
    ]
    if busiest:
        cards.append(
            (f"{busiest.starts:,}", f"starts at {busiest.label} UTC, the busiest 5 minutes")
        )
    items = [f'<div class="card"><b>{v}</b><span>{text(label)}</span></div>' for v, label in cards]
    invalid = len(figures.errors)
    items.append(
        f'<div class="card{" bad" if invalid else ""}"><b>{invalid}</b>'
        f"<span>invalid customers</span></div>"
    )
    return f'<div class="cards">{"".join(items)}</div>'


def _starts(figures: Figures, colours: dict[str, str]) -> str:
    out = ["<section><h2>DAG starts per 5 minutes (UTC)</h2>"]
    legend = "".join(
        f'<span><svg viewBox="0 0 12 12"><rect width="12" height="12" fill="{colours[s]}"/></svg>'
        f"{text(s)}</span>"
        for s in figures.series
    )
    for chart in figures.charts:
        if len(figures.charts) > 1:
            out.append(f"<h3>Environment {text(chart.environment)}</h3>")
        out.append(f'<div class="chart">{_chart_svg(chart, colours)}</div>')
        out.append(f'<div class="legend">{legend}</div>')
        out.append(_busiest(chart))
    out.append("</section>")
    return "".join(out)


def _nice_step(peak: int) -> int:
    """A tick step of 1, 2 or 5 times a power of ten giving at most 6 ticks."""
    raw = max(peak, 1) / 5
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return max(1, int(factor * power))
    return int(10 * power)


def _chart_svg(chart: Chart, colours: dict[str, str]) -> str:
    width, height = 1100, 320
    left, right, top, bottom = 52, 24, 44, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    step = _nice_step(chart.peak)
    y_max = max(step, math.ceil(max(chart.peak, 1) / step) * step)
    slot_w = plot_w / SLOTS

    def y(value: float) -> float:
        return top + plot_h - value / y_max * plot_h

    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="DAG starts per 5-minute '
        f'slot over the UTC day, stacked by template">'
    ]
    for tick in range(0, y_max + 1, step):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="{"#9aa5b1" if tick == 0 else "#e3e8ee"}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="12">{tick}</text>'
        )
    for hour in range(25):
        x = left + hour * 60 / SLOT_MINUTES * slot_w
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 5}" stroke="#9aa5b1"/>'
        )
        if hour % 2 == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{top + plot_h + 19}" text-anchor="middle" font-size="12">'
                f"{hour:02d}:00</text>"
            )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 3}" text-anchor="middle" font-size="12" '
        f'fill="#5b6776">hour of the day, UTC</text>'
        f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle" '
        f'font-size="12" fill="#5b6776">DAG starts per 5 min</text>'
    )
    for index in range(SLOTS):
        if not chart.totals[index]:
            continue
        x = left + index * slot_w
        base = 0
        rects = []
        for series in chart.series:
            count = chart.counts[series][index]
            if not count:
                continue
            rects.append(
                f'<rect x="{x + 0.3:.2f}" y="{y(base + count):.2f}" width="{slot_w - 0.6:.2f}" '
                f'height="{y(base) - y(base + count):.2f}" fill="{colours[series]}"/>'
            )
            base += count
        detail = ", ".join(
            f"{s} {chart.counts[s][index]}" for s in chart.series if chart.counts[s][index]
        )
        parts.append(
            f"<g><title>{slot_label(index)} UTC: {chart.totals[index]} starts ({text(detail)})"
            f"</title>{''.join(rects)}</g>"
        )
    parts.extend(_badges(chart, [left + (s.index + 0.5) * slot_w for s in chart.busiest], y))
    parts.append("</svg>")
    return "".join(parts)


def _badges(chart: Chart, centres: list[float], y) -> list[str]:
    """The busiest slots' numbers in a strip above the plot, each over its bar with a
    leader line; badges of neighbouring slots are pushed apart, never hidden."""
    order = sorted(range(len(centres)), key=lambda i: centres[i])
    xs: dict[int, float] = {}
    previous = -math.inf
    for i in order:
        xs[i] = max(centres[i], previous + 19)
        previous = xs[i]
    overflow = max(xs.values(), default=0) - (1100 - 34)
    if overflow > 0:  # pushed past the right edge: slide the run back
        xs = {i: x - overflow for i, x in xs.items()}
    parts = []
    for i, slot in enumerate(chart.busiest):
        bx, top = xs[i], y(slot.starts)
        parts.append(
            f"<g><title>busiest #{i + 1}: {slot.label} UTC, {slot.starts} starts</title>"
            f'<line x1="{bx:.1f}" y1="22" x2="{centres[i]:.1f}" y2="{top - 2:.1f}" '
            'stroke="#1d2733" stroke-width="0.8"/>'
            f'<circle cx="{bx:.1f}" cy="14" r="8.5" fill="#1d2733"/>'
            f'<text x="{bx:.1f}" y="18" text-anchor="middle" font-size="11" '
            f'font-weight="600" fill="#ffffff">{i + 1}</text></g>'
        )
    return parts


def _busiest(chart: Chart) -> str:
    if not chart.busiest:
        return '<p class="note">No DAG starts on this day.</p>'
    active = sum(1 for t in chart.totals if t)
    rows = "".join(
        f'<tr><td><span class="badge">{rank}</span></td><td class="n">{slot.label}-'
        f"{slot_label(slot.index + 1) if slot.index + 1 < SLOTS else '24:00'}</td>"
        f'<td class="n">{slot.starts}</td><td class="n">{slot.customers}</td>'
        f"<td>{text(', '.join(f'{s} {n}' for s, n in slot.by_series))}</td></tr>"
        for rank, slot in enumerate(chart.busiest, 1)
    )
    return (
        '<h3>Busiest slots</h3><table><thead><tr><th></th><th class="n">UTC</th>'
        '<th class="n">starts</th><th class="n">districts</th><th>by template</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
        f'<p class="note">{chart.total:,} starts in {active} of {SLOTS} slots; '
        f"{chart.total / max(active, 1):.1f} per busy slot on average.</p>"
    )


def _week(figures: Figures) -> str:
    peak = max((d.starts for d in figures.week), default=0) or 1
    rows = []
    for day in figures.week:
        bar = (
            f'<svg viewBox="0 0 200 10" preserveAspectRatio="none" style="height:10px">'
            f'<rect width="{200 * day.starts / peak:.1f}" height="10" fill="#0072B2"/></svg>'
        )
        rows.append(
            f"<tr{' class=today' if day.day == figures.day else ''}>"
            f'<td>{day.day:%a} {day.day.isoformat()}</td><td class="n">{day.starts:,}</td>'
            f'<td style="width:40%">{bar}</td><td class="n">{day.peak} at '
            f"{slot_label(day.peak_slot)}</td></tr>"
        )
    return (
        "<section><h2>The week ahead</h2><table><thead><tr><th>day (UTC)</th>"
        '<th class="n">DAG starts</th><th></th><th class="n">busiest 5 minutes</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        '<p class="note">Weekly and monthly schedules make some days far busier than others.</p>'
        "</section>"
    )


def _environments(loads: list[EnvironmentLoad]) -> str:
    rows = []
    for load in loads:
        env = load.environment
        cap = env.capacity or REFERENCE_CAPACITY
        share = load.dags / cap
        colour = "#1e7b34" if share < 0.7 else "#9a6700" if share < 0.9 else "#b3261e"
        fill = min(share, 1.0) * 400
        gauge = (
            f'<svg viewBox="0 0 400 14" style="height:14px;max-width:400px">'
            f'<rect width="400" height="14" rx="3" fill="#e3e8ee"/>'
            f'<rect width="{fill:.1f}" height="14" rx="3" fill="{colour if env.capacity else "#8a96a3"}"/>'
            "</svg>"
        )
        if env.capacity:
            of = f'{load.dags:,} of {env.capacity:,} DAGs (<span style="color:{colour}">{share:.0%}</span>)'
        else:
            of = (
                f"{load.dags:,} DAGs; no capacity set in fleet.yaml (the bar is against "
                f"{REFERENCE_CAPACITY:,}, about what Composer 3's XL preset holds)"
            )
        rows.append(
            f"<tr><td>{text(env.name)}</td><td>{text(env.target)}</td>"
            f'<td class="n">{load.districts:,}</td><td>{gauge}<div class="note">{of}</div></td></tr>'
        )
    return (
        "<section><h2>DAGs per environment</h2><table><thead><tr><th>environment</th>"
        '<th>target</th><th class="n">districts</th><th>DAGs against capacity</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _table(title: str, what: str, rows: list[Row], note: str, note_column: str = "") -> str:
    head = f'<th>{what}</th><th class="n">districts</th><th class="n">DAGs</th><th class="n">runs this day</th>'
    if note_column:
        head += f"<th>{note_column}</th>"
    body = "".join(
        f'<tr><td>{text(r.name)}</td><td class="n">{r.districts:,}</td><td class="n">{r.dags:,}</td>'
        f'<td class="n">{r.starts:,}</td>'
        + (f"<td>{text(r.note)}</td>" if note_column else "")
        + "</tr>"
        for r in rows
    )
    return (
        f"<h2>{title}</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f'<p class="note">{note}</p>'
    )


def _invalid(errors: dict[str, list[str]]) -> str:
    if not errors:
        return '<section><h2>Invalid customers</h2><p class="ok">None: every customer is valid.</p></section>'
    rows = "".join(
        f"<tr><td>{text(cid)}</td><td>{'<br>'.join(text(line) for line in lines)}</td></tr>"
        for cid, lines in errors.items()
    )
    return (
        f'<section><h2>Invalid customers ({len(errors)})</h2><table class="err"><thead><tr>'
        f"<th>customer</th><th>errors</th></tr></thead><tbody>{rows}</tbody></table>"
        '<p class="note">Their previously published DAGs stay as they were and keep running; '
        "they are not in the figures above. Fix the named row, then sync.</p></section>"
    )


def _uncharted(uncharted: list[tuple[str, str]]) -> str:
    if not uncharted:
        return ""
    rows = "".join(f"<tr><td>{text(c)}</td><td>{text(why)}</td></tr>" for c, why in uncharted)
    return (
        f"<section><h2>Published but not charted ({len(uncharted)})</h2><table><thead><tr>"
        f"<th>customer</th><th>why</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )
