"""The one test-data factory: seeded RNA-seq reads over one gene, written as a coordinate-sorted,
indexed BAM (plus, optionally, a bgzipped + indexed reference FASTA), with the truth beside it.

Everything is derived from ``seed`` (numpy PCG64); the same arguments give byte-identical files.
Coordinates are 0-based half-open (BAM) everywhere in this module.

Model
-----
* The reference is random sequence over the gene window (gene ± 1 kb) and ``N`` elsewhere on a
  contig of the build's real length (CD22 specs) or of ``GeneSpec.contig_length``. Introns are
  GT…AG on the gene's strand; the CDS is an ORF (ATG, no in-frame stop, stop codon) read on the
  gene's strand.
* ``isoforms`` maps isoform names to **molecule fractions** (what PSI measures). Names:
  ``canonical``; ``skip:2`` / ``skip:5-6`` (transcript exon numbers, 1-based in transcript order);
  ``retain:k`` (intron k, between transcript exons k and k+1, retained); ``pre_mrna`` (the whole
  gene span); ``extend:k:n`` (exon k's donor moved n nt into intron k: a cryptic donor, the exon
  extended, the intron spliced from there). Operations combine with ``+``, e.g.
  ``skip:2+retain:5``. As in a real library, each
  fragment comes from an isoform with probability ∝ fraction × effective length
  (length − insert_mean + 1), so junction counts, not fragment counts, reflect the fractions.
* ``variants``: ``("snv", pos0, alt, vaf)``, ``("ins", anchor_pos0, inserted_bases, vaf)``,
  ``("del", anchor_pos0, length, vaf)`` on the genomic forward strand; inserted bases follow the
  anchor base, deleted bases are anchor+1 … anchor+length. An SNV ``alt`` of None picks the
  transition of the reference base; ``reference_window(gene, seed)`` gives the reference before
  simulating (to choose alleles or read codons). Sites must lie inside the gene span. Each
  molecule draws once per variant whether it carries it (both mates agree); a variant lies on a
  molecule only if its whole site is inside one segment of that isoform (not on a skipped exon).
* One fragment per molecule: insert ~ Normal(insert_mean, insert_sd) clamped to [30, transcript
  length] (short inserts make mates overlap; reads are trimmed to the insert). The forward read
  is the fragment's genomic-left end. Library ``fr``: read 1 on the transcript's strand; ``rf``:
  read 1 opposite; ``unstranded``: either. Single-end reads are read 1 of that logic.
* Records: CIGARs with M, N (introns), D/I (planted indels), S (soft clips; an insertion at a
  read end becomes S), H (supplementary); base qualities 2..41 (≈10 % below 25, some below 13);
  substitution sequencing errors at ``error_rate``; MAPQ 60 (255 for ``mapq255_fraction`` of the
  fragments); FLAG bits 0x1/0x2/0x10/0x20/0x40/0x80; RNEXT ``=``, PNEXT, TLEN; tags NH, HI, RG,
  ``XS:A`` (gene strand) on spliced records when ``xs_tags``; SA on split reads.
* Noise (each its own parameter, a little of each by default):
  duplicates (copy of a normal fragment's primary records, new QNAME ``dupNNNNNN``, 0x400 on all),
  secondary (0x100, same QNAME, unspliced elsewhere in the window, MAPQ 0-3),
  low MAPQ (whole fragment MAPQ 0-10), QC-fail (0x200 on the whole fragment),
  supplementary (a read split: the primary keeps the left part + S, a 0x800 record aligns the
  right part with H), soft clips (3-12 random bases at one read end),
  unmapped mates (0x4 record at the mate's position, mate gets 0x8; single-end: unmapped reads
  without coordinates at the end of the file), and fragments partly outside the window
  (unspliced reads straddling a window edge, QNAME ``outNNNNNN``).
  Low MAPQ, QC-fail and unmapped mate are exclusive fates of a molecule; duplicates, secondary
  and supplementary records are only made for normal fragments.

Public API: ``simulate`` → ``SimResult``; ``GeneSpec``, ``cd22_grch38``, ``cd22_grch37``,
``small_gene``, ``default_gene``; ``isoform_segments``, ``coding_positions``,
``reference_window``; ``write_sam_text_bam`` for hand-written edge cases; ``revcomp``,
``cigar_string``.

Truth (``SimResult.truth``) — computed from the simulator's own alignments, not by reading the BAM
------------------------------------------------------------------------------------------------
A **counted** fragment passes the default filters: not duplicate, secondary, QC-fail or unmapped,
MAPQ ≥ 20; it consists of its primary mapped records (supplementary records never add to it).

* ``seed``, ``contig``, ``strand``, ``library``, ``paired``, ``read_length``
* ``window``: (start0, end0) = gene ± 1 kb, clipped to the contig; every mapped record touches it.
* ``exons``: gene exons in genomic order (the order of every per-exon list below).
* ``isoform_fractions``: the requested molecule fractions.
* ``isoform_segments``: isoform → genomic segments [(start0, end0), …].
* ``isoform_fragments``: isoform → fragments (molecules) drawn, any fate.
* ``isoform_counted_fragments``: isoform → counted fragments.
* ``exon_fragments``: per exon, counted fragments with an aligned (M) base in it.
* ``junctions``: {(intron_start0, intron_end0): counted fragments with a primary record
  supporting it, i.e. min(left, right) M-anchor ≥ 8}; orientation/xs not split.
* ``intron_counts``: per annotated intron (genomic order) (left_boundary, right_boundary, inside)
  counted fragments, as docs/counting.md defines them.
* ``fragments``: counted fragments (all, incl. outside-window and unmapped-mate singles).
* ``gene_fragments``: counted fragments with an aligned base in an exon.
* ``strand_evidence``: (orientation 0, orientation 1) of gene fragments, orientation of the
  fragment's first record in file order.
* ``variants``: one dict per planted variant: ``kind``, ``pos0``, ``alt`` (SNV base / inserted
  bases / deletion length), ``vaf``, ``carrier_molecules`` (molecules carrying it, any fate),
  ``alt_fragments`` (counted carrier fragments with a primary record covering the site),
  ``covering_fragments`` (counted fragments with a primary record covering the site). Covering:
  SNV — an M base at pos0; ins — M bases at anchor and anchor+1; del — M bases at anchor and
  anchor+length+1 (the record spans the site; carriers then show the I/D in the CIGAR).
* ``records``: record numbers: ``total``, ``primary``, ``duplicate``, ``secondary``,
  ``supplementary``, ``low_mapq``, ``qcfail``, ``unmapped``, ``mate_unmapped`` (mapped records
  flagged 0x8), ``softclipped`` (records with soft-clip noise), ``outside_window``, ``mapq255``.
* ``filters``: the filter counts (docs/counting.md, same keys as the core's ``filters``) that
  counting the whole file over ``window`` with default parameters must give.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pysam

# --------------------------------------------------------------------------------------------
# Gene models
# --------------------------------------------------------------------------------------------

GRCH38_CHR19_LENGTH = 58_617_616
GRCH37_CHR19_LENGTH = 59_128_983
GRCH37_MINUS_GRCH38 = 490_903

# CD22 MANE Select ENST00000085219.10, GRCh38, 1-based inclusive (domain notes §2.2).
_CD22_GRCH38_EXONS_1BASED = (
    (35329187, 35329230),
    (35332019, 35332074),
    (35332547, 35332924),
    (35336036, 35336341),
    (35337755, 35338021),
    (35338168, 35338431),
    (35340881, 35341138),
    (35341343, 35341606),
    (35341702, 35341965),
    (35344829, 35344925),
    (35345051, 35345126),
    (35345602, 35345720),
    (35346151, 35346235),
    (35346566, 35347361),
)
_CD22_GRCH38_CDS_1BASED = (35332041, 35346697)


@dataclass(frozen=True)
class GeneSpec:
    """A gene model: exons as 0-based half-open genomic intervals in genomic order."""

    contig: str
    strand: str
    exons: tuple[tuple[int, int], ...]
    cds: tuple[int, int] | None = None
    name: str = "GENE"
    contig_length: int | None = None  # None: gene end + 2 kb
    build: str | None = None

    def __post_init__(self) -> None:
        exons = tuple((int(s), int(e)) for s, e in self.exons)
        object.__setattr__(self, "exons", exons)
        if self.strand not in ("+", "-"):
            raise ValueError(f"strand must be '+' or '-', not {self.strand!r}")
        if not exons:
            raise ValueError("a gene needs at least one exon")
        for (s, e), (s2, _) in pairwise(exons):
            if not s < e <= s2:
                raise ValueError(f"exons must be sorted, non-empty, non-overlapping: {exons}")
        if exons[-1][0] >= exons[-1][1] or exons[0][0] < 0:
            raise ValueError(f"bad exon {exons[-1]}")
        if self.cds is not None:
            object.__setattr__(self, "cds", (int(self.cds[0]), int(self.cds[1])))
        if self.contig_length is not None and self.contig_length < exons[-1][1]:
            raise ValueError("contig_length is shorter than the gene")

    @property
    def start(self) -> int:
        return self.exons[0][0]

    @property
    def end(self) -> int:
        return self.exons[-1][1]

    @property
    def length_of_contig(self) -> int:
        return self.contig_length if self.contig_length is not None else self.end + 2000

    @property
    def introns(self) -> tuple[tuple[int, int], ...]:
        """Annotated introns in genomic order: gaps between consecutive exons."""
        return tuple((a[1], b[0]) for a, b in pairwise(self.exons))

    def genomic_index(self, number: int) -> int:
        """0-based genomic-order index of transcript exon ``number`` (1-based, transcript order)."""
        n = len(self.exons)
        if not 1 <= number <= n:
            raise ValueError(f"exon number {number} outside 1..{n}")
        return number - 1 if self.strand == "+" else n - number

    def exon_number(self, genomic_index: int) -> int:
        """Transcript exon number (1-based) of the exon at ``genomic_index``."""
        n = len(self.exons)
        return genomic_index + 1 if self.strand == "+" else n - genomic_index

    def exon(self, number: int) -> tuple[int, int]:
        return self.exons[self.genomic_index(number)]

    def intron_genomic_index(self, number: int) -> int:
        """Genomic-order index of transcript intron ``number`` (between exons k and k+1)."""
        n = len(self.exons)
        if not 1 <= number <= n - 1:
            raise ValueError(f"intron number {number} outside 1..{n - 1}")
        return number - 1 if self.strand == "+" else n - 1 - number

    def intron(self, number: int) -> tuple[int, int]:
        return self.introns[self.intron_genomic_index(number)]

    def window(self, pad: int = 1000) -> tuple[int, int]:
        return max(0, self.start - pad), min(self.length_of_contig, self.end + pad)

    def with_contig(self, contig: str) -> GeneSpec:
        return replace(self, contig=contig)


def cd22_grch38() -> GeneSpec:
    """CD22 (ENST00000085219.10) on GRCh38 chr19, + strand, 14 exons."""
    return GeneSpec(
        contig="chr19",
        strand="+",
        exons=tuple((s - 1, e) for s, e in _CD22_GRCH38_EXONS_1BASED),
        cds=(_CD22_GRCH38_CDS_1BASED[0] - 1, _CD22_GRCH38_CDS_1BASED[1]),
        name="CD22",
        contig_length=GRCH38_CHR19_LENGTH,
        build="GRCh38",
    )


def cd22_grch37() -> GeneSpec:
    """CD22 on GRCh37: the GRCh38 model shifted by +490,903."""
    g38 = cd22_grch38()
    shift = GRCH37_MINUS_GRCH38
    assert g38.cds is not None
    return GeneSpec(
        contig="chr19",
        strand="+",
        exons=tuple((s + shift, e + shift) for s, e in g38.exons),
        cds=(g38.cds[0] + shift, g38.cds[1] + shift),
        name="CD22",
        contig_length=GRCH37_CHR19_LENGTH,
        build="GRCh37",
    )


def small_gene(strand: str = "+") -> GeneSpec:
    """A compact 6-exon gene on a 6 kb contig ``chrT`` for fast tests.

    Exons (genomic order) 120, 150, 96, 171, 135, 200 nt; introns 300, 180, 450, 220, 600 nt.
    Exons 2-5 (genomic) are multiples of 3, so skipping them keeps the frame. CDS 732 nt.
    """
    return GeneSpec(
        contig="chrT",
        strand=strand,
        exons=((1500, 1620), (1920, 2070), (2250, 2346), (2796, 2967), (3187, 3322), (3922, 4122)),
        cds=(1540, 4022),
        name="SMALL" if strand == "+" else "SMALLM",
        contig_length=6000,
    )


def builtin_spec(gene: str, build: str = "GRCh38") -> GeneSpec:
    """The simulator's spec of a built-in model (target/data/models.tsv) on its real contig."""
    from cd22scan.target.annotation import builtin_model
    from cd22scan.target.contigs import expected_length, molecule_of

    model = builtin_model(gene, build)
    exons = tuple(sorted((e.start - 1, e.end) for e in model.exons))
    cds = (model.cds_start - 1, model.cds_end) if model.cds_start and model.cds_end else None
    length = expected_length(molecule_of(model.contig), build)
    return GeneSpec(contig=model.contig, strand=model.strand, exons=exons, cds=cds,
                    name=model.gene, contig_length=length, build=build)  # fmt: skip


