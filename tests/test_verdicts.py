"""The regression gate: paired comparisons, Holm across a session, minimum effect, messages."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_distillbench.errors import DistillbenchError
from pytest_distillbench.measures import stats
from pytest_distillbench.measures.verdicts import (
    SCALE_TOLERANCE,
    PairedComparison,
    _wilcoxon_rows,
    choice_margin,
    compare_paired,
    compare_paired_arrays,
    decide,
    item_margins,
    margin_scale_change,
    margin_split_sides,
)
from pytest_distillbench.records import ItemRecord


def _scores(values) -> dict[str, float]:
    return {f"doc{i}": float(v) for i, v in enumerate(values)}


def _comparison(p: float, drop: float, p_improved: float = 1.0, name: str = "") -> PairedComparison:
    baseline = 0.7
    return PairedComparison(
        n=500, baseline_score=baseline, current_score=baseline - drop, lost=30, gained=10,
        effect=-drop, p_value=p, p_value_improved=p_improved, method="mcnemar",
        accuracy_p_value=p, name=name)


# --- compare_paired --------------------------------------------------------------------------


def test_compare_counts_lost_and_gained_items_on_common_keys():
    baseline = {"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.0, "e": 1.0, "only-in-baseline": 1.0}
    current = {"e": 0.0, "a": 0.0, "b": 1.0, "c": 1.0, "d": 0.0, "only-in-run": 0.0}
    c = compare_paired(baseline, current)
    assert (c.n, c.lost, c.gained, c.method) == (5, 2, 1, "mcnemar")
    assert c.baseline_score == pytest.approx(0.6) and c.current_score == pytest.approx(0.4)
    assert c.effect == pytest.approx(-0.2) and c.drop == pytest.approx(0.2)
    assert c.p_value == pytest.approx(stats.mcnemar_exact(2, 1, "greater"))
    assert c.p_value_improved == pytest.approx(stats.mcnemar_exact(2, 1, "less"))


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=300))
def test_compare_matches_mcnemar_and_swapping_runs_swaps_the_sides(pairs):
    baseline = _scores(b for b, _ in pairs)
    current = _scores(c for _, c in pairs)
    lost = sum(b and not c for b, c in pairs)
    gained = sum(c and not b for b, c in pairs)
    forward = compare_paired(baseline, current)
    backward = compare_paired(current, baseline)
    assert (forward.lost, forward.gained) == (lost, gained)
    assert forward.p_value == pytest.approx(stats.mcnemar_exact(lost, gained, "greater"))
    assert backward.p_value == pytest.approx(forward.p_value_improved)
    assert forward.effect == pytest.approx(-backward.effect)


def test_non_binary_scores_use_a_sign_flip_test_on_score_differences():
    rng = np.random.default_rng(0)
    base = rng.random(40)
    cur = np.clip(base - 0.1 + 0.05 * rng.standard_normal(40), 0, 1)
    c = compare_paired(_scores(base), _scores(cur))
    assert c.method == "sign-flip"
    assert c.p_value == pytest.approx(stats.sign_flip_test(base - cur, alternative="greater"))
    assert c.p_value < 0.01


def test_compare_rejects_disjoint_item_sets_and_unknown_methods():
    with pytest.raises(ValueError, match="no items in common"):
        compare_paired({"a": 1.0}, {"b": 1.0})
    with pytest.raises(DistillbenchError, match="unknown regression test"):
        compare_paired({"a": 1.0}, {"a": 1.0}, method="t-test")


# --- margins ---------------------------------------------------------------------------------


def test_choice_margin_is_gold_minus_best_wrong_choice():
    assert choice_margin([-1.0, -3.0, -0.5], gold=2) == pytest.approx(0.5)
    assert choice_margin([-1.0, -3.0, -0.5], gold=0) == pytest.approx(-0.5)
    with pytest.raises(ValueError):
        choice_margin([-1.0], gold=0)


def test_item_margins_reads_multiple_choice_records_only():
    def record(doc_hash, logprobs, gold):
        return ItemRecord(doc_id=0, doc_hash=doc_hash, prompt="", target="", response="", raw_response="",
                          score=1.0, prompt_tokens=1, output_tokens=1, choice_logprobs=logprobs, gold=gold)
    records = [record("x", (-2.0, -1.0), 1), record("y", None, None), record("z", (-0.1, -4.0, -2.0), 0)]
    assert item_margins(records) == pytest.approx({"x": 1.0, "z": 1.9})


def _margin_runs(n=300, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    easiness = 0.5 + 0.9 * rng.standard_normal(n)
    m0 = easiness + 0.45 * rng.standard_normal(n)
    m1 = easiness + 0.45 * rng.standard_normal(n) - shift
    return m0, m1


def test_margin_method_uses_margins_and_reports_the_accuracy_test_too():
    m0, m1 = _margin_runs(shift=0.15)
    c = compare_paired(_scores(m0 > 0), _scores(m1 > 0), baseline_margins=_scores(m0),
                       current_margins=_scores(m1), method="margin")
    mcnemar = compare_paired(_scores(m0 > 0), _scores(m1 > 0))
    assert c.method == "margin" and c.margin_p_value == c.p_value
    assert c.accuracy_p_value == pytest.approx(mcnemar.p_value)
    assert c.p_value < 1e-4 < mcnemar.p_value


def test_margin_test_ignores_a_run_that_is_only_less_confident():
    m0, _ = _margin_runs()
    c = compare_paired(_scores(m0 > 0), _scores(m0 > 0), baseline_margins=_scores(m0),
                       current_margins=_scores(0.3 * m0), method="margin")
    assert c.method == "margin" and c.p_value == 1.0 and c.p_value_improved == 1.0


@pytest.mark.parametrize("method", ["auto", "margin", "margin-split"])
@pytest.mark.parametrize("margins", [None, {"doc0": 0.3}])
def test_margin_method_falls_back_to_mcnemar_when_margins_are_missing(margins, method):
    base, cur = _scores([1, 1, 0, 1]), _scores([0, 1, 0, 0])
    c = compare_paired(base, cur, baseline_margins=margins, current_margins=_scores([1, 1, -1, 1]),
                       method=method)
    assert c.method == "mcnemar" and c.margin_p_value is None
    assert "fell back to mcnemar" in c.note
    assert c.p_value == pytest.approx(stats.mcnemar_exact(2, 0))


def test_array_and_mapping_entry_points_agree():
    m0 = np.stack([_margin_runs(n=120, shift=s, seed=i)[0] for i, s in enumerate((0.0, 0.2, 0.4))])
    m1 = np.stack([_margin_runs(n=120, shift=s, seed=i)[1] for i, s in enumerate((0.0, 0.2, 0.4))])
    for method in ("auto", "mcnemar", "margin", "margin-split"):
        by_array = compare_paired_arrays(m0 > 0, m1 > 0, baseline_margins=m0, current_margins=m1, method=method)
        for row, comparison in enumerate(by_array):
            by_map = compare_paired(_scores(m0[row] > 0), _scores(m1[row] > 0), baseline_margins=_scores(m0[row]),
                                    current_margins=_scores(m1[row]), method=method)
            assert by_map == comparison


# --- the split margin test ------------------------------------------------------------------

_margin = st.floats(-20, 20).filter(lambda x: abs(x) > 1e-3)
_margin_pairs = st.lists(st.tuples(_margin, _margin), min_size=1, max_size=120)


def _columns(pairs) -> tuple[np.ndarray, np.ndarray]:
    return np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])


@settings(deadline=None)  # scipy's exact Wilcoxon is slow on a busy 2-core machine
@given(_margin_pairs)
def test_split_sides_are_p_values_and_swapping_the_runs_swaps_worse_and_better(pairs):
    m0, m1 = _columns(pairs)
    forward, backward = margin_split_sides(m0, m1), margin_split_sides(m1, m0)
    for (worse, better), (worse_swapped, better_swapped) in zip(forward, backward, strict=True):
        assert np.all((worse >= 0) & (worse <= 1) & (better >= 0) & (better <= 1))
        assert worse_swapped == pytest.approx(better, abs=1e-9)
        assert better_swapped == pytest.approx(worse, abs=1e-9)


@settings(deadline=None)  # scipy's exact Wilcoxon is slow on a busy 2-core machine
@given(_margin_pairs, st.floats(0.1, 10), st.floats(0.5, 2), st.booleans())
def test_each_side_ignores_a_recalibration_of_the_other_sides_margins(pairs, scale, power, positive):
    # Any sign-preserving increasing map of the run's right (or wrong) answers' margins only.
    m0, m1 = _columns(pairs)
    sign = 1.0 if positive else -1.0
    touched = sign * m1 > 0
    recalibrated = np.where(touched, sign * scale * np.abs(m1) ** power, m1)
    before, after = margin_split_sides(m0, m1), margin_split_sides(m0, recalibrated)
    untouched = 1 if positive else 0  # the "wrong" side never reads a positive margin's size
    assert np.array_equal(before[untouched], after[untouched])


@settings(deadline=None)  # scipy's exact Wilcoxon is slow on a busy 2-core machine
@given(_margin_pairs)
def test_split_sides_are_signed_rank_tests_on_the_positive_and_negative_parts(pairs):
    # Right side: drops of max(m, 0); wrong side: drops of min(m, 0); an item whose answer changed
    # also carries the mean size of that part over the changed items, in the direction of the change.
    m0, m1 = _columns(pairs)
    changed = (m0 > 0) != (m1 > 0)
    direction = np.where(changed, np.where(m0 > 0, 1.0, -1.0), 0.0)
    (right, right_better), (wrong, wrong_better) = margin_split_sides(m0, m1)
    for part, worse, better in ((np.maximum, right, right_better), (np.minimum, wrong, wrong_better)):
        drops = part(m0, 0.0) - part(m1, 0.0)
        typical = np.abs(drops[changed]).mean() if changed.any() else 0.0
        expected = drops + direction * typical
        assert worse[0] == pytest.approx(stats.wilcoxon_signed_rank(expected, "greater"))
        assert better[0] == pytest.approx(stats.wilcoxon_signed_rank(expected, "less"))


@settings(deadline=None)  # scipy's exact Wilcoxon is slow on a busy 2-core machine
@given(st.lists(st.tuples(st.floats(0.01, 5), st.floats(0.01, 5)), min_size=1, max_size=60))
def test_items_that_keep_their_answer_reach_only_their_own_side(pairs):
    # Items answered right in both runs never reach the wrong side, and vice versa.
    m0, m1 = _columns(pairs)
    (right, _), (wrong, wrong_better) = margin_split_sides(m0, m1)
    assert wrong[0] == wrong_better[0] == 1.0
    (right_neg, right_neg_better), (wrong_neg, _) = margin_split_sides(-m0, -m1)
    assert right_neg[0] == right_neg_better[0] == 1.0
    assert wrong_neg[0] == pytest.approx(stats.wilcoxon_signed_rank(m1 - m0, "greater"))
    assert right[0] == pytest.approx(stats.wilcoxon_signed_rank(m0 - m1, "greater"))


def test_split_margin_test_counts_changed_items_on_both_sides():
    # Only the answers changed (10 lost, 2 gained), every margin that kept its sign kept its value:
    # both sides see the changes, each at its own scale.
    m0 = np.array([1.0] * 10 + [-0.5] * 2 + [2.0] * 30 + [-3.0] * 10)
    m1 = np.array([-0.5] * 10 + [0.5] * 2 + [2.0] * 30 + [-3.0] * 10)
    (right, _), (wrong, _) = margin_split_sides(m0, m1)
    assert right[0] < 0.05 and wrong[0] < 0.05
    typical = (10 * 1.0 + 2 * 0.5) / 12  # mean positive part of the changed items
    assert right[0] == pytest.approx(stats.wilcoxon_signed_rank([1.0 + typical] * 10 + [-(0.5 + typical)] * 2,
                                                                "greater"))


def test_split_margin_test_ignores_a_run_less_sure_only_of_its_right_answers():
    # Nothing changed but the run's confidence in the answers it gets right (halved).
    m0, m1 = _margin_runs(seed=0)
    halved = np.where(m1 > 0, 0.5 * m1, m1)
    by_method = {method: compare_paired(_scores(m0 > 0), _scores(halved > 0), baseline_margins=_scores(m0),
                                        current_margins=_scores(halved), method=method)
                 for method in ("margin", "margin-split")}
    split = by_method["margin-split"]
    assert split.drop >= 0.01  # noise alone lowered the score past the minimum effect
    assert decide([by_method["margin"]])[0].regressed  # the plain margin test fails it
    assert split.margin_sides is not None and split.margin_sides[0] < 1e-6  # the right side is fooled,
    assert split.margin_sides[1] == margin_split_sides(m0, m1)[1][0][0]  # the wrong side is not
    assert split.p_value == split.margin_sides[1] > 0.05 and not decide([split])[0].regressed


def test_split_margin_test_fails_a_uniformly_worse_run_that_mcnemar_misses():
    m0, m1 = _margin_runs(shift=0.15)
    split = compare_paired(_scores(m0 > 0), _scores(m1 > 0), baseline_margins=_scores(m0),
                           current_margins=_scores(m1), method="margin-split")
    assert split.method == "margin-split" and split.p_value == split.margin_p_value == max(split.margin_sides)
    assert split.p_value < 1e-4 < split.accuracy_p_value
    mcnemar = compare_paired(_scores(m0 > 0), _scores(m1 > 0))
    (verdict,) = decide([split], alpha=1e-4)
    assert verdict.regressed and not decide([mcnemar], alpha=1e-4)[0].regressed
    text = verdict.message()
    assert "split margin test" in text and "sides (run worse): right answers' margins" in text
    assert "accuracy-only p-value (McNemar)" in text


def test_batched_wilcoxon_matches_one_test_per_row():
    rng = np.random.default_rng(2)
    drops = np.round(rng.normal(0.1, 1.0, (4, 80)), 1)
    drops[0, 40:] = 0.0  # exact path (40 non-zero)
    drops[1, :] = 0.0  # nothing changed
    worse, better = _wilcoxon_rows(drops)
    for row in range(4):
        assert worse[row] == pytest.approx(stats.wilcoxon_signed_rank(drops[row], "greater"))
        assert better[row] == pytest.approx(stats.wilcoxon_signed_rank(drops[row], "less"))


# --- decide ----------------------------------------------------------------------------------


def test_decide_adjusts_with_holm_across_the_session():
    verdicts = decide([_comparison(0.01, 0.05), _comparison(0.03, 0.05), _comparison(0.04, 0.05)])
    assert [v.adjusted_p for v in verdicts] == pytest.approx([0.03, 0.06, 0.06])
    assert [v.regressed for v in verdicts] == [True, False, False]
    assert all(v.family_size == 3 for v in verdicts)
    assert [v.regressed for v in decide([_comparison(0.03, 0.05)])] == [True]


def test_a_significant_drop_below_the_minimum_effect_does_not_fail():
    (verdict,) = decide([_comparison(1e-6, 0.005)], min_effect=0.01)
    assert not verdict.regressed and "minimum effect" in verdict.reason
    (verdict,) = decide([_comparison(1e-6, 0.01)], min_effect=0.01)
    assert verdict.regressed
    # without a minimum effect the score must still have fallen
    (verdict,) = decide([_comparison(1e-6, 0.0)], min_effect=0.0)
    assert not verdict.regressed


def test_a_significant_rise_is_reported_as_an_improvement_not_a_failure():
    (verdict,) = decide([_comparison(1.0, -0.04, p_improved=1e-4)])
    assert verdict.improved and not verdict.regressed and "improved" in verdict.reason


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(-0.2, 0.2)), min_size=1, max_size=12),
       st.floats(0.001, 0.2), st.floats(0.0, 0.05))
def test_verdict_rules_hold_for_any_session(rows, alpha, min_effect):
    comparisons = [_comparison(p, drop, p_improved=q) for p, q, drop in rows]
    verdicts = decide(comparisons, alpha=alpha, min_effect=min_effect)
    assert [v.adjusted_p for v in verdicts] == pytest.approx(stats.holm([p for p, _, _ in rows]))
    for v, (p, _, _) in zip(verdicts, rows, strict=True):
        drop = v.comparison.drop
        assert v.adjusted_p >= p
        assert v.regressed == (v.adjusted_p < alpha and drop > 0 and drop >= min_effect - 1e-9)
        assert not (v.regressed and v.improved)
        assert not v.improved or (v.adjusted_p_improved < alpha and drop < 0)


def test_decide_rejects_bad_settings():
    with pytest.raises(DistillbenchError):
        decide([_comparison(0.5, 0.0)], alpha=1.5)
    with pytest.raises(DistillbenchError):
        decide([_comparison(0.5, 0.0)], min_effect=-0.1)


def test_failure_message_shows_scores_items_p_values_and_thresholds():
    base = _scores([1] * 80 + [0] * 20)
    cur = _scores([0] * 15 + [1] * 65 + [1] * 2 + [0] * 18)
    (verdict,) = decide([compare_paired(base, cur, name="math/addition")], alpha=0.05, min_effect=0.02)
    text = verdict.message()
    assert verdict.regressed
    for fragment in ("math/addition", "0.8000 (baseline)", "0.6700 (this run)", "-0.1300", "100 paired items",
                     "items lost: 15, items gained: 2", "exact McNemar", "Holm-adjusted over 1 comparison",
                     "alpha: 0.05", "minimum effect: 0.0200", "REGRESSED"):
        assert fragment in text, fragment
    assert verdict.comparison.p_value == pytest.approx(0.00117, abs=5e-6)
    assert "p-value (run worse): 0.0012 raw, 0.0012 Holm-adjusted" in text


def test_margin_failure_message_also_shows_the_accuracy_test():
    m0, m1 = _margin_runs(shift=0.3)
    comparison = compare_paired(_scores(m0 > 0), _scores(m1 > 0), baseline_margins=_scores(m0),
                                current_margins=_scores(m1), method="margin")
    text = decide([comparison])[0].message()
    assert "Wilcoxon" in text and "accuracy-only p-value (McNemar)" in text


# --- calibration: false alarms and power on simulated runs -----------------------------------


def _simulated(runs, n, shift, rng):
    easiness = 0.5 + 0.85 * rng.standard_normal((runs, n))
    m0 = easiness + 0.5 * rng.standard_normal((runs, n))
    m1 = easiness + 0.5 * rng.standard_normal((runs, n)) - shift
    return m0, m1


@pytest.mark.parametrize("method", ["auto", "mcnemar", "margin", "margin-split"])
def test_gate_holds_its_false_alarm_rate_when_nothing_changed(method):
    rng = np.random.default_rng(42)
    m0, m1 = _simulated(1500, 300, 0.0, rng)
    comparisons = compare_paired_arrays(m0 > 0, m1 > 0, baseline_margins=m0, current_margins=m1, method=method)
    rate = np.mean([decide([c])[0].regressed for c in comparisons])
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 1500)


def test_session_false_alarm_rate_with_holm_stays_under_alpha():
    rng = np.random.default_rng(9)
    m0, m1 = _simulated(4000, 200, 0.0, rng)
    comparisons = compare_paired_arrays(m0 > 0, m1 > 0)
    sessions = [comparisons[i:i + 10] for i in range(0, 4000, 10)]
    rate = np.mean([any(v.regressed for v in decide(s)) for s in sessions])
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / len(sessions))


def test_margin_tests_are_more_powerful_than_mcnemar_on_a_uniform_shift():
    rng = np.random.default_rng(4)
    m0, m1 = _simulated(400, 300, 0.12, rng)
    power = {}
    for method in ("auto", "mcnemar", "margin", "margin-split"):
        comparisons = compare_paired_arrays(m0 > 0, m1 > 0, baseline_margins=m0, current_margins=m1, method=method)
        power[method] = np.mean([decide([c])[0].regressed for c in comparisons])
    assert power["margin"] > power["mcnemar"] + 0.2
    # The split keeps less of that edge: 0.59 against McNemar's 0.45 on these runs.
    assert power["margin-split"] > power["mcnemar"]
    # auto keeps most of the split's edge: most runs' margins stay on one scale.
    assert power["auto"] > power["mcnemar"]


def test_a_drop_that_comes_with_more_confidence_hides_from_the_split_test_but_not_from_auto():
    # The same real drop, but the new run's margins are also 10 % wider. The right answers' side
    # then sees margins grow and no longer calls the run worse; auto sees the wider margins and
    # lets McNemar decide.
    rng = np.random.default_rng(4)
    m0, m1 = _simulated(400, 300, 0.12, rng)
    m1 = 1.1 * m1
    power, comparisons = {}, {}
    for method in ("auto", "mcnemar", "margin-split"):
        comparisons[method] = compare_paired_arrays(m0 > 0, m1 > 0, baseline_margins=m0, current_margins=m1,
                                                    method=method)
        power[method] = np.mean([decide([c])[0].regressed for c in comparisons[method]])
    assert power["margin-split"] < power["mcnemar"] - 0.1
    assert power["auto"] >= power["mcnemar"] - 0.03
    fell_back = [c for c in comparisons["auto"] if c.method == "mcnemar"]
    assert len(fell_back) > 0.8 * len(comparisons["auto"])
    assert all(c.note.startswith("auto: the run's margins are") and c.note.endswith("so McNemar decided")
               for c in fell_back)
    assert sum("larger overall" in c.note for c in fell_back) > 0.95 * len(fell_back)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.2, 5.0))
def test_margin_scale_change_reads_a_global_rescaling_exactly(seed, factor):
    m0, m1 = _margin_runs(n=60, seed=seed)
    before = margin_scale_change(m0, m1)[0]
    assert margin_scale_change(m0, factor * m1)[0] == pytest.approx(before + math.log(factor), abs=1e-9)
    assert margin_scale_change(m1, m0)[0] == pytest.approx(-before, abs=1e-12)  # swapping the runs negates it
    assert margin_scale_change(m0, factor * m0)[0] == pytest.approx(math.log(factor), abs=1e-12)


def test_margin_scale_change_is_blind_to_a_uniform_shift_and_undefined_without_kept_signs():
    # A real drop moves right and wrong margins alike: the two sides' log ratios cancel.
    rng = np.random.default_rng(11)
    m0, m1 = _simulated(300, 500, 0.15, rng)
    scale = margin_scale_change(m0, m1)
    assert abs(scale.mean()) < 0.02 and np.mean(np.abs(scale) <= SCALE_TOLERANCE) > 0.8
    assert math.isnan(margin_scale_change([1.0, -2.0], [-1.0, 2.0])[0])
    c = compare_paired(_scores([1, 0]), _scores([0, 1]), baseline_margins=_scores([1.0, -2.0]),
                       current_margins=_scores([-1.0, 2.0]), method="auto")
    assert c.method == "mcnemar" and c.margin_scale is None and "no item kept its sign" in c.note


def test_settings_offer_the_gate_s_methods_and_default():
    # settings keeps its own copy so that reading settings imports no numpy
    from pytest_distillbench.measures import verdicts
    from pytest_distillbench.spec import settings

    assert settings.VERDICT_METHODS == verdicts.METHODS
    assert settings.DEFAULT_VERDICT == verdicts.DEFAULT_METHOD == settings.Settings.verdict
