"""Self-contained HTML reports: one baseline-vs-relapse pair, and a cohort overview.

The figures are inline SVG drawn here (no plotting library, no script, no external URL), so a
report is one file that opens offline. All text that comes from data is escaped.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from cd22scan.comparison.pair import Comparison
from cd22scan.console import version_text
from cd22scan.outputs.files import write_text
from cd22scan.sample.scan import ScanResult

__all__ = [
    "render_cohort_report",
    "render_pair_report",
    "write_cohort_report",
    "write_pair_report",
]

BASELINE_COLOUR = "#4c72b0"
RELAPSE_COLOUR = "#dd8452"
SKIP_COLOUR = "#d62728"
CANONICAL_COLOUR = "#555555"
NOVEL_COLOUR = "#9467bd"
ESCAPE_COLOUR = "#b22222"
NO_ESCAPE_COLOUR = "#2e7d32"

WIDTH = 1000  # SVG user units of every figure
MARGIN_LEFT = 70
MARGIN_RIGHT = 20
INTRON_PX = 40  # every intron is drawn this wide, so exons stay visible on long genes
MIN_ARC_READS = 2
MAX_ARCS = 40
MECHANISMS = (
    ("antigen_loss", "antigen loss"),
    ("aberrant_splicing", "aberrant splicing"),
    ("mutation", "mutation"),
)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 24px auto; max-width: 1280px; padding: 0 16px; box-sizing: border-box;
       color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: 0.9em; }
.verdict { border-radius: 6px; padding: 14px 18px; margin: 16px 0; color: #fff; }
.verdict.escape { background: #b22222; }
.verdict.no-escape { background: #2e7d32; }
.verdict.not-assessable { background: #8a5a00; }
.verdict .headline { font-size: 1.7em; font-weight: 700; }
.verdict .evidence { font-size: 1.1em; margin-top: 6px; }
.verdict .car { font-size: 1.3em; margin-top: 6px; }
.verdict .detail { font-size: 0.9em; margin-top: 6px; opacity: 0.9; }
figure { margin: 12px 0 20px 0; }
figcaption { font-size: 0.9em; color: #444; margin-top: 4px; }
svg { display: block; width: 100%; height: auto; background: #fff; }
.table-wrap { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85em; width: 100%; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; overflow-wrap: break-word; }
th { white-space: nowrap; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.called td { background: #fdecea; font-weight: 600; }
tr.escape td { background: #fdecea; }
details { margin-top: 8px; font-size: 0.85em; }
code { font-size: 0.95em; }
"""


# --- small helpers -------------------------------------------------------------------------------


def _e(value: Any) -> str:
    """Escape any value for HTML / SVG text and attributes (None → empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any, digits: int = 3) -> str:
    if _missing(value):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}"
    return str(value)


def _fmt_p(value: Any) -> str:
    """A p- or q-value: scientific below 0.01 (0.0028 → 2.8e-03), else three significant digits
    (0.049 → 0.049, 0.0501 → 0.0501), so a value never rounds across a threshold like 0.05."""
    if _missing(value):
        return ""
    value = float(value)
    if value < 0.01:
        return "0" if value == 0 else f"{value:.1e}"
    return f"{value:.3g}"


def _compact(value: float) -> str:
    """An axis number: 0, 250, 1500, 12k, 1.5M."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:.3g}M"
    if abs(value) >= 1e4:
        return f"{value / 1e3:.3g}k"
    return f"{value:.3g}" if value != int(value) else str(int(value))


def _n(x: float) -> str:
    """A coordinate for SVG: short, plain decimal."""
    return f"{x:.1f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))


def _text(x: float, y: float, content: Any, **attrs: Any) -> str:
    extra = "".join(f' {k.rstrip("_").replace("_", "-")}="{_e(v)}"' for k, v in attrs.items())
    return f'<text x="{_n(x)}" y="{_n(y)}"{extra}>{_e(content)}</text>'


