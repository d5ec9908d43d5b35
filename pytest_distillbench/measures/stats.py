"""Pure statistical helpers used by thresholds, regression verdicts, retention and evidence.

Every function takes plain numbers or sequences and returns plain floats, so the callers
(baselines, evidence, report) never handle numpy or scipy objects. Sided tests follow one
convention: ``alternative="greater"`` asks whether the *first* quantity exceeds the second
(for McNemar: whether the baseline beats the new run, i.e. the run got worse).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

# scipy.stats takes ~0.4 s to import; a warm run from the cache mostly needs Wilson intervals,
# so scipy is imported by the functions that use it.


def scipy_stats() -> Any:
    from scipy import stats

    return stats

_ALTERNATIVES = ("greater", "less", "two-sided")

# Sign-flip tests enumerate all 2**k sign patterns up to this many non-zero differences.
EXACT_SIGN_FLIP_MAX = 16


def _check_alternative(alternative: str) -> None:
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; ``(0, 1)`` when there are no trials."""
    _check_confidence(confidence)
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    share = successes / n
    z2n = z * z / n
    center = (share + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(share * (1 - share) / n + z2n / (4 * n)) / (1 + z2n)
    # Clip rounding noise so the interval always contains the observed share and stays in [0, 1].
    return min(max(center - half, 0.0), share), max(min(center + half, 1.0), share)


def score_interval(scores: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Interval for a mean of per-item scores, the item being the unit.

    Right/wrong items (all 0 or 1): Wilson. Items whose score is a mean over k sampled answers
    (pass@1 averaged over k, ``repeats``) are not k independent trials, since samples of one item
    are correlated; a Student-t interval on the item means takes both the spread between items
    and the sampling within them, clipped to [0, 1]. ``(0, 1)`` below two items."""
    _check_confidence(confidence)
    values = np.asarray(scores, dtype=float)
    n = int(values.size)
    if n == 0 or np.all((values == 0.0) | (values == 1.0)):
        return wilson_interval(int(values.sum()), n, confidence)
    if n < 2:
        return 0.0, 1.0
    mean = float(values.mean())
    half = float(scipy_stats().t.ppf(0.5 + confidence / 2, n - 1)) * float(values.std(ddof=1)) / math.sqrt(n)
    return max(mean - half, 0.0), min(mean + half, 1.0)


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean over items of the unbiased pass@k, each item given as (samples n, correct c)."""
    if not counts:
        return math.nan
    return float(np.mean([pass_at_k(n, c, k) for n, c in counts]))


def mcnemar_exact(b: int, c: int, alternative: str = "greater") -> float:
    """Exact (conditional) McNemar test on the discordant pairs of a paired comparison.

    ``b`` counts items the baseline got right and the new run got wrong, ``c`` the reverse.
    Under no change each discordant item is equally likely to fall either way, so
    ``b ~ Binomial(b + c, 1/2)``. ``"greater"`` tests whether the run got worse (b > c).
    """
    _check_alternative(alternative)
    if b < 0 or c < 0:
        raise ValueError(f"counts must be non-negative, got b={b}, c={c}")
    k = b + c
    if k == 0:
        return 1.0
    if alternative == "greater":
        return float(scipy_stats().binom.sf(b - 1, k, 0.5))
    if alternative == "less":
        return float(scipy_stats().binom.cdf(b, k, 0.5))
    return float(scipy_stats().binomtest(b, k, 0.5).pvalue)


def mcnemar_mid_p(b: int, c: int, alternative: str = "greater") -> float:
    """Mid-p McNemar: the exact p-value minus half the probability of the observed table.

    Less conservative than :func:`mcnemar_exact`, but its false-alarm rate can exceed the
    nominal level for some numbers of discordant pairs (e.g. 0.058 at alpha 0.05 with 20
    discordant pairs), so the regression gate does not use it; the benchmark measures it.
    """
    _check_alternative(alternative)
    if b < 0 or c < 0:
        raise ValueError(f"counts must be non-negative, got b={b}, c={c}")
    k = b + c
    if k == 0:
        return 1.0
    half_observed = 0.5 * scipy_stats().binom.pmf(b, k, 0.5)
    if alternative == "greater":
        return float(scipy_stats().binom.sf(b, k, 0.5) + half_observed)
    if alternative == "less":
        return float(scipy_stats().binom.cdf(b - 1, k, 0.5) + half_observed)
    one_sided = min(scipy_stats().binom.sf(b, k, 0.5), scipy_stats().binom.cdf(b - 1, k, 0.5)) + half_observed
    return float(min(1.0, 2.0 * one_sided))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, capped at 1 and returned in the input order."""
    p = np.asarray(pvalues, dtype=float)
    if p.size == 0:
        return []
    if np.any(np.isnan(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError(f"p-values must lie in [0, 1], got {list(pvalues)}")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (m - np.arange(m))
    adjusted_sorted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted.tolist()


def _interval_from_resamples(values: np.ndarray, confidence: float) -> tuple[float, float]:
    # An undefined resample (nan) means the statistic has no stable interval at this size.
    if values.size == 0 or np.any(np.isnan(values)):
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(values, [tail, 1.0 - tail])
    return float(lo), float(hi)


def _resample_indices(n: int, iters: int, seed: int) -> np.ndarray:
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    return np.random.default_rng(seed).integers(0, n, size=(iters, n))


def bootstrap_interval(
    statistic: Callable[..., np.ndarray],
    *arrays: Sequence[float],
    iters: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Paired percentile bootstrap: ``(point, lo, hi)``.

    All arrays are resampled with the *same* item indices, so pairing between them is kept.
    ``statistic`` receives 2-D arrays (one resample per row) and must return one value per
    row; the point estimate is the statistic of the original data (a single row). Bounds are
    nan when any resample makes the statistic undefined (nan).
    """
    _check_confidence(confidence)
    data = [np.asarray(a, dtype=float) for a in arrays]
    if not data:
        raise ValueError("bootstrap_interval needs at least one array")
    n = data[0].size
    if any(a.ndim != 1 or a.size != n for a in data):
        raise ValueError("bootstrap arrays must be one-dimensional and of equal length")
    if n == 0:
        return math.nan, math.nan, math.nan
    point = float(np.asarray(statistic(*[a[None, :] for a in data]))[0])
    idx = _resample_indices(n, iters, seed)
    resampled = np.asarray(statistic(*[a[idx] for a in data]), dtype=float)
    lo, hi = _interval_from_resamples(resampled, confidence)
    return point, lo, hi


def _ratio_of_means(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    num = numerator.sum(axis=-1)
    den = denominator.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)


def paired_bootstrap_ratio(
    numerator: Sequence[float],
    denominator: Sequence[float],
    *,
    iters: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Ratio of means (e.g. retention = student score / teacher score) with a paired interval.

    Items are resampled jointly, so an item the teacher and student both find hard stays
    hard for both. A zero denominator gives a nan point; resamples with a zero denominator
    give nan bounds rather than an infinite interval.
    """
    if len(numerator) != len(denominator):
        raise ValueError(f"numerator and denominator differ in length: {len(numerator)} != {len(denominator)}")
    return bootstrap_interval(
        _ratio_of_means, numerator, denominator, iters=iters, seed=seed, confidence=confidence
    )


def _kappa_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    p1 = a.mean(axis=-1)
    p2 = b.mean(axis=-1)
    c_obs = (a == b).mean(axis=-1)
    c_exp = p1 * p2 + (1.0 - p1) * (1.0 - p2)
    degenerate = np.isclose(c_exp, 1.0, rtol=0.0, atol=1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = (c_obs - c_exp) / np.where(degenerate, 1.0, 1.0 - c_exp)
    fallback = np.where(np.isclose(c_obs, 1.0, rtol=0.0, atol=1e-12), 1.0, 0.0)
    return np.clip(np.where(degenerate, fallback, kappa), -1.0, 1.0)


def _as_bool_pair(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError("outcome sequences must be one-dimensional and of equal length")
    if a.size == 0:
        raise ValueError("error consistency needs at least one item")
    return a.astype(float), b.astype(float)


def error_consistency(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> float:
    """Error consistency (Geirhos et al. 2020): Cohen's kappa on per-item correctness.

    kappa = (c_obs - c_exp) / (1 - c_exp), with c_obs the share of items both get right or
    both get wrong and c_exp = p1 p2 + (1 - p1)(1 - p2) what independent errors would give.
    When c_exp == 1 (both always right, or both always wrong) kappa is 0/0; we return 1.0 if
    the two agree on every item (they do then) and 0.0 otherwise.
    """
    a, b = _as_bool_pair(a_correct, b_correct)
    return float(_kappa_rows(a[None, :], b[None, :])[0])


def error_consistency_interval(
    a_correct: Sequence[bool],
    b_correct: Sequence[bool],
    *,
    iters: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Error consistency with a paired percentile-bootstrap interval: ``(kappa, lo, hi)``."""
    a, b = _as_bool_pair(a_correct, b_correct)
    return bootstrap_interval(_kappa_rows, a, b, iters=iters, seed=seed, confidence=confidence)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n - c, k) / C(n, k).

    Uses the product form 1 - prod_{i=n-c+1..n} (1 - k / i), which avoids huge binomials.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    i = np.arange(n - c + 1, n + 1, dtype=float)
    return float(1.0 - np.prod(1.0 - k / i))


def jensen_shannon(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence in nats, in [0, ln 2]; inputs are normalised to sum 1."""
    pa = np.asarray(p, dtype=float)
    qa = np.asarray(q, dtype=float)
    if pa.ndim != 1 or pa.shape != qa.shape or pa.size == 0:
        raise ValueError("distributions must be one-dimensional, non-empty and of equal length")
    if np.any(pa < 0) or np.any(qa < 0) or pa.sum() <= 0 or qa.sum() <= 0:
        raise ValueError("distributions must be non-negative with a positive total")
    # Computed from relative entropies: scipy's distance takes a square root of a rounding
    # result that can be slightly negative for equal inputs, giving nan.
    pa, qa = pa / pa.sum(), qa / qa.sum()
    m = 0.5 * (pa + qa)
    from scipy.special import rel_entr

    divergence = 0.5 * float(rel_entr(pa, m).sum()) + 0.5 * float(rel_entr(qa, m).sum())
    return min(max(divergence, 0.0), math.log(2.0))


def two_proportion_z(
    successes_a: int, n_a: int, successes_b: int, n_b: int, alternative: str = "greater"
) -> float:
    """Unpaired pooled two-proportion z-test; ``"greater"`` tests whether a's rate exceeds b's."""
    _check_alternative(alternative)
    if n_a <= 0 or n_b <= 0 or not 0 <= successes_a <= n_a or not 0 <= successes_b <= n_b:
        raise ValueError("need positive sample sizes and 0 <= successes <= n")
    pa, pb = successes_a / n_a, successes_b / n_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
    # With zero pooled variance both rates are equal (all 0 or all 1): no evidence either way.
    z = 0.0 if se == 0.0 else (pa - pb) / se
    if alternative == "greater":
        return float(scipy_stats().norm.sf(z))
    if alternative == "less":
        return float(scipy_stats().norm.cdf(z))
    return float(min(1.0, 2.0 * scipy_stats().norm.sf(abs(z))))


def _sign_flip_tail(observed: float, null_sums: np.ndarray, alternative: str, tol: float) -> np.ndarray:
    if alternative == "greater":
        return null_sums >= observed - tol
    if alternative == "less":
        return null_sums <= observed + tol
    return np.abs(null_sums) >= abs(observed) - tol


def sign_flip_test(
    differences: Sequence[float],
    *,
    iters: int = 10000,
    seed: int = 0,
    alternative: str = "greater",
) -> float:
    """Paired permutation test on per-item differences (H0: each difference is symmetric about 0).

    The statistic is the sum of differences. With at most ``EXACT_SIGN_FLIP_MAX`` non-zero
    differences all sign patterns are enumerated (exact p-value); otherwise ``iters`` random
    patterns give the Monte Carlo p-value (1 + hits) / (1 + iters), which never falls below
    its own resolution and so keeps the false-alarm rate at or under the nominal level.
    For 0/1 score differences the exact test equals :func:`mcnemar_exact`.
    """
    _check_alternative(alternative)
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or np.any(~np.isfinite(d)):
        raise ValueError("differences must be a one-dimensional sequence of finite numbers")
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    observed = float(d.sum())
    # Sums of the same numbers in another order differ by rounding only.
    tol = 1e-9 * float(np.abs(d).sum())
    k = d.size
    if k <= EXACT_SIGN_FLIP_MAX:
        patterns = (np.arange(2**k)[:, None] >> np.arange(k)) & 1
        null_sums = (1 - 2 * patterns) @ d
        return float(np.mean(_sign_flip_tail(observed, null_sums, alternative, tol)))
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    rng = np.random.default_rng(seed)
    hits = 0
    chunk = max(1, min(iters, 4_000_000 // k))  # bound memory at a few tens of MB
    done = 0
    while done < iters:
        rows = min(chunk, iters - done)
        signs = rng.integers(0, 2, size=(rows, k), dtype=np.int8) * 2 - 1
        hits += int(_sign_flip_tail(observed, signs @ d, alternative, tol).sum())
        done += rows
    return (1.0 + hits) / (1.0 + iters)


def wilcoxon_signed_rank(differences: Sequence[float], alternative: str = "greater") -> float:
    """Wilcoxon signed-rank test on paired differences (zeros dropped); 1.0 if all are zero.

    Exact for small samples without ties, normal approximation with tie correction otherwise
    (scipy's ``method="auto"``). ``"greater"`` tests whether differences tend to be positive.
    """
    _check_alternative(alternative)
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or np.any(~np.isfinite(d)):
        raise ValueError("differences must be a one-dimensional sequence of finite numbers")
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    return float(scipy_stats().wilcoxon(d, alternative=alternative, zero_method="wilcox").pvalue)


def side_permutation_test(
    blocks: Sequence[tuple[Sequence[float], Sequence[bool], float]],
    flips: Sequence[float] = (),
    *,
    iters: int = 10000,
    seed: int = 0,
) -> float:
    """One-sided Monte Carlo test of ``sum over blocks of weight * sum(side * value) + sum(flips)``.

    A block is (values, sides, weight): items whose values stay attached to them while the
    sides (+1 for True, -1 for False) are shuffled among the block's items, so the number on
    each side is kept (the null distribution conditions on it, as Fisher's exact test conditions
    on a 2x2 table's margins). ``flips`` are per-item scores whose signs flip independently, as
    in :func:`sign_flip_test`. Randomisations are independent across blocks and flips. Returns
    (1 + hits) / (1 + iters): never below its own resolution, so the false-alarm rate stays at or
    under the nominal level.
    """
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    prepared = []
    observed = 0.0
    total = 0.0
    for values, sides, weight in blocks:
        v = np.asarray(values, dtype=float)
        side = np.where(np.asarray(sides, dtype=bool), 1.0, -1.0)
        if v.shape != side.shape or v.ndim != 1 or np.any(~np.isfinite(v)):
            raise ValueError("a block needs one finite value and one side per item")
        if v.size == 0 or weight == 0:
            continue
        observed += float(weight * (side * v).sum())
        total += float(abs(weight) * np.abs(v).sum())
        prepared.append((v, side, float(weight)))
    f = np.asarray(flips, dtype=float)
    if f.ndim != 1 or np.any(~np.isfinite(f)):
        raise ValueError("flips must be a one-dimensional sequence of finite numbers")
    f = f[f != 0]
    observed += float(f.sum())
    total += float(np.abs(f).sum())
    if not prepared and f.size == 0:
        return 1.0
    tol = 1e-9 * total
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    size = sum(v.size for v, _, _ in prepared) + f.size
    chunk = max(1, min(iters, 2_000_000 // max(size, 1)))
    while done < iters:
        rows = min(chunk, iters - done)
        sums = np.zeros(rows)
        for v, side, weight in prepared:
            order = np.argsort(rng.random((rows, v.size)), axis=1)
            sums += weight * (side[order] @ v)
        if f.size:
            sums += (rng.integers(0, 2, size=(rows, f.size), dtype=np.int8) * 2 - 1) @ f
        hits += int((sums >= observed - tol).sum())
        done += rows
    return (1 + hits) / (1 + iters)


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties corrected), nan when either side is all ties. The pairs are
    counted directly: items have a handful of choices, and scipy's general routine costs
    ~100x more per call on vectors this short (it ran once per item and model)."""
    concordant = discordant = ties_x = ties_y = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                ties_x += 1
                ties_y += 1
            elif dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    pairs = n * (n - 1) // 2
    denominator = math.sqrt((pairs - ties_x) * (pairs - ties_y))
    return (concordant - discordant) / denominator if denominator > 0 else math.nan
