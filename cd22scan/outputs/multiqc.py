"""MultiQC custom-content files, found by MultiQC's default search (``*_mqc.*``) with no config:
per-sample metrics in the General Statistics table and a cohort verdict table.

``sample_metrics`` turns one ``ScanResult`` into the flat dict ``write_multiqc_files`` takes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from cd22scan.calling.sample import sample_calls
from cd22scan.outputs.files import prepare_out_dir, write_text

__all__ = ["GENERAL_STATS_FILE", "VERDICTS_FILE", "sample_metrics", "write_multiqc_files"]

GENERAL_STATS_FILE = "cd22scan_general_stats_mqc.yaml"
VERDICTS_FILE = "cd22scan_verdicts_mqc.tsv"
NAMESPACE = "cd22scan"
# An unannotated skip becomes a column only when some sample shows it this clearly.
MIN_SHARE_FOR_COLUMN = 0.05
MIN_READS_FOR_COLUMN = 5

# Every column of the verdict table, with its header: MultiQC shows only the columns a custom
# table's ``headers`` name, so each one is named and marked visible.
VERDICT_HEADERS: dict[str, dict[str, Any]] = {
    "patient": {"title": "Patient", "description": "Patient of the pair (sample sheet)"},
    "gene": {"title": "Gene", "description": "Target gene"},
    "baseline": {"title": "Baseline", "description": "Baseline sample"},
    "relapse": {"title": "Relapse", "description": "Relapse sample"},
    "antigen_loss": {"title": "Antigen loss", "description": "Expression or exon loss called"},
    "aberrant_splicing": {
        "title": "Aberrant splicing",
        "description": "Exon skipping, intron retention or a novel junction called (up)",
    },
    "mutation": {"title": "Mutation", "description": "A protein-altering mutation called (up)"},
    "n_called": {
        "title": "Called events",
        "description": "Events passing every threshold (escape evidence or not)",
        "format": "{:,.0f}",
    },
    "verdict": {"title": "Verdict", "description": "cd22scan's verdict for the pair"},
}
VERDICT_COLUMNS = tuple(VERDICT_HEADERS)


def sample_metrics(result: Any, variants: pl.DataFrame | None = None) -> dict[str, Any]:
    """Flat metrics of one scan: sample, fragments_on_gene, library_size, cpm, the donor share
    (reads / (reads + canonical reads of the donor), ``sample_calls(result).skipping_events``)
    of every skipping event seen and of every known skipping event of the model (0 when not seen
    but its donor splices), the canonical reads per donor exon (so the writer can give 0 for an
    event another sample shows), and the number of variant alleles when ``variants`` is given."""
    summary = result.summary
    model = result.model
    skips = sample_calls(result).skipping_events
    # Canonical (donor -> donor + 1) reads per donor exon: an event not seen in this sample has
    # share 0 when its donor splices at all, and no value when the donor has no reads.
    canonical = {int(d): int(n) for d, n in _canonical_by_donor(result.junctions, model).items()}
    shares: dict[str, dict[str, Any]] = {}
    for event in model.known_events:
        if event.kind == "exon_skipping" and event.skipped_exons:
            donor = min(event.skipped_exons) - 1
            shares[event.name] = {
                "share": 0.0 if canonical.get(donor) else None,
                "reads": 0,
                "known": True,
                "donor_exon": donor,
            }
    for row in skips.iter_rows(named=True):
        name = row["known_event"] or row["event"]
        shares[name] = {
            "share": row["donor_share"],
            "reads": int(row["reads"]),
            "known": row["known_event"] is not None or shares.get(name, {}).get("known", False),
            "donor_exon": int(row["donor_exon"]),
        }
    metrics: dict[str, Any] = {
        "sample": result.sample,
        "fragments_on_gene": summary.get("fragments_on_gene"),
        "library_size": summary.get("library_size"),
        "skipping": shares,
        "canonical_by_donor": canonical,
    }
    if variants is not None:
        metrics["variants"] = int(variants.height)
    return metrics


def _canonical_by_donor(junctions: pl.DataFrame, model: Any) -> dict[int, int]:
    """{donor exon: reads of its annotated junction to donor + 1} on the gene's strand."""
    frame = junctions.filter(
        pl.col("annotated")
        & pl.col("donor_exon").is_not_null()
        & (pl.col("acceptor_exon") == pl.col("donor_exon") + 1)
        & (pl.col("strand").is_null() | (pl.col("strand") == model.strand))
    )
    out: dict[int, int] = {}
    for donor, reads in frame.select("donor_exon", "reads").iter_rows():
        out[int(donor)] = out.get(int(donor), 0) + int(reads or 0)
    return out


