"""One sample, several genes (issue 15): every target counted from one pass over the file.

With an index each gene's window is fetched (together that is one pass over the reads of the
genes); without one (or with ``--stream``, or standard input) the file is read once and each
gene's counter gets the records of its contig (``reader.feed_windows``). Each gene is counted
with the filters and counting contract of a one-gene ``scan`` and gives the same tables
(tests/test_panel_scan.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cd22scan.console import progress
from cd22scan.errors import AnnotationError
from cd22scan.sample.reader import Window, feed_window, feed_windows, htslib_quiet, open_alignments
from cd22scan.sample.scan import (
    ScanParams,
    ScanResult,
    _collect,
    _log_stream_mode,
    _prepare,
    _tables,
)
from cd22scan.target.annotation import GeneModel

log = logging.getLogger("cd22scan")

ABSENT = "is not in the BAM header"


@dataclass
class PanelScan:
    """The scans of one sample's genes, in the order asked, and the genes it could not scan."""

    sample: str
    results: dict[str, ScanResult]
    absent: dict[str, str] = field(default_factory=dict)  # gene -> why (its contig is absent)
    read_mode: str = ""

    @property
    def genes(self) -> tuple[str, ...]:
        return tuple(self.results)


def scan_panel(
    path: str,
    genes: Sequence[str],
    params: ScanParams | None = None,
    *,
    models: Mapping[str, GeneModel] | None = None,
    **overrides: Any,
) -> PanelScan:
    """Scan ``path`` over every gene of ``genes`` (built-in names, or genes of ``params.gtf``).

    ``models``: gene -> model already parsed from a GTF (a cohort parses its GTF once). A gene
    whose contig the header lacks is left out with a warning and listed in ``absent``; any other
    problem stops the scan as a one-gene scan would."""
    params = params or ScanParams()
    if overrides:
        params = ScanParams(**{**params.__dict__, **overrides})
    params.validate()
    models = models or {}
    started = time.time()
    jobs = []
    absent: dict[str, str] = {}
    with (
        htslib_quiet(),
        open_alignments(path, params.reference, threads=params.threads) as source,
    ):
        for gene in genes:
            try:
                jobs.append(_prepare(path, replace(params, gene=gene), source, models.get(gene)))
            except AnnotationError as exc:
                if ABSENT not in str(exc):
                    raise
                absent[gene] = str(exc)
                log.warning("%s: %s not scanned: %s", source.display_name, gene, exc)
        _log_stream_mode(path, params, source)
        indexed = path != "-" and source.has_index and not params.stream
        sample = jobs[0].sample if jobs else (params.sample or source.default_sample_name())
        with progress(f"{sample}: records", unit=" records", scale=True) as bar:
            if indexed:
                stats = [
                    feed_window(
                        source,
                        job.counter,
                        job.model.contig,
                        job.window_start0,
                        job.window_end0,
                        on_batch=bar.update,
                    )
                    for job in jobs
                ]
            else:
                windows = [
                    Window(job.counter, job.model.contig, job.window_start0, job.window_end0)
                    for job in jobs
                ]
                stats = feed_windows(source, windows, on_batch=bar.update)
        done = [_collect(path, source, job, one) for job, one in zip(jobs, stats, strict=True)]
    results = {
        job.model.gene: _tables(path, job, read, started)
        for job, read in zip(jobs, done, strict=True)
    }
    mode = "indexed" if indexed else "stream"
    return PanelScan(sample=sample, results=results, absent=absent, read_mode=mode)