def default_gene(build: str = "GRCh38") -> GeneSpec:
    if build == "GRCh38":
        return cd22_grch38()
    if build == "GRCh37":
        return cd22_grch37()
    raise ValueError(f"build must be GRCh38 or GRCh37, not {build!r}")


def isoform_segments(gene: GeneSpec, isoform: str) -> list[tuple[int, int]]:
    """Genomic segments (genomic order) of an isoform named as in the module docstring."""
    n = len(gene.exons)
    if isoform == "pre_mrna":
        return [(gene.start, gene.end)]
    included = set(range(1, n + 1))
    retained: set[int] = set()
    extended: dict[int, int] = {}  # genomic exon index -> nt its donor moves into the intron
    for part in isoform.split("+"):
        if part == "canonical":
            continue
        kind, _, arg = part.partition(":")
        if kind == "skip":
            first, _, last = arg.partition("-")
            a, b = int(first), int(last) if last else int(first)
            for number in range(a, b + 1):
                gene.genomic_index(number)  # validates
                included.discard(number)
        elif kind == "retain":
            retained.add(gene.intron_genomic_index(int(arg)))
        elif kind == "extend":
            number, _, shift = arg.partition(":")
            if not shift or int(shift) <= 0 or int(number) >= n:
                raise ValueError(
                    f"isoform part {part!r}: need extend:EXON:NT, NT > 0, not the last exon"
                )
            extended[gene.genomic_index(int(number))] = int(shift)
        else:
            raise ValueError(f"unknown isoform {isoform!r} (part {part!r})")
    if not included:
        raise ValueError(f"isoform {isoform!r} has no exon left")
    genomic = sorted(gene.genomic_index(k) for k in included)
    for gi in retained:
        if gi not in genomic or gi + 1 not in genomic:
            raise ValueError(f"isoform {isoform!r} retains an intron next to a skipped exon")
    segments: list[list[int]] = []
    previous = None
    for gi in genomic:
        start, end = gene.exons[gi]
        shift = extended.get(gi, 0)
        # the donor is the exon's 3' end: its right side on +, its left side on −
        if gene.strand == "+":
            end += shift
        else:
            start -= shift
        if previous is not None and previous == gi - 1 and previous in retained:
            segments[-1][1] = end
        else:
            segments.append([start, end])
        previous = gi
    for (_, left_end), (right_start, _) in pairwise(segments):
        if left_end >= right_start:
            raise ValueError(f"isoform {isoform!r}: an extension reaches the next exon")
    return [(s, e) for s, e in segments]


