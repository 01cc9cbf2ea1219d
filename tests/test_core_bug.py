"""A bug in the counting core is not bad input: ``_core.CoreBug`` (not a ``CoreError``), and the
CLI exits 1 with one line (the traceback with -v only), never 2 (bad input data).

The bug is a real one the core reports, forced without a test hook in the core: pysam is made to
write *compressed* BAM into the core's pipe, which the product never does (it writes "wbu"), so
the core's stream reader refuses it as an internal error. No input file can cause it.
"""

from __future__ import annotations

import pysam
import pytest
from simulator import simulate, small_gene

from cd22scan import _core
from cd22scan.cli import main
from cd22scan.demo.simulate import write_gtf
from cd22scan.sample import reader


class _CompressingPysam:
    """pysam, except that an ``AlignmentFile`` opened on a descriptor in mode "wbu" (the core's
    pipe) writes compressed BAM."""

    def __getattr__(self, name: str) -> object:
        return getattr(pysam, name)

    @staticmethod
    def AlignmentFile(target, mode="r", **kwargs):
        if isinstance(target, int) and mode == "wbu":
            mode = "wb"
        return pysam.AlignmentFile(target, mode, **kwargs)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("core_bug")
    sim = simulate(tmp / "sim", seed=67, gene=small_gene("+"), n_fragments=100, sample="S1")
    return sim.bam, write_gtf(sim.gene, tmp / "small.gtf")


def test_core_bug_is_not_a_core_error():
    assert not issubclass(_core.CoreBug, _core.CoreError)
    assert not issubclass(_core.CoreError, _core.CoreBug)


@pytest.mark.parametrize("verbose", [False, True])
def test_cli_exits_1_not_2_on_a_core_bug(tmp_path, capfd, monkeypatch, sample, verbose):
    bam, gtf = sample
    monkeypatch.delenv("CD22SCAN_HANDOVER", raising=False)
    monkeypatch.setattr(reader, "pysam", _CompressingPysam())
    argv = ["scan", str(bam), "--out", str(tmp_path / "o"), "--gtf", str(gtf), "--gene", "SMALL"]
    capfd.readouterr()
    code = main([*argv, "-v" if verbose else "-q"])
    err = capfd.readouterr().err
    assert code == 1, err
    line = next(x for x in err.splitlines() if x.startswith("cd22scan: error: "))
    assert "internal error in the counting core (a bug, please report it)" in line, err
    assert "compressed BGZF block" in line, err
    if verbose:
        assert "Traceback" in err and "CoreBug" in err, err
    else:
        assert err.splitlines() == [line], err
        assert "-v shows the traceback" in line
