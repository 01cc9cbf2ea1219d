"""cd22scan.calling.stats against scipy (a test-only dependency) and the properties the
comparisons need."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats

from cd22scan.calling import stats


def test_runtime_modules_do_not_import_scipy(tmp_path):
    code = (
        "import sys, cd22scan.calling.stats, cd22scan.calling.splicing; "
        "sys.exit(1 if any(m.split('.')[0] == 'scipy' for m in sys.modules) else 0)"
    )
    # cwd: not the repository, whose cd22scan/ folder would shadow the installed package
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=tmp_path)
    assert done.returncode == 0


# --- Fisher --------------------------------------------------------------------------------------


def _random_tables(n: int, seed: int) -> list[tuple[int, int, int, int]]:
    rng = np.random.default_rng(seed)
    tables = []
    for i in range(n):
        top = (10, 60, 400, 3000)[i % 4]
        tables.append(tuple(int(x) for x in rng.integers(0, top, size=4)))
    # ties (symmetric tables), empty margins, one-sided extremes
    tables += [
        (5, 5, 5, 5),
        (3, 7, 7, 3),
        (0, 0, 4, 5),
        (0, 4, 0, 5),
        (10, 0, 0, 10),
        (0, 10, 10, 0),
        (1, 0, 0, 0),
        (5000, 5000, 4800, 5200),
        (100, 100, 100, 100),
    ]
    return tables


@pytest.mark.parametrize("seed", [1, 2])
def test_fisher_equals_scipy_on_random_tables(seed):
    for a, b, c, d in _random_tables(200, seed):
        ours = stats.fisher_exact_two_sided(a, b, c, d)
        theirs = scipy.stats.fisher_exact([[a, b], [c, d]]).pvalue
        assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-300), (a, b, c, d)


def _fisher_by_lgamma(a: int, b: int, c: int, d: int) -> float:
    """The former implementation (one lgamma sum per table of the support), kept as a check
    of the vectorised ratio recurrence."""
    row1, row2, col1 = a + b, c + d, a + c
    if row1 == 0 or row2 == 0 or col1 == 0 or b + d == 0:
        return 1.0
    x_lo, x_hi = max(0, col1 - row2), min(col1, row1)

    def log_choose(n: int, k: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)

    log_pmf = np.array(
        [log_choose(row1, x) + log_choose(row2, col1 - x) for x in range(x_lo, x_hi + 1)]
    )
    return stats._two_sided_from_log_pmf(log_pmf, a - x_lo)


@pytest.mark.parametrize("seed", [3, 4])
def test_fisher_equals_the_lgamma_sum_on_random_tables(seed):
    rng = np.random.default_rng(seed)
    tables = _random_tables(300, seed)
    # deep sites with few alt reads (strand bias of an allele) and deep balanced tables
    for _ in range(50):
        deep, alt = rng.integers(0, 20000, 2), rng.integers(0, 40, 2)
        tables.append((int(deep[0]), int(deep[1]), int(alt[0]), int(alt[1])))
    for a, b, c, d in tables:
        ours = stats.fisher_exact_two_sided(a, b, c, d)
        expected = _fisher_by_lgamma(a, b, c, d)
        assert ours == pytest.approx(expected, rel=1e-9, abs=1e-300), (a, b, c, d)


def test_fisher_rejects_negative_counts():
    with pytest.raises(ValueError):
        stats.fisher_exact_two_sided(-1, 2, 3, 4)


# --- Benjamini–Hochberg --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_bh_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 60))
    p = rng.uniform(0, 1, size) ** 3
    p[rng.integers(0, size, size // 4)] = p[0]  # ties
    ours = stats.benjamini_hochberg(list(p))
    theirs = scipy.stats.false_discovery_control(p, method="bh")
    np.testing.assert_allclose(np.array(ours, dtype=float), theirs, rtol=1e-12)


def test_bh_keeps_missing_values_missing_and_is_monotone():
    p = [0.01, None, 0.04, float("nan"), 0.03, 0.5]
    q = stats.benjamini_hochberg(p)
    assert q[1] is None and q[3] is None
    present = [x for x in p if x is not None and not math.isnan(x)]
    expected = scipy.stats.false_discovery_control(present, method="bh")
    np.testing.assert_allclose([q[0], q[2], q[4], q[5]], expected)
    ordered = sorted((pv, qv) for pv, qv in zip(p, q, strict=True) if qv is not None)
    assert all(q1 <= q2 for (_, q1), (_, q2) in itertools.pairwise(ordered))
    assert stats.benjamini_hochberg([]) == []


# --- beta-binomial LRT ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "k1,n1,k2,n2",
    [
        (100, 200, 20, 200),
        (5000, 10000, 5200, 10000),
        (0, 50, 7, 60),
        (3, 10, 3, 10),
        (9, 9, 1, 12),
    ],
)
def test_tiny_dispersion_approaches_the_binomial_lrt(k1, n1, k2, n2):
    binomial = stats.binomial_lrt(k1, n1, k2, n2)
    assert stats.beta_binomial_two_sample_test(k1, n1, k2, n2, 0.0) == pytest.approx(
        binomial, rel=1e-9, abs=1e-12
    )
    near = stats.beta_binomial_two_sample_test(k1, n1, k2, n2, 1e-9)
    assert near == pytest.approx(binomial, rel=1e-3, abs=1e-9)


def test_binomial_lrt_matches_the_g_test():
    table = np.array([[30, 70], [50, 50]])
    g = scipy.stats.chi2_contingency(table, correction=False, lambda_="log-likelihood")
    assert stats.binomial_lrt(30, 100, 50, 100) == pytest.approx(g.pvalue, rel=1e-9)


def test_small_shift_on_many_reads_is_not_significant_but_fisher_says_it_is():
    k1, n1, k2, n2 = 5000, 10000, 5200, 10000
    assert stats.fisher_exact_two_sided(k1, n1 - k1, k2, n2 - k2) < 0.01
    assert stats.beta_binomial_two_sample_test(k1, n1, k2, n2) > 0.2  # default rho = 0.01
    assert stats.DEFAULT_DISPERSION == 0.01


def test_large_shift_on_modest_reads_is_significant():
    assert stats.beta_binomial_two_sample_test(100, 200, 20, 200) < 1e-4


def test_more_dispersion_means_larger_p():
    ps = [stats.beta_binomial_two_sample_test(60, 100, 40, 100, r) for r in (0, 0.01, 0.05, 0.2)]
    assert ps == sorted(ps)


def _random_pairs(n: int, seed: int):
    # Seeded cases, not hypothesis: its pytest plugin trips filterwarnings = error here.
    rng = np.random.default_rng(seed)
    for _ in range(n):
        n1, n2 = (int(x) for x in rng.integers(0, 401, size=2))
        k1, k2 = int(rng.integers(0, n1 + 1)), int(rng.integers(0, n2 + 1))
        yield k1, n1, k2, n2
    yield from [(0, 0, 0, 10), (0, 10, 0, 10), (10, 10, 10, 10), (0, 10, 10, 10), (3, 3, 0, 400)]


@pytest.mark.parametrize("rho", [0.0, 1e-6, 0.01, 0.1, 0.5])
def test_beta_binomial_p_is_a_probability_and_symmetric(rho):
    for k1, n1, k2, n2 in _random_pairs(40, seed=int(rho * 1e6)):
        p = stats.beta_binomial_two_sample_test(k1, n1, k2, n2, rho)
        assert 0.0 <= p <= 1.0
        swapped = stats.beta_binomial_two_sample_test(k2, n2, k1, n1, rho)
        assert swapped == pytest.approx(p, abs=1e-9)
        # counting skipping instead of inclusion is the same test
        flipped = stats.beta_binomial_two_sample_test(n1 - k1, n1, n2 - k2, n2, rho)
        assert flipped == pytest.approx(p, abs=1e-6)
        if n1 and n2 and k1 * n2 == k2 * n1:
            assert p == pytest.approx(1.0)


def test_beta_binomial_rejects_bad_input():
    with pytest.raises(ValueError):
        stats.beta_binomial_two_sample_test(5, 4, 1, 4)
    with pytest.raises(ValueError):
        stats.beta_binomial_two_sample_test(1, 4, 1, 4, dispersion=1.0)


# --- expression ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "k1,n1,k2,n2",
    [(30, 1e6, 60, 1e6), (0, 5e5, 12, 2e6), (400, 3e7, 410, 2.5e7), (7, 100, 7, 100), (1, 2, 0, 3)],
)
def test_poisson_rate_test_equals_the_conditional_binomial_test(k1, n1, k2, n2):
    ours = stats.poisson_rate_test(k1, n1, k2, n2)
    theirs = scipy.stats.binomtest(k1, k1 + k2, n1 / (n1 + n2)).pvalue
    assert ours == pytest.approx(theirs, rel=1e-6)


@pytest.mark.parametrize("rho", [0.01, 0.1])
def test_overdispersed_rate_test_is_the_beta_binomial_exact_test(rho):
    k1, n1, k2, n2 = 120, 2e7, 260, 2.2e7
    total, p0 = k1 + k2, n1 / (n1 + n2)
    scale = (1 - rho) / rho
    pmf = scipy.stats.betabinom.pmf(np.arange(total + 1), total, p0 * scale, (1 - p0) * scale)
    expected = pmf[pmf <= pmf[k1] * (1 + 1e-7)].sum()
    ours = stats.poisson_rate_test(k1, n1, k2, n2, dispersion=rho)
    assert ours == pytest.approx(expected, rel=1e-6)
    assert ours > stats.poisson_rate_test(k1, n1, k2, n2)
    assert stats.poisson_rate_test(0, n1, 0, n2, rho) == 1.0


@pytest.mark.parametrize(
    "k1,n1,k2,n2", [(30, 1e6, 60, 1e6), (60, 1e6, 30, 1e6), (0, 5e5, 12, 2e6), (7, 100, 7, 100)]
)
@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_one_sided_rate_test_equals_scipy_binomtest(k1, n1, k2, n2, alternative):
    ours = stats.poisson_rate_test(k1, n1, k2, n2, alternative=alternative)
    theirs = scipy.stats.binomtest(k1, k1 + k2, n1 / (n1 + n2), alternative=alternative).pvalue
    assert ours == pytest.approx(theirs, rel=1e-6)


@pytest.mark.parametrize("rho", [0.01, 0.1])
def test_one_sided_overdispersed_rate_test_is_the_beta_binomial_tail(rho):
    k1, n1, k2, n2 = 260, 2e7, 120, 2.2e7  # a loss in sample 2
    total, p0 = k1 + k2, n1 / (n1 + n2)
    scale = (1 - rho) / rho
    tail = scipy.stats.betabinom.sf(k1 - 1, total, p0 * scale, (1 - p0) * scale)
    ours = stats.poisson_rate_test(k1, n1, k2, n2, dispersion=rho, alternative="greater")
    assert ours == pytest.approx(tail, rel=1e-6)
    assert ours < stats.poisson_rate_test(k1, n1, k2, n2, dispersion=rho)


@pytest.mark.parametrize(
    "k1,n1,k2,n2", [(2, 40, 12, 45), (12, 45, 2, 40), (0, 30, 0, 50), (5, 50, 10, 100)]
)
@pytest.mark.parametrize("rho", [0.0, 0.01])
def test_one_sided_beta_binomial_test_is_the_signed_root(k1, n1, k2, n2, rho):
    two = stats.beta_binomial_two_sample_test(k1, n1, k2, n2, rho)
    up = stats.beta_binomial_two_sample_test(k1, n1, k2, n2, rho, "greater")
    down = stats.beta_binomial_two_sample_test(k1, n1, k2, n2, rho, "less")
    if k2 / n2 > k1 / n1:
        assert up == pytest.approx(two / 2) and down == pytest.approx(1 - two / 2)
    elif k2 / n2 < k1 / n1:
        assert down == pytest.approx(two / 2) and up == pytest.approx(1 - two / 2)
    else:  # equal shares: r = 0, no evidence either way
        # (the beta-binomial maxima come from a golden-section search: ~1e-4 of slack)
        assert two == pytest.approx(1.0, abs=1e-3) and up == pytest.approx(0.5, abs=1e-3) == down
    if rho == 0.0 and 0 < k1 + k2 < n1 + n2:
        # the signed root of the LRT statistic, referred to the standard normal (scipy)
        sign = 1 if k2 / n2 >= k1 / n1 else -1
        z = sign * math.sqrt(scipy.stats.chi2.isf(two, 1)) if two < 1 else 0.0
        assert up == pytest.approx(scipy.stats.norm.sf(z), rel=1e-6, abs=1e-12)
    with pytest.raises(ValueError):
        stats.beta_binomial_two_sample_test(k1, n1, k2, n2, rho, "up")


def test_rho_from_nb_dispersion():
    assert stats.rho_from_nb_dispersion(0.1) == pytest.approx(0.05)
    assert stats.rho_from_nb_dispersion(0.0) == 0.0


def test_log2_fold_change():
    assert stats.log2_fold_change(100, 1e6, 400, 2e6, pseudocount=0) == pytest.approx(1.0)
    assert stats.log2_fold_change(0, 1e6, 0, 1e6) == 0.0
    assert stats.log2_fold_change(0, 1e6, 10, 1e6) == pytest.approx(math.log2(10.5 / 0.5))
    with pytest.raises(ValueError):
        stats.log2_fold_change(1, 0, 1, 1)


@pytest.mark.parametrize(
    "k,n,p",
    [(3, 1000, 1e-3), (200, 100_000, 1e-3), (5000, 1_000_000, 1e-3), (520, 10_000, 0.05),
     (480, 10_000, 0.05), (1, 1, 0.3), (0, 50, 0.2), (57, 58, 0.01)],
)  # fmt: skip
def test_binomial_upper_tail_equals_scipy_at_any_depth(k, n, p):
    # near the mean the full sum runs; far above it, a few terms (geometric bound)
    ours = stats.binomial_upper_tail(k, n, p)
    assert ours == pytest.approx(scipy.stats.binom.sf(k - 1, n, p), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("rho", [0.0, 0.05])
def test_rate_test_at_depth_equals_scipy(rho):
    k1, k2, n1, n2 = 150_000, 100_000, 3e7, 2.5e7
    total, p0 = k1 + k2, n1 / (n1 + n2)
    ours = stats.poisson_rate_test(k1, n1, k2, n2, dispersion=rho, alternative="greater")
    if rho == 0:
        theirs = scipy.stats.binom.sf(k1 - 1, total, p0)
    else:
        scale = (1 - rho) / rho
        theirs = scipy.stats.betabinom.sf(k1 - 1, total, p0 * scale, (1 - p0) * scale)
    assert ours == pytest.approx(theirs, rel=1e-6)


def test_beta_binomial_lgamma_path_equals_the_exact_sum():
    # rho 0.01 takes log Γ differences, rho 1e-7 the exact sum: both against scipy's betabinom
    # log-likelihood ratio at the fitted means
    for rho in (0.01, 1e-7):
        k1, n1, k2, n2 = 30, 20_000, 900, 20_000
        p = stats.beta_binomial_two_sample_test(k1, n1, k2, n2, rho)
        scale = (1 - rho) / rho

        def ll(mu, k, n, scale=scale):
            return scipy.stats.betabinom.logpmf(k, n, mu * scale, (1 - mu) * scale)

        grid = np.linspace(1e-4, 0.2, 4001)
        separate = max(ll(grid, k1, n1)) + max(ll(grid, k2, n2))
        joint = max(ll(grid, k1, n1) + ll(grid, k2, n2))
        expected = scipy.stats.chi2.sf(2 * (separate - joint), 1)
        assert p == pytest.approx(expected, rel=0.05, abs=1e-300)
