"""Tests for baseline-vs-relapse comparisons on counts; standard library + numpy (scipy's
incomplete beta function for the F reference of an estimated dispersion).

One baseline and one relapse sample per patient means no replicates, so the between-sample
variation that replicates would measure has to be stated. A plain Fisher or binomial test on
thousands of junction reads treats every read as an independent draw and calls a 0.50 → 0.52 PSI
shift "significant"; library preparation, RNA quality and biology move PSI by more than that.
``beta_binomial_two_sample_test`` therefore models each sample's count as beta-binomial with a
stated over-dispersion ``rho`` (the intra-class correlation, rho = 1 / (alpha + beta + 1); the
variance is n·mu·(1 − mu)·(1 + (n − 1)·rho)), so with many reads the test is limited by rho and
not by the read count. Default rho = 0.01 (DEFAULT_DISPERSION): at 10 000 reads the variance is
≈ 100 × binomial, at 100 reads ≈ 2 ×.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "DEFAULT_DISPERSION",
    "benjamini_hochberg",
    "beta_binomial_rho_moments",
    "beta_binomial_two_sample_test",
    "binomial_lrt",
    "f_1_df_sf",
    "fisher_exact_two_sided",
    "log2_fold_change",
    "nb_dispersion_moments",
    "poisson_rate_test",
    "rho_from_nb_dispersion",
    "squeeze_dispersion",
]

DEFAULT_DISPERSION = 0.01
_ALTERNATIVES = ("two-sided", "greater", "less")
# Tables whose probability is within this relative tolerance of the observed one count as
# "as extreme" (ties); scipy.stats.fisher_exact uses 1e-14 on its own pmf, R's fisher.test 1e-7.
# Probabilities here come from sums of lgamma values whose rounding (~1e-13 relative for large
# counts) would break exact ties at 1e-14, so 1e-7 is used, as in R.
_TIE_TOLERANCE = 1e-7


def _check_counts(k: int, n: int, what: str) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"{what}: need 0 <= k <= n, got k={k}, n={n}")


def _chi2_1df_sf(statistic: float) -> float:
    """Upper tail of chi-square with 1 degree of freedom: P(X >= s) = erfc(sqrt(s / 2))."""
    if statistic <= 0 or math.isnan(statistic):
        return 1.0
    return min(1.0, math.erfc(math.sqrt(statistic / 2)))


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _two_sided_from_log_pmf(log_pmf: np.ndarray, observed: int) -> float:
    """Sum of the probabilities of all outcomes no more likely than the observed one."""
    top = float(log_pmf.max())
    weights = np.exp(log_pmf - top)
    total = float(weights.sum())
    threshold = log_pmf[observed] + math.log1p(_TIE_TOLERANCE)
    p = float(weights[log_pmf <= threshold].sum()) / total
    return min(1.0, max(0.0, p))


# --- Fisher --------------------------------------------------------------------------------------


def fisher_exact_two_sided(a: int, b: int, c: int, d: int) -> float:
    """Two-sided Fisher exact test of the 2×2 table [[a, b], [c, d]].

    Hypergeometric on a given the margins; the p-value sums the probabilities of every table no
    more likely than the observed one (ties within a relative 1e-7), as scipy.stats.fisher_exact
    (two-sided) and R's fisher.test do. A table with an empty row or column gives 1.0.
    """
    for value in (a, b, c, d):
        if value < 0:
            raise ValueError(f"Fisher table entries must be >= 0, got {(a, b, c, d)}")
    row1, row2, col1 = a + b, c + d, a + c
    if row1 == 0 or row2 == 0 or col1 == 0 or b + d == 0:
        return 1.0
    x_lo, x_hi = max(0, col1 - row2), min(col1, row1)
    return _two_sided_from_log_pmf(_hypergeom_log_pmf(row1, row2, col1, x_lo, x_hi), a - x_lo)


def _hypergeom_log_pmf(row1: int, row2: int, col1: int, x_lo: int, x_hi: int) -> np.ndarray:
    """log P(x) + const for x = x_lo..x_hi (hypergeometric, margins row1, row2, col1), from the
    ratio P(x+1)/P(x) = (row1−x)(col1−x) / ((x+1)(row2−col1+x+1)), summed in numpy: one
    vectorised pass instead of a Python lgamma call per table (issue 14: 0.01x of a bare pysam
    loop at depth ~6 k). Rounding of the running sum stays ~1e-12 relative over 10^5 terms,
    far inside _TIE_TOLERANCE."""
    x = np.arange(x_lo, x_hi, dtype=np.float64)
    steps = np.log((row1 - x) * (col1 - x)) - np.log((x + 1) * (row2 - col1 + x + 1))
    out = np.empty(x_hi - x_lo + 1, dtype=np.float64)
    out[0] = 0.0
    np.cumsum(steps, out=out[1:])
    return out


# --- beta-binomial likelihood-ratio test ---------------------------------------------------------


def _bb_loglik(k: int, n: int, mu: float, scale: float | None) -> float:
    """Beta-binomial log-likelihood of k of n at mean mu, up to terms free of mu.

    ``scale`` = alpha + beta = (1 − rho) / rho; None means rho = 0 (binomial). Uses
    log Γ(a + k) − log Γ(a) = Σ_{i<k} log(a + i), which stays exact when alpha + beta is huge
    (rho → 0), where lgamma differences would cancel catastrophically.
    """
    if scale is None:
        out = 0.0
        if k:
            out += k * math.log(mu) if mu > 0 else -math.inf
        if n - k:
            out += (n - k) * math.log1p(-mu) if mu < 1 else -math.inf
        return out
    a, b = mu * scale, (1.0 - mu) * scale
    out = 0.0
    if k:
        out += _rising_log(a, k)
    if n - k:
        out += _rising_log(b, n - k)
    return out


# Above this alpha + beta (rho below ~1e-6) lgamma differences lose digits to cancellation
# (lgamma(a) ~ a log a), and the exact sum is used; below it log Γ(a + k) − log Γ(a) is one
# O(1) call at any depth (issue 14: the sum was 3 s per test at a million reads).
_LGAMMA_SCALE_LIMIT = 1e6


def _rising_log(a: float, k: int) -> float:
    """log of the rising factorial a (a + 1) … (a + k − 1) = log Γ(a + k) − log Γ(a)."""
    if a <= 0:
        return -math.inf
    if a < _LGAMMA_SCALE_LIMIT:
        return math.lgamma(a + k) - math.lgamma(a)
    return float(np.log(a + np.arange(k, dtype=np.float64)).sum())


def _maximize_concave(f, lo: float = 0.0, hi: float = 1.0, iterations: int = 100) -> float:
    """Maximum of a concave function on [lo, hi] by golden-section search (value returned)."""
    inv_phi = (math.sqrt(5) - 1) / 2
    x1 = hi - inv_phi * (hi - lo)
    x2 = lo + inv_phi * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(iterations):
        if f1 < f2:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + inv_phi * (hi - lo)
            f2 = f(x2)
        else:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - inv_phi * (hi - lo)
            f1 = f(x1)
        if hi - lo < 1e-15:
            break
    return max(f1, f2, f(lo), f(hi))


def beta_binomial_two_sample_test(
    k1: int,
    n1: int,
    k2: int,
    n2: int,
    dispersion: float = DEFAULT_DISPERSION,
    alternative: str = "two-sided",
    dispersion_df: float | None = None,
) -> float:
    """Two-sided p-value that k1/n1 and k2/n2 share one mean, allowing over-dispersion.

    Model: k_i ~ BetaBinomial(n_i, mean mu_i, rho = ``dispersion``), the same rho in both samples.
    Likelihood-ratio test of H0: mu1 = mu2 against separate means. Each maximum likelihood is
    found by golden-section search over mu in [0, 1] (the log-likelihood is concave in mu for a
    fixed rho, so the search finds the global maximum, boundaries included); the statistic
    2·(ℓ1 + ℓ2 − ℓ0) is referred to chi-square with 1 df, p = erfc(sqrt(stat / 2)).
    ``dispersion`` = 0 is the binomial LRT (``binomial_lrt``), and small values approach it.
    Either sample empty (n = 0) gives 1.0. Symmetric in swapping the samples.

    ``alternative`` = ``"greater"`` (sample 2's mean above sample 1's) or ``"less"``: the
    one-sided test of a hypothesis whose direction was stated beforehand, from the signed root
    of the statistic (r = ±sqrt(stat) is asymptotically standard normal): p = P(Z >= r), i.e.
    half the two-sided p when the estimates lie in the stated direction, 1 − half otherwise.

    ``dispersion_df``: the degrees of freedom ``dispersion`` was estimated with (a cohort's
    baselines, ``beta_binomial_rho_moments``). An estimated rho is itself uncertain, and a test
    that takes it as known rejects too often when it came out low; as edgeR's quasi-likelihood
    F-test does, the statistic is then referred to F(1, d) instead of chi-square(1):
    p = P(F(1, d) >= stat) = I_{d / (d + stat)}(d / 2, 1 / 2) (scipy.special.betainc), which
    tends to the chi-square p as d grows. None: rho is taken as known (a stated value).
    """
    _check_counts(k1, n1, "sample 1")
    _check_counts(k2, n2, "sample 2")
    if not 0 <= dispersion < 1:
        raise ValueError(f"dispersion (rho) must be in [0, 1), got {dispersion}")
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")
    if n1 == 0 or n2 == 0:
        return 1.0
    scale = None if dispersion == 0 else (1.0 - dispersion) / dispersion
    separate = _maximize_concave(lambda mu: _bb_loglik(k1, n1, mu, scale)) + _maximize_concave(
        lambda mu: _bb_loglik(k2, n2, mu, scale)
    )
    joint = _maximize_concave(
        lambda mu: _bb_loglik(k1, n1, mu, scale) + _bb_loglik(k2, n2, mu, scale)
    )
    statistic = max(0.0, 2.0 * (separate - joint))
    if dispersion_df is None:
        two_sided = _chi2_1df_sf(statistic)
    else:
        two_sided = f_1_df_sf(statistic, dispersion_df)
    if alternative == "two-sided":
        return two_sided
    # k2/n2 vs k1/n1 by cross-multiplication (exact on integers); equal shares give r = 0
    along = k2 * n1 > k1 * n2 if alternative == "greater" else k2 * n1 < k1 * n2
    return two_sided / 2 if along else 1.0 - two_sided / 2


def f_1_df_sf(statistic: float, df: float) -> float:
    """Upper tail of the F distribution with (1, ``df``) degrees of freedom at ``statistic``."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if statistic <= 0 or math.isnan(statistic):
        return 1.0
    from scipy.special import betainc  # only where an estimated dispersion is used

    return float(min(1.0, betainc(df / 2, 0.5, df / (df + statistic))))