def _reads_of(canonical: dict[Any, int], donor: int | None) -> int:
    if donor is None:
        return 0
    # Keys are ints from sample_metrics, strings once the dict went through JSON.
    return int(canonical.get(donor) or canonical.get(str(donor)) or 0)


def _cpm(metrics: dict[str, Any]) -> float | None:
    if metrics.get("cpm") is not None:
        return float(metrics["cpm"])
    frags, lib = metrics.get("fragments_on_gene"), metrics.get("library_size")
    return frags / lib * 1e6 if frags is not None and lib else None


def _event_id(name: str) -> str:
    ascii_name = name.replace("Δ", "d")
    return "skip_" + "".join(ch if ch.isalnum() else "_" for ch in ascii_name)


def _skip_columns(per_sample: list[dict[str, Any]]) -> list[str]:
    chosen: dict[str, None] = {}
    for metrics in per_sample:
        for name, value in (metrics.get("skipping") or {}).items():
            share = value.get("share") or 0.0
            reads = value.get("reads") or 0
            if value.get("known") or (
                share >= MIN_SHARE_FOR_COLUMN and reads >= MIN_READS_FOR_COLUMN
            ):
                chosen[name] = None
    return sorted(chosen)


def _escapes_by_relapse(verdicts: pl.DataFrame, events: pl.DataFrame | None) -> dict[str, int]:
    """{relapse sample: called events that are escape evidence (``compare._mechanism``: a loss,
    splicing up, a protein-altering mutation up)}, 0 for a compared relapse without any; empty
    when ``events`` is not given."""
    from cd22scan.comparison.pair import _mechanism

    if events is None or verdicts.height == 0 or "relapse" not in verdicts.columns:
        return {}
    out: dict[str, int] = {str(r): 0 for r in verdicts["relapse"].to_list()}
    if events.height == 0 or "called" not in events.columns:
        return out
    for row in events.iter_rows(named=True):
        called = row.get("called")
        if isinstance(called, str):
            called = called.strip().lower() == "true"
        if called and _mechanism({**row, "called": True}) is not None:
            out[str(row["relapse"])] = out.get(str(row["relapse"]), 0) + 1
    return out


