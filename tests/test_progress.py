"""Progress and logs on stderr, as a user sees them: a tqdm bar on a terminal (the CLI run under a
pseudo-terminal), no bar when stderr is a pipe, nothing with --quiet, debug lines with --verbose;
every subcommand takes -q and -v."""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from simulator import simulate, small_gene

from cd22scan.cli import build_parser
from cd22scan.demo.simulate import write_gtf

# What a tqdm bar leaves in the stream: carriage returns and a rate.
BAR_MARKS = ("\r", "/s]")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("progress")
    gene = small_gene("+")
    sims = {
        name: simulate(tmp / name, seed=61, gene=gene, n_fragments=600, sample=name)
        for name in ("P1_base", "P1_rel")
    }
    gtf = write_gtf(gene, tmp / "gene.gtf")
    sheet = tmp / "samples.tsv"
    sheet.write_text(
        "patient\tsample\ttimepoint\tpath\treference\n"
        + "".join(
            f"P1\t{name}\t{'baseline' if name.endswith('base') else 'relapse'}\t{sim.bam}\t"
            f"{sim.reference}\n"
            for name, sim in sims.items()
        )
    )
    return tmp, sims["P1_rel"], gtf, sheet


def _cd22scan() -> str:
    exe = shutil.which("cd22scan", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("cd22scan console script not installed beside this Python (pip install .)")
    return exe


def _on_terminal(argv: list[str]) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal of 24 x 100 (tqdm draws nothing on a 0-row one)."""
    main_fd, term_fd = pty.openpty()
    fcntl.ioctl(term_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [_cd22scan(), *argv], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=term_fd
    )
    os.close(term_fd)
    chunks = []
    while True:
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main_fd)
    return proc.wait(timeout=300), b"".join(chunks).decode()


def _on_pipe(argv: list[str]) -> tuple[int, str]:
    done = subprocess.run([_cd22scan(), *argv], capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr


def _scan_argv(data, out: Path, *extra: str) -> list[str]:
    _, sim, gtf, _ = data
    return [
        "scan", str(sim.bam), "--out", str(out), "--gtf", str(gtf), "--gene", "SMALL",
        "--reference", str(sim.reference), *extra,
    ]  # fmt: skip


def test_scan_shows_a_record_bar_on_a_terminal(data, tmp_path):
    code, err = _on_terminal(_scan_argv(data, tmp_path / "o"))
    assert code == 0, err
    assert "P1_rel: records" in err and all(mark in err for mark in BAR_MARKS), repr(err)
    assert "fragments on the gene" in err  # the log line still comes


@pytest.mark.slow
def test_run_shows_sample_and_pair_bars_on_a_terminal(data, tmp_path):
    _, _, gtf, sheet = data
    argv = ["run", str(sheet), "--out", str(tmp_path / "o"), "--gtf", str(gtf), "--gene", "SMALL"]
    code, err = _on_terminal(argv)
    assert code == 0, err
    assert "samples scanned" in err and "pairs compared" in err, repr(err)
    assert "/2" in err and "/1" in err  # totals: two samples, one pair


def test_no_bar_when_stderr_is_not_a_terminal(data, tmp_path):
    code, err = _on_pipe(_scan_argv(data, tmp_path / "o"))
    assert code == 0, err
    assert "fragments on the gene" in err
    assert not any(mark in err for mark in BAR_MARKS), repr(err)
    assert "records" not in err


@pytest.mark.parametrize("where", ["terminal", "pipe"])
def test_quiet_prints_nothing_on_a_clean_run(data, tmp_path, where):
    run = _on_terminal if where == "terminal" else _on_pipe
    code, err = run(_scan_argv(data, tmp_path / "o", "--quiet"))
    assert code == 0
    assert err == "", repr(err)


@pytest.mark.slow
def test_verbose_adds_debug_lines(data, tmp_path):
    _, plain = _on_pipe(_scan_argv(data, tmp_path / "a"))
    code, verbose = _on_pipe(_scan_argv(data, tmp_path / "b", "--verbose"))
    assert code == 0
    assert "handed to the counter" in verbose and "handed to the counter" not in plain


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "x.bam", "--out", "o"],
        ["compare", "--baseline", "b", "--relapse", "r", "--out", "o"],
        ["run", "s.tsv", "--out", "o"],
        ["workflow", "path"],
        ["workflow", "compare-pair", "s.tsv", "o", "A_vs_B"],
        ["workflow", "cohort", "s.tsv", "o"],
        ["demo"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_every_subcommand_takes_quiet_and_verbose(argv):
    parser = build_parser()
    assert parser.parse_args([*argv, "-q"]).quiet is True
    assert parser.parse_args([*argv, "--verbose"]).verbose is True
    assert parser.parse_args(["-v", *argv]).verbose is True  # before the subcommand too
    with pytest.raises(SystemExit):
        parser.parse_args([*argv, "-q", "-v"])  # one or the other
