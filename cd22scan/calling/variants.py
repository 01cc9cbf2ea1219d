"""Per-sample variant calls over the gene: SNV and indel alleles from the base and indel tables,
each with its consequence on the transcript (Sequence Ontology terms, as VEP / bcftools csq) and
its HGVS c. and p. names. ``TranscriptMap`` is the one place that maps genomic positions
(1-based, inclusive) to transcript indices and c. positions.

Columns of ``call_variants`` (one row per allele, sorted by pos, kind, alt):

* ``sample``, ``gene``, ``transcript``, ``contig``
* ``pos`` — VCF POS, 1-based; for an indel the anchor base before it, left-aligned (VCF style).
* ``ref``, ``alt`` — VCF alleles on the genomic + strand; indels carry the anchor base. Without a
  reference, unknown reference bases are ``N``.
* ``kind`` — ``snv``, ``ins`` or ``del``.
* ``depth`` — reads over the site: at the SNV base, at the first deleted base (a deletion), at
  the anchor base (an insertion); depth counts A+C+G+T+N+deletions.
* ``alt_reads``, ``alt_forward``, ``alt_reverse`` — reads with the allele, all / by strand.
* ``vaf`` — alt_reads / depth.
* ``strand_bias_p`` — two-sided Fisher exact p on [[ref_fwd, ref_rev], [alt_fwd, alt_rev]]; the
  reference reads are the reference letter's reads for an SNV and depth − alt reads (by strand)
  at the depth position for an indel.
* ``consequence`` — the most severe SO term (order in ``SEVERITY``).
* ``hgvs_c`` — e.g. ``c.412G>A``, ``c.412del``, ``c.412dup``, ``c.34+2T>C``, ``c.-5A>G``,
  ``c.*12C>T`` (``n.`` for a transcript without CDS); indels shifted 3′ in transcript orientation
  within their exon or intron (HGVS 3′ rule).
* ``hgvs_p`` — e.g. ``p.(Gly138Arg)``, ``p.(Gly138=)``, ``p.(Trp45Ter)``, ``p.(Leu139ProfsTer12)``,
  ``p.(Met1?)``, ``p.(Glu240del)``, ``p.(Lys241_Glu242insAla)``; ``p.?`` for splice-site variants
  and for coding variants without a reference; empty for UTR, intronic and flanking variants.
* ``exon``, ``intron`` — transcript-order number of the exon / intron that holds the variant
  (null if none; both for an indel across an exon boundary).

Calls are made in the exons ± ``SITE_PADDING`` bp only. Without a reference (``fetch`` None) the
most frequent letter at a position stands in for the reference base when picking SNV alleles
(reported as ``N``), indels are not shifted, and consequences that depend on the sequence (coding
ones) are ``unknown``; those fixed by position alone (intronic, splice site, UTR) are kept.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import polars as pl
from Bio.Seq import Seq
from Bio.SeqUtils import seq3

from cd22scan.calling.stats import fisher_exact_two_sided
from cd22scan.target.annotation import GeneModel

__all__ = [
    "COLUMNS",
    "SEVERITY",
    "Change",
    "Locus",
    "TranscriptMap",
    "annotate",
    "call_variants",
    "mismatch_rate",
]

log = logging.getLogger("cd22scan")

RefFetch = Callable[[int, int], str]
"""Returns the upper-case reference bases of [start0, end0) ('' if unknown)."""

SITE_PADDING = 20  # bp around each exon where variants are called
SPLICE_SITE = 2  # intronic bases of a donor / acceptor site
SPLICE_REGION_INTRON = 8  # intronic splice region: bases 3..8 from the exon
SPLICE_REGION_EXON = 3  # exonic splice region: 1..3 bases next to a splice site
_LOCUS_MARGIN = 300  # reference fetched beyond the padded span, room to shift indels
LETTERS = ("A", "C", "G", "T")
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")

SEVERITY = (
    "splice_acceptor_variant",
    "splice_donor_variant",
    "stop_gained",
    "frameshift_variant",
    "stop_lost",
    "start_lost",
    "inframe_insertion",
    "inframe_deletion",
    "missense_variant",
    "splice_region_variant",
    "stop_retained_variant",
    "synonymous_variant",
    "coding_sequence_variant",
    "5_prime_UTR_variant",
    "3_prime_UTR_variant",
    "non_coding_transcript_exon_variant",
    "intron_variant",
    "upstream_gene_variant",
    "downstream_gene_variant",
    "unknown",
)
_RANK = {term: i for i, term in enumerate(SEVERITY)}

COLUMNS: dict[str, type[pl.DataType]] = {
    "sample": pl.Utf8,
    "gene": pl.Utf8,
    "transcript": pl.Utf8,
    "contig": pl.Utf8,
    "pos": pl.Int64,
    "ref": pl.Utf8,
    "alt": pl.Utf8,
    "kind": pl.Utf8,
    "depth": pl.Int64,
    "alt_reads": pl.Int64,
    "vaf": pl.Float64,
    "alt_forward": pl.Int64,
    "alt_reverse": pl.Int64,
    "strand_bias_p": pl.Float64,
    "consequence": pl.Utf8,
    "hgvs_c": pl.Utf8,
    "hgvs_p": pl.Utf8,
    "exon": pl.Int64,
    "intron": pl.Int64,
    "alt_starts": pl.Int64,
    "max_stack_share": pl.Float64,
    "mean_end_distance": pl.Float64,
    "filter": pl.Utf8,
}


def revcomp(seq: str) -> str:
    return seq.translate(_COMPLEMENT)[::-1]


# --- reference and coordinates -------------------------------------------------------------------


@dataclass(frozen=True)
class Locus:
    """Reference bases from 1-based position ``start`` on ('N' outside)."""

    start: int
    seq: str

    @property
    def end(self) -> int:
        return self.start + len(self.seq) - 1

    def base(self, pos: int) -> str:
        i = pos - self.start
        return self.seq[i] if 0 <= i < len(self.seq) else "N"

    def span(self, first: int, last: int) -> str:
        """Bases first..last (1-based, inclusive); '' for an empty range."""
        return "".join(self.base(p) for p in range(first, last + 1))


@dataclass(frozen=True)
class Region:
    """Where one genomic base lies on the transcript.

    exon: ``number``; ``to_5`` / ``to_3`` = bases to the exon's 5′ / 3′ end (0 at the end).
    intron: ``number``; ``to_5`` = distance from the donor-side exon (1 = +1), ``to_3`` from the
    acceptor-side exon (1 = −1). upstream / downstream: ``to_5`` = distance from the transcript.
    """

    kind: str  # "exon", "intron", "upstream", "downstream"
    number: int | None
    to_5: int
    to_3: int


@dataclass(frozen=True)
class Change:
    """A variant on the genomic + strand: bases ``first``..``last`` (1-based, inclusive) become
    ``inserted``. SNV: first == last. Deletion: inserted ''. Insertion: the empty range
    first == last + 1, i.e. ``inserted`` goes after base ``last`` (the VCF anchor)."""

    first: int
    last: int
    inserted: str

    @property
    def kind(self) -> str:
        if self.first > self.last:
            return "ins"
        return "del" if not self.inserted else "snv"

    def touched(self) -> range:
        """The bases whose region decides the consequence (both flanks for an insertion)."""
        if self.kind == "ins":
            return range(self.last, self.first + 1)
        return range(self.first, self.last + 1)


class TranscriptMap:
    """Genomic ↔ transcript ↔ c. coordinates of one transcript (the only such mapping).

    Transcript indices are 0-based in transcript order over the spliced exons; positions before
    the first / after the last exon get indices < 0 / ≥ length (c.-N / c.*N keep counting).
    """

    def __init__(self, model: GeneModel) -> None:
        self.model = model
        self.plus = model.strand == "+"
        self._offsets: list[int] = []
        total = 0
        for exon in model.exons:
            self._offsets.append(total)
            total += exon.length
        self.length = total
        self.cds: tuple[int, int] | None = None  # first, last transcript index incl. stop
        if model.cds_start is not None and model.cds_end is not None:
            first, last = model.cds_start, model.cds_end
            if not self.plus:
                first, last = last, first
            start, end = self.tx_index(first), self.tx_index(last)
            if start is not None and end is not None:
                self.cds = (start, end)
        self.prefix = "c." if self.cds else "n."

    def tx_index(self, pos: int) -> int | None:
        """0-based transcript index of exonic genomic ``pos``, None if not exonic."""
        for exon, offset in zip(self.model.exons, self._offsets, strict=True):
            if exon.start <= pos <= exon.end:
                return offset + (pos - exon.start if self.plus else exon.end - pos)
        return None

    def c_of_index(self, t: int) -> str:
        """c. (or n.) position of transcript index ``t``, without the prefix."""
        if self.cds is None:
            return str(t + 1) if t >= 0 else str(t)
        start, end = self.cds
        if t < start:
            return f"-{start - t}"
        if t > end:
            return f"*{t - end}"
        return str(t - start + 1)

    def region(self, pos: int) -> Region:
        exons = self.model.exons
        for exon in exons:
            if exon.start <= pos <= exon.end:
                to_lo, to_hi = pos - exon.start, exon.end - pos
                to_5, to_3 = (to_lo, to_hi) if self.plus else (to_hi, to_lo)
                return Region("exon", exon.number, to_5, to_3)
        for intron in self.model.introns():
            if intron.start <= pos <= intron.end:
                from_lo, from_hi = pos - intron.start + 1, intron.end - pos + 1
                to_5, to_3 = (from_lo, from_hi) if self.plus else (from_hi, from_lo)
                return Region("intron", intron.number, to_5, to_3)
        lo, hi = self.model.span
        before = lo - pos if pos < lo else 0
        after = pos - hi if pos > hi else 0
        if self.plus:
            return (
                Region("upstream", None, before, 0)
                if before
                else Region("downstream", None, after, 0)
            )
        return (
            Region("upstream", None, after, 0) if after else Region("downstream", None, before, 0)
        )

    def c_position(self, pos: int) -> str:
        """HGVS position of genomic ``pos`` (no prefix): 412, -5, *12, 34+2, 35-1."""
        where = self.region(pos)
        if where.kind == "exon":
            t = self.tx_index(pos)
            assert t is not None
            return self.c_of_index(t)
        if where.kind == "upstream":
            return self.c_of_index(-where.to_5)
        if where.kind == "downstream":
            return self.c_of_index(self.length - 1 + where.to_5)
        assert where.number is not None
        donor, acceptor = self.model.exon(where.number), self.model.exon(where.number + 1)
        # The middle base of an odd intron takes the donor side (HGVS).
        if where.to_5 <= where.to_3:
            t = self.tx_index(donor.end if self.plus else donor.start)
            assert t is not None
            return f"{self.c_of_index(t)}+{where.to_5}"
        t = self.tx_index(acceptor.start if self.plus else acceptor.end)
        assert t is not None
        return f"{self.c_of_index(t)}-{where.to_3}"

    def segment(self, pos: int, locus: Locus) -> tuple[int, int]:
        """The exon, intron or flank holding ``pos``: the bounds an HGVS shift stays within."""
        ordered = self.model.genomic_exons()
        lo = locus.start
        for exon in ordered:
            if pos < exon.start:
                return lo, exon.start - 1
            if pos <= exon.end:
                return exon.start, exon.end
            lo = exon.end + 1
        return lo, locus.end

    def transcript_sequence(self, locus: Locus) -> str:
        parts = [locus.span(e.start, e.end) for e in self.model.exons]
        return "".join(parts if self.plus else [revcomp(p) for p in parts])

    def in_scope(self, first: int, last: int, padding: int = SITE_PADDING) -> bool:
        """Whether [first, last] touches an exon ± ``padding``."""
        return any(first <= e.end + padding and last >= e.start - padding for e in self.model.exons)


# --- consequences --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Annotation:
    consequence: str
    hgvs_c: str
    hgvs_p: str
    exon: int | None
    intron: int | None


def _worst(terms: Iterable[str]) -> str:
    return min(terms, key=lambda term: _RANK[term])


def _aa(letter: str) -> str:
    return seq3(letter)


@functools.lru_cache(maxsize=16)
def _translate(seq: str) -> str:
    # cached: every allele of a gene translates the same reference transcript (half the cost of
    # annotating the ~2000 alleles of a sample)
    whole = len(seq) - len(seq) % 3
    return str(Seq(seq[:whole]).translate()) if whole else ""


def _translate_to_stop(seq: str) -> str:
    protein = _translate(seq)
    stop = protein.find("*")
    return protein[: stop + 1] if stop >= 0 else protein


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _aa_range(protein: str, first: int, last: int) -> str:
    """'Glu240' or 'Glu240_Lys241' for 0-based residue indices first..last."""
    name = f"{_aa(protein[first])}{first + 1}"
    return name if last == first else f"{name}_{_aa(protein[last])}{last + 1}"


def _three(residues: str) -> str:
    return "".join(_aa(r) for r in residues)


def protein_change(tx: str, cds: tuple[int, int], a: int, b: int, inserted: str) -> tuple[str, str]:
    """(SO term, HGVS p.) of replacing transcript indices [a, b) by ``inserted`` (transcript
    orientation); the change touches the CDS. Translation runs on into the 3′ UTR so a lost
    stop or a frameshift can find its new stop."""
    start, end = cds
    ref_protein = _translate(tx[start : end + 1])
    if a < start or not ref_protein:
        return "start_lost", f"p.({_aa(ref_protein[:1] or 'M')}1?)"
    new_tx = tx[:a] + inserted + tx[b:]
    alt_protein = _translate_to_stop(new_tx[start:])
    shift = len(inserted) - (b - a)
    frameshift = shift % 3 != 0
    if alt_protein[:1] != ref_protein[:1]:
        return "start_lost", f"p.({_aa(ref_protein[0])}1?)"
    n_ref, n_alt = len(ref_protein), len(alt_protein)
    if alt_protein == ref_protein:
        codon = min((max(a, start) - start) // 3, n_ref - 1)
        term = "stop_retained_variant" if ref_protein[codon] == "*" else "synonymous_variant"
        return ("frameshift_variant" if frameshift else term), (
            f"p.({_aa(ref_protein[codon])}{codon + 1}=)"
        )
    first = _common_prefix(ref_protein, alt_protein)
    if first >= n_alt:  # ran off the transcript without a stop and without a change
        return ("frameshift_variant" if frameshift else "stop_lost"), "p.?"
    if first == n_ref - 1:  # the stop codon itself changed: an extension
        tail = f"Ter{n_alt - 1 - first}" if alt_protein.endswith("*") else "Ter?"
        name = f"p.(Ter{n_ref}{_aa(alt_protein[first])}ext{tail})"
        return ("frameshift_variant" if frameshift else "stop_lost"), name
    if alt_protein[first] == "*":
        return ("frameshift_variant" if frameshift else "stop_gained"), (
            f"p.({_aa(ref_protein[first])}{first + 1}Ter)"
        )
    if frameshift:
        tail = f"Ter{n_alt - first}" if alt_protein.endswith("*") else "Ter?"
        return "frameshift_variant", (
            f"p.({_aa(ref_protein[first])}{first + 1}{_aa(alt_protein[first])}fs{tail})"
        )
    if alt_protein.endswith("*") and n_alt < n_ref + shift // 3:
        return "stop_gained", (
            f"p.({_aa_range(ref_protein, first, first)}delins{_three(alt_protein[first:])})"
        )
    return _inframe_change(ref_protein, alt_protein, first)


def _inframe_change(ref_protein: str, alt_protein: str, first: int) -> tuple[str, str]:
    """An in-frame change whose first differing residue is ``first`` (0-based): trimming the
    common suffix too leaves what was deleted / inserted, placed as far C-terminal as the
    sequence allows (the HGVS 3′ rule on the protein)."""
    n_ref, n_alt = len(ref_protein), len(alt_protein)
    suffix = _common_prefix(ref_protein[first:][::-1], alt_protein[first:][::-1])
    ref_mid = ref_protein[first : n_ref - suffix]
    alt_mid = alt_protein[first : n_alt - suffix]
    if "*" in ref_mid:
        return "stop_lost", (
            f"p.({_aa_range(ref_protein, first, n_ref - 1)}delins{_three(alt_protein[first:])})"
        )
    if not ref_mid:
        k = len(alt_mid)
        if first >= k and ref_protein[first - k : first] == alt_mid:
            return "inframe_insertion", f"p.({_aa_range(ref_protein, first - k, first - 1)}dup)"
        return "inframe_insertion", (
            f"p.({_aa_range(ref_protein, first - 1, first)}ins{_three(alt_mid)})"
        )
    where = _aa_range(ref_protein, first, first + len(ref_mid) - 1)
    if not alt_mid:
        return "inframe_deletion", f"p.({where}del)"
    if len(ref_mid) == len(alt_mid) == 1:
        return "missense_variant", f"p.({where}{_aa(alt_mid)})"
    if len(ref_mid) > len(alt_mid):
        term = "inframe_deletion"
    elif len(ref_mid) < len(alt_mid):
        term = "inframe_insertion"
    else:
        term = "missense_variant"
    return term, f"p.({where}delins{_three(alt_mid)})"


def _location_term(tmap: TranscriptMap, pos: int) -> str:
    """The consequence of a change at ``pos`` that position alone decides ('coding' if the
    base is in the CDS and the sequence decides)."""
    where = tmap.region(pos)
    if where.kind == "upstream":
        return "upstream_gene_variant"
    if where.kind == "downstream":
        return "downstream_gene_variant"
    if where.kind == "intron":
        if where.to_5 <= SPLICE_SITE:
            return "splice_donor_variant"
        if where.to_3 <= SPLICE_SITE:
            return "splice_acceptor_variant"
        if min(where.to_5, where.to_3) <= SPLICE_REGION_INTRON:
            return "splice_region_variant"
        return "intron_variant"
    if tmap.cds is None:
        return "non_coding_transcript_exon_variant"
    t = tmap.tx_index(pos)
    assert t is not None
    if t < tmap.cds[0]:
        return "5_prime_UTR_variant"
    if t > tmap.cds[1]:
        return "3_prime_UTR_variant"
    return "coding"


def _exonic_splice_region(tmap: TranscriptMap, pos: int) -> bool:
    where = tmap.region(pos)
    if where.kind != "exon" or where.number is None:
        return False
    n = len(tmap.model.exons)
    return (where.number > 1 and where.to_5 < SPLICE_REGION_EXON) or (
        where.number < n and where.to_3 < SPLICE_REGION_EXON
    )


def _transcript_range(tmap: TranscriptMap, change: Change) -> tuple[int, int] | None:
    """[a, b) of transcript indices the change replaces, None if not wholly exonic."""
    indices = [tmap.tx_index(p) for p in change.touched()]
    if any(t is None for t in indices):
        return None
    known = [t for t in indices if t is not None]
    if change.kind == "ins":
        point = max(known)  # between the two flanks, in transcript order
        return point, point
    return min(known), max(known) + 1


def _numbers(tmap: TranscriptMap, change: Change) -> tuple[int | None, int | None]:
    regions = [tmap.region(p) for p in change.touched()]
    exons = [r.number for r in regions if r.kind == "exon" and r.number is not None]
    introns = [r.number for r in regions if r.kind == "intron" and r.number is not None]
    return (min(exons) if exons else None), (min(introns) if introns else None)


def _consequence(tmap: TranscriptMap, change: Change, tx: str | None) -> tuple[str, str]:
    """(SO term, HGVS p.) of a change; ``tx`` is the transcript sequence (None: no reference)."""
    span = _transcript_range(tmap, change)
    if span is not None:
        return _exonic_consequence(tmap, change, tx, span)
    terms = [_location_term(tmap, p) for p in change.touched()]
    if change.kind == "ins" and len(set(terms)) > 1:
        # Between an exon and an intron, or across the edge of a splice site: it leaves the
        # site's two bases intact but sits next to them.
        terms = [
            "splice_region_variant" if t.startswith("splice") or t == "coding" else t for t in terms
        ]
    terms = ["coding_sequence_variant" if t == "coding" else t for t in terms]
    if tx is None and "coding_sequence_variant" in terms:
        return "unknown", "p.?"
    worst = _worst(terms)
    splice_site = worst in ("splice_donor_variant", "splice_acceptor_variant")
    return worst, ("p.?" if splice_site or worst == "coding_sequence_variant" else "")


def _exonic_consequence(
    tmap: TranscriptMap, change: Change, tx: str | None, span: tuple[int, int]
) -> tuple[str, str]:
    """A change wholly inside the exons: UTR, non-coding, or translated."""
    extra = (
        ["splice_region_variant"]
        if any(_exonic_splice_region(tmap, p) for p in change.touched())
        else []
    )
    if tmap.cds is None:
        return _worst(["non_coding_transcript_exon_variant", *extra]), ""
    a, b = span
    start, end = tmap.cds
    coding = (start < a <= end) if change.kind == "ins" else (a <= end and b > start)
    if not coding:
        # also an insertion just before c.1 or just after the stop codon
        term = "5_prime_UTR_variant" if a <= start else "3_prime_UTR_variant"
        return _worst([term, *extra]), ""
    if tx is None:
        return "unknown", "p.?"
    inserted = change.inserted if tmap.plus else revcomp(change.inserted)
    term, name = protein_change(tx, tmap.cds, a, b, inserted)
    return _worst([term, *extra]), name


# --- HGVS c. -------------------------------------------------------------------------------------


def _shift_deletion(locus: Locus, first: int, last: int, step: int, lo: int, hi: int) -> int:
    """Slide the deleted bases first..last by ``step`` (+1 right, −1 left) while the sequence
    stays the same and inside [lo, hi]; returns the new first base."""
    if step > 0:
        while last + 1 <= hi and locus.base(first) == locus.base(last + 1) != "N":
            first, last = first + 1, last + 1
    else:
        while first - 1 >= lo and locus.base(last) == locus.base(first - 1) != "N":
            first, last = first - 1, last - 1
    return first


def _shift_insertion(
    locus: Locus, anchor: int, seq: str, step: int, lo: int, hi: int
) -> tuple[int, str]:
    """Slide ``seq`` inserted after ``anchor`` by ``step`` while the result stays the same; the
    anchor stays in [lo − 1, hi]."""
    if step > 0:
        while anchor + 1 <= hi and seq[0] == locus.base(anchor + 1) != "N":
            seq, anchor = seq[1:] + seq[0], anchor + 1
    else:
        while anchor >= lo and seq[-1] == locus.base(anchor) != "N":
            seq, anchor = seq[-1] + seq[:-1], anchor - 1
    return anchor, seq


def _c_range(tmap: TranscriptMap, first: int, last: int) -> str:
    """'412' or '412_413' for genomic bases first..last, in transcript order."""
    lo, hi = (first, last) if tmap.plus else (last, first)
    name = tmap.c_position(lo)
    return name if first == last else f"{name}_{tmap.c_position(hi)}"


def hgvs_c(tmap: TranscriptMap, change: Change, locus: Locus | None) -> str:
    """HGVS c. (n.) name; indels shifted 3′ in transcript orientation within their segment."""
    step = 1 if tmap.plus else -1
    kind = change.kind
    if kind == "snv":
        ref = locus.base(change.first) if locus else "N"
        alt = change.inserted
        if not tmap.plus:
            ref, alt = revcomp(ref), revcomp(alt)
        return f"{tmap.prefix}{tmap.c_position(change.first)}{ref}>{alt}"
    if kind == "del":
        first, last = change.first, change.last
        if locus is not None:
            lo, hi = tmap.segment(first, locus)
            if tmap.segment(last, locus) == (lo, hi):
                first = _shift_deletion(locus, first, last, step, lo, hi)
                last = first + (change.last - change.first)
        return f"{tmap.prefix}{_c_range(tmap, first, last)}del"
    anchor, seq = change.last, change.inserted
    if locus is not None:
        lo, hi = tmap.segment(anchor if tmap.plus else anchor + 1, locus)
        anchor, seq = _shift_insertion(locus, anchor, seq, step, lo, hi)
        n = len(seq)
        # A copy of the bases just 5′ of the insertion (transcript orientation) is a dup.
        if tmap.plus and locus.span(anchor - n + 1, anchor) == seq:
            return f"{tmap.prefix}{_c_range(tmap, anchor - n + 1, anchor)}dup"
        if not tmap.plus and locus.span(anchor + 1, anchor + n) == seq:
            return f"{tmap.prefix}{_c_range(tmap, anchor + 1, anchor + n)}dup"
    shown = seq if tmap.plus else revcomp(seq)
    return f"{tmap.prefix}{_c_range(tmap, anchor, anchor + 1)}ins{shown}"


def annotate(
    tmap: TranscriptMap, change: Change, locus: Locus | None, tx: str | None = None
) -> Annotation:
    """Consequence, HGVS names and exon / intron number of one change."""
    if tx is None and locus is not None:
        tx = tmap.transcript_sequence(locus)
    consequence, name_p = _consequence(tmap, change, tx)
    exon, intron = _numbers(tmap, change)
    return Annotation(consequence, hgvs_c(tmap, change, locus), name_p, exon, intron)


# --- calling -------------------------------------------------------------------------------------


@dataclass
class _Allele:
    change: Change
    alt_reads: int
    alt_forward: int
    alt_reverse: int
    raw: list[tuple[int, str, str]] = field(default_factory=list)  # evidence keys (as read)


def _load_locus(model: GeneModel, fetch: RefFetch | None) -> Locus | None:
    if fetch is None:
        return None
    start0, end0 = model.window(SITE_PADDING + _LOCUS_MARGIN)
    seq = fetch(start0, end0)
    if len(seq) != end0 - start0:  # clipped at the contig end: keep what is there
        seq = seq[: end0 - start0]
    if not seq or set(seq) <= {"N"}:
        return None
    return Locus(start0 + 1, seq.upper())


def _scope_filter(tmap: TranscriptMap, padding: int) -> pl.Expr:
    return pl.any_horizontal(
        [pl.col("pos").is_between(e.start - padding, e.end + padding) for e in tmap.model.exons]
    )


def _snv_alleles(
    rows: list[dict], locus: Locus | None, min_alt: int, min_vaf: float
) -> list[tuple[_Allele, int, int]]:
    """(allele, ref_fwd, ref_rev) for every SNV allele passing the thresholds."""
    out = []
    for row in rows:
        depth = row["depth"]
        if depth <= 0:
            continue
        ref = locus.base(row["pos"]) if locus else "N"
        # Without a reference base the most frequent letter stands in for it.
        stand_in = ref if ref in LETTERS else max(LETTERS, key=lambda x: row[x])
        for letter in LETTERS:
            count = row[letter]
            if letter == stand_in or count < min_alt or count / depth < min_vaf:
                continue
            allele = _Allele(
                Change(row["pos"], row["pos"], letter),
                count,
                row[f"{letter}_fwd"],
                row[f"{letter}_rev"],
                [(row["pos"], "snv", letter)],
            )
            out.append((allele, row[f"{stand_in}_fwd"], row[f"{stand_in}_rev"]))
    return out


def _left_align(change: Change, locus: Locus | None) -> Change:
    """VCF normalization: the leftmost equivalent position."""
    if locus is None:
        return change
    if change.kind == "del":
        first = _shift_deletion(locus, change.first, change.last, -1, locus.start + 1, locus.end)
        return Change(first, first + change.last - change.first, "")
    anchor, seq = _shift_insertion(
        locus, change.last, change.inserted, -1, locus.start + 1, locus.end
    )
    return Change(anchor + 1, anchor, seq)


def _indel_alleles(indels: pl.DataFrame, locus: Locus | None, min_alt: int) -> list[_Allele]:
    merged: dict[Change, _Allele] = {}
    for row in indels.filter(pl.col("reads") > 0).iter_rows(named=True):
        anchor, length = row["pos"], row["length"]
        if row["kind"] == "del":
            change = Change(anchor + 1, anchor + length, "")
        else:
            change = Change(anchor + 1, anchor, row["sequence"].upper())
        change = _left_align(change, locus)
        allele = merged.setdefault(change, _Allele(change, 0, 0, 0))
        raw = str(row["length"]) if row["kind"] == "del" else row["sequence"].upper()
        allele.raw.append((anchor, row["kind"], raw))
        allele.alt_reads += row["reads"]
        allele.alt_forward += row["forward"]
        allele.alt_reverse += row["reverse"]
    return [a for a in merged.values() if a.alt_reads >= min_alt]


def _vcf_alleles(change: Change, locus: Locus | None) -> tuple[int, str, str]:
    """(POS, REF, ALT) on the + strand; indels carry the anchor base."""
    base = locus.base if locus else (lambda _pos: "N")
    if change.kind == "snv":
        return change.first, base(change.first), change.inserted
    anchor = change.first - 1
    if change.kind == "del":
        deleted = "".join(base(p) for p in range(change.first, change.last + 1))
        return anchor, base(anchor) + deleted, base(anchor)
    anchor = change.last
    return anchor, base(anchor), base(anchor) + change.inserted


# --- FILTER --------------------------------------------------------------------------------------

# The FILTER rules (README "Variant FILTER"): each is a reason a read-count allele may be an
# artefact rather than a mutation. ID -> VCF header description.
FILTERS = {
    "low_support": "Fewer than 3 reads carry the allele",
    "dup_stack": "Allele reads come from fewer than 3 distinct alignment starts (start+strand), "
    "or one start holds more than half of them: one PCR duplicate stack is one piece of evidence",
    "strand_bias": "Strand-bias Fisher p < 0.001 with every allele read on one strand while the "
    "site has reads on both",
    "read_end": "Allele on average within 5 bases of the aligned read ends (alignment artefacts, "
    "adapter and end-repair errors)",
    "long_read_errors": "Long-read scan (--long-reads): allele calls assume short-read error "
    "rates and are not made on 5-10 % error reads",
}
MIN_SUPPORT_READS = 3  # = call_variants' min_alt: below it any count is noise-level
MIN_DISTINCT_STARTS = 3  # two starts can be two duplicate stacks; three is the least to trust
MAX_STACK_SHARE = 0.5  # one start holding most of the reads: the count is mostly one molecule
MAX_STRAND_BIAS_P = 1e-3  # as GATK's FisherStrand hard filter (FS > 60 is p < 1e-6) but milder
MIN_MEAN_END_DISTANCE = 5.0  # bases; random positions in 100-bp reads average ~25


# The sample's own substitution error rate (``mismatch_rate``): sites deep enough to see it,
# letters rare enough not to be an allele, and a floor so that a clean simulated library does not
# make every 3-read allele significant.
ERROR_MIN_DEPTH = 20
ERROR_MAX_SHARE = 0.2  # a letter above this share of a site is an allele, not an error
ERROR_RATE_FLOOR = 1e-4  # per letter; Illumina substitution errors are ~1e-3 (Q30)


def mismatch_rate(bases: pl.DataFrame) -> float:
    """Per-letter substitution error rate of one sample, measured on its own ``bases`` table.

    Over positions with >= ``ERROR_MIN_DEPTH`` A/C/G/T reads: the reads of letters below
    ``ERROR_MAX_SHARE`` of the site (so heterozygous, somatic and homozygous alleles are not
    errors), over 3 × the reads (three wrong letters per base). The base-quality gate of the scan
    (``--min-baseq``) has already removed low-quality bases, so this is the error of the bases
    that are counted. Never below ``ERROR_RATE_FLOOR``; the floor when no site is deep enough.
    """
    if bases.height == 0:
        return ERROR_RATE_FLOOR
    acgt = pl.sum_horizontal([pl.col(x) for x in LETTERS])
    rare = pl.sum_horizontal(
        [pl.when(pl.col(x) < ERROR_MAX_SHARE * acgt).then(pl.col(x)).otherwise(0) for x in LETTERS]
    )
    totals = (
        bases.select(acgt.alias("n"), rare.alias("rare"))
        .filter(pl.col("n") >= ERROR_MIN_DEPTH)
        .sum()
        .row(0)
    )
    n, errors = totals
    if not n:
        return ERROR_RATE_FLOOR
    return max(ERROR_RATE_FLOOR, float(errors) / (3.0 * float(n)))


def filter_reasons(
    *,
    alt_reads: int,
    alt_forward: int,
    alt_reverse: int,
    strand_bias_p: float | None,
    site_on_both_strands: bool,
    alt_starts: int | None,
    max_stack_share: float | None,
    mean_end_distance: float | None,
) -> list[str]:
    """The FILTER reasons of one allele (empty: PASS). Evidence columns None (no read evidence:
    stream mode, an allele below the candidate minimum) skip the rules that need them."""
    reasons = []
    if alt_reads < MIN_SUPPORT_READS:
        reasons.append("low_support")
    if (
        alt_starts is not None
        and max_stack_share is not None
        and (alt_starts < MIN_DISTINCT_STARTS or max_stack_share > MAX_STACK_SHARE)
    ):
        reasons.append("dup_stack")
    one_strand = alt_reads > 0 and (alt_forward == 0 or alt_reverse == 0)
    if (
        strand_bias_p is not None
        and strand_bias_p < MAX_STRAND_BIAS_P
        and one_strand
        and site_on_both_strands
    ):
        reasons.append("strand_bias")
    if mean_end_distance is not None and mean_end_distance < MIN_MEAN_END_DISTANCE:
        reasons.append("read_end")
    return reasons


def _evidence_by_key(evidence: pl.DataFrame | None) -> dict[tuple[int, str, str], dict]:
    if evidence is None or evidence.height == 0:
        return {}
    return {(r["pos"], r["kind"], r["allele"]): r for r in evidence.iter_rows(named=True)}


def _support(
    allele: _Allele, support: dict[tuple[int, str, str], dict]
) -> tuple[int | None, float | None, float | None]:
    """(distinct starts, largest stack share, mean end distance) of an allele from its raw
    evidence rows; None when it has none. Several raw indel representations add their starts
    (a read has one representation, so a start is counted twice only if two reads with one
    start align the indel differently)."""
    rows = [support[k] for k in allele.raw if k in support]
    reads = sum(r["alt_reads"] for r in rows)
    if not rows or reads == 0:
        return None, None, None
    starts = sum(r["alt_starts"] for r in rows)
    share = max(r["max_stack"] for r in rows) / reads
    return starts, share, sum(r["end_distance_sum"] for r in rows) / reads


_WARNED_NO_REFERENCE: set[tuple[str, str]] = set()


def _warn_no_reference(model: GeneModel) -> None:
    """Said once per gene model and process (a cohort calls variants for every sample)."""
    key = (model.gene, model.transcript)
    if key in _WARNED_NO_REFERENCE:
        return
    _WARNED_NO_REFERENCE.add(key)
    log.warning(
        "%s %s: no reference sequence, so coding consequences and p. names are 'unknown' / 'p.?';"
        " give --reference for them",
        model.gene,
        model.transcript,
    )


def call_variants(
    bases: pl.DataFrame,
    indels: pl.DataFrame,
    model: GeneModel,
    fetch: RefFetch | None,
    *,
    sample: str,
    min_alt: int = 3,
    min_vaf: float = 0.05,
    warn_no_reference: bool = True,
    evidence: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """SNV and indel alleles in the exons ± 20 bp with alt reads ≥ ``min_alt`` and VAF ≥
    ``min_vaf``, annotated against ``model`` (columns in the module docstring). Without a
    reference it warns that coding consequences are unknown, unless ``warn_no_reference`` is
    false (the caller says it its own way).

    ``bases`` / ``indels`` are the tables of ``cd22scan.sample.tables``; ``fetch(start0, end0)``
    returns reference bases of a 0-based half-open range, or is None when there is no reference.
    """
    tmap = TranscriptMap(model)
    locus = _load_locus(model, fetch)
    support = _evidence_by_key(evidence)
    if locus is None and warn_no_reference:
        _warn_no_reference(model)
    tx = tmap.transcript_sequence(locus) if locus is not None else None
    # Indels are left-aligned before the scope check, so keep the bases a little wider.
    near = bases.filter(_scope_filter(tmap, SITE_PADDING + _LOCUS_MARGIN))
    # Only positions where some letter could be an allele go through Python (a superset of what
    # _snv_alleles keeps: the VAF bound is loosened against float rounding).
    could_pass = pl.any_horizontal(
        [
            (pl.col(letter) >= min_alt) & (pl.col(letter) >= min_vaf * 0.999999 * pl.col("depth"))
            for letter in LETTERS
        ]
    )
    candidates = near.filter(could_pass & (pl.col("depth") > 0))
    by_pos = {row["pos"]: row for row in candidates.iter_rows(named=True)}
    snv_rows = [row for pos, row in by_pos.items() if tmap.in_scope(pos, pos)]
    found = _snv_alleles(snv_rows, locus, min_alt, min_vaf)
    indel_alleles = _indel_alleles(indels, locus, min_alt)
    anchors = {a.change.first if a.change.kind == "del" else a.change.last for a in indel_alleles}
    missing = sorted(anchors - by_pos.keys())
    if missing:
        extra = near.filter(pl.col("pos").is_in(missing))
        by_pos.update((row["pos"], row) for row in extra.iter_rows(named=True))
    for allele in indel_alleles:
        change = allele.change
        at = change.first if change.kind == "del" else change.last
        row = by_pos.get(at)
        fwd = sum(row[f"{k}_fwd"] for k in (*LETTERS, "N", "del")) if row else 0
        rev = sum(row[f"{k}_rev"] for k in (*LETTERS, "N", "del")) if row else 0
        fwd, rev = max(fwd, allele.alt_forward), max(rev, allele.alt_reverse)
        found.append((allele, fwd - allele.alt_forward, rev - allele.alt_reverse))
    records = []
    for allele, ref_fwd, ref_rev in found:
        change = allele.change
        touched = change.touched()
        if not tmap.in_scope(touched[0], touched[-1]):
            continue
        if change.kind == "snv":
            depth = by_pos[change.first]["depth"]
        else:
            depth = ref_fwd + ref_rev + allele.alt_reads
        vaf = allele.alt_reads / depth if depth else 0.0
        if vaf < min_vaf:
            continue
        pos, ref, alt = _vcf_alleles(change, locus)
        note = annotate(tmap, change, locus, tx)
        strand_p = fisher_exact_two_sided(ref_fwd, ref_rev, allele.alt_forward, allele.alt_reverse)
        starts, stack_share, end_distance = _support(allele, support)
        both_strands = ref_fwd + allele.alt_forward > 0 and ref_rev + allele.alt_reverse > 0
        reasons = filter_reasons(
            alt_reads=allele.alt_reads,
            alt_forward=allele.alt_forward,
            alt_reverse=allele.alt_reverse,
            strand_bias_p=strand_p,
            site_on_both_strands=both_strands,
            alt_starts=starts,
            max_stack_share=stack_share,
            mean_end_distance=end_distance,
        )
        records.append(
            {
                "sample": sample,
                "gene": model.gene,
                "transcript": model.transcript,
                "contig": model.contig,
                "pos": pos,
                "ref": ref,
                "alt": alt,
                "kind": change.kind,
                "depth": depth,
                "alt_reads": allele.alt_reads,
                "vaf": vaf,
                "alt_forward": allele.alt_forward,
                "alt_reverse": allele.alt_reverse,
                "strand_bias_p": strand_p,
                "consequence": note.consequence,
                "hgvs_c": note.hgvs_c,
                "hgvs_p": note.hgvs_p,
                "exon": note.exon,
                "intron": note.intron,
                "alt_starts": starts,
                "max_stack_share": stack_share,
                "mean_end_distance": end_distance,
                "filter": ";".join(reasons) or "PASS",
            }
        )
    frame = pl.DataFrame(records, schema=COLUMNS, orient="row")
    return frame.sort(["pos", "kind", "alt"])
