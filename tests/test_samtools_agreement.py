"""Per-position counts equal `samtools mpileup` under the same filters (simulated and real reads).

Two comparisons, each exact:
* mate-overlap removal off (`mpileup -x`, core ``dedup_overlaps=False``), every base letter,
  deletion and insertion count by strand, with the base-quality filter off (-Q 0) and on (-Q 13,
  letters only: samtools hides a whole pileup entry, deletion included, by its neighbour's quality);
* overlap removal on (both defaults), every base letter by strand at -Q 13 and -Q 0 — the
  quality adjustment of overlapping mates decides what survives, so this checks htslib's rule.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pysam
import pytest
from core_helpers import core_count
from realdata_helpers import ABI1 as REALDATA
from realdata_helpers import abi1_bams
from samtools_pileup import mpileup_counts, needs_samtools
from simulator import simulate, small_gene

from cd22scan import _core
from cd22scan.target.annotation import load_gtf

LETTER_KEYS = [k for k in _core.BASE_COUNT_KEYS if not k.startswith("del")]


def _core_positions(result, window_start: int, keys) -> dict[int, Counter]:
    out: dict[int, Counter] = {}
    arrays = {k: np.asarray(result.base_counts[k]) for k in keys}
    n = len(next(iter(arrays.values())))
    for i in range(n):
        c = Counter({k: int(arrays[k][i]) for k in keys if arrays[k][i]})
        if c:
            out[window_start + i + 1] = c
    return out


def _samtools_positions(
    positions: dict[int, Counter], keys, lo: int, hi: int
) -> dict[int, Counter]:
    out = {}
    for pos, c in positions.items():
        if not lo < pos <= hi:
            continue
        kept = Counter({k: v for k, v in c.items() if k in keys and v})
        if kept:
            out[pos] = kept
    return out


def _core_insertions(result) -> dict[tuple[int, str, str], int]:
    out = {}
    for anchor0, allele, fwd, rev in result.insertions:
        if fwd:
            out[(anchor0 + 1, allele, "fwd")] = fwd
        if rev:
            out[(anchor0 + 1, allele, "rev")] = rev
    return out


def _mate_disagreements(bam: str, min_mapq: int) -> set[int]:
    """1-based positions just after a place where two overlapping mates disagree in structure
    (one has an aligned base where the other has a deletion or a reference skip).

    htslib 1.16 treats those places differently from its own later versions and from our
    documented rule (docs/counting.md: such positions are left unadjusted); its loop also
    skips the next aligned base. Positions up to 2 bases after a disagreement are therefore
    not compared in overlap-removal mode on real reads.
    """
    by_name: dict[str, list] = {}
    with pysam.AlignmentFile(bam) as handle:
        for read in handle.fetch(until_eof=True):
            if read.flag & 0x704 or read.mapping_quality < min_mapq or not read.flag & 0x2:
                continue
            by_name.setdefault(read.query_name, []).append(read)
    out: set[int] = set()
    for reads in by_name.values():
        if len(reads) != 2:
            continue
        a, b = reads
        lo = max(a.reference_start, b.reference_start)
        hi = min(a.reference_end, b.reference_end)
        if lo >= hi:
            continue
        pa = {p for p in a.get_reference_positions() if lo <= p < hi}
        pb = {p for p in b.get_reference_positions() if lo <= p < hi}
        for p in pa ^ pb:
            out.update({p + 1, p + 2, p + 3})
    return out


def _compare(
    bam, contig, w0, w1, exons, *, dedup, min_baseq, min_mapq=20, with_indels, skip=frozenset()
):
    result = core_count(
        bam, contig, w0, w1, exons, min_mapq=min_mapq, min_baseq=min_baseq, dedup_overlaps=dedup
    )
    keys = list(_core.BASE_COUNT_KEYS) if with_indels else LETTER_KEYS
    positions, insertions = mpileup_counts(
        bam,
        f"{contig}:{w0 + 1}-{w1}",
        min_mapq=min_mapq,
        min_baseq=min_baseq,
        overlap_removal=dedup,
    )
    ours = _core_positions(result, w0, keys)
    theirs = _samtools_positions(positions, keys, w0, w1)
    diff = sorted(p for p in set(ours) | set(theirs) if ours.get(p) != theirs.get(p))
    explained = [p for p in diff if p in skip]
    diff = [p for p in diff if p not in skip]
    assert len(explained) <= 0.001 * (w1 - w0), (
        f"{len(explained)} positions differ near mate disagreements"
    )
    assert not diff, (
        f"{len(diff)} positions differ, first {diff[0]}: "
        f"cd22scan={dict(ours.get(diff[0], {}))} samtools={dict(theirs.get(diff[0], {}))}"
    )
    assert sum(sum(c.values()) for c in ours.values()) > 0
    if with_indels:
        theirs_ins = {k: v for k, v in insertions.items() if w0 < k[0] <= w1}
        assert _core_insertions(result) == theirs_ins


SIM_SETTINGS = [
    pytest.param(False, 0, True, id="no-overlap-removal-Q0-all"),
    pytest.param(False, 13, False, id="no-overlap-removal-Q13-letters"),
    pytest.param(True, 13, False, id="overlap-removal-Q13-letters"),
    pytest.param(True, 0, False, id="overlap-removal-Q0-letters"),
]


@needs_samtools
@pytest.mark.parametrize(("dedup", "min_baseq", "with_indels"), SIM_SETTINGS)
@pytest.mark.parametrize("strand", ["+", "-"])
def test_simulated_counts_equal_samtools(tmp_path, strand, dedup, min_baseq, with_indels):
    sim = simulate(
        tmp_path,
        seed=31 if strand == "+" else 32,
        gene=small_gene(strand),
        n_fragments=1500,
        insert_mean=170,
        insert_sd=60,
        isoforms={"canonical": 0.7, "skip:2": 0.2, "retain:3": 0.1},
        variants=[("snv", 2010, None, 0.3), ("del", 2850, 3, 0.3), ("ins", 3250, "GC", 0.3)],
        error_rate=0.01,
    )
    gene = sim.gene
    w0, w1 = gene.window(300)
    _compare(
        str(sim.bam),
        gene.contig,
        w0,
        w1,
        list(gene.exons),
        dedup=dedup,
        min_baseq=min_baseq,
        with_indels=with_indels,
    )


def _realdata_bams() -> list[str]:
    return [str(p) for p in abi1_bams()]


needs_realdata = pytest.mark.usefixtures("realdata")  # fails in CI when ../shared is missing


@needs_samtools
@needs_realdata
@pytest.mark.parametrize(("dedup", "min_baseq", "with_indels"), SIM_SETTINGS[:3])
@pytest.mark.parametrize("bam", _realdata_bams(), ids=lambda p: Path(p).name.split(".")[0])
def test_real_encode_counts_equal_samtools(bam, dedup, min_baseq, with_indels):
    model = load_gtf(str(REALDATA / "annotation.gtf"), "ABI1")
    # The BAMs hold chr10:27,035,000-27,050,000 only: count over that stretch.
    w0, w1 = 27_035_000, 27_050_000
    exons = [(max(s, w0), min(e, w1)) for s, e in model.core_exons() if e > w0 and s < w1]
    skip = _mate_disagreements(bam, 20) if dedup else frozenset()
    _compare(
        bam,
        "chr10",
        w0,
        w1,
        exons,
        dedup=dedup,
        min_baseq=min_baseq,
        with_indels=with_indels,
        skip=skip,
    )
