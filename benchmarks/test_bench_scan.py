"""Scan throughput against its floor (a bare pysam loop over the same region) and samtools.

In the normal test run (`--benchmark-disable`) each benchmark runs once as a correctness check on
a small BAM. Timing run (the README's performance table):

    CD22SCAN_BENCH_RECORDS=1000000 pytest benchmarks -m "" --benchmark-enable --benchmark-only \
        --benchmark-group-by=param:n_records

`benchmarks/compare_tools.py` prints the same comparison as reads/s and ratios.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pysam
import pytest
from bench_data import large_bam

from cd22scan import builtin_model, scan

N_RECORDS = int(os.environ.get("CD22SCAN_BENCH_RECORDS", "100000"))
MODEL = builtin_model("CD22", "GRCh38")
W0, W1 = MODEL.window(500)
REGION = f"{MODEL.contig}:{W0 + 1}-{W1}"

pytestmark = pytest.mark.slow  # builds a 100k-record BAM (cached in the temp folder)


@pytest.fixture(scope="module")
def bam() -> str:
    return str(large_bam(N_RECORDS))


def bare_pysam_loop(path: str) -> int:
    n = 0
    with pysam.AlignmentFile(path) as handle:
        for _read in handle.fetch(MODEL.contig, W0, W1):
            n += 1
    return n


@pytest.mark.parametrize("n_records", [N_RECORDS])
def test_bench_bare_pysam_loop(benchmark, bam, n_records):
    n = benchmark(bare_pysam_loop, bam)
    assert n >= 0.9 * n_records


@pytest.mark.parametrize("n_records", [N_RECORDS])
def test_bench_scan(benchmark, bam, n_records):
    result = benchmark(scan, bam)
    assert result.summary["reads"]["records_in_window"] >= 0.9 * n_records
    assert result.summary["fragments_on_gene"] > 0


@pytest.mark.external
@pytest.mark.skipif(shutil.which("samtools") is None, reason="samtools not on PATH")
@pytest.mark.parametrize("n_records", [N_RECORDS])
def test_bench_samtools_mpileup(benchmark, bam, n_records):
    cmd = ["samtools", "mpileup", "-B", "-A", "-d", "0", "-q", "20", "-Q", "13", "-r", REGION, bam]

    def run() -> int:
        out = subprocess.run(cmd, check=True, capture_output=True).stdout
        return out.count(b"\n")

    assert benchmark(run) > 0
