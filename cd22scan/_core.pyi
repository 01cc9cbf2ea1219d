"""Types of the compiled counting core (rust_ext/, built by maturin as ``cd22scan._core``).

The core counts; it does no I/O. Semantics of every number: docs/counting.md.
Coordinates are 0-based, half-open.
"""

from collections.abc import Sequence
from typing import final

import numpy as np
import numpy.typing as npt

__version__: str

class CoreError(ValueError):
    """Raised for input the core refuses (malformed SAM record, unsorted records, bad window)."""

class CoreBug(RuntimeError):
    """Raised for a bug in the core (a caught panic, a broken internal invariant), never for
    input. Not a ``CoreError``: callers that turn ``CoreError`` into "bad input" let it through."""

BASE_COUNT_KEYS: tuple[str, ...]
"""Keys of ``CountResult.base_counts`` in order: A_fwd, A_rev, C_fwd, C_rev, G_fwd, G_rev,
T_fwd, T_rev, N_fwd, N_rev, del_fwd, del_rev."""

FILTER_KEYS: tuple[str, ...]
"""Keys of ``CountResult.filters`` in order: records, unmapped, secondary, qcfail, duplicate,
other_flags, low_mapq, off_target, used, used_supplementary."""

@final
class CountResult:
    filters: dict[str, int]
    """Records received and how many each filter removed (first failing filter wins)."""
    base_counts: dict[str, npt.NDArray[np.uint32]]
    """Per-position counts over the window (length window_end - window_start)."""
    insertions: list[tuple[int, str, int, int]]
    """(anchor_pos0, inserted_bases, forward, reverse), sorted by (anchor_pos0, inserted_bases)."""
    deletions: list[tuple[int, int, int, int]]
    """(anchor_pos0, length, forward, reverse), sorted by (anchor_pos0, length)."""
    exon_fragments: list[int]
    """Fragments with an aligned base in each exon, in the order the exons were given."""
    junctions: list[tuple[int, int, int, int, int, int]]
    """(intron_start0, intron_end0, orientation, xs, fragments, max_anchor), sorted."""
    intron_counts: list[tuple[int, int, int]]
    """(left_boundary, right_boundary, inside) fragments per annotated intron, genomic order."""
    strand_evidence: tuple[int, int]
    """Fragments touching an exon with orientation 0 and 1 (see docs/counting.md)."""
    gene_fragments: int
    """Fragments with an aligned base in at least one exon."""
    fragments: int
    """Fragments formed from primary used records (anywhere in the window)."""

@final
class GeneCounter:
    def __new__(
        cls,
        contig: str,
        window_start: int,
        window_end: int,
        exons: Sequence[tuple[int, int]],
        *,
        min_mapq: int = 20,
        min_baseq: int = 13,
        min_anchor: int = 8,
        exclude_flags: int = 0x704,
        dedup_overlaps: bool = True,
        mate_suffix: str = "",
    ) -> GeneCounter:
        """``mate_suffix``: ``""`` (mates share their QNAME), ``"/1,/2"`` or ``".1,.2"`` (first
        and last segments end in these; mates pair by the name without them)."""
    def add_sam(self, records: bytes) -> None:
        """Count a batch of SAM records: complete lines, newline-separated, no header lines."""
    def bam_sink(self, tid: int, *, only_window: bool = False, batch_records: int = 512) -> BamSink:
        """A sink for an uncompressed BAM stream that pysam writes into a pipe
        (``pysam.AlignmentFile(sink.fileno(), "wbu", header=...)``); the core reads and counts
        the records on its own threads in batches of ``batch_records``, and this counter is
        lent to it (other calls raise ``CoreError``) until ``BamSink.close()``. ``tid`` is the
        counted contig's reference id in the stream's header; with ``only_window``, records
        that cannot overlap the window are passed over (for whole-file streams)."""
    def finish(self) -> CountResult:
        """Flush reads still waiting for a mate and return the counts. Call once."""

@final
class BamSink:
    def fileno(self) -> int:
        """The pipe's write end (the sink owns it and closes it in ``close``; pysam duplicates
        it). ``CoreError`` after ``close``."""
    @property
    def records(self) -> int:
        """Records read from the stream (after ``close``)."""
    @property
    def last_name(self) -> str | None:
        """QNAME of the last record read from the stream (after ``close``; ``None`` if none)."""
    def close(self) -> tuple[int, int, int]:
        """Close the write end (every other writer, pysam's duplicate, must be closed first),
        count what is left, stop the threads and give the counter back. Returns (records, of
        which without FLAG 0x4, records counted). Raises ``CoreBug`` for a stream that is not
        uncompressed BAM (pysam writes it: a bug, not bad input) and ``CoreError`` for the first
        error of counting. A sink dropped without ``close`` keeps its counter."""