def _general_stats(
    verdicts: pl.DataFrame,
    per_sample: list[dict[str, Any]],
    events: pl.DataFrame | None = None,
) -> dict[str, Any]:
    skip_names = _skip_columns(per_sample)
    donors = {
        name: value.get("donor_exon")
        for metrics in per_sample
        for name, value in (metrics.get("skipping") or {}).items()
    }
    escapes = _escapes_by_relapse(verdicts, events)
    headers: dict[str, dict[str, Any]] = {
        "fragments_on_gene": {
            "title": "Gene frags",
            "description": "Fragments on the target gene (cd22scan)",
            "format": "{:,.0f}",
            "scale": "Blues",
        },
        "cpm": {
            "title": "Gene CPM",
            "description": "Fragments on the gene per million mapped records",
            "format": "{:,.1f}",
            "scale": "Greens",
        },
    }
    for name in skip_names:
        headers[_event_id(name)] = {
            "title": f"{name} share",
            "description": f"{name}: skipping reads / (skipping + canonical reads of its donor)",
            "min": 0,
            "max": 1,
            "format": "{:,.3f}",
            "scale": "Reds",
        }
    if any("variants" in m for m in per_sample):
        headers["variants"] = {
            "title": "Variants",
            "description": "Variant alleles called on the gene",
            "format": "{:,.0f}",
        }
    if escapes:
        headers["escape_events"] = {
            "title": "Escape calls",
            "description": "Called events of this relapse sample that are escape evidence "
            "(antigen loss, aberrant splicing up, protein-altering mutation up), all pairs",
            "format": "{:,.0f}",
            "scale": "OrRd",
        }
    for column in headers.values():
        column["namespace"] = NAMESPACE
    data: dict[str, dict[str, Any]] = {}
    for metrics in per_sample:
        sample = str(metrics["sample"])
        row: dict[str, Any] = {}
        if metrics.get("fragments_on_gene") is not None:
            row["fragments_on_gene"] = int(metrics["fragments_on_gene"])
        cpm = _cpm(metrics)
        if cpm is not None:
            row["cpm"] = round(cpm, 4)
        skipping = metrics.get("skipping") or {}
        canonical = metrics.get("canonical_by_donor") or {}
        for name in skip_names:
            share = (skipping.get(name) or {}).get("share")
            if share is None and name not in skipping and _reads_of(canonical, donors.get(name)):
                share = 0.0  # not seen although its donor splices: no skipping
            if share is not None:
                row[_event_id(name)] = round(float(share), 5)
        if "variants" in metrics:
            row["variants"] = int(metrics["variants"])
        if sample in escapes:
            row["escape_events"] = escapes[sample]
        data[sample] = row
    return {
        "id": "cd22scan_general_stats",
        "section_name": "cd22scan",
        "plot_type": "generalstats",
        "headers": headers,
        "data": data,
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split())  # no tabs or newlines inside a cell


def _verdict_table(verdicts: pl.DataFrame) -> str:
    config = {
        "id": "cd22scan_verdicts",
        "section_name": "cd22scan verdicts",
        "description": "Baseline vs relapse per pair: escape mechanisms called by cd22scan.",
        "plot_type": "table",
        "pconfig": {"id": "cd22scan_verdicts_table", "title": "cd22scan: verdicts"},
        "headers": {
            column: {**header, "hidden": False}
            for column, header in VERDICT_HEADERS.items()
            if column in verdicts.columns
        },
    }
    # JSON is YAML; MultiQC reads the '#' lines as one YAML document.
    lines = [f"# {key}: {json.dumps(value)}" for key, value in config.items()]
    present = [c for c in VERDICT_COLUMNS if c in verdicts.columns]
    lines.append("\t".join(["pair", *present]))
    # a panel run has one row per pair and gene: the row name (MultiQC's key) names both
    panel = "gene" in verdicts.columns and verdicts["gene"].n_unique() > 1
    if verdicts.height and "pair" in verdicts.columns:
        for row in verdicts.iter_rows(named=True):
            key = f"{row['pair']} {row['gene']}" if panel else row.get("pair")
            lines.append("\t".join([_cell(key), *(_cell(row.get(c)) for c in present)]))
    return "\n".join(lines) + "\n"


def write_multiqc_files(
    out_dir: str | os.PathLike[str],
    verdicts: pl.DataFrame,
    per_sample: list[dict[str, Any]],
    events: pl.DataFrame | None = None,
) -> list[Path]:
    """Write ``cd22scan_general_stats_mqc.yaml`` (General Statistics columns per sample: gene
    fragments, CPM, donor share of known / clear skipping events, variants, escape calls of a
    relapse sample, counted from ``events`` (the cohort events with a ``relapse`` column); left
    out without them) and, when ``verdicts`` has rows, ``cd22scan_verdicts_mqc.tsv`` (one row per
    pair). ``per_sample``: dicts from ``sample_metrics`` (or any dict with ``sample`` and some of
    fragments_on_gene, library_size, cpm, skipping, variants — a summary.json dict works)."""
    out = prepare_out_dir(out_dir)
    written = []
    if per_sample:
        stats = _general_stats(verdicts, per_sample, events)
        # JSON is valid YAML; no YAML library needed to write it.
        text = json.dumps(stats, indent=2, ensure_ascii=True) + "\n"
        written.append(write_text(text, out / GENERAL_STATS_FILE))
    if verdicts.height:
        written.append(write_text(_verdict_table(verdicts), out / VERDICTS_FILE))
    return written
