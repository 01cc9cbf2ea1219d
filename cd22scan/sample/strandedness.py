"""Library strandedness: inferred from the reads over the gene's exons, or given by the user.

Names follow featureCounts/Salmon usage: ``fr`` = read 1 on the transcript's strand
(featureCounts -s 1, htseq ``yes``); ``rf`` = read 1 on the opposite strand (dUTP, featureCounts
-s 2, htseq ``reverse``); ``unstranded``.
"""

from __future__ import annotations

from dataclasses import dataclass

from cd22scan.errors import UsageError

MODES = ("auto", "unstranded", "fr", "rf")
MIN_FRAGMENTS_TO_INFER = 50
STRANDED_FRACTION = 0.8


@dataclass(frozen=True)
class Strandedness:
    mode: str  # "fr", "rf" or "unstranded"
    how: str  # "given" or "inferred" (with the evidence)
    fraction_fr: float | None  # fraction of exon fragments consistent with "fr"
    fragments: int

    def describe(self) -> str:
        if self.how == "given":
            return f"{self.mode} (given)"
        frac = "n/a" if self.fraction_fr is None else f"{self.fraction_fr:.3f}"
        return f"{self.mode} (inferred: {frac} of {self.fragments} exon fragments fit fr)"


def resolve(requested: str, strand_evidence: tuple[int, int], gene_strand: str) -> Strandedness:
    """Decide the library type. ``strand_evidence`` = fragments with orientation 0 and 1."""
    if requested not in MODES:
        raise UsageError(f"--strand must be one of {', '.join(MODES)}; got {requested!r}")
    o0, o1 = strand_evidence
    total = o0 + o1
    # Orientation 0 = read 1 forward. An fr library puts read 1 on the gene's strand.
    consistent = o0 if gene_strand == "+" else o1
    fraction = consistent / total if total else None
    if requested != "auto":
        return Strandedness(requested, "given", fraction, total)
    if fraction is None or total < MIN_FRAGMENTS_TO_INFER:
        return Strandedness("unstranded", "inferred", fraction, total)
    if fraction >= STRANDED_FRACTION:
        mode = "fr"
    elif fraction <= 1 - STRANDED_FRACTION:
        mode = "rf"
    else:
        mode = "unstranded"
    return Strandedness(mode, "inferred", fraction, total)


def fragment_strand(mode: str, orientation: int) -> str | None:
    """Transcript strand of a fragment in a stranded library, None when unstranded."""
    if mode == "fr":
        return "+" if orientation == 0 else "-"
    if mode == "rf":
        return "-" if orientation == 0 else "+"
    return None
