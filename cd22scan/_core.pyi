"""Types of the compiled counting core (rust_ext/, built by maturin as ``cd22scan._core``).

The core counts; it does no I/O. Semantics of every number: docs/counting.md.
Coordinates are 0-based, half-open.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import final

import numpy as np
import numpy.typing as npt
import pysam

__version__: str

class CoreError(ValueError):
    """Raised for input the core refuses (malformed SAM record, unsorted records, bad window)."""

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
    def add_segments(
        self, segments: list[pysam.AlignedSegment], tid: int, *, only_window: bool = False
    ) -> tuple[int, int]:
        """Count a batch of pysam ``AlignedSegment``s read from one file; ``tid`` is the counted
        contig's reference id in that file's header. With ``only_window``, segments that cannot
        overlap the window are passed over (for whole-file streams). Returns (segments without
        FLAG 0x4, segments counted). Needs ``segment_layout_matches`` to have accepted a segment
        of this type first (``TypeError`` otherwise, or for any other object in the list)."""
    def segment_sink(
        self,
        tid: int,
        *,
        only_window: bool = False,
        batch_records: int = 4096,
        on_batch: Callable[[int], object] | None = None,
    ) -> SegmentSink:
        """A sink that takes pysam segments one at a time (copying each record at once) and
        counts them on a worker thread in batches of ``batch_records``; this counter is lent to
        it (other calls raise ``CoreError``) until ``SegmentSink.close()``. ``tid`` and
        ``only_window`` as for ``add_segments``; ``on_batch(n)`` is called once per batch with
        the segments pushed since its last call."""
    def finish(self) -> CountResult:
        """Flush reads still waiting for a mate and return the counts. Call once."""

@final
class SegmentSink:
    @property
    def pushed(self) -> int:
        """Segments pushed so far."""
    def push(self, segment: pysam.AlignedSegment) -> None:
        """Copy one segment's record into the current batch (``TypeError`` for anything that is
        not a verified pysam ``AlignedSegment``)."""
    @property
    def last_name(self) -> str | None:
        """QNAME of the last record pushed (``None`` if none)."""
    def push_all(self, segments: Iterable[pysam.AlignedSegment], *, htslib: bool = False) -> None:
        """``push`` every segment of ``segments``, iterating it in the core (no Python loop per
        record). With ``htslib``, a pysam region iterator that passed
        ``iterator_layout_matches`` is advanced by the core itself (pysam's own htslib call,
        no Python object per record). A read error comes out as pysam's ``OSError``, any other
        exception of the iterator unchanged; ``last_name`` then names the last record pushed."""
    def close(self) -> tuple[int, int, int]:
        """Count what is left, stop the worker and give the counter back. Returns (segments
        pushed, of which without FLAG 0x4, segments counted). Raises the first ``CoreError``
        of counting. A sink dropped without ``close`` leaves its counter unusable."""

def set_htslib_functions(hts_itr_next: int, hts_get_bgzfp: int) -> None:
    """Where pysam's htslib functions ``hts_itr_next`` and ``hts_get_bgzfp`` are (addresses
    that ``ctypes`` finds in ``pysam.libchtslib``), for ``SegmentSink.push_all(htslib=True)``."""

def iterator_layout_matches(iterator: object, segment: object) -> bool:
    """Whether the core can advance ``iterator`` itself: a pysam region iterator (from
    ``AlignmentFile.fetch(contig, start, stop)``) whose object layout checks out and whose
    current record equals ``segment``, the verified segment pysam just returned from it.
    Remembers the type for ``SegmentSink.push_all(htslib=True)``."""

def segment_layout_matches(segment: object) -> bool:
    """Whether ``segment`` is a pysam ``AlignedSegment`` whose htslib record the core can read
    directly (pysam's object layout as expected, and the fields read that way equal pysam's
    own accessors). Remembers the type for ``GeneCounter.add_segments``."""
