"""Real reads: 12 ENCODE RNA-seq BAMs over ABI1 (a - strand gene from a GTF, hg19).

The scan through the whole package (reader, core, tables) must give the same exon, junction and
intron counts as the independent reference counter, and the junction counts must equal a plain
count of `N` operations by fragment written here from pysam's CIGAR tuples.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pysam
import pytest
from realdata_helpers import ABI1 as REALDATA
from realdata_helpers import abi1_bams
from reference_counter import reference_count

from cd22scan import scan

pytestmark = [
    pytest.mark.usefixtures("realdata"),  # fails in CI when ../shared is missing
    pytest.mark.slow,  # 1-5 s per BAM
]


def _junctions_by_fragment(bam: Path, min_mapq: int = 20, min_anchor: int = 8) -> dict:
    """(start 1-based, end 1-based) -> fragments with a read spanning it with both anchors ok."""
    per_fragment: dict[str, set] = defaultdict(set)
    with pysam.AlignmentFile(str(bam)) as handle:
        for read in handle.fetch(until_eof=True):
            if read.flag & (0x4 | 0x100 | 0x200 | 0x400 | 0x800) or read.mapping_quality < min_mapq:
                continue
            ops = read.cigartuples or []
            pos = read.reference_start
            segments = [0]  # aligned (M/=/X) bases per N-separated segment
            introns = []
            for op, length in ops:
                if op in (0, 7, 8):
                    segments[-1] += length
                    pos += length
                elif op == 2:
                    pos += length
                elif op == 3:
                    introns.append((pos + 1, pos + length))
                    segments.append(0)
                    pos += length
            for i, intron in enumerate(introns):
                if min(segments[i], segments[i + 1]) >= min_anchor:
                    per_fragment[read.query_name].add(intron)
    counts: dict = defaultdict(int)
    for introns in per_fragment.values():
        for intron in introns:
            counts[intron] += 1
    return dict(counts)


@pytest.mark.parametrize("bam", abi1_bams(), ids=lambda p: p.name.split(".")[0])
def test_real_bam_scan_matches_reference_and_plain_junction_count(bam):
    result = scan(str(bam), gtf=str(REALDATA / "annotation.gtf"), gene="ABI1")
    model = result.model
    assert model.strand == "-" and result.summary["build"] == "GRCh37"
    assert result.summary["read_mode"] == "indexed"
    w = result.summary["window"]
    ref = reference_count(str(bam), model.contig, w["start"] - 1, w["end"], model.core_exons())
    # Exons: the table is in transcript order; the reference in genomic order.
    by_start = dict(zip([e.start for e in model.genomic_exons()], ref.exon_fragments, strict=True))
    for row in result.exons.iter_rows(named=True):
        assert row["fragments"] == by_start[row["start"]], row
    assert sum(result.exons["fragments"]) > 1000
    # Junctions: the table merges orientation/XS keys into strands; totals per intron must agree.
    table = defaultdict(int)
    for row in result.junctions.iter_rows(named=True):
        table[(row["start"], row["end"])] += row["reads"]
    ref_junctions = defaultdict(int)
    for start0, end0, _o, _xs, frags, _anchor in ref.junctions:
        ref_junctions[(start0 + 1, end0)] += frags
    assert dict(table) == dict(ref_junctions)
    assert dict(table) == _junctions_by_fragment(bam)
    annotated = result.junctions.filter(result.junctions["annotated"])
    assert annotated.height >= 3 and (annotated["strand"] == "-").all()
    introns = sorted(result.introns.iter_rows(named=True), key=lambda r: r["start"])
    assert [(r["left_boundary"], r["right_boundary"], r["inside"]) for r in introns] == [
        tuple(c) for c in ref.intron_counts
    ]
    assert result.summary["reads"]["used"] == ref.filters["used"]
