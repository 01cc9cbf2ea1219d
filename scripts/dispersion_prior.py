#!/usr/bin/env python3
"""How many prior degrees of freedom the learned expression dispersion needs
(comparison/dispersion.py, PRIOR_DF).

Simulated cohorts of --baselines baselines: a gene's fragments drawn as gamma-Poisson
(3000 fragments, BCV 0.15, as scripts/validation.py), phi learned from the baselines
(nb_dispersion_moments) and moved toward the stated 0.05 with 0, 1, 2 or 4 prior degrees of
freedom; then --pairs replicate pairs per cohort (no change) and as many with a 2x loss, tested
one-sided as comparison.pair tests expression. Prints the share of pairs at p < 0.05.

    python scripts/dispersion_prior.py --cohorts 300 --pairs 20 --baselines 8
"""

from __future__ import annotations

import argparse

import numpy as np

from cd22scan.calling.stats import (
    nb_dispersion_moments,
    poisson_rate_test,
    rho_from_nb_dispersion,
    squeeze_dispersion,
)

LIBRARY = 1_000_000
BCV = 0.15
FRAGMENTS = 3000
STATED_PHI = 0.05


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--baselines", type=int, default=8)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    print("prior_df\tfalse (replicates p<0.05)\tfound (2x loss p<0.05)")
    for prior_df in (0, 1, 2, 4):
        rng = np.random.default_rng(args.seed)

        def draw(mean: float, rng: np.random.Generator = rng) -> int:
            return int(rng.poisson(mean * rng.gamma(1 / BCV**2, BCV**2)))

        false = found = n = 0
        for _ in range(args.cohorts):
            counts = [(draw(FRAGMENTS), LIBRARY) for _ in range(args.baselines)]
            phi, df = nb_dispersion_moments([counts])
            used = squeeze_dispersion(phi, df, STATED_PHI, prior_df) if prior_df or df else phi
            rho = rho_from_nb_dispersion(used, 0.5)
            for _ in range(args.pairs):
                kb, kr, lost = draw(FRAGMENTS), draw(FRAGMENTS), draw(FRAGMENTS / 2)
                false += poisson_rate_test(kb, LIBRARY, kr, LIBRARY, rho, "greater") < 0.05
                found += poisson_rate_test(kb, LIBRARY, lost, LIBRARY, rho, "greater") < 0.05
                n += 1
        print(f"{prior_df}\t{false / n:.3f}\t{found / n:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