def _svg(fig_id: str, title: str, height: float, body: Iterable[str]) -> str:
    return (
        f'<svg id="{_e(fig_id)}" viewBox="0 0 {WIDTH} {_n(height)}" width="{WIDTH}" '
        f'height="{_n(height)}" role="img" font-family="Helvetica, Arial, sans-serif" '
        f'font-size="12"><title>{_e(title)}</title>' + "".join(body) + "</svg>"
    )


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _table(headers: Sequence[str], rows: Iterable[tuple[str, Sequence[tuple[str, bool]]]]) -> str:
    """rows: (row css class, [(escaped cell html, numeric?)])."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    lines = []
    for css, cells in rows:
        tds = "".join(f'<td class="num">{c}</td>' if num else f"<td>{c}</td>" for c, num in cells)
        lines.append(f'<tr class="{_e(css)}">{tds}</tr>' if css else f"<tr>{tds}</tr>")
    return (
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(lines)}</tbody></table></div>"
    )


# --- the gene axis: exons to scale, introns compressed ------------------------------------------


@dataclass(frozen=True)
class _Segment:
    start: int  # 1-based inclusive genomic
    end: int
    x0: float
    width: float
    exon: int | None  # exon number, None for an intron


class _GeneAxis:
    """Piecewise-linear genomic → x mapping over the gene span, exons to scale."""

    def __init__(self, exons: Sequence[Any], x0: float, x1: float) -> None:
        genomic = sorted(exons, key=lambda e: e.start)
        exon_bp = sum(e.end - e.start + 1 for e in genomic) or 1
        n_introns = max(0, len(genomic) - 1)
        intron_px = min(INTRON_PX, (x1 - x0) * 0.4 / max(1, n_introns))
        scale = ((x1 - x0) - n_introns * intron_px) / exon_bp
        segments: list[_Segment] = []
        x = x0
        for i, exon in enumerate(genomic):
            w = (exon.end - exon.start + 1) * scale
            segments.append(_Segment(exon.start, exon.end, x, w, exon.number))
            x += w
            if i + 1 < len(genomic):
                nxt = genomic[i + 1]
                if nxt.start - 1 >= exon.end + 1:
                    segments.append(_Segment(exon.end + 1, nxt.start - 1, x, intron_px, None))
                x += intron_px
        self.segments = segments
        self.x0, self.x1 = x0, x1

    def x(self, pos: float) -> float:
        """x of the left edge of 1-based ``pos`` (pos = end + 1 gives a right edge)."""
        segs = self.segments
        if not segs or pos <= segs[0].start:
            return self.x0
        for seg in segs:
            if pos <= seg.end + 1:
                if pos < seg.start:  # between segments (adjacent exons, no intron)
                    return seg.x0
                return seg.x0 + (pos - seg.start) / (seg.end - seg.start + 1) * seg.width
        return self.x1


# --- figure 1: sashimi ---------------------------------------------------------------------------


def _binned_depth(result: ScanResult, axis: _GeneAxis) -> list[tuple[float, float, float]]:
    """(x_left, x_right, mean depth) bins about 2 px wide over every exon and intron."""
    bases = result.bases
    bins: list[tuple[float, float, float]] = []
    if bases is not None and bases.height and {"pos", "depth"} <= set(bases.columns):
        lo, hi = axis.segments[0].start, axis.segments[-1].end
        frame = bases.filter((pl.col("pos") >= lo) & (pl.col("pos") <= hi)).select("pos", "depth")
        depth = dict(zip(frame["pos"].to_list(), frame["depth"].to_list(), strict=True))
        for seg in axis.segments:
            length = seg.end - seg.start + 1
            n_bins = max(1, min(length, round(seg.width / 2)))
            for b in range(n_bins):
                p0 = seg.start + (length * b) // n_bins
                p1 = seg.start + (length * (b + 1)) // n_bins  # exclusive
                if p1 <= p0:
                    continue
                values = [depth.get(p, 0) for p in range(p0, p1)]
                bins.append((axis.x(p0), axis.x(p1), sum(values) / len(values)))
        return bins
    # No per-base table: flat blocks of each exon's mean depth.
    for row in result.exons.iter_rows(named=True):
        bins.append((axis.x(row["start"]), axis.x(row["end"] + 1), float(row["mean_depth"] or 0)))
    return sorted(bins)


def _skip_label(row: dict[str, Any]) -> str | None:
    skipped = row.get("skipped_exons")
    return f"Δex{skipped}" if skipped else None


LABEL_FONT = 11.0
LABEL_EM = 0.72  # a generous width per character (bold DejaVu digits are 0.70 em)
LABEL_ROW = 14.0  # a label moved down to avoid another goes one row lower


def _label_width(text: str) -> float:
    return len(text) * LABEL_FONT * LABEL_EM + 4


def _place_label(
    placed: list[tuple[float, float, float, float]], cx: float, y: float, width: float
) -> tuple[float, float]:
    """Where a label box of ``width`` centred on ``cx`` with its baseline at ``y`` goes so that
    it overlaps none of ``placed`` (x0, y0, x1, y1): the same x, moved down row by row. The box
    is kept inside the figure. Appends the box and returns (cx, baseline)."""
    cx = min(max(cx, MARGIN_LEFT + width / 2), WIDTH - 2 - width / 2)
    x0, x1 = cx - width / 2, cx + width / 2
    while True:
        y0, y1 = y - LABEL_FONT, y + 3
        if not any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in placed):
            placed.append((x0, y0, x1, y1))
            return cx, y
        y += LABEL_ROW


def _depth_axis(x0: float, base_y: float, height: float, peak: float) -> tuple[list[str], float]:
    """Ticks of the depth axis (0 and 2-4 more, at round values) and the top value they scale
    to (≥ peak)."""
    top_value = _nice_ceiling(peak) if peak > 0 else 1.0
    raw = top_value / 4
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next((m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw), raw)
    if step < 1:
        step = 1.0 if top_value >= 2 else top_value / 2
    out = []
    k = 0
    while k * step <= top_value + 1e-9:
        value = k * step
        y = base_y - value / top_value * height
        out.append(
            f'<line class="depth-tick" x1="{_n(x0 - 4)}" y1="{_n(y)}" x2="{_n(x0)}" '
            f'y2="{_n(y)}" stroke="#999"/>'
            + _text(
                x0 - 7,
                y + 4,
                _compact(value),
                text_anchor="end",
                fill="#666",
                font_size="10",
                class_="depth-label",
            )
        )
        k += 1
    out.append(
        f'<line x1="{_n(x0)}" y1="{_n(base_y - height)}" x2="{_n(x0)}" y2="{_n(base_y)}" '
        'stroke="#999" stroke-width="0.8"/>'
    )
    return out, top_value


def _sashimi_panel(
    result: ScanResult, axis: _GeneAxis, top: float, label: str, colour: str
) -> tuple[list[str], float]:
    cov_h, exon_y, exon_h = 90.0, top + 112, 14.0
    base_y = top + 20 + cov_h
    out = [_text(axis.x0, top + 12, label, font_weight="bold", font_size="13")]
    bins = _binned_depth(result, axis)
    peak = max((d for _, _, d in bins), default=0.0)
    ticks, scale_top = _depth_axis(axis.x0, base_y, cov_h, peak)
    out.extend(ticks)
    out.append(
        _text(
            14,
            top + 20 + cov_h / 2,
            "depth",
            fill="#666",
            transform=f"rotate(-90 14 {_n(top + 20 + cov_h / 2)})",
            text_anchor="middle",
        )
    )
    if peak > 0:
        pts = [f"{_n(bins[0][0])},{_n(base_y)}"]
        for x_left, x_right, d in bins:
            y = base_y - d / scale_top * cov_h
            pts.append(f"{_n(x_left)},{_n(y)}")
            pts.append(f"{_n(x_right)},{_n(y)}")
        pts.append(f"{_n(bins[-1][1])},{_n(base_y)}")
        out.append(
            f'<polygon class="coverage" points="{" ".join(pts)}" fill="{colour}" '
            f'fill-opacity="0.55" stroke="{colour}" stroke-width="0.6"/>'
        )
    out.append(
        f'<line x1="{_n(axis.x0)}" y1="{_n(base_y)}" x2="{_n(axis.x1)}" y2="{_n(base_y)}" '
        'stroke="#999" stroke-width="0.8"/>'
    )
    # gene model: intron line, exon boxes with numbers
    mid = exon_y + exon_h / 2
    out.append(
        f'<line x1="{_n(axis.x0)}" y1="{_n(mid)}" x2="{_n(axis.x1)}" y2="{_n(mid)}" '
        'stroke="#333" stroke-width="1"/>'
    )
    for seg in axis.segments:
        if seg.exon is None:
            continue
        out.append(
            f'<rect class="exon" x="{_n(seg.x0)}" y="{_n(exon_y)}" width="{_n(max(seg.width, 1))}"'
            f' height="{_n(exon_h)}" fill="#333"><title>exon {seg.exon}: '
            f"{seg.start}-{seg.end}</title></rect>"
        )
        if seg.width >= 7 * len(str(seg.exon)) + 3:
            out.append(
                _text(
                    seg.x0 + seg.width / 2,
                    mid + 4,
                    seg.exon,
                    fill="#fff",
                    font_size="10",
                    text_anchor="middle",
                )
            )
    # junction arcs hang below the exon boxes
    arc_top = exon_y + exon_h
    junctions = result.junctions
    lo, hi = axis.segments[0].start, axis.segments[-1].end
    rows = (
        [
            r
            for r in junctions.iter_rows(named=True)
            # An arc needs an end inside the drawn gene: a junction wholly outside it (another
            # gene in the window) would be drawn as a zero-width arc piled at an edge.
            if (r["reads"] or 0) >= MIN_ARC_READS
            and (lo <= r["start"] <= hi or lo <= r["end"] <= hi)
        ]
        if junctions is not None and junctions.height
        else []
    )
    rows = sorted(rows, key=lambda r: -r["reads"])[:MAX_ARCS]
    max_reads = max((r["reads"] for r in rows), default=1)
    spans = [axis.x(r["end"] + 1) - axis.x(r["start"]) for r in rows]
    arc_h_max = 70.0
    labels = []
    placed: list[tuple[float, float, float, float]] = []
    bottom = arc_top + arc_h_max
    # Skipping arcs first, then by reads: they get the places nearest their arcs.
    order = sorted(
        zip(rows, spans, strict=True), key=lambda t: (not _skip_label(t[0]), -t[0]["reads"])
    )
    for row, span in order:
        xa, xb = axis.x(row["start"]), axis.x(row["end"] + 1)  # donor end, acceptor start
        # depth by span in px, the same in both panels: short canonical arcs stay shallow
        depth = min(arc_h_max, 12 + 0.35 * span)
        skip = _skip_label(row)
        if skip:
            colour_arc, css = SKIP_COLOUR, "arc skip"
        elif row["annotated"]:
            colour_arc, css = CANONICAL_COLOUR, "arc canonical"
        else:
            colour_arc, css = NOVEL_COLOUR, "arc novel"
        stroke = 1 + 5 * math.sqrt(row["reads"] / max_reads)
        cy = arc_top + depth / 0.75  # a cubic with both controls at cy peaks at 3/4 of the way
        name = f"{skip}: " if skip else ""
        out.append(
            f'<path class="{css}" d="M{_n(xa)},{_n(arc_top)} C{_n(xa)},{_n(cy)} {_n(xb)},{_n(cy)} '
            f'{_n(xb)},{_n(arc_top)}" fill="none" stroke="{colour_arc}" '
            f'stroke-width="{_n(stroke)}" stroke-opacity="0.85"><title>{_e(name)}'
            f"{row['start']}-{row['end']} ({row['reads']} reads)</title></path>"
        )
        text = f"{skip} {row['reads']}" if skip else str(row["reads"])
        x, y = _place_label(placed, (xa + xb) / 2, arc_top + depth + 12, _label_width(text))
        bottom = max(bottom, y)
        labels.append(
            _text(
                x,
                y,
                text,
                text_anchor="middle",
                font_size=_n(LABEL_FONT),
                fill=SKIP_COLOUR if skip else "#222",
                font_weight="bold" if skip else "normal",
                class_="arc-label skip" if skip else "arc-label",
                stroke="#fff",
                stroke_width="3",
                paint_order="stroke",
            )
        )
    out.extend(labels)  # labels on top of every arc
    return out, bottom + 18 - top


def _genomic_ticks(axis: _GeneAxis, contig: str, y: float) -> list[str]:
    """A coordinate axis under the panels: tick marks at round 1-based positions, labelled where
    the labels do not collide (introns are drawn compressed, so ticks are not evenly spaced)."""
    lo, hi = axis.segments[0].start, axis.segments[-1].end
    span = max(hi - lo, 1)
    raw = span / 8
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    out = [
        f'<line class="genomic-axis" x1="{_n(axis.x0)}" y1="{_n(y)}" x2="{_n(axis.x1)}" '
        f'y2="{_n(y)}" stroke="#666"/>'
    ]
    last_right = axis.x0 - 6.0  # the contig name sits left of the axis
    pos = (lo + step - 1) // step * step
    while pos <= hi:
        x = axis.x(pos)
        text = f"{pos:,}"
        width = len(text) * 10 * LABEL_EM + 4
        labelled = x - width / 2 > last_right + 6
        out.append(
            f'<line class="genomic-tick" x1="{_n(x)}" y1="{_n(y)}" x2="{_n(x)}" '
            f'y2="{_n(y + (5 if labelled else 3))}" stroke="#666"/>'
        )
        if labelled and x + width / 2 <= WIDTH - 2:
            out.append(
                _text(
                    x,
                    y + 17,
                    text,
                    text_anchor="middle",
                    font_size="10",
                    fill="#444",
                    class_="genomic-label",
                )
            )
            last_right = x + width / 2
        pos += step
    out.append(_text(axis.x0 - 7, y + 4, contig, text_anchor="end", font_size="10", fill="#444"))
    return out


def sashimi_svg(baseline: ScanResult, relapse: ScanResult) -> str:
    axis = _GeneAxis(baseline.model.exons, MARGIN_LEFT, WIDTH - MARGIN_RIGHT)
    model = baseline.model
    body: list[str] = []
    top = 6.0
    for result, role, colour in (
        (baseline, "baseline", BASELINE_COLOUR),
        (relapse, "relapse", RELAPSE_COLOUR),
    ):
        panel, height = _sashimi_panel(result, axis, top, f"{role}: {result.sample}", colour)
        body.extend(panel)
        top += height
    body.extend(_genomic_ticks(axis, model.contig, top))
    top += 26
    direction = "5′ → 3′ left to right" if model.strand == "+" else "5′ → 3′ right to left"
    lo, hi = model.span
    body.append(
        _text(
            axis.x0,
            top + 10,
            f"{model.gene} {model.transcript} {model.contig}:{lo:,}-{hi:,} ({model.strand}), "
            f"{direction}; 1-based positions; introns drawn {INTRON_PX} px wide",
            fill="#666",
        )
    )
    legend_x = axis.x1 - 330
    for i, (colour, name) in enumerate(
        ((CANONICAL_COLOUR, "annotated"), (SKIP_COLOUR, "exon skipping"), (NOVEL_COLOUR, "novel"))
    ):
        x = legend_x + i * 115
        body.append(
            f'<line x1="{_n(x)}" y1="{_n(top + 30)}" x2="{_n(x + 24)}" y2="{_n(top + 30)}" '
            f'stroke="{colour}" stroke-width="3"/>' + _text(x + 30, top + 34, name)
        )
    return _svg(
        "fig-sashimi",
        f"Sashimi plot of {model.gene}: coverage and junction reads, baseline vs relapse",
        top + 42,
        body,
    )


# --- figure 2: exon coverage ---------------------------------------------------------------------


def _exon_shares(result: ScanResult) -> dict[int, float]:
    frame = result.exons
    total = float(frame["fragments"].sum() or 0) if frame.height else 0.0
    return {
        int(r["exon"]): (r["fragments"] or 0) / total if total > 0 else 0.0
        for r in frame.iter_rows(named=True)
    }


def exon_coverage_svg(
    baseline: ScanResult,
    relapse: ScanResult,
    called_exons: set[int] | None = None,
    epitope: tuple[str, tuple[int, ...]] | None = None,
) -> str:
    """``epitope``: (binder, exons encoding its epitope), marked under those exons."""
    called_exons = called_exons or set()
    binder_name, epitope_exons = epitope if epitope else ("", ())
    sb, sr = _exon_shares(baseline), _exon_shares(relapse)
    exons = sorted(set(sb) | set(sr))
    height, top, plot_h = 270.0, 30.0, 200.0
    base_y = top + plot_h
    x0, x1 = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    peak = max([*sb.values(), *sr.values(), 0.0]) or 1.0
    nice = _nice_ceiling(peak)
    body = []
    for k in range(5):
        value = nice * k / 4
        y = base_y - value / nice * plot_h
        body.append(
            f'<line x1="{_n(x0)}" y1="{_n(y)}" x2="{_n(x1)}" y2="{_n(y)}" stroke="#eee"/>'
            + _text(x0 - 6, y + 4, f"{value * 100:.3g}%", text_anchor="end", fill="#666")
        )
    body.append(
        _text(
            16,
            top + plot_h / 2,
            "share of exon fragments",
            transform=f"rotate(-90 16 {_n(top + plot_h / 2)})",
            text_anchor="middle",
            fill="#666",
        )
    )
    group = (x1 - x0) / max(1, len(exons))
    bar = min(40.0, group * 0.35)
    for i, exon in enumerate(exons):
        cx = x0 + group * (i + 0.5)
        for j, (shares, colour, role) in enumerate(
            ((sb, BASELINE_COLOUR, "baseline"), (sr, RELAPSE_COLOUR, "relapse"))
        ):
            v = shares.get(exon, 0.0)
            h = v / nice * plot_h
            x = cx - bar + j * bar
            body.append(
                f'<rect class="bar {role}" x="{_n(x)}" y="{_n(base_y - h)}" width="{_n(bar - 2)}"'
                f' height="{_n(h)}" fill="{colour}"><title>exon {exon} {role}: '
                f"{v * 100:.1f}%</title></rect>"
            )
        mark = " *" if exon in called_exons else ""
        body.append(
            _text(
                cx,
                base_y + 16,
                f"exon {exon}{mark}",
                text_anchor="middle",
                fill=SKIP_COLOUR if mark else "#222",
            )
        )
        if exon in epitope_exons:
            body.append(
                f'<rect class="epitope" x="{_n(cx - bar)}" y="{_n(base_y + 22)}" '
                f'width="{_n(2 * bar - 2)}" height="6" fill="#6a1b9a"><title>{_e(binder_name)} '
                f"epitope (exon {exon})</title></rect>"
            )
    body.append(
        f'<line x1="{_n(x0)}" y1="{_n(base_y)}" x2="{_n(x1)}" y2="{_n(base_y)}" stroke="#999"/>'
    )
    if epitope_exons:
        label = f"▬ {binder_name} epitope (data/binders.tsv)"
        body.append(_text(x1 - 230, height - 4, label, fill="#6a1b9a"))
    body.append(_legend(x1 - 230, 14, ((BASELINE_COLOUR, "baseline"), (RELAPSE_COLOUR, "relapse"))))
    if called_exons:
        body.append(_text(x0, height - 4, "* exon loss called", fill=SKIP_COLOUR))
    return _svg(
        "fig-exon-coverage",
        "Per-exon coverage: fragments of each exon as a share of the sample's exon fragments",
        height,
        body,
    )


def _legend(x: float, y: float, items: Sequence[tuple[str, str]]) -> str:
    parts = []
    for i, (colour, name) in enumerate(items):
        xi = x + i * 110
        parts.append(
            f'<rect x="{_n(xi)}" y="{_n(y - 10)}" width="12" height="12" fill="{colour}"/>'
            + _text(xi + 17, y, name)
        )
    return "".join(parts)


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


# --- figure 3: VAF -------------------------------------------------------------------------------


def vaf_svg(events: pl.DataFrame) -> str:
    rows = (
        events.filter(pl.col("event_type") == "mutation").to_dicts()
        if events.height and "event_type" in events.columns
        else []
    )
    rows.sort(key=lambda r: (not r["called"], r["q_value"] if r["q_value"] is not None else 2))
    x0, x1 = 300.0, WIDTH - MARGIN_RIGHT - 20
    row_h, top = 26.0, 34.0
    if not rows:
        body = [
            _text(
                WIDTH / 2,
                50,
                "no variants tested in either sample",
                text_anchor="middle",
                font_size="14",
                fill="#666",
                class_="empty",
            )
        ]
        return _svg("fig-vaf", "Variant allele fractions: no variants", 80, body)
    height = top + row_h * len(rows) + 40
    bottom = top + row_h * len(rows)
    body = []
    for k in range(6):
        v = k / 5
        x = x0 + v * (x1 - x0)
        body.append(
            f'<line x1="{_n(x)}" y1="{_n(top - 6)}" x2="{_n(x)}" y2="{_n(bottom)}" stroke="#eee"/>'
            + _text(x, bottom + 16, f"{v:.1f}", text_anchor="middle", fill="#666")
        )
    body.append(_text((x0 + x1) / 2, bottom + 32, "variant allele fraction", text_anchor="middle"))
    for i, row in enumerate(rows):
        y = top + row_h * (i + 0.5)
        name = row["feature"] or ""
        if row.get("hgvs_p"):
            name = f"{name} {row['hgvs_p']}"
        fill = SKIP_COLOUR if row["called"] else "#222"
        body.append(
            _text(x0 - 12, y + 4, name, text_anchor="end", fill=fill, class_="variant-label")
        )
        vb = row["baseline_value"] if not _missing(row["baseline_value"]) else 0.0
        vr = row["relapse_value"] if not _missing(row["relapse_value"]) else 0.0
        xb, xr = x0 + vb * (x1 - x0), x0 + vr * (x1 - x0)
        body.append(
            f'<line x1="{_n(xb)}" y1="{_n(y)}" x2="{_n(xr)}" y2="{_n(y)}" stroke="#aaa" '
            'stroke-width="2"/>'
        )
        for value, x, colour, role, reads in (
            (vb, xb, BASELINE_COLOUR, "baseline", row["baseline_reads"]),
            (vr, xr, RELAPSE_COLOUR, "relapse", row["relapse_reads"]),
        ):
            body.append(
                f'<circle class="vaf {role}" cx="{_n(x)}" cy="{_n(y)}" r="6" fill="{colour}">'
                f"<title>{_e(name)} {role}: VAF {value:.3f} ({_e(reads)} alt reads)</title>"
                "</circle>"
            )
    body.append(_legend(x1 - 220, 18, ((BASELINE_COLOUR, "baseline"), (RELAPSE_COLOUR, "relapse"))))
    return _svg("fig-vaf", "Variant allele fractions, baseline vs relapse", height, body)


# --- tables --------------------------------------------------------------------------------------

_EVENT_HEADERS = (
    "called",
    "event",
    "feature",
    "known event",
    "baseline",
    "relapse",
    "effect",
    "reads (b / r)",
    "consequence",
    "protein",
    "p",
    "q",
)


def _events_table(events: pl.DataFrame) -> str:
    if not events.height:
        return "<p>No events were tested.</p>"
    rows = events.to_dicts()
    rows.sort(key=lambda r: (not r["called"], r["q_value"] if r["q_value"] is not None else 2))
    out = []
    for r in rows:
        reads = f"{_fmt(r['baseline_reads'])} / {_fmt(r['relapse_reads'])}"
        out.append(
            (
                "called" if r["called"] else "",
                [
                    ("yes" if r["called"] else "", False),
                    (_e(r["event_type"]), False),
                    (_e(r["feature"]), False),
                    (_e(r.get("known_event")), False),
                    (_e(_fmt(r["baseline_value"])), True),
                    (_e(_fmt(r["relapse_value"])), True),
                    (_e(_fmt(r["effect"])), True),
                    (_e(reads), True),
                    (_e(r.get("consequence")), False),
                    (_e(r.get("hgvs_p")), False),
                    (_e(_fmt_p(r["p_value"])), True),
                    (_e(_fmt_p(r["q_value"])), True),
                ],
            )
        )
    return _table(_EVENT_HEADERS, out)


# --- the pair report -----------------------------------------------------------------------------


def _verdict_block(verdict: dict[str, Any]) -> str:
    found = [label for column, label in MECHANISMS if verdict.get(column)]
    blind = [
        label
        for column, label in MECHANISMS
        if str(verdict.get(f"{column}_status") or "").startswith("not assessable")
    ]
    escape = bool(found)
    if escape:
        headline, css = f"Escape: {', '.join(found)}", "escape"
    elif blind:
        headline, css = f"No escape detected; not assessable: {', '.join(blind)}", "not-assessable"
    else:
        headline, css = "No evidence of escape", "no-escape"
    n_escape = verdict.get("n_escape", verdict.get("n_called"))
    n_changes = verdict.get("n_changes") or 0
    car = ""
    if verdict.get("car"):  # the binder of --car: what the escape events mean for that CAR
        car = (
            f'<div class="car">CAR {_e(verdict.get("gene"))}:{_e(verdict["car"])}: '
            f"<b>{_e(verdict.get('binder_verdict'))}</b> ({_e(verdict.get('binder_text'))})"
            "</div>"
        )
    return (
        f'<section id="verdict" class="verdict {css}" data-escape="{str(escape).lower()}">'
        f'<div class="headline">{_e(headline)}</div>{car}'
        f'<div class="evidence">{_e(verdict.get("verdict"))}</div>'
        f'<div class="detail">{_e(n_escape)} escape event(s), {_e(n_changes)} other called '
        f"change(s) of {_e(verdict.get('gene'))}, {_e(verdict.get('baseline'))} (baseline) vs "
        f"{_e(verdict.get('relapse'))} (relapse)</div></section>"
    )


def _epitope_of(verdict: dict[str, Any], model: Any) -> tuple[str, tuple[int, ...]] | None:
    """(binder, epitope exons) of the pair's --car binder when the table maps it, else None."""
    if not verdict.get("car"):
        return None
    from cd22scan.target.binders import builtin_binders

    for item in builtin_binders():
        if item.gene == model.gene and item.name == verdict["car"]:
            return item.name, item.epitope_exons
    return None


