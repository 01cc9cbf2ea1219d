"""The Python shape of ``_core.CountResult`` fields is what ``_core.pyi`` documents (the Rust side
holds named structs; the tuples are built at the boundary)."""

from __future__ import annotations

from cd22scan import _core

QUAL = "I" * 20
SEQ = "ACGTACGTACGTACGTACGT"


def test_junction_tuples_are_start_end_orientation_xs_fragments_max_anchor():
    # Window [100, 200), exons [110, 130) [150, 170); each read spans the intron [130, 150)
    # with 10 bases on each side. r1: forward, XS:A:- (orientation 0, xs 2); r2: reverse,
    # no XS (orientation 1, xs 0).
    counter = _core.GeneCounter("chr22", 100, 200, [(110, 130), (150, 170)])
    lines = [
        f"r1\t0\tchr22\t121\t60\t10M20N10M\t*\t0\t0\t{SEQ}\t{QUAL}\tXS:A:-",
        f"r2\t16\tchr22\t122\t60\t9M20N11M\t*\t0\t0\t{SEQ}\t{QUAL}",
    ]
    counter.add_sam("\n".join(lines).encode())
    result = counter.finish()
    assert result.junctions == [(130, 150, 0, 2, 1, 10), (130, 150, 1, 0, 1, 9)]
    assert result.intron_counts == [(0, 0, 0)]


def test_indel_tuples_are_anchor_event_forward_reverse():
    # r3 forward: 5M2I13M from 0-based 100, inserts SEQ[5:7] = "CG" after anchor 104.
    # r4 reverse: 5M3D15M from 0-based 100, deletes [105, 108) after anchor 104.
    counter = _core.GeneCounter("chr22", 100, 200, [(110, 130), (150, 170)])
    lines = [
        f"r3\t0\tchr22\t101\t60\t5M2I13M\t*\t0\t0\t{SEQ}\t{QUAL}",
        f"r4\t16\tchr22\t101\t60\t5M3D15M\t*\t0\t0\t{SEQ}\t{QUAL}",
    ]
    counter.add_sam("\n".join(lines).encode())
    result = counter.finish()
    assert result.insertions == [(104, "CG", 1, 0)]
    assert result.deletions == [(104, 3, 0, 1)]