# --------------------------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------------------------

_BASES = "ACGT"
_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")
_STOPS = ("TAA", "TAG", "TGA")
_SENSE_CODONS = tuple(
    a + b + c for a in _BASES for b in _BASES for c in _BASES if a + b + c not in _STOPS
)


def revcomp(seq: str) -> str:
    return seq.translate(_COMPLEMENT)[::-1]


def _random_bases(rng: np.random.Generator, n: int) -> list[str]:
    return [_BASES[i] for i in rng.integers(0, 4, n)]


def coding_positions(gene: GeneSpec) -> list[int]:
    """Genomic positions of the CDS in transcript order (empty without a CDS)."""
    if gene.cds is None:
        return []
    c0, c1 = gene.cds
    positions = [p for s, e in gene.exons for p in range(max(s, c0), min(e, c1))]
    return positions if gene.strand == "+" else positions[::-1]


def _make_reference(gene: GeneSpec, window: tuple[int, int], rng: np.random.Generator) -> str:
    """Random sequence over the window with GT-AG introns and a valid ORF over the CDS."""
    ws, we = window
    seq = _random_bases(rng, we - ws)
    for start, end in gene.introns:
        if end - start < 4:
            continue
        donor, acceptor = ("GT", "AG") if gene.strand == "+" else ("CT", "AC")
        seq[start - ws : start - ws + 2] = list(donor)
        seq[end - 2 - ws : end - ws] = list(acceptor)
    positions = coding_positions(gene)
    if positions:
        if len(positions) % 3 or len(positions) < 6:
            raise ValueError(f"CDS of {gene.name} is {len(positions)} nt, not whole codons")
        n_inner = len(positions) // 3 - 2
        inner = "".join(_SENSE_CODONS[i] for i in rng.integers(0, len(_SENSE_CODONS), n_inner))
        coding = "ATG" + inner + _STOPS[int(rng.integers(0, 3))]
        for p, base in zip(positions, coding, strict=True):
            seq[p - ws] = base if gene.strand == "+" else base.translate(_COMPLEMENT)
    return "".join(seq)


def _write_fasta(
    path: Path, contig: str, length: int, window: tuple[int, int], window_seq: str
) -> Path:
    """bgzipped FASTA (60 per line) with ``N`` outside the window, plus .fai and .gzi."""
    width = 60
    ws, we = window
    plain = path.with_suffix("")  # x.fa.gz -> x.fa
    n_line = "N" * width + "\n"
    first_mixed = ws // width
    last_mixed = (we - 1) // width
    with open(plain, "w") as out:
        out.write(f">{contig}\n")
        for done in range(0, first_mixed, 10_000):
            out.write(n_line * min(10_000, first_mixed - done))
        mixed_end = min(length, (last_mixed + 1) * width)
        middle = "N" * (ws - first_mixed * width) + window_seq + "N" * (mixed_end - we)
        out.write("".join(middle[i : i + width] + "\n" for i in range(0, len(middle), width)))
        rest = length - mixed_end
        full, tail = divmod(rest, width)
        for done in range(0, full, 10_000):
            out.write(n_line * min(10_000, full - done))
        if tail:
            out.write("N" * tail + "\n")
    pysam.tabix_compress(str(plain), str(path), force=True)
    os.remove(plain)
    pysam.faidx(str(path))
    return path


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------

CMATCH, CINS, CDEL, CREF_SKIP, CSOFT_CLIP, CHARD_CLIP = 0, 1, 2, 3, 4, 5
_CIGAR_LETTERS = "MIDNSHP=X"


def cigar_string(cigar: list[tuple[int, int]] | None) -> str:
    if not cigar:
        return "*"
    return "".join(f"{n}{_CIGAR_LETTERS[op]}" for op, n in cigar)


# A unit is one base of a molecule: (genomic position or -1 if inserted, base, segment index).
Unit = tuple[int, str, int]


@dataclass
class _Record:
    qname: str
    flag: int
    tid: int  # 0 (the one contig) or -1
    pos: int
    mapq: int
    cigar: list[tuple[int, int]] | None
    seq: str
    qual: list[int]
    aligned: list[tuple[int, int]] = field(default_factory=list)  # (gpos, segment) of M bases
    mate_tid: int = -1
    mate_pos: int = -1
    tlen: int = 0
    tags: list[tuple] = field(default_factory=list)
    order: int = -1  # index in the written (sorted) file
    sa: str = ""  # SA tag value for split reads
    softclipped: bool = False  # soft-clip noise applied
    units: list[Unit] = field(default_factory=list, repr=False)  # the read's molecule bases
    owner: _Record | None = field(default=None, repr=False)  # a supplementary's primary

    @property
    def end(self) -> int:
        ref = self.pos
        for op, n in self.cigar or []:
            if op in (CMATCH, CDEL, CREF_SKIP):
                ref += n
        return ref

    @property
    def reverse(self) -> bool:
        return bool(self.flag & 0x10)

    @property
    def spliced(self) -> bool:
        return any(op == CREF_SKIP for op, _ in self.cigar or [])


def _align(units: list[Unit], clip_left: int = 0, clip_right: int = 0):
    """Alignment of a read made of ``units``: (pos, cigar, aligned) with the given soft clips.

    Inserted units at either end of the aligned part become soft clips too. Reference gaps
    within a segment are deletions, gaps between segments are introns (N).
    """
    n = len(units)
    lo, hi = clip_left, n - clip_right
    while lo < hi and units[lo][0] < 0:
        lo += 1
    while hi > lo and units[hi - 1][0] < 0:
        hi -= 1
    if lo >= hi:
        raise ValueError("read has no aligned base")
    cigar: list[list[int]] = []

    def push(op: int, length: int) -> None:
        if cigar and cigar[-1][0] == op:
            cigar[-1][1] += length
        else:
            cigar.append([op, length])

    if lo:
        push(CSOFT_CLIP, lo)
    aligned: list[tuple[int, int]] = []
    for gpos, _base, seg in units[lo:hi]:
        if gpos < 0:
            push(CINS, 1)
            continue
        if aligned:
            prev_pos, prev_seg = aligned[-1]
            gap = gpos - prev_pos - 1
            if gap < 0:
                raise AssertionError("units out of order")
            if gap:
                push(CDEL if seg == prev_seg else CREF_SKIP, gap)
        push(CMATCH, 1)
        aligned.append((gpos, seg))
    if n - hi:
        push(CSOFT_CLIP, n - hi)
    return aligned[0][0], [(op, length) for op, length in cigar], aligned