def binomial_lrt(k1: int, n1: int, k2: int, n2: int) -> float:
    """Binomial likelihood-ratio test of equal proportions (closed form; rho = 0)."""
    _check_counts(k1, n1, "sample 1")
    _check_counts(k2, n2, "sample 2")
    if n1 == 0 or n2 == 0:
        return 1.0

    def ll(k: int, n: int) -> float:
        p = k / n
        return (k * math.log(p) if k else 0.0) + ((n - k) * math.log1p(-p) if n - k else 0.0)

    pooled_k, pooled_n = k1 + k2, n1 + n2
    p0 = pooled_k / pooled_n
    joint = (pooled_k * math.log(p0) if pooled_k else 0.0) + (
        (pooled_n - pooled_k) * math.log1p(-p0) if pooled_n - pooled_k else 0.0
    )
    return _chi2_1df_sf(max(0.0, 2.0 * (ll(k1, n1) + ll(k2, n2) - joint)))


# --- expression ----------------------------------------------------------------------------------


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exact (summed in log space); 1.0 for k <= 0."""
    _check_counts(k, n, "binomial_upper_tail")
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if k <= 0:
        return 1.0
    # log P(k) once, then the ratio P(x+1)/P(x) = (n−x)/(x+1) · p/(1−p) summed in numpy: one
    # vectorised pass, no Python call per term (a deep site has thousands)
    first = _log_choose(n, k) + k * math.log(p) + (n - k) * math.log1p(-p)
    last = n
    ratio = (n - k) / (k + 1) * p / (1 - p)  # P(k+1)/P(k); the ratios fall as x grows
    if ratio < 0.5:
        # above the mean the terms fall at least geometrically by `ratio`: after m terms the
        # rest is below 1e-17 of the first (issue 14: the full sum was 60 ms at a million
        # reads for an error-model test that needs a few terms)
        last = min(n, k + math.ceil(-39.2 / math.log(ratio)) + 1) if ratio > 0 else k
    x = np.arange(k, last, dtype=np.float64)
    steps = np.log(n - x) - np.log(x + 1) + (math.log(p) - math.log1p(-p))
    log_pmf = np.empty(last - k + 1, dtype=np.float64)
    log_pmf[0] = first
    np.cumsum(steps, out=log_pmf[1:])
    log_pmf[1:] += first
    top = float(log_pmf.max())
    return float(min(1.0, math.exp(top) * np.exp(log_pmf - top).sum()))


def rho_from_nb_dispersion(phi: float, share: float = 0.5) -> float:
    """Beta-binomial rho that matches negative-binomial dispersion ``phi`` (var = m + phi·m²).

    For two NB counts with the same phi, k1 given k1 + k2 = K has variance
    ≈ K·p(1 − p) + 2·phi·p²(1 − p)²·K² (p = ``share``, sample 1's expected share), and a
    beta-binomial ≈ K·p(1 − p)·(1 + K·rho); equal for rho = 2·phi·p·(1 − p). (edgeR's BCV² is phi.)
    """
    if phi < 0 or not 0 < share < 1:
        raise ValueError(f"need phi >= 0 and 0 < share < 1, got {phi}, {share}")
    return min(0.999, 2.0 * phi * share * (1.0 - share))


def poisson_rate_test(
    k1: int,
    n1: float,
    k2: int,
    n2: float,
    dispersion: float = 0.0,
    alternative: str = "two-sided",
) -> float:
    """Two-sided test that two counts have the same rate per unit of exposure (library size).

    Conditional test: given K = k1 + k2, under equal rates k1 ~ Binomial(K, p0) with
    p0 = n1 / (n1 + n2) for Poisson counts (exact; like scipy.stats.binomtest). With
    ``dispersion`` = rho > 0, k1 ~ BetaBinomial(K, mean p0, rho) instead, the negative-binomial
    analogue (``rho_from_nb_dispersion`` converts an NB dispersion). The p-value sums the
    probabilities of every k no more likely than k1 (ties within a relative 1e-7).
    No counts (K = 0) gives 1.0. ``alternative`` = ``"greater"`` (sample 1's rate above sample
    2's, e.g. a loss at relapse when sample 1 is the baseline): P(X >= k1); ``"less"``:
    P(X <= k1); with dispersion 0 these are scipy.stats.binomtest's one-sided p-values.
    """
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")
    if k1 < 0 or k2 < 0:
        raise ValueError(f"counts must be >= 0, got {k1}, {k2}")
    if not (n1 > 0 and n2 > 0):
        raise ValueError(f"exposures (library sizes) must be > 0, got {n1}, {n2}")
    if not 0 <= dispersion < 1:
        raise ValueError(f"dispersion (rho) must be in [0, 1), got {dispersion}")
    total = k1 + k2
    if total == 0:
        return 1.0
    p0 = n1 / (n1 + n2)
    xs = np.arange(total + 1, dtype=np.float64)
    # every term from running sums of log ratios, in numpy (no Python call per count: the list
    # of lgamma calls took 7 s at a million fragments)
    steps = np.log(total - xs[:-1]) - np.log(xs[:-1] + 1)  # log C(K, x+1) − log C(K, x)
    log_choose = np.concatenate(([0.0], np.cumsum(steps)))
    if dispersion == 0:
        log_pmf = log_choose + xs * math.log(p0) + (total - xs) * math.log1p(-p0)
    else:
        scale = (1.0 - dispersion) / dispersion
        a, b = p0 * scale, (1.0 - p0) * scale
        # log Γ(a + x) − log Γ(a) = Σ_{i<x} log(a + i); the b side runs the other way
        rising_a = np.concatenate(([0.0], np.cumsum(np.log(a + xs[:-1]))))
        rising_b = np.concatenate(([0.0], np.cumsum(np.log(b + xs[:-1]))))
        log_pmf = log_choose + rising_a + rising_b[::-1]
    if alternative == "two-sided":
        return _two_sided_from_log_pmf(log_pmf, k1)
    top = float(log_pmf.max())
    weights = np.exp(log_pmf - top)
    tail = weights[k1:] if alternative == "greater" else weights[: k1 + 1]
    return float(min(1.0, max(0.0, tail.sum() / weights.sum())))


def log2_fold_change(k1: float, n1: float, k2: float, n2: float, pseudocount: float = 0.5) -> float:
    """log2 of sample 2's rate over sample 1's: log2(((k2 + pc) / n2) / ((k1 + pc) / n1)).

    Positive = higher in sample 2 (call it as (baseline, relapse) to get relapse vs baseline).
    The pseudocount keeps zero counts finite; n are the exposures (library sizes), > 0.
    """
    if not (n1 > 0 and n2 > 0):
        raise ValueError(f"exposures (library sizes) must be > 0, got {n1}, {n2}")
    if pseudocount < 0 or k1 + pseudocount <= 0 or k2 + pseudocount <= 0:
        raise ValueError("counts + pseudocount must be > 0")
    return math.log2((k2 + pseudocount) / n2) - math.log2((k1 + pseudocount) / n1)


# --- over-dispersion from replicates ------------------------------------------------------------
# Moment estimators of the dispersion the tests above take, from m samples that differ only by
# the variability a pair's test must allow for (a cohort's baselines). One value per event type
# is pooled over its features (exons, introns, junctions): each feature has its own mean, all
# share one dispersion. They return (estimate, degrees of freedom); an estimate below 0 (less
# spread than binomial / Poisson sampling) is returned as 0.


def beta_binomial_rho_moments(
    features: Sequence[Sequence[tuple[int, int]]],
) -> tuple[float, int]:
    """Pooled beta-binomial rho (intra-class correlation) of features observed as k of n reads in
    several samples; each feature its own mean p, one rho for all (Kleinman 1973).

    Per feature with samples i = 1..m, N = Σ n_i, p̂ = Σ k_i / N and
    S = Σ (k_i − n_i·p̂)² / n_i: E[S] = p(1 − p)·((m − 1) + rho·(N − Σ n_i² / N − (m − 1))),
    since Var k_i = n_i·p(1 − p)·(1 + (n_i − 1)·rho). Pooled over features,
    rho = Σ (S / (p̂(1 − p̂)) − (m − 1)) / Σ (N − Σ n_i² / N − (m − 1)). Samples with n = 0 are
    left out; a feature needs >= 2 samples and 0 < p̂ < 1 (a share of 0 or 1 everywhere says
    nothing about the spread). Degrees of freedom: Σ (m − 1) over the features used.
    """
    numerator = denominator = 0.0
    df = 0
    for observations in features:
        seen = [(k, n) for k, n in observations if n > 0]
        for k, n in seen:
            _check_counts(k, n, "beta_binomial_rho_moments")
        m = len(seen)
        total = sum(n for _, n in seen)
        hits = sum(k for k, _ in seen)
        if m < 2 or hits == 0 or hits == total:
            continue
        p = hits / total
        spread = sum((k - n * p) ** 2 / n for k, n in seen)
        numerator += spread / (p * (1 - p)) - (m - 1)
        denominator += total - sum(n * n for _, n in seen) / total - (m - 1)
        df += m - 1
    if df == 0 or denominator <= 0:
        return 0.0, 0
    return min(0.999, max(0.0, numerator / denominator)), df


def nb_dispersion_moments(
    features: Sequence[Sequence[tuple[int, float]]],
) -> tuple[float, int]:
    """Pooled negative-binomial dispersion phi (var = mu + phi·mu², edgeR's BCV²) of counts c_i
    over exposures L_i (library sizes) in several samples; each feature its own rate.

    Per feature, mu_i = L_i·Σc / ΣL and X = Σ (c_i − mu_i)² / mu_i (Pearson):
    E[X] ≈ (m − 1) + phi·(M − Σ mu_i² / M), M = Σ mu_i (the beta-binomial form above as the
    share of the library goes to 0). Pooled: phi = Σ (X − (m − 1)) / Σ (M − Σ mu_i² / M).
    A feature needs >= 2 samples with L > 0 and a count somewhere.
    """
    numerator = denominator = 0.0
    df = 0
    for observations in features:
        seen = [(c, size) for c, size in observations if size > 0]
        for c, _ in seen:
            if c < 0:
                raise ValueError(f"nb_dispersion_moments: counts must be >= 0, got {c}")
        m = len(seen)
        hits = sum(c for c, _ in seen)
        if m < 2 or hits == 0:
            continue
        rate = hits / sum(size for _, size in seen)
        mus = [rate * size for _, size in seen]
        total = sum(mus)
        numerator += sum((c - mu) ** 2 / mu for (c, _), mu in zip(seen, mus, strict=True)) - (m - 1)
        denominator += total - sum(mu * mu for mu in mus) / total
        df += m - 1
    if df == 0 or denominator <= 0:
        return 0.0, 0
    return max(0.0, numerator / denominator), df


def squeeze_dispersion(estimate: float, df: int, prior: float, prior_df: float) -> float:
    """The estimate moved toward ``prior`` as limma's squeezeVar moves a variance toward its
    prior: (prior_df·prior + df·estimate) / (prior_df + df). Few samples keep most of the prior;
    many make the estimate."""
    if df < 0 or prior_df < 0 or df + prior_df == 0:
        raise ValueError(f"need df, prior_df >= 0 and not both 0, got {df}, {prior_df}")
    return (prior_df * prior + df * estimate) / (prior_df + df)


# --- multiple testing ----------------------------------------------------------------------------


def benjamini_hochberg(pvalues: Sequence[float | None]) -> list[float | None]:
    """Benjamini–Hochberg q-values in the input order; None/NaN stay None and are not counted.

    q_(i) = min_{j >= i} p_(j) · m / j over the m non-missing p-values sorted ascending, capped
    at 1 (= scipy.stats.false_discovery_control(method="bh")).
    """
    present = [
        (float(p), i) for i, p in enumerate(pvalues) if p is not None and not math.isnan(float(p))
    ]
    for p, _ in present:
        if not 0 <= p <= 1:
            raise ValueError(f"p-values must be in [0, 1], got {p}")
    out: list[float | None] = [None] * len(pvalues)
    m = len(present)
    running = 1.0
    for rank, (p, index) in zip(range(m, 0, -1), sorted(present, reverse=True), strict=True):
        running = min(running, p * m / rank)
        out[index] = running
    return out
