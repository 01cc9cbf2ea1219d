"""Cost of every per-allele and per-event test as depth grows (issue 14: statistics at any depth).

    python benchmarks/stats_depth.py [--depths 100,10000,1000000] [--repeats 5]

Adversarial inputs: an allele or event at 5 % of n reads in one sample against none in the
other, the case a deep, contaminated or misaligned sample has thousands of. For each test and
depth n: the median seconds per call (of --repeats, each timing a loop of calls for >= 0.05 s),
and scipy's nearest equivalent as the yardstick (scipy is a test dependency). A test that is
O(n) in Python shows it as a 100x step per 100x depth; the vectorised / closed-form ones stay
flat or grow with numpy's linear passes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import scipy.stats

from cd22scan.calling import stats


def _per_call(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        calls, started = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= 0.05:
                break
        samples.append(elapsed / calls)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", default="100,10000,1000000")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    depths = [int(x) for x in args.depths.split(",")]
    print("| test | " + " | ".join(f"n = {n:,}" for n in depths) + " |")
    print("|---|" + "---|" * len(depths))
    cases = {
        "fisher_exact_two_sided (strand bias)": lambda n: (
            lambda: stats.fisher_exact_two_sided(n // 40, n // 40, n // 2, n // 2 - n // 20)
        ),
        "  scipy.stats.fisher_exact": lambda n: (
            lambda: scipy.stats.fisher_exact([[n // 40, n // 40], [n // 2, n // 2 - n // 20]])
        ),
        "beta_binomial_two_sample_test (PSI, VAF)": lambda n: (
            lambda: stats.beta_binomial_two_sample_test(0, n, n // 20, n, 0.01)
        ),
        "poisson_rate_test (expression)": lambda n: (
            lambda: stats.poisson_rate_test(n, 3e7, n // 2, 3e7, dispersion=0.05)
        ),
        "  scipy.stats.binomtest": lambda n: lambda: scipy.stats.binomtest(n, n + n // 2, 0.5),
        "binomial_upper_tail (error model)": lambda n: (
            lambda: stats.binomial_upper_tail(n // 20, n, 1e-3)
        ),
        "  scipy.stats.binom.sf": lambda n: lambda: scipy.stats.binom.sf(n // 20 - 1, n, 1e-3),
    }
    for name, make in cases.items():
        cells = [f"{_per_call(make(n), args.repeats) * 1e3:.3f} ms" for n in depths]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
