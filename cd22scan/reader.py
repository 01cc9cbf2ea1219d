"""Reading aligned reads with pysam and handing them to the counting core in batches.

One job: open BAM/CRAM/SAM (a path or ``-`` for stdin), select the reads over the gene window
(indexed fetch, or a whole-file stream when there is no index) and pass them to the core in
batches: pysam's decoded htslib records themselves (read by the core without a Python call per
record, counted on a worker thread while pysam decodes the next batch), or SAM text lines as a
fallback. Filtering and counting happen in the core (docs/counting.md).
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pysam

from cd22scan import _core
from cd22scan.errors import InputError

log = logging.getLogger("cd22scan")

BATCH_RECORDS = 20_000
"""Records per batch handed to the core: large enough that the call overhead vanishes."""


@dataclass
class AlignmentSource:
    """An opened alignment file and what its header says."""

    path: str
    handle: pysam.AlignmentFile
    format: str
    contigs: dict[str, int]
    has_index: bool
    sort_order: str | None
    read_group_samples: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> AlignmentSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def display_name(self) -> str:
        return "standard input" if self.path == "-" else self.path

    def default_sample_name(self) -> str:
        """The read group's SM if there is exactly one, else the file stem."""
        samples = sorted(set(self.read_group_samples))
        if len(samples) == 1:
            return samples[0]
        if len(samples) > 1:
            log.warning(
                "%s has read groups of several samples (%s); naming the sample after the file",
                self.display_name,
                ", ".join(samples),
            )
        if self.path == "-":
            return "stdin"
        name = Path(self.path).name
        for suffix in (".bam", ".cram", ".sam", ".sam.gz"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return Path(name).stem


@dataclass
class ReadStats:
    """What the reader saw, before the core's own filters."""

    mode: str  # "indexed" or "stream"
    records_read: int = 0  # records pysam handed over (stream mode: the whole file)
    records_to_core: int = 0
    mapped_records_in_file: int | None = None  # library size: mapped records (idxstats)


def open_alignments(path: str, reference: str | None = None, threads: int = 1) -> AlignmentSource:
    """Open a BAM, CRAM or SAM file (or ``-``), raising InputError with a one-line reason."""
    if path != "-":
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file")
        if os.path.isdir(path):
            raise InputError(f"{path}: is a directory, expected a BAM, CRAM or SAM file")
        if os.path.getsize(path) == 0:
            raise InputError(f"{path}: empty file, expected a BAM, CRAM or SAM file")
    if reference is not None and not os.path.exists(reference):
        raise InputError(f"{reference}: reference FASTA not found")
    try:
        handle = pysam.AlignmentFile(
            path,
            "r",
            reference_filename=reference,
            threads=threads,
            check_sq=False,
        )
    except (OSError, ValueError) as exc:
        where = "standard input" if path == "-" else path
        raise InputError(f"{where}: cannot read as BAM/CRAM/SAM ({exc})") from None
    fmt = handle.format if hasattr(handle, "format") else "?"
    if handle.is_cram and reference is None and not os.environ.get("REF_PATH"):
        handle.close()
        raise InputError(f"{path}: CRAM input needs --reference (the FASTA it was written against)")
    header = handle.header.to_dict()
    contigs = {sq["SN"]: int(sq["LN"]) for sq in header.get("SQ", [])}
    if not contigs:
        handle.close()
        raise InputError(f"{path}: the header has no @SQ lines (no reference sequences)")
    hd = header.get("HD", {})
    sort_order = hd.get("SO")
    samples = [rg["SM"] for rg in header.get("RG", []) if "SM" in rg]
    has_index = False
    if path != "-":
        try:
            has_index = handle.has_index()
        except (OSError, ValueError, AttributeError):
            has_index = False
        if not has_index:
            # pysam looks for NAME.bai and NAME.bam.bai/.crai only when asked.
            has_index = _try_index(handle, path)
    return AlignmentSource(
        path=path,
        handle=handle,
        format=str(fmt),
        contigs=contigs,
        has_index=has_index,
        sort_order=sort_order,
        read_group_samples=samples,
    )


def _try_index(handle: pysam.AlignmentFile, path: str) -> bool:
    try:
        return bool(handle.check_index())
    except (OSError, ValueError, AttributeError):
        return False


def library_size(source: AlignmentSource) -> int | None:
    """Mapped records in the file from the index (what `samtools idxstats` reports)."""
    if not source.has_index:
        return None
    try:
        return int(sum(s.mapped for s in source.handle.get_index_statistics()))
    except (OSError, ValueError, AttributeError):
        return None


HANDOVERS = ("auto", "segments", "text")
"""How records reach the core: ``segments`` hands pysam's htslib records over directly (counted
on a worker thread while pysam decodes the next batch), ``text`` as SAM lines; ``auto`` uses
``segments`` when this pysam's record layout checks out on the first record (see
``_core.segment_layout_matches``), else ``text``. ``CD22SCAN_HANDOVER`` overrides the default."""


def feed_window(
    source: AlignmentSource,
    counter: _core.GeneCounter,
    contig: str,
    start0: int,
    end0: int,
    *,
    stream: bool = False,
    batch_records: int = BATCH_RECORDS,
    on_batch: Callable[[int], None] | None = None,
    handover: str | None = None,
) -> ReadStats:
    """Hand every record over [start0, end0) of ``contig`` to the counter.

    Indexed files are fetched by region; otherwise (or with ``stream``) the whole file is read
    and only records on the window are passed on, counting mapped records for the library size.
    ``on_batch(n)`` is called after each batch of ``n`` records the reader took from the file.
    """
    if source.sort_order not in (None, "coordinate", "unknown"):
        raise InputError(
            f"{source.display_name}: not coordinate-sorted (header SO:{source.sort_order}); "
            "sort it first: samtools sort -o sorted.bam input.bam"
        )
    handover = handover or os.environ.get("CD22SCAN_HANDOVER") or "auto"
    if handover not in HANDOVERS:
        raise ValueError(f"handover must be one of {', '.join(HANDOVERS)}, not {handover!r}")
    use_index = source.has_index and not stream
    stats = ReadStats(mode="indexed" if use_index else "stream")
    try:
        if use_index:
            records = source.handle.fetch(contig, start0, end0)
        else:
            records = source.handle.fetch(until_eof=True)
        first = next(records, None)
        if first is None:
            if not use_index:
                stats.mapped_records_in_file = 0
            return stats
        records = itertools.chain((first,), records)
        direct = handover != "text" and _core.segment_layout_matches(first)
        if handover == "segments" and not direct:
            raise InputError(
                f"{source.display_name}: this pysam's records cannot be handed over directly; "
                "use the SAM text hand-over (CD22SCAN_HANDOVER=text)"
            )
        if direct:
            tid = source.handle.get_tid(contig)
            _feed_segments(
                records, counter, tid, not use_index, source, stats, batch_records, on_batch
            )
        else:
            log.debug("handing records to the core as SAM text")
            _feed_text(
                records,
                counter,
                contig,
                start0,
                end0,
                use_index,
                source,
                stats,
                batch_records,
                on_batch,
            )
    except OSError as exc:
        raise InputError(f"{source.display_name}: read error ({exc})") from None
    return stats


def _feed_segments(
    records: Iterator[pysam.AlignedSegment],
    counter: _core.GeneCounter,
    tid: int,
    whole_file: bool,
    source: AlignmentSource,
    stats: ReadStats,
    batch_records: int,
    on_batch: Callable[[int], None] | None,
) -> None:
    """Batches of pysam segments; the core counts one batch while pysam reads the next."""
    mapped = 0
    sent = 0
    n = 0
    pending: Future[tuple[int, int]] | None = None
    pending_size = 0

    def collect() -> None:
        nonlocal mapped, sent, pending
        if pending is None:
            return
        try:
            batch_mapped, batch_sent = pending.result()
        except _core.CoreError as exc:
            raise InputError(f"{source.display_name}: {exc}") from None
        finally:
            pending = None
        mapped += batch_mapped
        sent += batch_sent
        if on_batch is not None:
            on_batch(pending_size)

    # Batches keep tens of thousands of new segments alive: with the cyclic garbage collector on,
    # every 700 allocations would traverse them all (17 % of the reader's time in a profile).
    # Segments hold no reference cycles, so collection is paused while reading.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cd22scan-core") as pool:
        try:
            batch: list[pysam.AlignedSegment] = []
            add = batch.append
            for read in records:
                add(read)
                n += 1
                if n % batch_records == 0:
                    collect()
                    pending = pool.submit(counter.add_segments, batch, tid, only_window=whole_file)
                    pending_size = len(batch)
                    batch = []
                    add = batch.append
            collect()
            if batch:
                pending = pool.submit(counter.add_segments, batch, tid, only_window=whole_file)
                pending_size = len(batch)
                collect()
        finally:
            if pending is not None:
                pending.cancel()
                # A batch still being counted finishes before the pool shuts down.
            if gc_was_enabled:
                gc.enable()
    stats.records_read = n
    stats.records_to_core = sent
    if whole_file:
        stats.mapped_records_in_file = mapped


def _feed_text(
    records: Iterator[pysam.AlignedSegment],
    counter: _core.GeneCounter,
    contig: str,
    start0: int,
    end0: int,
    use_index: bool,
    source: AlignmentSource,
    stats: ReadStats,
    batch_records: int,
    on_batch: Callable[[int], None] | None,
) -> None:
    """Batches of SAM text lines (the fallback hand-over)."""
    lines: list[str] = []
    add = lines.append
    if use_index:
        n = 0
        for read in records:
            add(read.to_string())
            n += 1
            if n % batch_records == 0:
                _flush(counter, lines, source, on_batch, len(lines))
        stats.records_read = n
        stats.records_to_core = n
        _flush(counter, lines, source, on_batch, len(lines))
    else:
        tid = source.handle.get_tid(contig)
        n = 0
        mapped = 0
        sent = 0
        reported = 0
        for read in records:
            n += 1
            if not read.flag & 4:
                mapped += 1
            if read.reference_id != tid or read.reference_start >= end0:
                continue
            rend = read.reference_end
            if rend is not None and rend <= start0:
                continue
            add(read.to_string())
            sent += 1
            if sent % batch_records == 0:
                _flush(counter, lines, source, on_batch, n - reported)
                reported = n
        stats.records_read = n
        stats.records_to_core = sent
        stats.mapped_records_in_file = mapped
        _flush(counter, lines, source, on_batch, n - reported)


def _flush(
    counter: _core.GeneCounter,
    lines: list[str],
    source: AlignmentSource,
    on_batch: Callable[[int], None] | None,
    records_read: int,
) -> None:
    """Count the lines; ``records_read`` is what the reader took from the file for them."""
    if on_batch is not None and records_read and not lines:
        on_batch(records_read)
    if not lines:
        return
    try:
        counter.add_sam("\n".join(lines).encode())
    except _core.CoreError as exc:
        raise InputError(f"{source.display_name}: {exc}") from None
    if on_batch is not None:
        on_batch(records_read)
    lines.clear()
