"""Simulated, sorted, paired-end 100-bp SAM lines over a 35-kb window (for throughput.rs).

Usage: python make_bench_sam.py N_PAIRS > bench.sam
"""

import random
import sys

random.seed(1)
n_pairs = int(sys.argv[1])
W0, W1 = 1_000_000, 1_035_000
ref = "".join(random.choice("ACGT") for _ in range(W1 - W0 + 2000))


def place(pos):
    """(pos, cigar): 20% spliced across a fixed intron, 5% with an indel."""
    if random.random() < 0.2:
        left = random.randint(10, 90)
        donor = (pos - W0 + left) // 2500 * 2500 + W0 + 150
        if donor - left >= W0:
            return (
                donor - left,
                f"{left}M{random.choice((350, 1200, 2350, 2350, 4850))}N{100 - left}M",
            )
    if random.random() < 0.05:
        return pos, ("50M2D50M" if random.random() < 0.5 else "48M2I50M")
    return pos, "100M"


recs = []
for i in range(n_pairs):
    name = f"SIM:{i:09d}:FC1:1:{random.randint(1, 9999)}:{random.randint(1, 9999)}"
    p1 = random.randint(W0, W1 - 400)
    ins = max(120, int(random.gauss(250, 50)))
    (a, ca), (b, cb) = place(p1), place(p1 + ins - 100)
    if b < a:
        b = a
    for mate, (pos, cigar, flag, pn) in enumerate([(a, ca, 99, b), (b, cb, 147, a)]):
        seq = list(ref[pos - W0 : pos - W0 + 100])
        for _ in range(2):
            seq[random.randrange(100)] = random.choice("ACGTN")
        qual = "".join(chr(33 + random.choice((37, 37, 37, 30, 25, 12, 2))) for _ in range(100))
        tlen = ins if mate == 0 else -ins
        recs.append(
            (
                pos,
                f"{name}\t{flag}\tchr22\t{pos}\t60\t{cigar}\t=\t{pn}\t{tlen}\t{''.join(seq)}\t{qual}\tNM:i:2\tMD:Z:100\tAS:i:96\tXS:i:0\tRG:Z:sample1",
            )
        )
recs.sort(key=lambda r: r[0])
sys.stdout.write("\n".join(r[1] for r in recs) + "\n")
