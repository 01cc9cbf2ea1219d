"""The two ways records reach the core count alike: the BAM stream pysam writes into the core's
pipe (``AlignmentFile.write``, the fast path) and SAM text lines (the simple reference path).

Every count, what the reader reports (records, mapped records, progress) and every read error
must be identical, on simulated and real BAMs, CRAM, stdin and whole-file streams.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import signal
import threading
from pathlib import Path

import pysam
import pytest
from core_helpers import assert_same_counts, core_count
from realdata_helpers import abi1_bams as _realdata_bams
from simulator import simulate, small_gene

from cd22scan import _core
from cd22scan.errors import InputError
from cd22scan.sample import reader
from cd22scan.sample.reader import feed_window, open_alignments


def _sim(tmp_path, *, seed=11, **kw):
    return simulate(
        tmp_path,
        seed=seed,
        gene=small_gene(kw.pop("strand", "+")),
        n_fragments=kw.pop("n_fragments", 700),
        isoforms={"canonical": 0.6, "skip:3": 0.25, "retain:2": 0.15},
        variants=[("snv", 2000, None, 0.3), ("del", 2830, 2, 0.4), ("ins", 3200, "TTA", 0.3)],
        error_rate=0.01,
        dup_fraction=0.05,
        secondary_fraction=0.05,
        supplementary_fraction=0.05,
        unmapped_fraction=0.05,
        outside_fraction=0.05,
        **kw,
    )


@pytest.mark.parametrize("dedup", [True, False])
@pytest.mark.parametrize("strand", ["+", "-"])
def test_bam_stream_and_text_count_alike_on_simulated_reads(tmp_path, strand, dedup):
    sim = _sim(tmp_path, strand=strand)
    gene = sim.gene
    window = gene.window(300)
    args = (str(sim.bam), gene.contig, window[0], window[1], list(gene.exons))
    text = core_count(*args, handover="text", dedup_overlaps=dedup)
    by_bam = core_count(*args, handover="bam", batch=313, dedup_overlaps=dedup)
    assert text.filters["used"] > 600
    assert any(j[3] for j in text.junctions), "the simulator writes XS:A tags"
    for key in ("secondary", "duplicate", "unmapped", "off_target", "used_supplementary"):
        assert text.filters[key] > 0, f"the simulated BAM should exercise {key}"
    assert_same_counts(by_bam, text)


@pytest.mark.usefixtures("realdata")  # fails in CI when ../shared is missing
@pytest.mark.parametrize("bam", _realdata_bams(), ids=lambda p: p.name.split(".")[0])
def test_bam_stream_and_text_count_alike_on_real_reads(bam):
    with pysam.AlignmentFile(str(bam)) as handle:
        contig = handle.get_reference_name(next(handle.fetch(until_eof=True)).reference_id)
        starts = [r.reference_start for r in handle.fetch(contig)]
    window = (min(starts), max(starts) + 1000)
    exons = [
        (window[0] + k, window[0] + k + 150) for k in range(0, window[1] - window[0] - 150, 3000)
    ]
    args = (str(bam), contig, window[0], window[1], exons)
    text = core_count(*args, handover="text")
    by_bam = core_count(*args, handover="bam", batch=2000)
    assert text.filters["used"] > 1000
    assert len(text.junctions) > 5
    assert_same_counts(by_bam, text)


def _feed(sim, handover, *, stream=False, batch_records=97, path=None, reference=None):
    gene = sim.gene
    window = gene.window(300)
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    batches: list[int] = []
    with open_alignments(str(path or sim.bam), reference=reference) as source:
        stats = feed_window(
            source,
            counter,
            gene.contig,
            window[0],
            window[1],
            stream=stream,
            batch_records=batch_records,
            on_batch=batches.append,
            handover=handover,
        )
    return stats, counter.finish(), batches


def _assert_same_feed(by_bam, by_text):
    bam_stats, bam_counts, bam_batches = by_bam
    text_stats, text_counts, text_batches = by_text
    assert bam_stats.handover == "bam"
    assert text_stats.handover == "text"
    assert dataclasses.replace(bam_stats, handover="text") == text_stats
    assert sum(bam_batches) == sum(text_batches) == text_stats.records_read
    assert_same_counts(bam_counts, text_counts)


@pytest.mark.parametrize("stream", [False, True])
def test_reader_reports_the_same_for_every_hand_over(tmp_path, stream):
    sim = _sim(tmp_path, n_fragments=400)
    by_bam, by_text = _feed(sim, "bam", stream=stream), _feed(sim, "text", stream=stream)
    _assert_same_feed(by_bam, by_text)
    stats = by_text[0]
    assert stats.mode == ("stream" if stream else "indexed")
    if stream:
        with pysam.AlignmentFile(str(sim.bam)) as handle:
            mapped = sum(1 for r in handle.fetch(until_eof=True) if not r.is_unmapped)
        assert stats.mapped_records_in_file == mapped
        assert stats.records_to_core < stats.records_read


@pytest.mark.parametrize("batch_records", [1, 2, 97, 100_000])
def test_bam_hand_over_counts_like_text_whatever_the_batch(tmp_path, batch_records):
    sim = _sim(tmp_path, seed=5, strand="-")
    by_bam = _feed(sim, "bam", batch_records=batch_records)
    assert by_bam[0].records_read > 1000
    _assert_same_feed(by_bam, _feed(sim, "text", batch_records=batch_records))


def test_bam_hand_over_counts_like_text_on_cram_and_stdin(tmp_path):
    sim = _sim(tmp_path, n_fragments=400)
    cram = tmp_path / "x.cram"
    pysam.view("-C", "-T", str(sim.reference), "-o", str(cram), str(sim.bam), catch_stdout=False)
    pysam.index(str(cram))
    ref = str(sim.reference)
    for stream in (False, True):
        _assert_same_feed(
            _feed(sim, "bam", path=cram, reference=ref, stream=stream),
            _feed(sim, "text", path=cram, reference=ref, stream=stream),
        )
    results = {}
    saved = os.dup(0)
    try:
        for handover in ("bam", "text"):
            with open(sim.bam, "rb") as handle:
                os.dup2(handle.fileno(), 0)
            results[handover] = _feed(sim, handover, path="-")
    finally:
        os.dup2(saved, 0)
        os.close(saved)
    assert results["bam"][0].mode == "stream"
    _assert_same_feed(results["bam"], results["text"])


def test_auto_hand_over_is_the_bam_stream_with_this_pysam(tmp_path, caplog):
    """The installed pysam takes the fast path, with no warning; there is no silent fallback."""
    sim = _sim(tmp_path, n_fragments=100)
    with caplog.at_level(logging.DEBUG, logger="cd22scan"):
        assert _feed(sim, "auto")[0].handover == "bam"
        assert _feed(sim, "auto", stream=True)[0].handover == "bam"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_text_hand_over_is_announced_as_the_slower_path(tmp_path, caplog):
    sim = _sim(tmp_path, n_fragments=50)
    with caplog.at_level(logging.WARNING, logger="cd22scan"):
        _feed(sim, "text")
    assert any("SAM text" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_unknown_hand_over_is_refused(tmp_path):
    sim = _sim(tmp_path, n_fragments=50)
    for old in ("htslib", "segments"):
        with pytest.raises(ValueError, match="handover must be one of auto, bam, text"):
            _feed(sim, old)


@pytest.mark.slow
def test_read_error_is_the_same_through_every_hand_over(tmp_path):
    """A BAM damaged inside the window: pysam's own error, at the same record, after the same
    read, whichever way records reach the core."""
    sim = _sim(tmp_path, n_fragments=3000)
    data = sim.bam.read_bytes()
    # BGZF blocks: "BC" extra field at byte 12 of each block header gives its size.
    offsets, at = [], 0
    while at < len(data):
        offsets.append(at)
        at += int.from_bytes(data[at + 16 : at + 18], "little") + 1
    damaged = bytearray(data)
    middle = offsets[len(offsets) // 2]
    for k in range(middle + 40, middle + 80):
        damaged[k] ^= 0xFF
    bam = tmp_path / "damaged.bam"
    bam.write_bytes(bytes(damaged))
    Path(f"{bam}.bai").write_bytes(Path(f"{sim.bam}.bai").read_bytes())
    for stream in (False, True):
        messages = {}
        for handover in ("bam", "text"):
            with pytest.raises(InputError) as caught:
                _feed(sim, handover, path=bam, stream=stream)
            messages[handover] = str(caught.value)
        assert "read error at record" in messages["bam"]
        assert "(the one after read '" in messages["bam"]
        assert messages["bam"] == messages["text"]


def _reads(tmp_path, n_fragments=300):
    sim = _sim(tmp_path, n_fragments=n_fragments)
    gene = sim.gene
    window = gene.window(300)
    with pysam.AlignmentFile(str(sim.bam)) as handle:
        reads = list(handle.fetch(until_eof=True))
        tid = handle.get_tid(gene.contig)
        header = handle.header
    return gene, window, reads, tid, header


def _write(sink, header, reads):
    with pysam.AlignmentFile(sink.fileno(), "wbu", header=header) as out:
        for read in reads:
            out.write(read)


@pytest.mark.parametrize("only_window", [False, True])
def test_sink_counts_like_text_and_reports_what_it_read(tmp_path, only_window):
    gene, window, reads, tid, header = _reads(tmp_path)
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    sink = counter.bam_sink(tid, only_window=only_window, batch_records=37)
    _write(sink, header, reads)
    on_window = [
        r
        for r in reads
        if r.reference_id == tid
        and r.reference_start < window[1]
        and (r.reference_end is None or r.reference_end > window[0])
    ]
    mapped = sum(1 for r in reads if not r.is_unmapped)
    sent = len(on_window) if only_window else len(reads)
    assert sink.close() == (len(reads), mapped, sent)
    assert sink.records == len(reads)
    assert sink.last_name == reads[-1].query_name
    text = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    text.add_sam("\n".join(r.to_string() for r in (on_window if only_window else reads)).encode())
    assert_same_counts(counter.finish(), text.finish())


def test_counter_is_lent_to_an_open_sink_and_back_after_close(tmp_path):
    gene, window, reads, tid, header = _reads(tmp_path, 50)
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    sink = counter.bam_sink(tid)
    with pytest.raises(_core.CoreError, match="being fed by a BamSink"):
        counter.add_sam(b"")
    _write(sink, header, reads[:1])
    sink.close()
    with pytest.raises(_core.CoreError, match="finished"):
        sink.fileno()
    with pytest.raises(_core.CoreError, match="finished"):
        sink.close()
    assert counter.finish().filters["records"] == 1


def test_sink_closed_with_nothing_written_counts_nothing(tmp_path):
    gene, window, _, tid, _ = _reads(tmp_path, 20)
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    sink = counter.bam_sink(tid)
    assert sink.close() == (0, 0, 0)
    assert counter.finish().filters["records"] == 0


def test_sink_dropped_without_close_keeps_the_counter_lent(tmp_path):
    gene, window, reads, tid, header = _reads(tmp_path, 50)
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    sink = counter.bam_sink(tid)
    _write(sink, header, reads)
    del sink
    with pytest.raises(_core.CoreError, match="being fed by a BamSink"):
        counter.finish()


def test_sink_reports_a_counting_error_at_close(tmp_path):
    gene, window, reads, tid, header = _reads(tmp_path, 50)
    mapped = [r for r in reads if not r.is_unmapped and r.reference_id == tid]
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    sink = counter.bam_sink(tid, batch_records=1)
    # Positions go backwards: the counter refuses the second record.
    _write(sink, header, [mapped[-1], *mapped[:5]])
    with pytest.raises(_core.CoreError, match=r"record 2 .*not sorted"):
        sink.close()
    assert sink.records == 6  # the stream was still read to its end


@pytest.mark.parametrize(
    ("garbage", "message"),
    [
        (b"plain text, not BGZF" * 10, "not a BGZF block"),
        (
            bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000") + b"x" * 9,
            "unexpected end of file",
        ),
    ],
)
def test_sink_refuses_a_stream_that_is_not_uncompressed_bam(tmp_path, garbage, message):
    gene, window, _, tid, _ = _reads(tmp_path, 20)
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    sink = counter.bam_sink(tid)
    os.write(sink.fileno(), garbage)
    # pysam writes the stream in the product: a stream that is not uncompressed BAM is a bug.
    with pytest.raises(_core.CoreBug, match=message):
        sink.close()


def test_sink_refuses_compressed_bam(tmp_path):
    gene, window, reads, tid, header = _reads(tmp_path, 20)
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    sink = counter.bam_sink(tid)
    with pysam.AlignmentFile(sink.fileno(), "wb", header=header) as out:
        for read in reads:
            out.write(read)
    with pytest.raises(_core.CoreBug, match="compressed BGZF block where uncompressed"):
        sink.close()


def test_bam_hand_over_lets_ctrl_c_through(tmp_path):
    """pysam's iterator and write run no Python bytecode; the reader returns to Python between
    chunks, so Ctrl-C stops it, and the sink closes without waiting forever."""
    sim = _sim(tmp_path, n_fragments=50)
    gene = sim.gene
    window = gene.window(300)
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    with open_alignments(str(sim.bam)) as source:
        tid = source.handle.get_tid(gene.contig)
        first = next(r for r in source.handle.fetch(gene.contig) if not r.is_unmapped)
        endless = itertools.repeat(first, 10**9)  # a C iterator: no bytecode between items
        stats = reader.ReadStats(mode="indexed")
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                reader._feed_bam(endless, counter, tid, False, source, stats, 512, None)
        finally:
            timer.cancel()
    # The sink was closed: the counter came back from it (whatever it says of the records).
    try:
        counter.finish()
    except _core.CoreError as exc:
        assert "BamSink" not in str(exc)