def render_pair_report(comparison: Comparison, baseline: ScanResult, relapse: ScanResult) -> str:
    """One self-contained HTML page: verdict, sashimi, exon coverage, VAF, events table."""
    verdict = comparison.verdict.row(0, named=True) if comparison.verdict.height else {}
    events = comparison.events
    called_exons: set[int] = set()
    if events.height:
        for r in events.filter(
            (pl.col("event_type") == "exon_loss") & pl.col("called").fill_null(False)
        ).iter_rows(named=True):
            called_exons.add(int(str(r["feature"]).split()[-1]))
    model = baseline.model
    thresholds = verdict.get("thresholds") or ""
    parts = [
        f"<h1>{_e(model.gene)} escape report: {_e(comparison.pair)}</h1>",
        f'<p class="meta">baseline <b>{_e(comparison.baseline)}</b>, relapse '
        f"<b>{_e(comparison.relapse)}</b>; transcript {_e(model.transcript)} on "
        f"{_e(model.contig)} ({_e(model.strand)}), {len(model.exons)} exons; "
        f"model: {_e(model.source)}</p>",
        _verdict_block(verdict),
        "<h2>Splicing: sashimi plot</h2>",
        "<figure>",
        sashimi_svg(baseline, relapse),
        f"<figcaption>Coverage (per-base depth, binned) above the exons; arcs are junctions with "
        f"≥ {MIN_ARC_READS} reads, labelled with their read count, line width ∝ √reads. "
        "Exon-skipping junctions are red and named (Δex…).</figcaption></figure>",
        "<h2>Per-exon coverage</h2>",
        "<figure>",
        exon_coverage_svg(baseline, relapse, called_exons, _epitope_of(verdict, model)),
        "<figcaption>Fragments counted on each exon divided by the sample's total over all "
        "exons, so a library-size difference does not look like exon loss.</figcaption>"
        "</figure>",
        "<h2>Mutations: variant allele fractions</h2>",
        "<figure>",
        vaf_svg(events),
        "<figcaption>Alleles tested in either sample (called ones in red), baseline and relapse "
        "VAF.</figcaption></figure>",
        "<h2>Events</h2>",
        _events_table(events),
        f"<details><summary>Thresholds</summary><code>{_e(thresholds)}</code></details>",
        f"<details><summary>Dispersion: {_e(verdict.get('dispersion_source') or 'fixed')}"
        f"</summary><code>{_e(verdict.get('dispersions') or '')}</code></details>",
    ]
    return _page(f"{model.gene} {comparison.pair}", "\n".join(parts))


