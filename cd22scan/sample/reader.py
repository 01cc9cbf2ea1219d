"""Reading aligned reads with pysam and handing them to the counting core in batches.

One job: open BAM/CRAM/SAM (a path or ``-`` for stdin), select the reads over the gene window
(indexed fetch, or a whole-file stream when there is no index) and pass them to the core in
batches: pysam writes the records as an uncompressed BAM stream into a pipe that the core reads
and counts on its own threads while pysam decodes the next records (docs/reader.md), or, as
the simple reference path, SAM text lines. Filtering and counting happen in the core
(docs/counting.md).
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import hashlib
import itertools
import logging
import operator
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pysam

from cd22scan import _core
from cd22scan.errors import AnnotationError, InputError
from cd22scan.target.contigs import resolve_contig

log = logging.getLogger("cd22scan")

TEXT_BATCH_RECORDS = 4096
"""SAM lines per batch of the text hand-over: large enough that the per-call cost vanishes."""

BAM_BATCH_RECORDS = 512
"""Records per batch of the BAM hand-over, as the core's threads pass them on (~150 kB): small
enough that a batch is still in the shared cache when the counting thread reads it, and that
the core waits little for the first batch and pysam little for the last."""

WRITE_CHUNK_RECORDS = 4096
"""Records pysam writes between two returns to Python bytecode (for Ctrl-C and progress)."""


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
    tids: dict[str, int] = field(default_factory=dict)  # contig -> first target id
    md5: dict[str, str] = field(default_factory=dict)  # contig -> @SQ M5 (first @SQ line)
    duplicate_contigs: list[str] = field(default_factory=list)  # names listed twice in @SQ
    header_problems: list[str] = field(default_factory=list)  # malformed lines, one line each

    def tid(self, contig: str) -> int:
        """The target id of ``contig`` from htslib's target arrays (the first of duplicates).

        pysam's ``get_tid`` parses the header text, which fails on a malformed line; the target
        arrays do not depend on the text.
        """
        return self.tids.get(contig, -1)

    def refuse_ambiguous(self, contig: str) -> None:
        """Refuse a contig that two @SQ lines name: its records cannot be told apart."""
        if contig in self.duplicate_contigs:
            raise InputError(
                f"{self.display_name}: the header lists @SQ SN:{contig} more than once, so its "
                "records cannot be told apart (htslib refuses such a header too); fix the header "
                "(samtools reheader) and give the file again"
            )

    def close(self) -> None:
        # After a read error htslib also fails to close the file; the read error is the one
        # that was reported, and nothing is lost by a reader failing to close.
        with contextlib.suppress(OSError):
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
    handover: str = ""  # how records reached the core: "bam" or "text"
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
        with htslib_quiet():
            handle = pysam.AlignmentFile(
                path,
                "r",
                reference_filename=reference,
                threads=threads,
                check_sq=False,
            )
    except (OSError, ValueError) as exc:
        where = "standard input" if path == "-" else path
        problem = _sam_header_problem(path) if path != "-" else None
        if problem is not None:
            raise InputError(
                f"{where}: {problem}; htslib (and samtools) cannot read SAM text with such a "
                "header: fix that line, or convert with a tool that skips it"
            ) from None
        raise InputError(f"{where}: {_open_problem(str(exc))}") from None
    fmt = handle.format if hasattr(handle, "format") else "?"
    if handle.is_cram and reference is None and not os.environ.get("REF_PATH"):
        handle.close()
        raise InputError(f"{path}: CRAM input needs --reference (the FASTA it was written against)")
    header = parse_header_text(str(handle.header))
    contigs: dict[str, int] = {}
    tids: dict[str, int] = {}
    duplicates: list[str] = []
    # Names and lengths from htslib's target arrays (the binary header of a BAM/CRAM), which
    # htslib reads whatever the header text holds; the first of duplicated names wins.
    for tid, (name, length) in enumerate(zip(handle.references, handle.lengths, strict=True)):
        if name in contigs:
            if name not in duplicates:
                duplicates.append(name)
            continue
        contigs[name] = int(length)
        tids[name] = tid
    if not contigs:
        handle.close()
        raise InputError(f"{path}: the header has no @SQ lines (no reference sequences)")
    where = "standard input" if path == "-" else path
    for problem in header.problems:
        log.warning("%s: %s; ignored (the reads are read as samtools reads them)", where, problem)
    if duplicates:
        log.warning(
            "%s: the header lists %s more than once (@SQ SN); the first entry is used, and a "
            "gene on such a contig is refused",
            where,
            ", ".join(duplicates),
        )
    sort_order = header.sort_order
    samples = header.read_group_samples
    has_index = False
    if path != "-":
        try:
            has_index = handle.has_index()
        except (OSError, ValueError, AttributeError):
            has_index = False
        if not has_index:
            # pysam looks for NAME.bai and NAME.bam.bai/.crai only when asked.
            has_index = _try_index(handle, path)
        if has_index:
            _warn_if_index_older(path)
    return AlignmentSource(
        path=path,
        handle=handle,
        format=str(fmt),
        contigs=contigs,
        has_index=has_index,
        sort_order=sort_order,
        read_group_samples=samples,
        tids=tids,
        md5=header.md5,
        duplicate_contigs=duplicates,
        header_problems=header.problems,
    )


@dataclass
class HeaderText:
    """What cd22scan takes from the header text, and the lines it could not parse."""

    sort_order: str | None = None
    read_group_samples: list[str] = field(default_factory=list)
    md5: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def parse_header_text(text: str) -> HeaderText:
    """Read @HD SO, @RG SM and @SQ M5 from header text line by line, tolerating bad fields.

    pysam's ``header.to_dict()`` raises on the first malformed field (a STAR ``@PG`` line ending
    in a tab has an empty one); here a field without ``TAG:`` is skipped and reported in
    ``problems`` (one line each, 1-based header line numbers), and the rest is used.
    """
    out = HeaderText()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith("@") or line.startswith("@CO"):
            continue
        kind, *fields = line.split("\t")
        tags: dict[str, str] = {}
        for index, value in enumerate(fields, start=2):
            if len(value) >= 3 and value[2] == ":":
                tags.setdefault(value[:2], value[3:])
                continue
            what = "is empty (a trailing tab?)" if value == "" else f"is {value[:40]!r}"
            out.problems.append(
                f"header line {number} ({kind}) field {index} {what}, not TAG:VALUE"
            )
        if kind == "@HD" and out.sort_order is None:
            out.sort_order = tags.get("SO")
        elif kind == "@RG" and "SM" in tags:
            out.read_group_samples.append(tags["SM"])
        elif kind == "@SQ" and "SN" in tags and "M5" in tags:
            out.md5.setdefault(tags["SN"], tags["M5"])
    return out


def _try_index(handle: pysam.AlignmentFile, path: str) -> bool:
    try:
        with htslib_quiet():
            return bool(handle.check_index())
    except (OSError, ValueError, AttributeError):
        return False


@contextlib.contextmanager
def htslib_quiet() -> Iterator[None]:
    """Silence htslib's own stderr lines ("[E::bgzf_read] ...") unless debugging (-v).

    Every problem reaches the user as one cd22scan line instead (the README's promise); htslib
    speaks again with ``-v``. htslib's verbosity is process-wide, so the old level is restored.
    """
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    previous = pysam.set_verbosity(0)
    try:
        yield
    finally:
        pysam.set_verbosity(previous)


def _sam_header_problem(path: str) -> str | None:
    """The first malformed or duplicated header line of a SAM text file (plain or gzip), if any.

    htslib refuses to open SAM text whose header does not parse, without saying which line.
    """
    lines: list[str] = []
    try:
        opener = gzip.open if _is_gzip(path) else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as text:
            for line in text:
                if not line.startswith("@"):
                    break
                lines.append(line.rstrip("\n").rstrip("\r"))
                if len(lines) > 1_000_000:
                    break
    except (OSError, EOFError, UnicodeError):
        return None
    header = parse_header_text("\n".join(lines))
    if header.problems:
        return header.problems[0]
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if line.startswith("@SQ\t"):
            names = [f[3:] for f in line.split("\t")[1:] if f.startswith("SN:")]
            for name in names:
                if name in seen:
                    return f"header line {number} lists @SQ SN:{name} a second time"
                seen.add(name)
    return None


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as raw:
        return raw.read(2) == b"\x1f\x8b"


def _open_problem(message: str) -> str:
    """What pysam's reason for refusing a file means to the user."""
    if "EOF marker" in message:
        return (
            "no BGZF end-of-file marker: the file is truncated (an unfinished copy or write; "
            "samtools quickcheck confirms it); copy or create it again"
        )
    return f"cannot read as BAM/CRAM/SAM ({message})"


INDEX_SUFFIXES = (".bai", ".csi", ".crai")


def index_candidates(path: str) -> list[Path]:
    """Index files htslib would look at for ``path``: NAME.bai/.csi/.crai and STEM.bai/.crai."""
    file = Path(path)
    found = [file.with_name(file.name + s) for s in INDEX_SUFFIXES]
    if file.suffix in (".bam", ".cram"):
        found += [file.with_suffix(s) for s in INDEX_SUFFIXES]
    return [p for p in found if p.is_file()]


def _warn_if_index_older(path: str) -> None:
    """One line when the index predates the file, as htslib warns (its own line is silenced).

    A warning, not an error: copying a BAM and its index in the wrong order gives the same
    mtimes, and the index is usually right. Reads the window with the index as htslib does.
    """
    data_mtime = os.path.getmtime(path)
    for index in index_candidates(path):
        if index.stat().st_mtime < data_mtime:
            log.warning(
                "%s is older than %s: if the file was rewritten after indexing, reads "
                "may be missed; re-index (samtools index %s) or pass --stream",
                index,
                path,
                path,
            )
            return


def check_reference(source: AlignmentSource, reference: str, contig: str) -> None:
    """Refuse a reference FASTA that is not the one the file was aligned/compressed against.

    Checks the gene's contig: present in the FASTA, same length as in the header and, when the
    header has an ``M5`` tag (CRAM always does), the same MD5. A wrong FASTA makes a CRAM
    undecodable and every reference base of a BAM wrong.
    """
    try:
        fasta = pysam.FastaFile(reference)
    except (OSError, ValueError) as exc:
        raise InputError(f"{reference}: cannot open reference FASTA ({exc})") from None
    with fasta:
        lengths = dict(zip(fasta.references, fasta.lengths, strict=True))
        name = contig
        if name not in lengths and source.format != "CRAM":
            # Reference bases of a BAM/SAM may come from a FASTA naming chr19 as 19.
            with contextlib.suppress(AnnotationError):
                name = resolve_contig(lengths, contig).name
        if name not in lengths:
            what = "to decode the reads" if source.format == "CRAM" else "for reference bases"
            shown = ", ".join(list(lengths)[:8]) or "none"
            raise InputError(
                f"{source.display_name}: reference {reference} has no contig {contig!r}, needed "
                f"{what} (it has {shown})"
            )
        header_length = source.contigs.get(contig)
        if header_length is not None and lengths[name] != header_length:
            raise InputError(
                f"{source.display_name}: reference {reference} has {name} of "
                f"{lengths[name]} bp, the header says {header_length} bp: another FASTA"
            )
        expected = _header_md5(source, contig)
        if expected is None:
            return
        digest = hashlib.md5()
        for start in range(0, lengths[name], MD5_CHUNK):
            digest.update(fasta.fetch(name, start, start + MD5_CHUNK).upper().encode())
        found = digest.hexdigest()
    if found != expected.lower():
        raise InputError(
            f"{source.display_name}: reference {reference} does not match the header: {contig} "
            f"has MD5 {found}, @SQ M5 says {expected} (give the FASTA the file was written with)"
        )


MD5_CHUNK = 1 << 20
"""Bases read at a time when checking a contig's MD5 (chr19 is 58 Mb)."""


def _header_md5(source: AlignmentSource, contig: str) -> str | None:
    return source.md5.get(contig)


MATE_SUFFIXES = {"/1,/2": "/", ".1,.2": "."}
"""Mate-name conventions the core can strip (label -> separator before the mate's digit)."""

MATE_SUFFIX_SAMPLE = 5000
"""Records read to detect the mate-name convention: enough that several mates meet."""


@dataclass
class ReadSurvey:
    """What the first records of the window (or file) say about how the reads were sequenced."""

    sampled: int = 0  # primary records looked at
    paired: int = 0  # of those, FLAG 0x1
    mate_suffix: str | None = None  # "/1,/2", ".1,.2" or None (mates share their QNAME)

    @property
    def layout(self) -> str | None:
        """ "paired", "single", "mixed" (both kinds of records), or None (no records)."""
        if not self.sampled:
            return None
        if self.paired == self.sampled:
            return "paired"
        return "single" if self.paired == 0 else "mixed"


def survey_reads(
    source: AlignmentSource, contig: str, start0: int, end0: int, reference: str | None = None
) -> ReadSurvey:
    """Paired/single primary records and the mate-name convention among the first
    MATE_SUFFIX_SAMPLE records of the window (indexed) or of the file (through a second handle,
    so the scan itself reads the file as before). Standard input cannot be read twice: an empty
    survey.

    A mate-name convention (``"/1,/2"`` or ``".1,.2"``) is taken only when every paired primary
    first segment ends in ``/1`` (``.1``), every last segment in ``/2`` (``.2``), at least one
    pair of stems meets, and no name is shared as is by a first and a last segment: a file from
    ``fastq-dump`` without ``--readids`` names both mates ``SRR1.1``, ``SRR1.2``, ... (one name
    per spot), and must keep pairing by the full name.
    """
    survey = ReadSurvey()
    if source.path == "-":
        return survey
    firsts: set[str] = set()
    lasts: set[str] = set()
    try:
        with (
            htslib_quiet(),
            pysam.AlignmentFile(
                source.path, "r", reference_filename=reference, check_sq=False
            ) as handle,
        ):
            if source.has_index:
                records = handle.fetch(tid=source.tid(contig), start=start0, stop=end0)
            else:
                records = handle.fetch(until_eof=True)
            for read in itertools.islice(records, MATE_SUFFIX_SAMPLE):
                flag = read.flag
                if flag & 0x904:  # unmapped, secondary, supplementary
                    continue
                survey.sampled += 1
                if not flag & 0x1:
                    continue
                survey.paired += 1
                segment = flag & 0xC0
                if segment == 0x40:
                    firsts.add(read.query_name)
                elif segment == 0x80:
                    lasts.add(read.query_name)
    except (OSError, ValueError):
        return ReadSurvey()  # the scan reports what is wrong with the file
    survey.mate_suffix = _mate_suffix_of(firsts, lasts)
    return survey


def _mate_suffix_of(firsts: set[str], lasts: set[str]) -> str | None:
    if not firsts or not lasts or firsts & lasts:
        return None
    for label, separator in MATE_SUFFIXES.items():
        one, two = separator + "1", separator + "2"
        if all(n.endswith(one) and len(n) > 2 for n in firsts) and all(
            n.endswith(two) and len(n) > 2 for n in lasts
        ):
            stems_first = {n[:-2] for n in firsts}
            if stems_first & {n[:-2] for n in lasts}:
                return label
    return None


def library_size(source: AlignmentSource) -> int | None:
    """Mapped records in the file from the index (what `samtools idxstats` reports)."""
    if not source.has_index:
        return None
    try:
        return int(sum(s.mapped for s in source.handle.get_index_statistics()))
    except (OSError, ValueError, AttributeError):
        return None


HANDOVERS = ("auto", "bam", "text")
"""How records reach the core. ``bam`` (what ``auto`` means): pysam writes the records with
its documented ``AlignmentFile.write`` as uncompressed BAM into a pipe (``_core.BamSink``) that
the core reads and counts on its own threads. ``text``: SAM lines (``AlignedSegment.to_string``)
in batches, the simple path the tests compare the fast one with. ``CD22SCAN_HANDOVER``
overrides the default."""


def feed_window(
    source: AlignmentSource,
    counter: _core.GeneCounter,
    contig: str,
    start0: int,
    end0: int,
    *,
    stream: bool = False,
    batch_records: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    handover: str | None = None,
) -> ReadStats:
    """Hand every record over [start0, end0) of ``contig`` to the counter.

    Indexed files are fetched by region; otherwise (or with ``stream``) the whole file is read
    and only records on the window are passed on, counting mapped records for the library size.
    ``on_batch(n)`` is called after each batch of ``n`` records the reader took from the file.
    ``batch_records`` defaults to the hand-over's own batch size.
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
            records = source.handle.fetch(tid=source.tid(contig), start=start0, stop=end0)
        else:
            records = source.handle.fetch(until_eof=True)
        try:
            first = next(records, None)
        except OSError as exc:
            raise _ReadFailure(0, None, exc) from None
        if first is None:
            if not use_index:
                stats.mapped_records_in_file = 0
            return stats
        if handover == "text":
            log.warning(
                "%s: records go to the core as SAM text (CD22SCAN_HANDOVER=text), the simple "
                "reference path, several times slower than the default BAM stream",
                source.display_name,
            )
            stats.handover = "text"
            _feed_text(
                itertools.chain((first,), records),
                counter,
                contig,
                start0,
                end0,
                use_index,
                source,
                stats,
                batch_records or TEXT_BATCH_RECORDS,
                on_batch,
            )
        else:
            stats.handover = "bam"
            _feed_bam(
                itertools.chain((first,), records),
                counter,
                source.tid(contig),
                not use_index,
                source,
                stats,
                batch_records or BAM_BATCH_RECORDS,
                on_batch,
            )
    except _ReadFailure as failure:
        raise failure.input_error(source) from None
    except OSError as exc:
        raise InputError(f"{source.display_name}: read error ({exc})") from None
    return stats


@dataclass(frozen=True)
class Window:
    """One gene's counter and window for ``feed_windows``."""

    counter: _core.GeneCounter
    contig: str
    start0: int
    end0: int


def feed_windows(
    source: AlignmentSource,
    windows: list[Window],
    *,
    on_batch: Callable[[int], None] | None = None,
) -> list[ReadStats]:
    """Read the whole file ONCE (stream mode) and hand each gene's counter the records it needs.

    The first window's counter gets every record, as ``feed_window`` in stream mode gives it
    (so it counts the file's mapped records for the library size, shared by all genes); each
    other counter gets only the records of its own contig, which a coordinate-sorted file holds
    in one run (``itertools.groupby`` on ``reference_id``: C-level, no Python per record). A
    record is serialised once per counter that gets it, so the cost is one decompression of the
    file plus the reads of the genes' contigs, not the file once per gene.
    """
    if not windows:
        return []
    if source.sort_order not in (None, "coordinate", "unknown"):
        raise InputError(
            f"{source.display_name}: not coordinate-sorted (header SO:{source.sort_order}); "
            "sort it first: samtools sort -o sorted.bam input.bam"
        )
    tids = [source.tid(w.contig) for w in windows]
    sinks = [
        w.counter.bam_sink(tid, only_window=True, batch_records=BAM_BATCH_RECORDS)
        for w, tid in zip(windows, tids, strict=True)
    ]
    stats = [ReadStats(mode="stream") for _ in windows]
    for one in stats:
        one.handover = "bam"
    failure: OSError | None = None
    try:
        with contextlib.ExitStack() as stack:
            outs = [
                stack.enter_context(
                    pysam.AlignmentFile(sink.fileno(), "wbu", header=source.handle.header)
                )
                for sink in sinks
            ]
            by_tid: dict[int, list[Callable[..., object]]] = {}
            for out, tid in zip(outs[1:], tids[1:], strict=True):
                by_tid.setdefault(tid, []).append(out.write)
            first_write = outs[0].write
            consume = collections.deque[object](maxlen=0).extend
            records = source.handle.fetch(until_eof=True)
            for tid, group in itertools.groupby(records, key=operator.attrgetter("reference_id")):
                others = by_tid.get(tid, ())
                while True:
                    # successive slices of one group, each taking the next records
                    chunk = list(itertools.islice(group, WRITE_CHUNK_RECORDS))  # noqa: B031
                    if not chunk:
                        break
                    consume(map(first_write, chunk))
                    for write in others:
                        consume(map(write, chunk))
                    # Back in Python between chunks: Ctrl-C is handled here.
                    if on_batch is not None:
                        on_batch(len(chunk))
    except OSError as exc:
        failure = exc
    except BaseException:
        for sink in sinks:
            _close_quietly(sink)
        raise
    closed = []
    for index, sink in enumerate(sinks):
        try:
            closed.append(sink.close())
        except (_core.CoreError, _core.CoreBug) as exc:
            for rest in sinks[index + 1 :]:
                _close_quietly(rest)
            if failure is not None:
                raise _ReadFailure(sink.records, sink.last_name, failure).input_error(
                    source
                ) from None
            if isinstance(exc, _core.CoreBug):
                raise
            raise InputError(f"{source.display_name}: {exc}") from None
    if failure is not None:
        raise _ReadFailure(closed[0][0], sinks[0].last_name, failure).input_error(source)
    file_read, file_mapped, _ = closed[0]
    for one, (_, _, sent) in zip(stats, closed, strict=True):
        one.records_read = file_read
        one.records_to_core = sent
        one.mapped_records_in_file = file_mapped
    return stats


class _ReadFailure(Exception):
    """pysam failed on the record after ``records_read`` good ones (``last_name``: the last good
    one's name)."""

    def __init__(self, records_read: int, last_name: str | None, error: OSError):
        super().__init__(str(error))
        self.records_read = records_read
        self.last_name = last_name
        self.error = error

    def input_error(self, source: AlignmentSource) -> InputError:
        if source.format == "SAM":
            header_lines = len(str(source.handle.header).splitlines())
            where = f"line {header_lines + self.records_read + 1} does not parse"
        else:
            where = f"record {self.records_read + 1}"
            if self.last_name is not None:
                where += f" (the one after read '{self.last_name}')"
        return InputError(f"{source.display_name}: read error at {where} ({self.error})")


def _feed_bam(
    records: Iterator[pysam.AlignedSegment],
    counter: _core.GeneCounter,
    tid: int,
    whole_file: bool,
    source: AlignmentSource,
    stats: ReadStats,
    batch_records: int,
    on_batch: Callable[[int], None] | None,
) -> None:
    """pysam writes every record as uncompressed BAM into the core's pipe (``AlignmentFile.write``,
    one C-level call per record: ``map`` consumed by ``collections.deque``, no Python bytecode
    per record); the core reads, filters and counts them on its threads (docs/reader.md)."""
    sink = counter.bam_sink(tid, only_window=whole_file, batch_records=batch_records)
    failure: OSError | None = None
    try:
        # pysam duplicates the descriptor; the sink closes its own in close().
        with pysam.AlignmentFile(sink.fileno(), "wbu", header=source.handle.header) as out:
            consume = collections.deque[object](maxlen=0).extend
            write = out.write
            while True:
                # `zip` draws from `written` only after a record was written: it counts them.
                written = itertools.count()
                chunk = map(write, itertools.islice(records, WRITE_CHUNK_RECORDS))
                consume(zip(chunk, written, strict=False))
                # Back in Python between chunks: Ctrl-C is handled here.
                n = next(written)
                if n and on_batch is not None:
                    on_batch(n)
                if n < WRITE_CHUNK_RECORDS:
                    break
    except OSError as exc:
        failure = exc
    except BaseException:
        _close_quietly(sink)
        raise
    try:
        read, mapped, sent = sink.close()
    except (_core.CoreError, _core.CoreBug) as exc:
        if failure is not None:
            # Reading failed mid-record: the stream is cut short; the read error is the news.
            raise _ReadFailure(sink.records, sink.last_name, failure) from None
        if isinstance(exc, _core.CoreBug):
            raise
        raise InputError(f"{source.display_name}: {exc}") from None
    if failure is not None:
        raise _ReadFailure(read, sink.last_name, failure) from None
    stats.records_read = read
    stats.records_to_core = sent
    if whole_file:
        stats.mapped_records_in_file = mapped


def _close_quietly(sink: _core.BamSink) -> None:
    """Close a sink after another error: that error is the one to report."""
    with contextlib.suppress(_core.CoreError, _core.CoreBug):
        sink.close()


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
    n = 0
    read = None
    if use_index:
        try:
            for read in records:
                add(read.to_string())
                n += 1
                if n % batch_records == 0:
                    _flush(counter, lines, source, on_batch, len(lines))
        except OSError as exc:
            raise _ReadFailure(n, read.query_name if read is not None else None, exc) from None
        stats.records_read = n
        stats.records_to_core = n
        _flush(counter, lines, source, on_batch, len(lines))
    else:
        tid = source.tid(contig)
        mapped = 0
        sent = 0
        reported = 0
        try:
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
        except OSError as exc:
            # `n` already counts the record whose successor failed.
            raise _ReadFailure(n, read.query_name if read is not None else None, exc) from None
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