@dataclass
class _Fragment:
    qname: str
    isoform: str | None
    applied: tuple[int, ...]  # indices of the variants on this molecule
    counted: bool
    primaries: list[_Record]  # mapped primary records of the fragment


@dataclass
class SimResult:
    bam: Path
    reference: Path | None
    gene: GeneSpec
    truth: dict
    seed: int
    window_sequence: str = ""  # reference bases over truth["window"]

    @property
    def window(self) -> tuple[int, int]:
        return self.truth["window"]


class _Simulator:
    def __init__(self, gene: GeneSpec, window: tuple[int, int], ref: str, rng, opts: dict):
        self.gene = gene
        self.window = window
        self.ref = ref
        self.rng = rng
        self.o = opts
        self.records: list[_Record] = []
        self.fragments: list[_Fragment] = []
        self.noise = dict.fromkeys(
            (
                "duplicate", "secondary", "supplementary", "low_mapq", "qcfail", "unmapped",
                "mate_unmapped", "softclipped", "outside_window",
            ),
            0,
        )  # fmt: skip
        self._units_cache: dict[tuple[str, tuple[int, ...]], list[Unit]] = {}

    # ---- sequence helpers -----------------------------------------------------------------
    def ref_base(self, gpos: int) -> str:
        ws, we = self.window
        if ws <= gpos < we:
            return self.ref[gpos - ws]
        return _BASES[int(self.rng.integers(0, 4))]

    def molecule(self, isoform: str, segments, applied: tuple[int, ...]) -> list[Unit]:
        key = (isoform, applied)
        if key in self._units_cache:
            return self._units_cache[key]
        ws = self.window[0]
        snv: dict[int, str] = {}
        deleted: set[int] = set()
        inserted: dict[int, str] = {}
        for i in applied:
            kind, pos, alt, _vaf = self.o["variants"][i]
            if kind == "snv":
                snv[pos] = alt
            elif kind == "del":
                deleted.update(range(pos + 1, pos + 1 + alt))
            else:
                inserted[pos] = alt
        units: list[Unit] = []
        for seg_index, (start, end) in enumerate(segments):
            for g in range(start, end):
                if g not in deleted:
                    units.append((g, snv.get(g, self.ref[g - ws]), seg_index))
                for base in inserted.get(g, ""):
                    units.append((-1, base, seg_index))
        self._units_cache[key] = units
        return units

    def read_bases(self, units: list[Unit]) -> tuple[list[str], list[int]]:
        """Bases with substitution errors, and Phred qualities."""
        n = len(units)
        bases = [u[1] for u in units]
        errors = self.rng.random(n) < self.o["error_rate"]
        shifts = self.rng.integers(1, 4, n)
        for i in np.flatnonzero(errors):
            bases[i] = _BASES[(_BASES.index(bases[i]) + int(shifts[i])) % 4]
        low = self.rng.random(n) < 0.1
        quals = np.where(low, self.rng.integers(2, 25, n), self.rng.integers(25, 42, n))
        return bases, [int(q) for q in quals]

    # ---- one read ---------------------------------------------------------------------------
    def make_read(self, qname: str, units: list[Unit], reverse: bool, mapq: int, softclip: bool):
        """A primary record for ``units`` (genomic order), with optional soft-clip noise."""
        bases, quals = self.read_bases(units)
        n = len(units)
        clip_left = clip_right = 0
        n_aligned = sum(1 for u in units if u[0] >= 0)
        clipped = False
        if softclip and n_aligned > 40:
            k = int(self.rng.integers(3, 13))
            if self.rng.random() < 0.5:
                clip_left = k
                for i in range(k):
                    bases[i] = _BASES[int(self.rng.integers(0, 4))]
            else:
                clip_right = k
                for i in range(n - k, n):
                    bases[i] = _BASES[int(self.rng.integers(0, 4))]
            clipped = True
        pos, cigar, aligned = _align(units, clip_left, clip_right)
        rec = _Record(
            qname=qname,
            flag=0x10 if reverse else 0,
            tid=0,
            pos=pos,
            mapq=mapq,
            cigar=cigar,
            seq="".join(bases),
            qual=quals,
            aligned=aligned,
        )
        rec.softclipped = clipped
        rec.units = units
        return rec

    def split_supplementary(self, rec: _Record) -> _Record | None:
        """Turn ``rec`` into primary (left part + S) and return the supplementary (H + right)."""
        units = rec.units
        n = len(units)
        if rec.cigar is None or any(op == CSOFT_CLIP for op, _ in rec.cigar) or n < 60:
            return None
        k = int(self.rng.integers(20, n - 20 + 1))
        left_aligned = sum(1 for u in units[:k] if u[0] >= 0)
        right_aligned = sum(1 for u in units[k:] if u[0] >= 0)
        if left_aligned < 10 or right_aligned < 10:
            return None
        pos, cigar, aligned = _align(units, 0, n - k)
        rec.pos, rec.cigar, rec.aligned = pos, cigar, aligned
        s_pos, s_cigar, s_aligned = _align(units[k:], 0, 0)
        supp = _Record(
            qname=rec.qname,
            flag=rec.flag | 0x800,
            tid=0,
            pos=s_pos,
            mapq=rec.mapq,
            cigar=[(CHARD_CLIP, k), *s_cigar],
            seq=rec.seq[k:],
            qual=rec.qual[k:],
            aligned=s_aligned,
            owner=rec,
        )
        strand = "-" if rec.reverse else "+"
        contig = self.gene.contig
        rec.sa = f"{contig},{supp.pos + 1},{strand},{cigar_string(supp.cigar)},{supp.mapq},0;"
        supp.sa = f"{contig},{rec.pos + 1},{strand},{cigar_string(rec.cigar)},{rec.mapq},0;"
        return supp

    # ---- flags and mate fields ----------------------------------------------------------------
    @staticmethod
    def pair_up(r1: _Record, r2: _Record, proper: bool = True) -> None:
        for me, mate, bit in ((r1, r2, 0x40), (r2, r1, 0x80)):
            me.flag |= 0x1 | bit | (0x2 if proper else 0) | (0x20 if mate.reverse else 0)
            me.mate_tid, me.mate_pos = 0, mate.pos
        left = min(r1.pos, r2.pos)
        right = max(r1.end, r2.end)
        span = right - left
        if r1.pos < r2.pos or (r1.pos == r2.pos):
            r1.tlen, r2.tlen = span, -span
        else:
            r1.tlen, r2.tlen = -span, span

    def tags_for(self, rec: _Record, nh: int = 1, hi: int = 1) -> list[tuple]:
        tags: list[tuple] = [("NH", nh, "i"), ("HI", hi, "i"), ("RG", self.o["sample"], "Z")]
        if self.o["xs_tags"] and rec.spliced:
            tags.append(("XS", self.gene.strand, "A"))
        if rec.sa:
            tags.append(("SA", rec.sa, "Z"))
        return tags

    def secondary_for(self, rec: _Record, mate: _Record | None) -> _Record:
        ws, we = self.window
        length = len(rec.seq)
        pos = int(self.rng.integers(ws, max(ws + 1, we - length)))
        flag = 0x100 | (rec.flag & (0x1 | 0x40 | 0x80 | 0x20))
        if self.rng.random() < 0.5:
            flag |= 0x10
        sec = _Record(
            qname=rec.qname,
            flag=flag,
            tid=0,
            pos=pos,
            mapq=int(self.rng.integers(0, 4)),
            cigar=[(CMATCH, length)],
            seq=rec.seq,
            qual=list(rec.qual),
            aligned=[(pos + i, 0) for i in range(length)],
        )
        if mate is not None:
            sec.mate_tid, sec.mate_pos = 0, mate.pos
        return sec

    # ---- fragments ------------------------------------------------------------------------
    def read1_is_forward(self) -> bool:
        library = self.o["library"]
        if library == "unstranded":
            return bool(self.rng.random() < 0.5)
        on_gene_strand = library == "fr"
        return on_gene_strand == (self.gene.strand == "+")

    def add_fragment(
        self,
        index: int,
        qname: str,
        units: list[Unit],
        f0: int,
        insert: int,
        isoform: str | None,
        applied: tuple[int, ...],
        outside: bool = False,
    ) -> None:
        o, rng = self.o, self.rng
        rl = min(o["read_length"], insert)
        left_units = units[f0 : f0 + rl]
        right_units = units[f0 + insert - rl : f0 + insert]
        read1_forward = self.read1_is_forward()
        mapq = 255 if rng.random() < o["mapq255_fraction"] else 60
        u = rng.random()
        fate = "normal"
        if outside:
            pass
        elif u < o["low_mapq_fraction"]:
            fate = "low_mapq"
        elif u < o["low_mapq_fraction"] + o["qcfail_fraction"]:
            fate = "qcfail"
        elif u < o["low_mapq_fraction"] + o["qcfail_fraction"] + o["unmapped_fraction"]:
            fate = "unmapped"

        def clip() -> bool:
            return bool(rng.random() < o["softclip_fraction"])

        if o["paired"]:
            left = self.make_read(qname, left_units, False, mapq, clip())
            right = self.make_read(qname, right_units, True, mapq, clip())
            r1, r2 = (left, right) if read1_forward else (right, left)
            reads = [r1, r2]
        else:
            single = left_units if read1_forward else right_units
            reads = [self.make_read(qname, single, not read1_forward, mapq, clip())]

        if fate == "low_mapq":
            for r in reads:
                r.mapq = int(rng.integers(0, 11))
        elif fate == "qcfail":
            for r in reads:
                r.flag |= 0x200

        supplementaries: list[_Record] = []
        if fate == "normal" and not outside:
            for r in reads:
                if rng.random() < o["supplementary_fraction"]:
                    supp = self.split_supplementary(r)
                    if supp is not None:
                        supplementaries.append(supp)

        extra: list[_Record] = []
        counted_reads = reads
        if o["paired"]:
            r1, r2 = reads
            if fate == "unmapped":
                mapped, lost = (r1, r2) if rng.random() < 0.5 else (r2, r1)
                bit_m, bit_l = (0x40, 0x80) if mapped is r1 else (0x80, 0x40)
                mapped.flag |= 0x1 | 0x8 | bit_m
                mapped.mate_tid, mapped.mate_pos = 0, mapped.pos
                seq, qual = lost.seq, list(lost.qual)
                if lost.reverse:  # stored as sequenced, unmapped records have no 0x10
                    seq, qual = revcomp(seq), qual[::-1]
                lost.flag = 0x1 | 0x4 | bit_l | (0x20 if mapped.reverse else 0)
                lost.pos, lost.cigar, lost.aligned, lost.mapq = mapped.pos, None, [], 0
                lost.seq, lost.qual = seq, qual
                lost.mate_tid, lost.mate_pos = 0, mapped.pos
                self.noise["unmapped"] += 1
                self.noise["mate_unmapped"] += 1
                counted_reads = [mapped]
            else:
                self.pair_up(r1, r2)
        else:
            if fate == "unmapped":
                r = reads[0]
                seq, qual = r.seq, list(r.qual)
                if r.reverse:
                    seq, qual = revcomp(seq), qual[::-1]
                r.flag, r.tid, r.pos, r.cigar, r.aligned, r.mapq = 0x4, -1, -1, None, [], 0
                r.seq, r.qual = seq, qual
                self.noise["unmapped"] += 1
                counted_reads = []

        # supplementary records inherit their read's pairing bits and mate fields
        for s in supplementaries:
            assert s.owner is not None
            s.flag = s.owner.flag | 0x800
            s.mate_tid, s.mate_pos = s.owner.mate_tid, s.owner.mate_pos
        n_secondary = 0
        if fate == "normal" and not outside and rng.random() < o["secondary_fraction"]:
            which = int(rng.integers(0, len(reads)))
            mate = reads[1 - which] if len(reads) == 2 else None
            extra.append(self.secondary_for(reads[which], mate))
            n_secondary = which + 1

        for i, r in enumerate(reads):
            nh = 2 if n_secondary == i + 1 else 1
            r.tags = self.tags_for(r, nh=nh) if r.cigar is not None else [("RG", o["sample"], "Z")]
        for s in supplementaries:
            s.tags = self.tags_for(s)
        for e in extra:
            e.tags = self.tags_for(e, nh=2, hi=2)

        self.records.extend(reads)
        self.records.extend(supplementaries)
        self.records.extend(extra)
        self.noise["supplementary"] += len(supplementaries)
        self.noise["secondary"] += len(extra)
        if fate == "low_mapq":
            self.noise["low_mapq"] += len(reads)
        if fate == "qcfail":
            self.noise["qcfail"] += len(reads)
        if outside:
            self.noise["outside_window"] += len(reads)
        counted = fate in ("normal", "unmapped") and bool(counted_reads)
        self.fragments.append(
            _Fragment(qname, isoform, applied, counted, [r for r in counted_reads])
        )

        if fate == "normal" and not outside and rng.random() < o["dup_fraction"]:
            dup_name = f"dup{index:06d}"
            copies = []
            for r in reads:
                c = _Record(
                    qname=dup_name,
                    flag=r.flag | 0x400,
                    tid=r.tid,
                    pos=r.pos,
                    mapq=r.mapq,
                    cigar=list(r.cigar or []),
                    seq=r.seq,
                    qual=list(r.qual),
                    aligned=list(r.aligned),
                    softclipped=r.softclipped,
                    mate_tid=r.mate_tid,
                    mate_pos=r.mate_pos,
                    tlen=r.tlen,
                    tags=[t for t in r.tags if t[0] not in ("SA", "NH")] + [("NH", 1, "i")],
                )
                copies.append(c)
            self.records.extend(copies)
            self.noise["duplicate"] += len(copies)
            self.fragments.append(_Fragment(dup_name, isoform, applied, False, copies))

    def add_outside_fragment(self, index: int) -> bool:
        """An unspliced fragment with one read straddling a window edge."""
        o, rng = self.o, self.rng
        ws, we = self.window
        rl = o["read_length"]
        insert = max(rl, round(rng.normal(o["insert_mean"], o["insert_sd"])))
        edges = []
        if ws >= rl:
            edges.append("left")
        if we + rl <= self.gene.length_of_contig:
            edges.append("right")
        if not edges:
            return False
        edge = edges[int(rng.integers(0, len(edges)))]
        k = int(rng.integers(20, rl - 19))
        start = ws - k if edge == "left" else we + k - insert
        units = [(g, self.ref_base(g), 0) for g in range(start, start + insert)]
        self.add_fragment(index, f"out{index:06d}", units, 0, insert, None, (), outside=True)
        return True