def write_pair_report(
    comparison: Comparison,
    baseline: ScanResult,
    relapse: ScanResult,
    path: str | os.PathLike[str],
) -> Path:
    return write_text(render_pair_report(comparison, baseline, relapse), Path(path))


# --- the cohort report ---------------------------------------------------------------------------


def _read_tsv(path: Path, **kwargs: Any) -> pl.DataFrame:
    if not path.is_file() or path.stat().st_size == 0 or not path.read_text().strip():
        return pl.DataFrame()
    return pl.read_csv(path, separator="\t", **kwargs)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def mechanism_svg(summary: pl.DataFrame, fig_id: str = "fig-mechanisms") -> str:
    rows = summary.to_dicts() if summary.height else []
    top, row_h = 20.0, 34.0
    x0, x1 = 200.0, WIDTH - 140
    height = top + row_h * max(1, len(rows)) + 36
    body = []
    if not rows:
        body.append(_text(WIDTH / 2, 40, "no patients compared", text_anchor="middle"))
    for i, r in enumerate(rows):
        y = top + row_h * i
        n, total = int(r.get("patients_with") or 0), int(r.get("patients_compared") or 0)
        share = n / total if total else 0.0
        label = str(r.get("mechanism", "")).replace("_", " ")
        colour = ESCAPE_COLOUR if r.get("mechanism") == "any_escape" else BASELINE_COLOUR
        body.append(_text(x0 - 10, y + 18, label, text_anchor="end"))
        body.append(
            f'<rect x="{_n(x0)}" y="{_n(y + 4)}" width="{_n(x1 - x0)}" height="20" fill="#eee"/>'
            f'<rect class="bar" x="{_n(x0)}" y="{_n(y + 4)}" width="{_n(share * (x1 - x0))}" '
            f'height="20" fill="{colour}"><title>{_e(r.get("text"))}</title></rect>'
        )
        body.append(_text(x1 + 8, y + 18, f"{n} of {total}"))
    bottom = top + row_h * max(1, len(rows))
    body.append(
        _text(
            (x0 + x1) / 2,
            bottom + 20,
            "patients with the mechanism",
            fill="#666",
            text_anchor="middle",
        )
    )
    return _svg(fig_id, "Escape mechanisms across the cohort", height, body)


