"""Run the compiled core on a BAM directly (no reader, no tables) and compare results."""

from __future__ import annotations

import numpy as np
import pysam

from cd22scan import _core


def core_count(
    bam_path: str,
    contig: str,
    window_start: int,
    window_end: int,
    exons: list[tuple[int, int]],
    *,
    batch: int = 1000,
    handover: str = "bam",
    **params: object,
) -> _core.CountResult:
    """Every record of the file, in file order, in batches of ``batch`` records handed over as
    an uncompressed BAM stream pysam writes into the core's pipe (what the reader does) or as SAM
    text lines (its simple reference path)."""
    counter = _core.GeneCounter(contig, window_start, window_end, exons, **params)
    if handover == "bam":
        return _count_bam(counter, bam_path, contig, batch)
    assert handover == "text", handover
    lines: list[str] = []
    with pysam.AlignmentFile(bam_path) as bam:
        for read in bam.fetch(until_eof=True):
            lines.append(read.to_string())
            if len(lines) == batch:
                counter.add_sam("\n".join(lines).encode())
                lines.clear()
    if lines:
        counter.add_sam("\n".join(lines).encode())
    return counter.finish()


def _count_bam(
    counter: _core.GeneCounter, bam_path: str, contig: str, batch: int
) -> _core.CountResult:
    with pysam.AlignmentFile(bam_path) as bam:
        sink = counter.bam_sink(bam.get_tid(contig), batch_records=batch)
        with pysam.AlignmentFile(sink.fileno(), "wbu", header=bam.header) as out:
            for read in bam.fetch(until_eof=True):
                out.write(read)
        sink.close()
    return counter.finish()


FIELDS = (
    "filters",
    "insertions",
    "deletions",
    "exon_fragments",
    "junctions",
    "intron_counts",
    "strand_evidence",
    "gene_fragments",
    "fragments",
)


def assert_same_counts(core: object, ref: object) -> None:
    """Field-by-field equality, with the first differing position named on failure."""
    for name in FIELDS:
        got, want = _get(core, name), _get(ref, name)
        if isinstance(got, tuple | list):
            got, want = list(got), list(want)
        assert got == want, f"{name} differs:\ncore={_short(got)}\nref ={_short(want)}"
    core_bases, ref_bases = _get(core, "base_counts"), _get(ref, "base_counts")
    assert set(core_bases) == set(ref_bases)
    for key in _core.BASE_COUNT_KEYS:
        a = np.asarray(core_bases[key], dtype=np.int64)
        b = np.asarray(ref_bases[key], dtype=np.int64)
        assert a.shape == b.shape, f"{key}: shape {a.shape} != {b.shape}"
        diff = np.nonzero(a != b)[0]
        assert diff.size == 0, (
            f"{key} differs at window offsets {diff[:10].tolist()}: "
            f"core={a[diff[:10]].tolist()} ref={b[diff[:10]].tolist()}"
        )


def _get(obj: object, name: str) -> object:
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) < 600 else text[:600] + "..."
