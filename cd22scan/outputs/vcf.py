"""Which alleles go into which VCF (all written by ``formats.write_vcf``): a scan's own variant
calls (``NAME.variants.vcf.gz``) and the mutation alleles tested between the two samples of a pair
(``variants.vcf.gz`` of ``compare``, ``pairs/PAIR.variants.vcf.gz`` of ``run``), one column per
sample, with the test of each allele in INFO.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import polars as pl

from cd22scan.calling.sample import sample_calls
from cd22scan.comparison.pair import Comparison
from cd22scan.outputs.formats import InfoField, write_vcf
from cd22scan.sample.scan import ScanResult

__all__ = ["PAIR_INFO_FIELDS", "scan_variants", "write_pair_vcf", "write_scan_vcf"]

log = logging.getLogger("cd22scan")

PAIR_INFO_FIELDS: tuple[InfoField, ...] = (
    ("DVAF", "1", "Float", "Relapse VAF minus baseline VAF (events.tsv effect)", "effect"),
    ("P", "1", "Float", "Beta-binomial test p-value, baseline vs relapse VAF", "p_value"),
    ("Q", "1", "Float", "Benjamini-Hochberg q-value over every event of the pair", "q_value"),
    ("CALLED", "0", "Flag", "Passed every calling threshold (events.tsv called)", "called"),
)


NO_REFERENCE_NOTE = "no --reference: the VCFs have N for reference bases and no coding consequences"


def _reference(result: ScanResult) -> str | None:
    return (result.summary.get("parameters") or {}).get("reference")


def _contigs(result: ScanResult) -> dict[str, int | None]:
    # Scans written before contig_length was in the summary give a contig without a length.
    return {result.model.contig: result.summary.get("contig_length")}


def _source_info(result: ScanResult) -> dict[str, Any]:
    s = result.summary
    return {k: s.get(k) for k in ("version", "gene", "transcript", "build")}


def scan_variants(result: ScanResult) -> pl.DataFrame:
    """The sample's variant calls (``sample_calls(result).variants``: ``call_variants`` at its
    default thresholds, annotated from the scan's ``--reference`` when it had one)."""
    if _reference(result) is None:
        # A scan without a FASTA is a normal run (RNA-seq counting): the commands say it once
        # per run (NO_REFERENCE_NOTE); here only at debug level, per sample.
        log.debug("%s: no --reference", result.sample)
    return sample_calls(result).variants


def write_scan_vcf(
    result: ScanResult, path: str | os.PathLike[str], variants: pl.DataFrame | None = None
) -> Path:
    """``NAME.variants.vcf.gz`` (+ ``.tbi``) of one scan; header-only when it has no variants."""
    calls = scan_variants(result) if variants is None else variants
    log.debug("%s: %d variant allele(s) to %s", result.sample, calls.height, path)
    return write_vcf(
        calls,
        path,
        contigs=_contigs(result),
        sample=result.sample,
        reference=_reference(result),
        source_info=_source_info(result),
    )


def write_pair_vcf(
    comparison: Comparison, baseline: ScanResult, path: str | os.PathLike[str]
) -> Path:
    """The pair's mutation alleles (every ``mutation`` row of ``comparison.events``), baseline
    and relapse as sample columns (DP, AD, AF, ADF, ADR each), the test in INFO (DVAF, P, Q,
    CALLED), FILTER from the events row. SBP (strand bias) is per sample: FORMAT/SBP, not INFO."""
    # FILTER of a record = the FILTER of its events row (the sample that shows the change).
    event_filter = dict(
        comparison.events.filter(pl.col("event_type") == "mutation")
        .select("feature", "filter")
        .iter_rows()
    )
    alleles = comparison.mutations.with_columns(
        pl.col("feature")
        .replace_strict(event_filter, default=None, return_dtype=pl.Utf8)
        .alias("filter"),
    )
    return write_vcf(
        alleles,
        path,
        contigs=_contigs(baseline),
        sample=[comparison.baseline, comparison.relapse],
        reference=_reference(baseline),
        source_info={**_source_info(baseline), "pair": comparison.pair},
        extra_info=PAIR_INFO_FIELDS,
        sample_sbp=True,
    )
