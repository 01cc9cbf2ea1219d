"""Lineage switch: B-lineage markers lost and myeloid markers gained at relapse (issue 15).

A relapse that lost every B antigen at once (a switch to acute myeloid or mixed-phenotype
leukemia, e.g. after CD19 CAR T in KMT2A-rearranged B-ALL: Gardner 2016, Lamble 2023) is a
different finding from the loss of one target. The markers are those of the WHO 2016 lineage
assignment of mixed phenotype acute leukemia (``target/data/lineage_markers.tsv``, Arber 2016):

* B lineage: CD19 with at least one of CD79A, CD22, MME (CD10);
* myeloid: MPO, or monocytic differentiation by at least two of CD14, FCGR1A (CD64), LYZ.

Each marker scanned in both samples is tested as gene expression is in ``pair`` (fragments on
the gene per library size; effect = log2 fold change, pseudocount 0.5; p = ``poisson_rate_test``
with the negative-binomial dispersion ``expression_dispersion``), Benjamini–Hochberg over the
markers (a family of their own). A B marker is **down** when log2FC <= ``min_log2fc_loss``,
q < ``max_q`` and the baseline has >= ``min_reads`` fragments on it; a myeloid marker is **up**
when log2FC >= -``min_log2fc_loss`` (a gain of the same size), q < ``max_q`` and the relapse has
>= ``min_reads`` fragments. A lineage switch is **suspected** when both WHO criteria hold in
that direction: CD19 and another B marker down, and MPO or two monocytic markers up.

``status``: ``lineage switch suspected``, ``no lineage switch detected``, or ``not assessable
(why)`` when the markers the criteria need were not scanned in both samples (scan with
``--targets panel``) or the baseline has fewer than ``min_reads`` fragments on CD19.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

import polars as pl

from cd22scan.calling.stats import (
    benjamini_hochberg,
    log2_fold_change,
    poisson_rate_test,
    rho_from_nb_dispersion,
)
from cd22scan.sample.scan import ScanResult
from cd22scan.target.panel import lineage_markers

SUSPECTED = "lineage switch suspected"
NOT_DETECTED = "no lineage switch detected"

LINEAGE_COLUMNS = {
    "pair": pl.Utf8,
    "baseline": pl.Utf8,
    "relapse": pl.Utf8,
    "markers": pl.Utf8,  # marker genes tested (scanned in both samples)
    "b_log2fc": pl.Float64,  # median log2FC of the B markers tested
    "myeloid_log2fc": pl.Float64,  # median log2FC of the myeloid markers tested
    "b_down": pl.Utf8,  # B markers called down
    "myeloid_up": pl.Utf8,  # myeloid markers called up
    "lineage_switch": pl.Boolean,
    "status": pl.Utf8,
    "text": pl.Utf8,
    "tests": pl.Utf8,  # per marker: gene lineage log2FC q, JSON-free text
}

_PSEUDOCOUNT = 0.5
_MONOCYTIC = ("CD14", "FCGR1A", "LYZ")  # WHO 2016: at least two (lineage_markers.tsv)


def _marker_tests(
    baseline: Mapping[str, ScanResult], relapse: Mapping[str, ScanResult], thresholds: Any
) -> list[dict[str, Any]]:
    lineage_of = {g: lin for lin, genes in lineage_markers().items() for g in genes}
    tests = []
    for gene, lineage in lineage_of.items():
        if gene not in baseline or gene not in relapse:
            continue
        b, r = baseline[gene].summary, relapse[gene].summary
        kb, kr = int(b.get("fragments_on_gene") or 0), int(r.get("fragments_on_gene") or 0)
        nb, nr = b.get("library_size"), r.get("library_size")
        if not nb or not nr:
            continue
        rho = rho_from_nb_dispersion(thresholds.expression_dispersion, share=nb / (nb + nr))
        tests.append(
            {
                "gene": gene,
                "lineage": lineage,
                "kb": kb,
                "kr": kr,
                "log2fc": log2_fold_change(kb, nb, kr, nr, _PSEUDOCOUNT),
                "p": poisson_rate_test(kb, nb, kr, nr, dispersion=min(rho, 0.999)),
            }
        )
    for test, q in zip(tests, benjamini_hochberg([t["p"] for t in tests]), strict=True):
        test["q"] = q
    return tests


def _fold(log2fc: float) -> str:
    return f"{2 ** abs(log2fc):.3g}x"


def lineage_switch(
    pair: str,
    baseline: Mapping[str, ScanResult],
    relapse: Mapping[str, ScanResult],
    thresholds: Any,
) -> dict[str, Any]:
    """One row of ``LINEAGE_COLUMNS`` for a pair of panel scans ({gene: ScanResult} each)."""
    t = thresholds
    sample_b = next(iter(baseline.values())).sample if baseline else ""
    sample_r = next(iter(relapse.values())).sample if relapse else ""
    tests = _marker_tests(baseline, relapse, t)
    by_gene = {x["gene"]: x for x in tests}
    down = [
        x["gene"]
        for x in tests
        if x["lineage"] == "B"
        and x["log2fc"] <= t.min_log2fc_loss
        and x["q"] < t.max_q
        and x["kb"] >= t.min_reads
    ]
    up = [
        x["gene"]
        for x in tests
        if x["lineage"] == "myeloid"
        and x["log2fc"] >= -t.min_log2fc_loss
        and x["q"] < t.max_q
        and x["kr"] >= t.min_reads
    ]
    b_ok = "CD19" in down and len(down) >= 2
    m_ok = "MPO" in up or sum(g in up for g in _MONOCYTIC) >= 2
    called = b_ok and m_ok
    b_fc = [x["log2fc"] for x in tests if x["lineage"] == "B"]
    m_fc = [x["log2fc"] for x in tests if x["lineage"] == "myeloid"]
    missing = []
    if "CD19" not in by_gene or len([x for x in tests if x["lineage"] == "B"]) < 2:
        missing.append("CD19 and another B marker (CD79A, CD22, MME)")
    if "MPO" not in by_gene and sum(g in by_gene for g in _MONOCYTIC) < 2:
        missing.append("MPO or two of CD14, FCGR1A, LYZ")
    if called:
        status = SUSPECTED
    elif missing:
        status = f"not assessable (not scanned in both samples: {'; '.join(missing)})"
    elif by_gene["CD19"]["kb"] < t.min_reads:
        status = (
            f"not assessable (baseline has {by_gene['CD19']['kb']} fragments on CD19, fewer "
            f"than min_reads {t.min_reads})"
        )
    else:
        status = NOT_DETECTED
    if called:
        b_med = statistics.median(by_gene[g]["log2fc"] for g in down)
        m_med = statistics.median(by_gene[g]["log2fc"] for g in up)
        text = (
            f"{SUSPECTED}: B markers down {_fold(b_med)} ({', '.join(down)}), myeloid markers "
            f"up {_fold(m_med)} ({', '.join(up)})"
        )
    else:
        text = status
    return {
        "pair": pair,
        "baseline": sample_b,
        "relapse": sample_r,
        "markers": ",".join(x["gene"] for x in tests),
        "b_log2fc": statistics.median(b_fc) if b_fc else None,
        "myeloid_log2fc": statistics.median(m_fc) if m_fc else None,
        "b_down": ",".join(down),
        "myeloid_up": ",".join(up),
        "lineage_switch": called,
        "status": status,
        "text": text,
        "tests": "; ".join(
            f"{x['gene']} {x['lineage']} log2FC {x['log2fc']:+.2f} q={x['q']:.2g}" for x in tests
        ),
    }


def lineage_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=LINEAGE_COLUMNS, orient="row")
