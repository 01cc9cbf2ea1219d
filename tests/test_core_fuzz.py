"""Fuzz smoke at the Python boundary of the compiled core (runs in CI; the long run is
``cargo fuzz`` in rust_ext/fuzz/): whatever bytes reach ``GeneCounter.add_sam``, only
``CoreError`` may come out, never ``PanicException`` (a BaseException) or anything else, and a
counter that refused input refuses everything after it.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cd22scan import _core

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
WINDOW = (100, 400)
EXONS = [(110, 130), (150, 170), (180, 390)]


def new_counter(**params) -> _core.GeneCounter:
    return _core.GeneCounter("chr22", *WINDOW, EXONS, **params)


def feed(counter: _core.GeneCounter, batches: list[bytes], window_len: int = 300) -> None:
    """Every batch, then finish: only CoreError may be raised, and after one nothing succeeds."""
    failed = False
    for batch in batches:
        try:
            counter.add_sam(batch)
        except BaseException as exc:  # PanicException is not an Exception
            assert type(exc) is _core.CoreError, repr(exc)
            assert "internal error" not in str(exc), str(exc)
            failed = True
        else:
            assert not failed, "a counter that failed accepted more input"
    try:
        result = counter.finish()
    except BaseException as exc:
        assert type(exc) is _core.CoreError, repr(exc)
        assert failed, f"finish failed although every batch was accepted: {exc}"
    else:
        assert not failed, "a counter that failed still gave counts"
        assert all(len(column) == window_len for column in result.base_counts.values())


OPS = "MIDNSHP=X"
FLAGS = [0, 16, 99, 147, 163, 83, 97, 145, 0x4, 0x100, 0x400, 0x800, 0x904, 65535, 65536]


@st.composite
def sam_line(draw) -> bytes:
    """A record that mostly looks valid: any CIGAR, positions around the window, SEQ and QUAL
    of matching or not matching length, `*` fields, mates, tags; sometimes a spliced-in byte."""
    ops = draw(
        st.lists(
            st.tuples(
                st.one_of(st.integers(0, 300), st.sampled_from([0, 2**31, 2**32, 10**12])),
                st.sampled_from(OPS),
            ),
            max_size=6,
        )
    )
    cigar = "".join(f"{n}{op}" for n, op in ops) or "*"
    query = sum(n for n, op in ops if op in "MIS=X")
    if draw(st.booleans()) and query <= 2000:
        seq = "".join(
            draw(st.lists(st.sampled_from("ACGTNacgtn=."), min_size=query, max_size=query))
        )
    else:
        seq = draw(st.text(alphabet="ACGTN*", max_size=40))
    seq = seq or "*"
    qual = (
        "*"
        if seq == "*" or draw(st.booleans())
        else draw(
            st.text(alphabet=[chr(c) for c in range(33, 127)], min_size=len(seq), max_size=len(seq))
        )
    )
    fields = [
        draw(st.sampled_from(["r1", "r2", "r3", "*", ""])),
        str(draw(st.sampled_from(FLAGS))),
        draw(st.sampled_from(["chr22", "chr1", "*"])),
        str(draw(st.one_of(st.integers(0, 600), st.sampled_from([-1, 2**31, 2**31 - 1])))),
        str(draw(st.sampled_from([0, 20, 60, 255, 256]))),
        cigar,
        draw(st.sampled_from(["*", "=", "chr22", "chr1"])),
        str(draw(st.integers(0, 600))),
        str(draw(st.integers(-1000, 1000))),
        seq,
        qual,
    ]
    fields += draw(
        st.lists(st.sampled_from(["XS:A:+", "XS:A:-", "XS:A:x", "NM:i:0", "XS"]), max_size=2)
    )
    line = "\t".join(fields).encode()
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(line)))
        line = line[:at] + draw(st.binary(max_size=4)) + line[at:]
    return line


def _pos(line: bytes) -> int:
    fields = line.split(b"\t")
    return int(fields[3]) if len(fields) > 3 and fields[3].lstrip(b"-").isdigit() else 0


@FUZZ
@given(data=st.binary(max_size=4000))
def test_arbitrary_bytes_raise_only_core_error(data):
    feed(new_counter(), [data])


@pytest.mark.slow
@FUZZ
@given(
    lines=st.lists(sam_line(), max_size=40),
    cuts=st.lists(st.integers(0, 10**6), max_size=4),
    dedup=st.booleans(),
    sort=st.booleans(),
)
def test_valid_looking_records_raise_only_core_error(lines, cuts, dedup, sort):
    if sort:  # mostly sorted input gets further into the counting code
        lines = sorted(lines, key=_pos)
    text = b"\n".join(lines) + b"\n"
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    batches = [text[a:b] for a, b in itertools.pairwise(points)]
    feed(new_counter(dedup_overlaps=dedup), batches)


@pytest.mark.slow
@FUZZ
@given(
    start=st.integers(-(2**40), 2**40),
    length=st.integers(-10, 2**33),
    exons=st.lists(
        st.tuples(st.integers(-(2**33), 2**33), st.integers(-(2**33), 2**33)), max_size=4
    ),
    min_mapq=st.integers(-(2**40), 2**40),
    exclude_flags=st.integers(-(2**20), 2**20),
)
def test_bad_counter_parameters_raise_only_core_error(
    start, length, exons, min_mapq, exclude_flags
):
    # A huge valid window allocates per-position arrays: stay below 10 M positions.
    if start >= 0 and length > 0 and length > 10_000_000:
        length = 10_000_000
    try:
        counter = _core.GeneCounter(
            "chr22", start, start + length, exons, min_mapq=min_mapq, exclude_flags=exclude_flags
        )
    except BaseException as exc:
        assert type(exc) is _core.CoreError, repr(exc)
    else:
        record = b"r1\t0\tchr22\t120\t60\t10M\t*\t0\t0\tACGTACGTAC\tIIIIIIIIII\n"
        feed(counter, [record], window_len=length)


def test_a_refused_batch_makes_the_counter_refuse_everything_after():
    counter = new_counter()
    good = b"r1\t0\tchr22\t120\t60\t10M\t*\t0\t0\tACGTACGTAC\tIIIIIIIIII\n"
    counter.add_sam(good)
    try:
        counter.add_sam(b"r2\t0\tchr22\t110\t60\t10M\t*\t0\t0\tACGTACGTAC\tIIIIIIIIII\n")
    except _core.CoreError as exc:
        assert "not sorted" in str(exc)
    else:
        raise AssertionError("a record before the previous one was accepted")
    for call in (lambda: counter.add_sam(good), counter.finish):
        try:
            call()
        except _core.CoreError as exc:
            assert "already failed" in str(exc)
        else:
            raise AssertionError("the failed counter went on")
