"""The per-sample calling stage: a scan's counts in, its calls out (``call_sample``).

Computed once per sample and kept with the scan (``ScanResult.calls``, the ``NAME.calls.*``
files of a scan directory); compare, the VCF writers, MultiQC and HTML read these frames and
call no caller themselves. Input: a scan's tables and its GeneModel (and reference bases for
variant consequences); output: ``SampleCalls``, every frame with a leading ``sample`` column and
1-based inclusive coordinates (columns in ``splicing`` and ``variants``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import polars as pl

from cd22scan.calling.splicing import call_events
from cd22scan.calling.variants import call_variants

__all__ = ["CALL_TABLES", "SampleCalls", "call_sample"]

RefFetch = Callable[[int, int], str]

# SampleCalls frame -> file suffix in a scan directory (NAME.calls.SUFFIX.parquet): parquet keeps
# the types (a TSV cannot tell an empty string from a missing value).
CALL_TABLES = {
    "expression": "expression",
    "exon_psi": "exon_psi",
    "skipping_events": "skipping",
    "novel_junctions": "novel_junctions",
    "intron_retention": "intron_retention",
    "alleles": "alleles",
    "variants": "variants",
}


@dataclass(frozen=True)
class SampleCalls:
    """One sample's calls. ``alleles``: every allele seen at all (``call_variants`` with
    min_alt 1 and VAF 0), so a comparison can look up the other sample's counts of an allele;
    ``variants``: the sample's variant calls at ``call_variants``' own thresholds (the scan VCF)."""

    sample: str
    expression: pl.DataFrame
    exon_psi: pl.DataFrame
    skipping_events: pl.DataFrame
    novel_junctions: pl.DataFrame
    intron_retention: pl.DataFrame
    alleles: pl.DataFrame
    variants: pl.DataFrame
    has_reference: bool = False  # were consequences named against reference bases

    def frames(self) -> dict[str, pl.DataFrame]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in CALL_TABLES}


def call_sample(result: Any, fetch: RefFetch | None = None) -> SampleCalls:
    """Every per-sample call of a ``ScanResult``; ``fetch`` returns reference bases of a 0-based
    half-open range of the model's contig (None: consequences ``unknown``)."""
    splicing = call_events(result)
    common = {"sample": result.sample, "warn_no_reference": False, "evidence": result.evidence}
    alleles = call_variants(
        result.bases, result.indels, result.model, fetch, min_alt=1, min_vaf=0.0, **common
    )
    variants = call_variants(result.bases, result.indels, result.model, fetch, **common)
    return SampleCalls(
        sample=result.sample,
        alleles=alleles,
        variants=variants,
        has_reference=fetch is not None,
        **splicing,
    )


def sample_calls(result: Any) -> SampleCalls:
    """The calls of a ``ScanResult``, made once (with the scan's ``--reference`` when it had one)
    and kept in ``result.calls``; a scan directory's calls are read, not made again."""
    if result.calls is None:
        from cd22scan.sample.scan import reference_fetch

        reference = (result.summary.get("parameters") or {}).get("reference")
        fetch = reference_fetch(reference, result.model.contig) if reference else None
        result.calls = call_sample(result, fetch)
    return result.calls