def _cohort_target(out: Path) -> str:
    """Gene, transcript, build and region of the cohort's scans (from their summaries), one
    line; several of a kind are all named."""
    import json

    seen: dict[str, list[str]] = {k: [] for k in ("gene", "transcript", "build", "scanned window")}
    scans = out / "scans"
    for path in sorted([*scans.glob("*.summary.json"), *scans.glob("*/*.summary.json")]):
        try:
            s = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        window = s.get("window") or {}
        region = s.get("contig")
        if window.get("start") and window.get("end"):
            region = f"{region}:{window['start']:,}-{window['end']:,}"
        values = {
            "gene": s.get("gene"),
            "transcript": s.get("transcript"),
            "build": s.get("build"),
            "scanned window": region,
        }
        for key, value in values.items():
            if value and str(value) not in seen[key]:
                seen[key].append(str(value))
    if not seen["gene"]:
        return "gene: not known (no scans/*.summary.json)"
    return "; ".join(f"{key} {', '.join(v)}" for key, v in seen.items() if v)


def _verdict_rows(out: Path, verdicts: pl.DataFrame, folder: str) -> str:
    rows = []
    with_car = "car" in verdicts.columns and verdicts["car"].drop_nulls().len() > 0
    for r in verdicts.iter_rows(named=True):
        flags = [label for column, label in MECHANISMS if _truthy(r.get(column))]
        pair = str(r.get("pair") or "")
        href = f"pairs/{folder}{pair}.report.html"
        found = pair and (out / href).is_file()
        link = f'<a href="{_e(href)}">{_e(pair)}</a>' if found else _e(pair)
        cells = [
            (_e(r.get("patient")), False),
            (link, False),
            (_e(", ".join(flags) or "none"), False),
            (_e(r.get("n_called")), True),
            (_e(r.get("verdict")), False),
        ]
        if with_car:
            car = f"{r.get('car')}: {r.get('binder_verdict')}" if r.get("car") else ""
            cells.append((_e(car), False))
        rows.append(("escape" if flags else "", cells))
    headers = ("patient", "pair (report)", "escape", "called", "verdict")
    return _table((*headers, "CAR") if with_car else headers, rows)