def _sort_key(rec: _Record):
    if rec.tid < 0:
        return (1, 0, 0, rec.qname, rec.flag)
    return (0, rec.pos, int(rec.reverse), rec.qname, rec.flag)


def _header_text(gene: GeneSpec, sample: str, seed: int) -> str:
    return (
        "@HD\tVN:1.6\tSO:coordinate\n"
        f"@SQ\tSN:{gene.contig}\tLN:{gene.length_of_contig}\n"
        f"@RG\tID:{sample}\tSM:{sample}\tPL:ILLUMINA\tLB:{sample}-lib\n"
        f"@PG\tID:simulator\tPN:cd22scan-tests-simulator\tVN:1\tCL:simulate seed={seed}\n"
    )


def _write_bam(path: Path, header_text: str, records: list[_Record]) -> None:
    header = pysam.AlignmentHeader.from_text(header_text)
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for r in records:
            a = pysam.AlignedSegment(header)
            a.query_name = r.qname
            a.flag = r.flag
            a.reference_id = r.tid
            a.reference_start = r.pos
            a.mapping_quality = r.mapq
            a.cigartuples = r.cigar if r.cigar else None
            a.next_reference_id = r.mate_tid
            a.next_reference_start = r.mate_pos
            a.template_length = r.tlen
            a.query_sequence = r.seq
            a.query_qualities = array("B", r.qual)
            a.set_tags(r.tags)
            out.write(a)
    pysam.index(str(path))


