"""Run `samtools mpileup` and turn its base strings into per-position counts.

Used by the agreement tests: an independent implementation (htslib's pileup) of the same
per-position counts the core makes. Case gives the strand (upper = forward, lower = reverse);
deletions are `*` (forward) and `#` (reverse, with --reverse-del); `>`/`<` are reference skips
and not counted; `+N...` after a base is an insertion anchored there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter, defaultdict

import pytest

SAMTOOLS = shutil.which("samtools")


def needs_samtools(test):
    """Mark a test `external` (it runs the samtools program) and skip it where samtools is not on
    PATH (in CI that skip is a failure: tests/conftest.py)."""
    skip = pytest.mark.skipif(
        SAMTOOLS is None, reason="samtools not on PATH (scripts/test.sh installs it from Debian)"
    )
    return pytest.mark.external(skip(test))


_INDEL = re.compile(r"[+-](\d+)")


def mpileup_counts(
    bam: str,
    region: str,
    *,
    min_mapq: int,
    min_baseq: int,
    exclude_flags: int = 0x704,
    overlap_removal: bool = True,
) -> tuple[dict[int, Counter], dict[tuple[int, str, str], int]]:
    """Per 1-based position: Counter of keys like 'A_fwd', 'del_rev'; and insertion alleles.

    Returns (positions, insertions) where insertions maps (anchor_pos_1based, allele, strand) to
    the count.
    """
    assert SAMTOOLS is not None
    cmd = [
        SAMTOOLS,
        "mpileup",
        "-B",
        "-A",
        "-d",
        "0",
        "-q",
        str(min_mapq),
        "-Q",
        str(min_baseq),
        "--ff",
        str(exclude_flags),
        "--reverse-del",
        "-r",
        region,
    ]
    if not overlap_removal:
        cmd.append("-x")
    cmd.append(bam)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    positions: dict[int, Counter] = defaultdict(Counter)
    insertions: Counter = Counter()
    for line in out.splitlines():
        fields = line.split("\t")
        pos = int(fields[1])
        bases = fields[4]
        counts = positions[pos]
        i = 0
        n = len(bases)
        while i < n:
            c = bases[i]
            if c == "^":
                i += 2
                continue
            if c == "$":
                i += 1
                continue
            if c in "+-":
                m = _INDEL.match(bases, i)
                assert m is not None, bases[i : i + 10]
                length = int(m.group(1))
                seq = bases[m.end() : m.end() + length]
                if c == "+":
                    strand = "fwd" if seq.isupper() else "rev"
                    insertions[(pos, seq.upper(), strand)] += 1
                i = m.end() + length
                continue
            if c == "*":
                counts["del_fwd"] += 1
            elif c == "#":
                counts["del_rev"] += 1
            elif c in "<>":
                pass
            elif c.isalpha():
                letter = c.upper()
                if letter not in "ACGT":
                    letter = "N"
                counts[f"{letter}_{'fwd' if c.isupper() else 'rev'}"] += 1
            else:
                raise AssertionError(f"unexpected pileup character {c!r} at {pos}")
            i += 1
    return dict(positions), dict(insertions)
