"""Properties and known values of the statistics in pytest_distillbench.measures.stats."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from pytest_distillbench.measures import stats

ALTERNATIVES = ("greater", "less", "two-sided")
counts = st.integers(min_value=0, max_value=300)
probabilities = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


# --- Wilson interval -------------------------------------------------------------------------


@given(n=st.integers(min_value=1, max_value=5000), data=st.data(),
       confidence=st.floats(min_value=0.5, max_value=0.999))
def test_wilson_contains_observed_share_and_stays_in_unit_interval(n, data, confidence):
    successes = data.draw(st.integers(min_value=0, max_value=n))
    lo, hi = stats.wilson_interval(successes, n, confidence)
    assert 0.0 <= lo <= successes / n <= hi <= 1.0


@given(n=st.integers(min_value=1, max_value=2000), data=st.data())
def test_wilson_widens_with_confidence(n, data):
    successes = data.draw(st.integers(min_value=0, max_value=n))
    lo90, hi90 = stats.wilson_interval(successes, n, 0.90)
    lo99, hi99 = stats.wilson_interval(successes, n, 0.99)
    assert lo99 <= lo90 + 1e-12 and hi90 <= hi99 + 1e-12


def test_wilson_matches_hand_computed_formula():
    successes, n = 7, 20
    z = sps.norm.ppf(0.975)
    share = successes / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    assert stats.wilson_interval(successes, n) == pytest.approx((centre - half, centre + half), abs=1e-12)


def test_wilson_without_trials_is_uninformative():
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_rejects_impossible_counts():
    with pytest.raises(ValueError):
        stats.wilson_interval(5, 4)


# --- McNemar ---------------------------------------------------------------------------------


@given(b=counts, c=counts, alternative=st.sampled_from(ALTERNATIVES))
def test_mcnemar_p_values_are_probabilities(b, c, alternative):
    assert 0.0 <= stats.mcnemar_exact(b, c, alternative) <= 1.0
    assert 0.0 <= stats.mcnemar_mid_p(b, c, alternative) <= 1.0


@given(b=counts, c=counts)
def test_mcnemar_is_symmetric_when_the_runs_are_swapped(b, c):
    assert stats.mcnemar_exact(b, c, "greater") == pytest.approx(stats.mcnemar_exact(c, b, "less"), rel=1e-9, abs=1e-15)
    assert stats.mcnemar_exact(b, c, "two-sided") == pytest.approx(stats.mcnemar_exact(c, b, "two-sided"), rel=1e-9)


@given(total=st.integers(min_value=1, max_value=400))
def test_mcnemar_falls_as_more_discordant_items_go_against_the_run(total):
    p = [stats.mcnemar_exact(b, total - b, "greater") for b in range(total + 1)]
    assert all(later <= earlier + 1e-15 for earlier, later in itertools.pairwise(p))


@given(b=counts, c=counts)
def test_mid_p_lies_between_exact_and_exact_minus_observed_mass(b, c):
    exact = stats.mcnemar_exact(b, c, "greater")
    mid = stats.mcnemar_mid_p(b, c, "greater")
    mass = sps.binom.pmf(b, b + c, 0.5) if b + c else 0.0
    assert exact - mass / 2 - 1e-12 <= mid <= exact + 1e-12


@pytest.mark.parametrize(("alternative", "max_discordant"), [("greater", 200), ("two-sided", 50)])
def test_exact_mcnemar_never_exceeds_its_nominal_false_alarm_rate(alternative, max_discordant):
    for k in range(1, max_discordant + 1):
        b = np.arange(k + 1)
        p = np.array([stats.mcnemar_exact(int(x), k - int(x), alternative) for x in b])
        assert sps.binom.pmf(b, k, 0.5)[p < 0.05].sum() <= 0.05


def test_mcnemar_known_values():
    assert stats.mcnemar_exact(10, 0) == pytest.approx(2.0**-10)
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(30, 12, "greater") == pytest.approx(
        sps.binomtest(30, 42, 0.5, alternative="greater").pvalue)
    assert stats.mcnemar_exact(30, 12, "two-sided") == pytest.approx(sps.binomtest(30, 42, 0.5).pvalue)
    # 20 discordant items, 14 against the run: P(X>=14) = 60460/2**20; mid-p takes half of P(X=14).
    assert stats.mcnemar_exact(14, 6) == pytest.approx(60460 / 2**20)
    assert stats.mcnemar_mid_p(14, 6) == pytest.approx((60460 - 38760 / 2) / 2**20)


# --- Holm ------------------------------------------------------------------------------------


@given(st.lists(probabilities, min_size=1, max_size=30))
def test_holm_adjusted_is_at_least_raw_capped_and_order_preserving(pvalues):
    adjusted = stats.holm(pvalues)
    assert len(adjusted) == len(pvalues)
    for raw, adj in zip(pvalues, adjusted, strict=True):
        assert raw - 1e-15 <= adj <= 1.0
    for (p_i, a_i), (p_j, a_j) in itertools.combinations(zip(pvalues, adjusted, strict=True), 2):
        if p_i < p_j:
            assert a_i <= a_j
        if p_i == p_j:
            assert a_i == a_j


def test_holm_known_values():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.2]) == [0.2]
    assert stats.holm([0.5, 0.6]) == [1.0, 1.0]
    assert stats.holm([]) == []


def test_holm_controls_familywise_error_under_the_null():
    rng = np.random.default_rng(1)
    uniform = rng.random((4000, 10))
    any_rejected = np.array([min(stats.holm(row)) < 0.05 for row in uniform])
    assert any_rejected.mean() <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 4000)


# --- pass@k ----------------------------------------------------------------------------------


@given(n=st.integers(min_value=1, max_value=9), data=st.data())
def test_pass_at_k_equals_a_brute_force_count_over_subsets(n, data):
    c = data.draw(st.integers(min_value=0, max_value=n))
    k = data.draw(st.integers(min_value=1, max_value=n))
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    expected = sum(any(s) for s in subsets) / len(subsets)
    assert stats.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


@given(n=st.integers(min_value=1, max_value=2000), data=st.data())
def test_pass_at_k_is_a_probability_and_grows_with_k(n, data):
    c = data.draw(st.integers(min_value=0, max_value=n))
    values = [stats.pass_at_k(n, c, k) for k in range(1, min(n, 20) + 1)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(values))
    assert values[0] == pytest.approx(c / n)


def test_pass_at_k_large_n_does_not_overflow():
    assert stats.pass_at_k(10_000, 1, 100) == pytest.approx(0.01)


# --- error consistency -----------------------------------------------------------------------

outcome_lists = st.lists(st.booleans(), min_size=2, max_size=200).filter(lambda a: 0 < sum(a) < len(a))


@given(data=st.data(), n=st.integers(min_value=1, max_value=200))
def test_kappa_lies_in_minus_one_to_one(data, n):
    a = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    b = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    assert -1.0 <= stats.error_consistency(a, b) <= 1.0


@given(outcome_lists)
def test_identical_outcomes_have_kappa_one(a):
    assert stats.error_consistency(a, a) == pytest.approx(1.0)


def test_kappa_known_values():
    assert stats.error_consistency([True, False] * 10, [False, True] * 10) == pytest.approx(-1.0)
    # p1 = 0.6, p2 = 0.5, c_obs = 0.9 -> c_exp = 0.6*0.5 + 0.4*0.5 = 0.5, kappa = 0.8
    a = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    b = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert stats.error_consistency(a, b) == pytest.approx(0.8)
    assert stats.error_consistency([True] * 5, [True] * 5) == 1.0
    assert stats.error_consistency([False] * 5, [False] * 5) == 1.0


def test_kappa_of_independent_outcomes_averages_zero():
    rng = np.random.default_rng(7)
    kappas = [stats.error_consistency(rng.random(500) < 0.7, rng.random(500) < 0.4) for _ in range(300)]
    assert abs(np.mean(kappas)) < 0.01


def test_error_consistency_interval_brackets_the_estimate():
    rng = np.random.default_rng(3)
    a = rng.random(300) < 0.7
    b = np.where(rng.random(300) < 0.8, a, rng.random(300) < 0.5)
    kappa, lo, hi = stats.error_consistency_interval(a, b, iters=1000, seed=0)
    assert kappa == pytest.approx(stats.error_consistency(a, b))
    assert -1.0 <= lo < kappa < hi <= 1.0


# --- Jensen-Shannon --------------------------------------------------------------------------

@given(data=st.data(), size=st.integers(min_value=1, max_value=20))
def test_jsd_is_symmetric_and_bounded(data, size):
    weights = st.lists(st.floats(min_value=0.0, max_value=100.0), min_size=size, max_size=size)
    p = data.draw(weights.filter(lambda w: sum(w) > 1e-6))
    q = data.draw(weights.filter(lambda w: sum(w) > 1e-6))
    d = stats.jensen_shannon(p, q)
    assert 0.0 <= d <= math.log(2)
    assert d == pytest.approx(stats.jensen_shannon(q, p), abs=1e-12)


def test_jsd_known_values():
    assert stats.jensen_shannon([1, 0], [0, 1]) == pytest.approx(math.log(2))
    assert stats.jensen_shannon([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0, abs=1e-12)
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    m = (p + q) / 2
    expected = 0.5 * np.sum(p * np.log(p / m)) + 0.5 * np.sum(q * np.log(q / m))
    assert stats.jensen_shannon(p, q) == pytest.approx(expected)


# --- unpaired z-test -------------------------------------------------------------------------


@given(n_a=st.integers(1, 1000), n_b=st.integers(1, 1000), data=st.data())
def test_two_proportion_sides_add_up(n_a, n_b, data):
    s_a = data.draw(st.integers(0, n_a))
    s_b = data.draw(st.integers(0, n_b))
    greater = stats.two_proportion_z(s_a, n_a, s_b, n_b, "greater")
    less = stats.two_proportion_z(s_a, n_a, s_b, n_b, "less")
    assert 0.0 <= greater <= 1.0
    assert greater + less == pytest.approx(1.0)
    assert 0.0 <= stats.two_proportion_z(s_a, n_a, s_b, n_b, "two-sided") <= 1.0


def test_two_proportion_known_value():
    # 70/100 vs 55/100: pooled 0.625, se = sqrt(0.625*0.375*0.02), z = 0.15/se
    z = 0.15 / math.sqrt(0.625 * 0.375 * 0.02)
    assert stats.two_proportion_z(70, 100, 55, 100) == pytest.approx(sps.norm.sf(z))


# --- sign-flip and Wilcoxon ------------------------------------------------------------------


@given(b=st.integers(0, 8), c=st.integers(0, 8), zeros=st.integers(0, 5),
       alternative=st.sampled_from(ALTERNATIVES))
def test_sign_flip_on_binary_differences_is_mcnemar(b, c, zeros, alternative):
    # difference = baseline score - run score: +1 for an item lost, -1 for an item gained
    differences = [1.0] * b + [-1.0] * c + [0.0] * zeros
    assert stats.sign_flip_test(differences, alternative=alternative) == pytest.approx(
        stats.mcnemar_exact(b, c, alternative))


def test_sign_flip_monte_carlo_agrees_with_exact_mcnemar():
    differences = [1.0] * 24 + [-1.0] * 12
    p = stats.sign_flip_test(differences, iters=20000, seed=1)
    assert p == pytest.approx(stats.mcnemar_exact(24, 12), abs=0.006)


@given(st.lists(st.floats(min_value=-10, max_value=10, allow_nan=False), min_size=1, max_size=40),
       st.sampled_from(ALTERNATIVES))
@settings(max_examples=50, deadline=None)
def test_sign_flip_p_value_is_a_probability(differences, alternative):
    p = stats.sign_flip_test(differences, iters=500, alternative=alternative)
    assert 0.0 < p <= 1.0


def test_sign_flip_known_values():
    assert stats.sign_flip_test([0.3, 1.2, 0.7, 2.0, 0.1]) == pytest.approx(1 / 32)
    assert stats.sign_flip_test([0.0, 0.0]) == 1.0
    # Monte Carlo never reports less than its resolution
    assert stats.sign_flip_test([1.0] * 40, iters=99) == pytest.approx(0.01)


def test_sign_flip_holds_its_false_alarm_rate():
    rng = np.random.default_rng(5)
    p = np.array([stats.sign_flip_test(rng.standard_t(3, 30), iters=400, seed=i) for i in range(600)])
    assert np.mean(p < 0.05) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 600)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-3, 3), st.booleans()), min_size=1, max_size=30),
       st.lists(st.floats(-3, 3), max_size=10))
def test_side_permutation_p_value_is_a_probability(block, flips):
    values, sides = [b[0] for b in block], [b[1] for b in block]
    p = stats.side_permutation_test([(values, sides, 1.0)], flips, iters=200)
    assert 1 / 201 <= p <= 1.0


def test_side_permutation_finds_the_extreme_arrangement_and_keeps_the_count():
    values = np.array([0.5] * 5 + [-0.5] * 5)
    # the model's five items are exactly the five high ones: 1 of C(10, 5) = 252 arrangements
    extreme = stats.side_permutation_test([(values, [True] * 5 + [False] * 5, 1.0)], iters=20000, seed=1)
    assert extreme == pytest.approx(1 / 252, abs=0.002)
    # all items on one side: shuffling cannot change anything, so no evidence at all
    assert stats.side_permutation_test([(values, [True] * 10, 1.0)], iters=200) == 1.0
    assert stats.side_permutation_test([], [], iters=10) == 1.0
    # flips alone behave as the sign-flip test
    assert stats.side_permutation_test([], [1.0] * 40, iters=99) == pytest.approx(0.01)


def test_side_permutation_holds_its_false_alarm_rate_with_unequal_sides():
    """Sides drawn 80:20 (one model far more accurate than the other): with the count of each
    side kept, the test stays at its level."""
    rng = np.random.default_rng(7)
    ps = []
    for i in range(400):
        teacher_right = rng.random(40) < 0.9
        centred = teacher_right - teacher_right.mean()
        sides = rng.random(40) < 0.8
        ps.append(stats.side_permutation_test([(centred, sides, 1.0)], rng.standard_t(3, 5),
                                              iters=400, seed=i))
    assert np.mean(np.array(ps) < 0.05) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 400)


def test_wilcoxon_matches_scipy_and_handles_all_zero():
    d = [0.5, -0.2, 1.3, 0.8, 0.0, 2.1, -0.4, 0.9]
    nonzero = [x for x in d if x != 0]
    assert stats.wilcoxon_signed_rank(d, "greater") == pytest.approx(
        sps.wilcoxon(nonzero, alternative="greater").pvalue)
    assert stats.wilcoxon_signed_rank([0.0, 0.0, 0.0]) == 1.0


# --- bootstrap -------------------------------------------------------------------------------


def test_bootstrap_resamples_arrays_jointly():
    rng = np.random.default_rng(0)
    b = rng.random(50)
    point, lo, hi = stats.bootstrap_interval(lambda x, y: (x - y).mean(axis=-1), b + 1.0, b, iters=200)
    assert (point, lo, hi) == pytest.approx((1.0, 1.0, 1.0))


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=60), st.integers(0, 2**31))
@settings(max_examples=40, deadline=None)
def test_paired_ratio_point_is_ratio_of_means(scores, seed):
    num = np.asarray(scores)
    den = np.clip(num + 0.1, 0, 1)
    point, lo, hi = stats.paired_bootstrap_ratio(num, den, iters=200, seed=seed)
    assert point == pytest.approx(num.sum() / den.sum())
    assert lo <= hi


def test_paired_ratio_with_zero_denominator_returns_nan():
    point, lo, hi = stats.paired_bootstrap_ratio([1, 0, 1], [0, 0, 0], iters=100)
    assert math.isnan(point) and math.isnan(lo) and math.isnan(hi)
    # teacher right on a single item: some resamples drop it, so the interval is undefined
    point, lo, hi = stats.paired_bootstrap_ratio([1, 0, 0, 0], [1, 0, 0, 0], iters=100)
    assert point == 1.0 and math.isnan(lo) and math.isnan(hi)


def test_paired_ratio_interval_covers_the_true_retention():
    rng = np.random.default_rng(11)
    covered = 0
    for i in range(100):
        teacher = rng.random(200) < 0.8
        student = teacher & (rng.random(200) < 0.75)  # true retention 0.75
        _, lo, hi = stats.paired_bootstrap_ratio(student, teacher, iters=1000, seed=i)
        covered += lo <= 0.75 <= hi
    assert covered >= 88


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2000), st.data(), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_wilson_closed_form_matches_scipy(n, data, confidence):
    from scipy.stats import binomtest

    successes = data.draw(st.integers(0, n))
    ci = binomtest(successes, n).proportion_ci(confidence, method="wilson")
    lo, hi = stats.wilson_interval(successes, n, confidence)
    assert lo == pytest.approx(max(ci.low, 0.0), abs=1e-12)
    assert hi == pytest.approx(min(ci.high, 1.0), abs=1e-12)