# --------------------------------------------------------------------------------------------
# Truth
# --------------------------------------------------------------------------------------------


def _junction_support(aligned: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(intron_start, intron_end, min anchor) for each segment change along a read."""
    runs: list[list[int]] = []  # [first_pos, last_pos, count, segment]
    for gpos, seg in aligned:
        if runs and runs[-1][3] == seg:
            runs[-1][1] = gpos
            runs[-1][2] += 1
        else:
            runs.append([gpos, gpos, 1, seg])
    return [(a[1] + 1, b[0], min(a[2], b[2])) for a, b in pairwise(runs)]


def _any_in(sorted_positions: list[int], start: int, end: int) -> bool:
    i = bisect_left(sorted_positions, start)
    return i < len(sorted_positions) and sorted_positions[i] < end


def _covers(positions: set[int], variant) -> bool:
    kind, pos, alt, _ = variant
    if kind == "snv":
        return pos in positions
    after = pos + 1 if kind == "ins" else pos + alt + 1
    return pos in positions and after in positions


def _truth(sim: _Simulator, requested: dict[str, float], segments: dict, min_anchor: int = 8):
    gene = sim.gene
    exons = list(gene.exons)
    introns = list(gene.introns)
    exon_fragments = [0] * len(exons)
    intron_counts = [[0, 0, 0] for _ in introns]
    junctions: dict[tuple[int, int], int] = {}
    strand_evidence = [0, 0]
    variants = sim.o["variants"]
    alt_fragments = [0] * len(variants)
    covering_fragments = [0] * len(variants)
    carriers = [0] * len(variants)
    isoform_fragments = dict.fromkeys(requested, 0)
    isoform_counted = dict.fromkeys(requested, 0)
    n_fragments = gene_fragments = 0

    for frag in sim.fragments:
        if frag.isoform is not None and not frag.qname.startswith("dup"):
            isoform_fragments[frag.isoform] += 1
            for i in frag.applied:
                carriers[i] += 1
        if not frag.counted:
            continue
        n_fragments += 1
        if frag.isoform is not None:
            isoform_counted[frag.isoform] += 1
        per_record = [{g for g, _ in r.aligned} for r in frag.primaries]
        touched = sorted(set().union(*per_record))
        hit = False
        for i, (s, e) in enumerate(exons):
            if _any_in(touched, s, e):
                exon_fragments[i] += 1
                hit = True
        if hit:
            gene_fragments += 1
            first = min(frag.primaries, key=lambda r: r.order)
            is_read2 = bool(first.flag & 0x80) and bool(first.flag & 0x1)
            strand_evidence[0 if first.reverse == is_read2 else 1] += 1
        for k, (s, e) in enumerate(introns):
            if any(s - 1 in ps and s in ps for ps in per_record):
                intron_counts[k][0] += 1
            if any(e - 1 in ps and e in ps for ps in per_record):
                intron_counts[k][1] += 1
            if _any_in(touched, s, e):
                intron_counts[k][2] += 1
        supported = {
            (s, e)
            for r in frag.primaries
            for s, e, anchor in _junction_support(r.aligned)
            if anchor >= min_anchor
        }
        for key in supported:
            junctions[key] = junctions.get(key, 0) + 1
        for i, variant in enumerate(variants):
            if any(_covers(ps, variant) for ps in per_record):
                covering_fragments[i] += 1
                if i in frag.applied:
                    alt_fragments[i] += 1

    records = sim.records
    noise = dict(sim.noise)
    noise["total"] = len(records)
    noise["primary"] = sum(1 for r in records if not r.flag & 0x900)
    noise["mapq255"] = sum(1 for r in records if r.mapq == 255)
    noise["softclipped"] = sum(1 for r in records if r.softclipped and r.cigar is not None)
    used = (
        len(records)
        - noise["unmapped"]
        - noise["secondary"]
        - noise["qcfail"]
        - noise["duplicate"]
        - noise["low_mapq"]
    )
    filters = {
        "records": len(records),
        "unmapped": noise["unmapped"],
        "secondary": noise["secondary"],
        "qcfail": noise["qcfail"],
        "duplicate": noise["duplicate"],
        "other_flags": 0,
        "low_mapq": noise["low_mapq"],
        "off_target": 0,
        "used": used,
        "used_supplementary": noise["supplementary"],
    }
    return {
        "exons": exons,
        "isoform_fractions": dict(requested),
        "isoform_segments": segments,
        "isoform_fragments": isoform_fragments,
        "isoform_counted_fragments": isoform_counted,
        "exon_fragments": exon_fragments,
        "junctions": dict(sorted(junctions.items())),
        "intron_counts": [tuple(c) for c in intron_counts],
        "fragments": n_fragments,
        "gene_fragments": gene_fragments,
        "strand_evidence": (strand_evidence[0], strand_evidence[1]),
        "variants": [
            {
                "kind": v[0],
                "pos0": v[1],
                "alt": v[2],
                "vaf": v[3],
                "carrier_molecules": carriers[i],
                "alt_fragments": alt_fragments[i],
                "covering_fragments": covering_fragments[i],
            }
            for i, v in enumerate(variants)
        ],
        "records": noise,
        "filters": filters,
    }


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


_TRANSITION = {"A": "G", "G": "A", "C": "T", "T": "C"}


def _check_variants(gene: GeneSpec, ref: str, window: tuple[int, int], variants) -> list[tuple]:
    ws = window[0]
    checked = []
    for v in variants:
        if len(v) != 4:
            raise ValueError(f"variant {v!r}: expected (kind, pos0, alt, vaf)")
        kind, pos, alt, vaf = v
        pos = int(pos)
        vaf = float(vaf)
        if not 0.0 <= vaf <= 1.0:
            raise ValueError(f"variant {v!r}: vaf outside [0, 1]")
        if kind == "snv":
            if not alt and gene.start <= pos < gene.end:
                alt = _TRANSITION[ref[pos - ws]]
            alt = str(alt).upper()
            if len(alt) != 1 or alt not in _BASES or not gene.start <= pos < gene.end:
                raise ValueError(f"variant {v!r}: bad SNV")
            if ref[pos - ws] == alt:
                raise ValueError(f"variant {v!r}: alt equals the reference base")
        elif kind == "ins":
            alt = str(alt).upper()
            if not alt or set(alt) - set(_BASES) or len(alt) >= 30:
                raise ValueError(f"variant {v!r}: inserted bases must be 1-29 of ACGT")
            if not gene.start <= pos < gene.end - 1:
                raise ValueError(f"variant {v!r}: outside the gene")
        elif kind == "del":
            alt = int(alt)
            if alt < 1 or not gene.start <= pos or pos + alt + 1 >= gene.end:
                raise ValueError(f"variant {v!r}: bad deletion")
        else:
            raise ValueError(f"variant {v!r}: kind must be snv, ins or del")
        checked.append((kind, pos, alt, vaf))
    return checked


def _applicable(variant, segments) -> bool:
    kind, pos, alt, _ = variant
    last = pos if kind == "snv" else (pos + 1 if kind == "ins" else pos + alt + 1)
    return any(s <= pos and last < e for s, e in segments)


def reference_window(gene: GeneSpec, seed: int) -> tuple[tuple[int, int], str]:
    """The window (gene ± 1 kb) and the reference sequence over it that ``simulate`` builds for
    this gene and seed — use it to choose variant alleles or to read codons before simulating."""
    window = gene.window(1000)
    return window, _make_reference(gene, window, np.random.default_rng([seed, 0]))


def simulate(
    out_dir,
    *,
    seed: int,
    gene: GeneSpec | None = None,
    n_fragments: int = 2000,
    read_length: int = 100,
    insert_mean: float = 250,
    insert_sd: float = 40,
    paired: bool = True,
    library: str = "fr",
    isoforms: dict[str, float] | None = None,
    variants=(),
    error_rate: float = 0.002,
    dup_fraction: float = 0.02,
    secondary_fraction: float = 0.01,
    low_mapq_fraction: float = 0.02,
    qcfail_fraction: float = 0.01,
    supplementary_fraction: float = 0.01,
    softclip_fraction: float = 0.02,
    unmapped_fraction: float = 0.01,
    outside_fraction: float = 0.005,
    mapq255_fraction: float = 0.05,
    xs_tags: bool = True,
    contig_name: str | None = None,
    build: str = "GRCh38",
    sample: str = "S1",
    write_reference: bool = True,
    reference_seed: int | None = None,
) -> SimResult:
    """Simulate one sample into ``out_dir`` (created if needed). See the module docstring.

    ``gene`` None means CD22 of ``build``. ``contig_name`` renames the gene's contig (e.g. "19");
    None keeps it. ``unmapped_fraction`` is the share of molecules with one mate unmapped
    (single-end: the read unmapped). ``reference_seed`` draws the reference sequence from
    another seed than the reads (None: ``seed``), so that samples of different seeds share one
    genome, as reads realigned to one reference must (tests/test_aligners.py).
    """
    if library not in ("fr", "rf", "unstranded"):
        raise ValueError(f"library must be fr, rf or unstranded, not {library!r}")
    if read_length < 40:
        raise ValueError("read_length must be at least 40")
    if low_mapq_fraction + qcfail_fraction + unmapped_fraction > 1:
        raise ValueError("low_mapq, qcfail and unmapped fractions add up to more than 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gene = gene if gene is not None else default_gene(build)
    if contig_name is not None:
        gene = gene.with_contig(contig_name)
    isoforms = dict(isoforms) if isoforms else {"canonical": 1.0}
    total = sum(isoforms.values())
    if total <= 0 or any(f < 0 for f in isoforms.values()):
        raise ValueError(f"isoform fractions must be >= 0 and sum > 0: {isoforms}")
    requested = {name: f / total for name, f in isoforms.items()}

    window, ref = reference_window(gene, seed if reference_seed is None else reference_seed)
    rng = np.random.default_rng([seed, 1])
    checked = _check_variants(gene, ref, window, variants)
    segments = {name: isoform_segments(gene, name) for name in requested}
    opts = {
        "read_length": read_length,
        "insert_mean": insert_mean,
        "insert_sd": insert_sd,
        "paired": paired,
        "library": library,
        "variants": checked,
        "error_rate": error_rate,
        "dup_fraction": dup_fraction,
        "secondary_fraction": secondary_fraction,
        "low_mapq_fraction": low_mapq_fraction,
        "qcfail_fraction": qcfail_fraction,
        "supplementary_fraction": supplementary_fraction,
        "softclip_fraction": softclip_fraction,
        "unmapped_fraction": unmapped_fraction,
        "mapq255_fraction": mapq255_fraction,
        "xs_tags": xs_tags,
        "sample": sample,
    }
    sim = _Simulator(gene, window, ref, rng, opts)

    names = list(requested)
    lengths = [sum(e - s for s, e in segments[n]) for n in names]
    weights = np.array(
        [requested[n] * max(1.0, L - insert_mean + 1) for n, L in zip(names, lengths, strict=True)]
    )
    probabilities = weights / weights.sum()
    applicable = {
        n: tuple(i for i, v in enumerate(checked) if _applicable(v, segments[n])) for n in names
    }
    for index in range(n_fragments):
        name = names[int(rng.choice(len(names), p=probabilities))]
        draws = rng.random(len(checked)) if checked else np.zeros(0)
        applied = tuple(i for i in applicable[name] if draws[i] < checked[i][3])
        units = sim.molecule(name, segments[name], applied)
        insert = round(rng.normal(insert_mean, insert_sd))
        insert = min(max(30, insert), len(units))
        f0 = int(rng.integers(0, len(units) - insert + 1))
        sim.add_fragment(index, f"frag{index:06d}", units, f0, insert, name, applied)
    for index in range(int(rng.binomial(n_fragments, outside_fraction))):
        sim.add_outside_fragment(index)

    records = sorted(sim.records, key=_sort_key)
    for i, r in enumerate(records):
        r.order = i
    bam_path = out_dir / f"{sample}.bam"
    _write_bam(bam_path, _header_text(gene, sample, seed), records)

    reference = None
    if write_reference:
        reference = _write_fasta(
            out_dir / f"{sample}.reference.fa.gz", gene.contig, gene.length_of_contig, window, ref
        )
    truth = {
        "seed": seed,
        "contig": gene.contig,
        "strand": gene.strand,
        "library": library,
        "paired": paired,
        "read_length": read_length,
        "window": window,
    }
    truth.update(_truth(sim, requested, segments))
    return SimResult(
        bam=bam_path, reference=reference, gene=gene, truth=truth, seed=seed, window_sequence=ref
    )


def write_sam_text_bam(
    out_path, header_text: str, lines, *, sort: bool = True, index: bool = True
) -> Path:
    """Build a tiny BAM from hand-written SAM text (fields split by tabs, or by spaces if a line
    has no tab). With ``sort`` the records are stably sorted by (contig, POS) — records at one
    position keep the order given — and the BAM is indexed; without it they are written in the
    order given (e.g. to test the "not sorted" error)."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    def tabbed(line: str) -> str:
        line = line.strip("\n")
        return line if "\t" in line else "\t".join(line.split())

    header_lines = [tabbed(h) for h in header_text.strip("\n").splitlines() if h.strip()]
    if not any(h.startswith("@HD") for h in header_lines):
        header_lines.insert(0, f"@HD\tVN:1.6\tSO:{'coordinate' if sort else 'unsorted'}")
    body = [tabbed(line) for line in lines if line.strip()]
    tmp = out_path.with_name(out_path.name + ".tmp.sam")
    tmp.write_text("\n".join(header_lines + body) + "\n")
    try:
        with pysam.AlignmentFile(str(tmp), "r") as sam:
            header = sam.header
            records = list(sam)
    finally:
        tmp.unlink()
    if sort:
        records.sort(key=lambda r: (r.reference_id < 0, r.reference_id, r.reference_start))
    with pysam.AlignmentFile(str(out_path), "wb", header=header) as out:
        for r in records:
            out.write(r)
    if sort and index:
        pysam.index(str(out_path))
    return out_path


def write_gtf(
    gene: GeneSpec, path: str | os.PathLike[str], *, transcript: str | None = None
) -> Path:
    """Write ``gene`` as a minimal GENCODE-style GTF (gene, transcript, exon, CDS lines).

    Exons are numbered in transcript order; CDS lines cover the coding part of each exon
    (GENCODE style: without the stop codon, which gets its own stop_codon line).
    """
    path = Path(path)
    tid = transcript or f"{gene.name}-T1"
    gid = f"{gene.name}-G"
    attrs = f'gene_id "{gid}"; gene_name "{gene.name}"; transcript_id "{tid}";'
    c, st = gene.contig, gene.strand
    lines = [
        f"{gene.contig}\tsim\tgene\t{gene.start + 1}\t{gene.end}\t.\t{gene.strand}\t.\t"
        f'gene_id "{gid}"; gene_name "{gene.name}";',
        f'{c}\tsim\ttranscript\t{gene.start + 1}\t{gene.end}\t.\t{st}\t.\t{attrs} tag "basic";',
    ]
    n = len(gene.exons)
    order = range(n) if gene.strand == "+" else range(n - 1, -1, -1)
    cds = gene.cds
    if cds is not None:
        # GENCODE CDS lines exclude the stop codon.
        cds_no_stop = (cds[0], cds[1] - 3) if gene.strand == "+" else (cds[0] + 3, cds[1])
        stop = (cds[1] - 3, cds[1]) if gene.strand == "+" else (cds[0], cds[0] + 3)
    for number, gi in enumerate(order, start=1):
        s, e = gene.exons[gi]
        lines.append(
            f"{gene.contig}\tsim\texon\t{s + 1}\t{e}\t.\t{gene.strand}\t.\t{attrs}"
            f" exon_number {number};"
        )
        if cds is not None:
            cs, ce = max(s, cds_no_stop[0]), min(e, cds_no_stop[1])
            if cs < ce:
                lines.append(
                    f"{gene.contig}\tsim\tCDS\t{cs + 1}\t{ce}\t.\t{gene.strand}\t.\t{attrs}"
                    f" exon_number {number};"
                )
    if cds is not None:
        lines.append(f"{c}\tsim\tstop_codon\t{stop[0] + 1}\t{stop[1]}\t.\t{st}\t.\t{attrs}")
    path.write_text("\n".join(lines) + "\n")
    return path


def simulate_panel(
    out_dir,
    *,
    seed: int,
    genes: dict[str, dict],
    sample: str,
    background: int = 20_000,
    build: str = "GRCh38",
    reference_seed: int | None = None,
) -> Path:
    """One sample over several built-in genes (a panel): each gene simulated on its real contig
    with its own ``simulate`` keywords (``genes[gene]``: n_fragments, isoforms, variants, ...),
    merged into ``out_dir/SAMPLE.bam`` (indexed), plus ``background`` unspliced reads 1-3 Mb
    past the first gene on its contig (the rest of the library, so that library sizes match).
    Gene k is drawn with seed ``seed + k`` and reference seed ``reference_seed + k`` (default
    ``seed + k``): give both time points of a patient one ``reference_seed``. No reference
    FASTA is written. Returns the BAM's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for k, (gene, keywords) in enumerate(genes.items()):
        spec = builtin_spec(gene, build)
        ref_seed = (reference_seed if reference_seed is not None else seed) + k
        sim = simulate(out / f"{sample}.{gene}", seed=seed + k, gene=spec, sample=sample,
                       write_reference=False, reference_seed=ref_seed, **keywords)  # fmt: skip
        if k == 0 and background:
            start = spec.end + 1_000_000
            end = min(start + 2_000_000, spec.length_of_contig)
            add_background_reads(sim.bam, background, seed=seed, start=start, end=end)
        parts.append(str(sim.bam))
    bam = out / f"{sample}.bam"
    pysam.merge("-f", "-o", str(bam), *parts, catch_stdout=False)
    pysam.index(str(bam))
    return bam


def add_background_reads(
    bam: str | os.PathLike[str], n_reads: int, *, seed: int, start: int, end: int
) -> Path:
    """Add ``n_reads`` unspliced single-end reads (MAPQ 60, random bases) between ``start`` and
    ``end`` (0-based) on the BAM's first contig, far from the gene, so that the library size
    (mapped records) can be held fixed while the gene's expression changes. Rewrites and
    re-indexes the BAM in place."""
    path = Path(bam)
    rng = np.random.default_rng(seed)
    with pysam.AlignmentFile(str(path)) as src:
        header = src.header
        records = list(src.fetch(until_eof=True))
    read_length = 100
    positions = np.sort(rng.integers(start, end - read_length, size=n_reads))
    letters = np.array(list("ACGT"))
    for i, pos in enumerate(positions):
        a = pysam.AlignedSegment(header)
        a.query_name = f"bg{i:07d}"
        a.flag = 0
        a.reference_id = 0
        a.reference_start = int(pos)
        a.mapping_quality = 60
        a.cigartuples = [(0, read_length)]
        a.query_sequence = "".join(letters[rng.integers(0, 4, size=read_length)])
        a.query_qualities = array("B", [35] * read_length)
        records.append(a)
    records.sort(
        key=lambda r: (r.reference_id if r.reference_id >= 0 else 1 << 30, r.reference_start)
    )
    tmp = path.with_suffix(".tmp.bam")
    with pysam.AlignmentFile(str(tmp), "wb", header=header) as out:
        for r in records:
            out.write(r)
    os.replace(tmp, path)
    pysam.index(str(path))
    return path