def _lineage_section(out: Path) -> str:
    path = out / "cohort_lineage.tsv"
    if not path.is_file():
        return ""
    lineage = _read_tsv(path)
    rows = [
        (
            "escape" if _truthy(r.get("lineage_switch")) else "",
            [
                (_e(r.get("patient")), False),
                (_e(r.get("pair")), False),
                (_e(_fmt(r.get("b_log2fc"))), True),
                (_e(_fmt(r.get("myeloid_log2fc"))), True),
                (_e(r.get("text")), False),
            ],
        )
        for r in lineage.iter_rows(named=True)
    ]
    headers = ("patient", "pair", "B markers log2FC", "myeloid markers log2FC", "lineage")
    return '<section id="lineage"><h2>Lineage switch</h2>' + _table(headers, rows) + "</section>"


def _dispersion_line(verdicts: pl.DataFrame) -> str:
    """Where the tests' dispersions came from, per gene (the verdicts' ``dispersion_source``):
    a reader must know whether the cohort's own baselines set them."""
    if not verdicts.height or "dispersion_source" not in verdicts.columns:
        return ""
    sources = verdicts.select("gene", "dispersion_source").unique(maintain_order=True)
    named = [(r["gene"], r["dispersion_source"] or "fixed") for r in sources.iter_rows(named=True)]
    if len(named) > 1 and len({source for _, source in named}) == 1:
        text = f"{named[0][1]} (all {len(named)} genes)"
    else:
        text = "; ".join(f"{gene}: {source}" for gene, source in named)
    return f'<p class="meta" id="dispersion">dispersion of the tests: {_e(text)}</p>'


