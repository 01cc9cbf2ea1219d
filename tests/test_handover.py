"""The ways records reach the core (pysam's region iterator advanced by the core, pysam segments
read directly, SAM text) count alike.

The htslib hand-over makes pysam's own ``hts_itr_next`` call on pysam's iterator and copies its
record (rust_ext/src/python/region.rs); the segment hand-over reads htslib's record behind each
pysam ``AlignedSegment`` (segments.rs); the SAM text hand-over is the independent fallback.
Every count, what the reader reports (records, mapped records) and every read error must be
identical.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
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
from cd22scan.reader import _htslib_functions_known, feed_window, open_alignments


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
def test_segments_and_text_count_alike_on_simulated_reads(tmp_path, strand, dedup):
    sim = _sim(tmp_path, strand=strand)
    gene = sim.gene
    window = gene.window(300)
    args = (str(sim.bam), gene.contig, window[0], window[1], list(gene.exons))
    text = core_count(*args, handover="text", dedup_overlaps=dedup)
    segments = core_count(*args, handover="segments", batch=313, dedup_overlaps=dedup)
    assert text.filters["used"] > 600
    assert any(j[3] for j in text.junctions), "the simulator writes XS:A tags"
    for key in ("secondary", "duplicate", "unmapped", "off_target", "used_supplementary"):
        assert text.filters[key] > 0, f"the simulated BAM should exercise {key}"
    assert_same_counts(segments, text)


@pytest.mark.usefixtures("realdata")  # fails in CI when ../shared is missing
@pytest.mark.parametrize("bam", _realdata_bams(), ids=lambda p: p.name.split(".")[0])
def test_segments_and_text_count_alike_on_real_reads(bam):
    with pysam.AlignmentFile(str(bam)) as handle:
        contig = handle.get_reference_name(next(handle.fetch(until_eof=True)).reference_id)
        starts = [r.reference_start for r in handle.fetch(contig)]
    window = (min(starts), max(starts) + 1000)
    exons = [
        (window[0] + k, window[0] + k + 150) for k in range(0, window[1] - window[0] - 150, 3000)
    ]
    args = (str(bam), contig, window[0], window[1], exons)
    text = core_count(*args, handover="text")
    segments = core_count(*args, handover="segments", batch=2000)
    assert text.filters["used"] > 1000
    assert len(text.junctions) > 5
    assert_same_counts(segments, text)


def _feed(sim, handover, *, stream=False, batch_records=97, path=None):
    gene = sim.gene
    window = gene.window(300)
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    batches: list[int] = []
    with open_alignments(str(path or sim.bam)) as source:
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


@pytest.mark.parametrize("stream", [False, True])
def test_reader_reports_the_same_for_every_hand_over(tmp_path, stream):
    sim = _sim(tmp_path, n_fragments=400)
    results = {h: _feed(sim, h, stream=stream) for h in ("htslib", "segments", "text")}
    txt_stats, txt_counts, txt_batches = results["text"]
    assert txt_stats.mode == ("stream" if stream else "indexed")
    assert txt_stats.handover == "text"
    # `htslib` drives indexed fetches; a whole-file stream goes through pysam's segments.
    assert results["htslib"][0].handover == ("segments" if stream else "htslib")
    assert results["segments"][0].handover == "segments"
    for handover in ("htslib", "segments"):
        stats, counts, batches = results[handover]
        assert dataclasses.replace(stats, handover="text") == txt_stats, handover
        assert batches == txt_batches or sum(batches) == sum(txt_batches), handover
        assert_same_counts(counts, txt_counts)
    if stream:
        with pysam.AlignmentFile(str(sim.bam)) as handle:
            mapped = sum(1 for r in handle.fetch(until_eof=True) if not r.is_unmapped)
        assert txt_stats.mapped_records_in_file == mapped
        assert txt_stats.records_to_core < txt_stats.records_read
    assert sum(txt_batches) == txt_stats.records_read


@pytest.mark.parametrize("batch_records", [1, 2, 97, 100_000])
def test_htslib_hand_over_counts_like_segments_whatever_the_batch(tmp_path, batch_records):
    sim = _sim(tmp_path, seed=5, strand="-")
    by_htslib = _feed(sim, "htslib", batch_records=batch_records)
    by_segments = _feed(sim, "segments", batch_records=batch_records)
    assert by_htslib[0].handover == "htslib"
    assert by_htslib[0].records_read == by_segments[0].records_read > 1000
    assert by_htslib[2] == by_segments[2]  # the same progress reports
    assert_same_counts(by_htslib[1], by_segments[1])


def test_auto_hand_over_drives_indexed_fetches_in_the_core(tmp_path):
    sim = _sim(tmp_path, n_fragments=100)
    assert _feed(sim, "auto")[0].handover == "htslib"
    assert _feed(sim, "auto", stream=True)[0].handover == "segments"


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
    messages = {}
    for handover in ("htslib", "segments", "text"):
        with pytest.raises(InputError) as caught:
            _feed(sim, handover, path=bam)
        messages[handover] = str(caught.value)
    assert "read error at record" in messages["htslib"]
    assert "(the one after read '" in messages["htslib"]
    assert messages["htslib"] == messages["segments"] == messages["text"]


def test_iterator_layout_check_refuses_other_objects(tmp_path):
    sim = _sim(tmp_path, n_fragments=50)
    gene = sim.gene
    assert _htslib_functions_known()
    with pysam.AlignmentFile(str(sim.bam)) as handle:
        region = handle.fetch(gene.contig, *gene.window(300))
        first = next(region)
        assert _core.segment_layout_matches(first)
        whole = handle.fetch(until_eof=True)
        whole_first = next(whole)
        for iterator, segment in (
            (whole, whole_first),  # a whole-file iterator: not driven by the core
            (iter([first]), first),
            (region, "not a read"),
            (region, None),
            ("region", first),
        ):
            assert _core.iterator_layout_matches(iterator, segment) is False
        # The segment must be the iterator's current record, not merely equal-looking.
        assert _core.iterator_layout_matches(region, first) is True
        next(region)
        assert _core.iterator_layout_matches(region, first) is False


def test_layout_check_refuses_other_objects(tmp_path):
    sim = _sim(tmp_path, n_fragments=50)
    with pysam.AlignmentFile(str(sim.bam)) as handle:
        read = next(handle.fetch(until_eof=True))

    class Segment(pysam.AlignedSegment):
        pass

    for other in (1, "read", None, b"\x00" * 200, [read], Segment()):
        assert _core.segment_layout_matches(other) is False
    assert _core.segment_layout_matches(read) is True
    # A made-up segment (no header) has a record too; its fields must agree as well.
    made = pysam.AlignedSegment()
    made.query_name = "made"
    made.query_sequence = "ACGTACGT"
    made.cigarstring = "4M2I2M"
    made.reference_start = 10
    made.flag = 0
    assert _core.segment_layout_matches(made) is True


def _reads(tmp_path, n_fragments=300):
    sim = _sim(tmp_path, n_fragments=n_fragments)
    gene = sim.gene
    window = gene.window(300)
    with pysam.AlignmentFile(str(sim.bam)) as handle:
        reads = list(handle.fetch(until_eof=True))
        tid = handle.get_tid(gene.contig)
    assert _core.segment_layout_matches(reads[0])
    return gene, window, reads, tid


def test_add_segments_refuses_foreign_items_without_crashing(tmp_path):
    gene, window, reads, tid = _reads(tmp_path, 50)
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    with pytest.raises(TypeError, match="item 2 of the batch is a"):
        counter.add_segments([reads[0], reads[1], "not a read"], tid)
    with pytest.raises(TypeError):
        counter.add_segments(("a", "tuple"), tid)  # type: ignore[arg-type]
    # Nothing was counted by the refused batches: the counter still works.
    counter.add_segments(reads, tid)
    assert counter.finish().filters["records"] == len(reads)


def test_unsorted_segments_are_refused_with_the_read_named(tmp_path):
    gene, window, every_read, tid = _reads(tmp_path, 50)
    reads = [r for r in every_read if not r.is_unmapped]
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    backwards = [reads[-1], reads[0]]
    with pytest.raises(
        _core.CoreError, match=f"record 2 \\(read '{reads[0].query_name}'\\).*not sorted"
    ):
        counter.add_segments(backwards, tid)


@pytest.mark.parametrize("feed", ["push", "push_all"])
@pytest.mark.parametrize("only_window", [False, True])
def test_sink_counts_like_add_segments(tmp_path, only_window, feed):
    gene, window, reads, tid = _reads(tmp_path)
    direct = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    mapped, sent = direct.add_segments(reads, tid, only_window=only_window)
    sunk = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    reported: list[int] = []
    sink = sunk.segment_sink(
        tid, only_window=only_window, batch_records=37, on_batch=reported.append
    )
    if feed == "push":
        for read in reads:
            sink.push(read)
    else:
        sink.push_all(iter(reads))
        assert sink.last_name == reads[-1].query_name
    assert sink.pushed == len(reads)
    assert sink.close() == (len(reads), mapped, sent)
    assert sum(reported) == len(reads)
    assert only_window or max(reported) <= 37  # skipped segments add to the next report
    assert_same_counts(sunk.finish(), direct.finish())


def test_counter_is_lent_to_an_open_sink_and_back_after_close(tmp_path):
    gene, window, reads, tid = _reads(tmp_path, 50)
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    sink = counter.segment_sink(tid)
    with pytest.raises(_core.CoreError, match="being fed by a SegmentSink"):
        counter.add_sam(b"")
    with pytest.raises(TypeError, match="expected a pysam AlignedSegment"):
        sink.push("not a read")  # type: ignore[arg-type]
    sink.push(reads[0])
    sink.close()
    with pytest.raises(_core.CoreError, match="finished"):
        sink.push(reads[1])
    assert counter.finish().filters["records"] == 1


def test_sink_dropped_without_close_leaves_the_counter_unusable(tmp_path):
    gene, window, reads, tid = _reads(tmp_path, 50)
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    sink = counter.segment_sink(tid)
    for read in reads:
        sink.push(read)
    del sink
    with pytest.raises(_core.CoreError, match="incomplete"):
        counter.finish()


def test_sink_reports_a_counting_error_at_close(tmp_path):
    gene, window, reads, tid = _reads(tmp_path, 50)
    mapped = [r for r in reads if not r.is_unmapped and r.reference_id == tid]
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    sink = counter.segment_sink(tid, batch_records=1)
    sink.push(mapped[-1])
    for read in mapped[:5]:  # positions go backwards: the worker refuses the second record
        sink.push(read)
    with pytest.raises(_core.CoreError, match=r"record 2 .*not sorted"):
        sink.close()


def test_push_all_passes_the_iterators_error_through_and_names_the_last_record(tmp_path):
    gene, window, reads, tid = _reads(tmp_path, 50)

    def failing(k):
        yield from reads[:k]
        raise OSError("truncated file")

    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    sink = counter.segment_sink(tid, batch_records=7)
    with pytest.raises(OSError, match="truncated file"):
        sink.push_all(failing(20))
    assert sink.pushed == 20
    assert sink.last_name == reads[19].query_name
    with pytest.raises(TypeError, match="expected a pysam AlignedSegment"):
        sink.push_all(iter([reads[20], "not a read"]))
    assert sink.last_name == reads[20].query_name
    assert sink.close()[0] == 21
    assert counter.finish().filters["records"] == 21


def test_push_all_lets_ctrl_c_through(tmp_path):
    """pysam's iterator runs no Python bytecode, so the core itself must look for signals."""
    gene, window, reads, tid = _reads(tmp_path, 50)
    first = next(r for r in reads if not r.is_unmapped and r.reference_id == tid)
    counter = _core.GeneCounter(gene.contig, window[0], window[1], list(gene.exons))
    sink = counter.segment_sink(tid)
    endless = itertools.repeat(first, 10**9)  # a C iterator: no bytecode between items
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            sink.push_all(endless)
    finally:
        timer.cancel()
        with contextlib.suppress(_core.CoreError):
            sink.close()
    assert 0 < sink.pushed < 10**9