def render_cohort_report(out_dir: str | os.PathLike[str]) -> str:
    """The cohort page: summary, mechanisms and verdicts (one block per gene of a panel run,
    each linking its pairs' reports in pairs/GENE/), the lineage-switch table of a panel run,
    and the called events."""
    out = Path(out_dir)
    verdicts = _read_tsv(out / "cohort_verdicts.tsv")
    summary = _read_tsv(out / "cohort_summary.tsv")
    events = _read_tsv(out / "cohort_events.tsv", schema_overrides={"feature": pl.Utf8})
    genes = (
        list(dict.fromkeys(verdicts["gene"].to_list()))
        if verdicts.height and "gene" in verdicts.columns
        else []
    )
    panel = len(genes) > 1
    parts = [
        "<h1>cd22scan cohort report</h1>",
        f'<p class="meta" id="target">{_e(_cohort_target(out))}</p>',
        f'<p class="meta" id="tool">{_e(version_text())}; {_e(out.resolve())}</p>',
        _dispersion_line(verdicts),
    ]
    for gene in genes if panel else [None]:
        mine = summary.filter(pl.col("gene") == gene) if gene else summary
        lines = mine["text"].to_list() if mine.height and "text" in mine.columns else []
        suffix = f"-{gene}" if gene else ""
        if gene:
            parts.append(f'<h2 id="target-{_e(gene)}">{_e(gene)}</h2>')
        parts += [
            f'<section id="summary{_e(suffix)}"><h2>Summary</h2><ul>'
            + "".join(f"<li>{_e(line)}</li>" for line in lines)
            + ("" if lines else "<li>no patients compared</li>")
            + "</ul></section>",
            "<h2>Mechanisms</h2><figure>",
            mechanism_svg(mine, f"fig-mechanisms{suffix}"),
            "</figure>",
            "<h2>Per-patient verdicts</h2>",
        ]
        shown = verdicts.filter(pl.col("gene") == gene) if gene else verdicts
        if shown.height:
            parts.append(_verdict_rows(out, shown, f"{gene}/" if gene else ""))
        else:
            parts.append("<p>No baseline–relapse pairs were compared.</p>")
    parts.append(_lineage_section(out))
    if events.height and "called" in events.columns:
        called = events.filter(pl.col("called").cast(pl.Utf8).str.to_lowercase() == "true")
        parts.append("<h2>Called events</h2>")
        if called.height:
            rows = [
                (
                    "",
                    [
                        (_e(r.get("patient")), False),
                        (_e(r.get("pair")), False),
                        (_e(r.get("gene")), False),
                        (_e(r.get("event_type")), False),
                        (_e(r.get("feature")), False),
                        (_e(_fmt(r.get("baseline_value"))), True),
                        (_e(_fmt(r.get("relapse_value"))), True),
                        (_e(_fmt(r.get("effect"))), True),
                        (_e(_fmt_p(r.get("q_value"))), True),
                    ],
                )
                for r in called.iter_rows(named=True)
            ]
            headers = ("patient", "pair", "gene", "event", "feature", "baseline", "relapse",
                       "effect", "q")  # fmt: skip
            parts.append(_table(headers, rows))
        else:
            parts.append("<p>No event passed the thresholds.</p>")
    return _page("cd22scan cohort report", "\n".join(parts))


def write_cohort_report(
    out_dir: str | os.PathLike[str], path: str | os.PathLike[str] | None = None
) -> Path:
    final = Path(path) if path is not None else Path(out_dir) / "report.html"
    return write_text(render_cohort_report(out_dir), final)
