"""The regression gate: does a new run score worse than its stored baseline on the same items?

``compare_paired`` turns two per-item score maps (keyed by doc hash) into a
``PairedComparison``; ``decide`` takes every comparison of a session, adjusts their p-values
with Holm and returns one ``Verdict`` each. A run *regresses* only when its drop is both
significant after adjustment and at least ``min_effect`` in score units (and above zero), so
a huge suite does not fail on a negligible change.

Tests available (``method``):

* ``"auto"`` (the plugin's default): ``"margin-split"`` where its reading of margin sizes can
  be trusted, McNemar elsewhere. A margin test compares the sizes of the two runs' margins, so
  they must be on one scale: :func:`margin_scale_change` estimates how much larger the run's
  margins are overall than the baseline's (what a temperature change does), in a way that a
  real drop hardly moves. Beyond ``SCALE_TOLERANCE`` (about 6 % either way), on tasks without
  margins (generation), or when margins are missing, McNemar decides, and ``note`` says why.
  So a checkpoint that is uniformly more or less sure of itself is judged on right and wrong
  alone, where the split test would lose most of its power.
* ``"mcnemar"``: one-sided exact McNemar on the discordant items. For scores that
  are not all 0/1 the same conditional test generalises to a sign-flip permutation test on
  the per-item score differences (``method`` then reads ``"sign-flip"``).
* ``"margin"``: for multiple-choice tasks, a Wilcoxon signed-rank test on per-item
  log-likelihood margins (gold choice minus the best wrong one). It also uses the items whose
  correctness did not change, which is where its extra power comes from. Each run's margins
  are first replaced by ``sign(margin) * rank(|margin|) / n`` within that run, so a
  checkpoint that is merely more or less confident everywhere (a temperature change) does
  not look like a regression. Its assumption is stronger than McNemar's: with no real
  change, the two runs' margins must be exchangeable item by item up to such a
  recalibration. A checkpoint that loses confidence only on the items it gets right, without
  changing accuracy, can fail it; ``benchmarks/verdicts.py`` measures both cases. The
  accuracy test is still reported, and a failure still needs the score to drop by
  ``min_effect``. When margins are missing for any paired item it falls back to McNemar and
  says so in ``note``.
* ``"margin-split"``: a margin test that a change of confidence on one side of zero should
  not fail (:func:`margin_split_sides`). Each margin is split into its positive part (the
  right answers' side) and its negative part (the wrong answers' side); each side gets a
  Wilcoxon signed-rank test on the per-item drops of its part, where an item whose answer
  changed also counts with the typical size of the part it cannot see. The run counts as
  worse only if both sides say so (an intersection-union test: p is the larger of the two,
  level alpha without correction). A real drop lowers every margin. A run that is only less
  sure of its right answers leaves the wrong side untouched, a higher temperature raises
  the wrong answers' margins, and the mirror cases leave the right side untouched. Same
  minimum effect and fallback as ``"margin"``.

Why ``"auto"`` is the default (``python benchmarks/verdicts.py``, 2000 simulated runs per
row, seed 0). With 500 items, 20 % of them discordant and a real 5-point drop, McNemar caught
78.1 % of drops. The margin test caught 97.6 % but failed 33 % of unchanged runs whose right
answers' margins were halved (34 % when the wrong answers' margins were doubled).
``"margin-split"`` caught 92.5 %, failed at most 2.2 % of unchanged runs and 3.5-5.2 % where
one side's confidence alone changed (the intersection-union test's worst case), but a real drop
that comes with a change of confidence hides from it: with the new run's margins also 20 %
narrower or 25 % wider it caught 24.6 % / 0.5 % of drops against McNemar's 79.0 % / 78.1 %,
because the side whose margins grew no longer calls the run worse. ``"auto"`` caught 91.9 %
of plain drops, at least as many as McNemar in every cell of the main table (200 to 2000
items, 10 to 30 % discordant), failed no more unchanged runs than McNemar in any row (at most
4.7 %; a session of ten unchanged tasks 0.9-1.5 %), and with the confidence changes stayed
within 1.2 points of McNemar (x1.1 at 200 items / 30 %: 30.4 % against 31.6 %). The first
version of the split (unchanged items' Wilcoxon Stouffer-combined with McNemar) did worse
(89.1 % on plain drops). Mid-p McNemar was rejected for the gate: its false-alarm rate exceeds
alpha for some numbers of discordant items.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from pytest_distillbench.errors import DistillbenchError
from pytest_distillbench.measures import stats
from pytest_distillbench.measures.stats import scipy_stats
from pytest_distillbench.records import ItemRecord

METHODS = ("auto", "mcnemar", "margin", "margin-split")
DEFAULT_METHOD = "auto"  # the plugin's gate (--distillbench-verdict); see the module docstring
_MARGIN_METHODS = ("auto", "margin", "margin-split")
# method="auto" trusts margin sizes only while the two runs' margins are on one scale: beyond
# this change of their overall size (log units, about 6 %) it decides by McNemar. Chosen on
# simulations like benchmarks/verdicts.py's (1000 runs, another seed): at 500 items / 20 %
# discordant a 5-point drop was caught 0.888 / 0.900 / 0.909 of the time with 0.04 / 0.05 /
# 0.06, and a drop whose margins also grew 10 % (where the split test is weak) 0.794 / 0.791 /
# 0.789 of the time, against McNemar's 0.781 and 0.793.
SCALE_TOLERANCE = 0.06

_DESCRIPTIONS = {
    "mcnemar": "exact McNemar on the items that changed",
    "sign-flip": "sign-flip permutation test on per-item score differences",
    "margin": "Wilcoxon signed-rank on per-item answer margins (within-run signed ranks)",
    "margin-split": "split margin test: the positive (right-answer) and the negative (wrong-answer) parts of the "
                    "margins must each show a drop (one Wilcoxon signed-rank test per part)",
}

# Scores differ from a threshold by rounding only (e.g. 0.7 - 0.69 = 0.0100000000000000009).
_EPS = 1e-9


@dataclass(frozen=True)
class PairedComparison:
    """A new run against its baseline on the items both contain."""

    n: int  # paired items
    baseline_score: float
    current_score: float
    lost: int  # items the baseline got right and the run got wrong (b)
    gained: int  # items the run got right and the baseline got wrong (c)
    effect: float  # current_score - baseline_score, in score units
    p_value: float  # one-sided: the run is worse, by ``method``
    p_value_improved: float  # one-sided: the run is better, by ``method``
    method: str  # "mcnemar", "sign-flip" or "margin"
    accuracy_p_value: float  # the accuracy test's one-sided p, whatever ``method`` is
    accuracy_method: str = "mcnemar"  # "mcnemar" (0/1 scores) or "sign-flip"
    margin_p_value: float | None = None
    margin_sides: tuple[float, float] | None = None  # margin-split: p (worse) of the right, wrong side
    margin_scale: float | None = None  # auto: log of how much larger the run's margins are overall
    name: str = ""
    note: str = ""  # e.g. why a requested method was not used

    @property
    def drop(self) -> float:
        return self.baseline_score - self.current_score

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self.method]


@dataclass(frozen=True)
class Verdict:
    comparison: PairedComparison
    adjusted_p: float  # Holm-adjusted over the session's comparisons
    adjusted_p_improved: float
    regressed: bool
    improved: bool
    reason: str
    alpha: float
    min_effect: float
    family_size: int  # how many comparisons the Holm adjustment covered

    def message(self) -> str:
        """Readable multi-line summary, used as the failure message of a regression item."""
        c = self.comparison
        title = f"{c.name}: " if c.name else ""
        lines = [
            f"{title}score {c.baseline_score:.4f} (baseline) -> {c.current_score:.4f} (this run), "
            f"change {c.effect:+.4f} on {c.n} paired items",
            f"  items lost: {c.lost}, items gained: {c.gained}",
            f"  test: {c.description}",
            f"  p-value (run worse): {_fmt_p(c.p_value)} raw, {_fmt_p(self.adjusted_p)} "
            f"Holm-adjusted over {self.family_size} comparison{'s' if self.family_size != 1 else ''}",
        ]
        if c.margin_sides is not None:
            lines.append(f"  sides (run worse): right answers' margins {_fmt_p(c.margin_sides[0])}, "
                         f"wrong answers' margins {_fmt_p(c.margin_sides[1])}; the larger one counts")
        if c.margin_scale is not None:
            lines.append(f"  margins' overall size: {math.expm1(c.margin_scale):+.1%} against the baseline "
                         f"(a margin test needs it within about ±{SCALE_TOLERANCE:.0%})")
        if c.method in _MARGIN_METHODS:
            label = "McNemar" if c.accuracy_method == "mcnemar" else "sign-flip"
            lines.append(f"  accuracy-only p-value ({label}): {_fmt_p(c.accuracy_p_value)} raw")
        lines.append(f"  alpha: {self.alpha:g}, minimum effect: {self.min_effect:.4f}")
        if c.note:
            lines.append(f"  note: {c.note}")
        lines.append(f"  verdict: {self.reason}")
        return "\n".join(lines)


def _fmt_p(p: float) -> str:
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


def choice_margin(choice_logprobs: Sequence[float], gold: int) -> float:
    """Log-likelihood of the gold choice minus the best wrong choice (> 0 means answered right)."""
    if len(choice_logprobs) < 2 or not 0 <= gold < len(choice_logprobs):
        raise ValueError(f"need at least two choices and a gold index among them, got {len(choice_logprobs)} choices, gold={gold}")
    wrong = [lp for i, lp in enumerate(choice_logprobs) if i != gold]
    return float(choice_logprobs[gold] - max(wrong))


def item_margins(records: Iterable[ItemRecord]) -> dict[str, float]:
    """Margins of the multiple-choice records that carry choice log-likelihoods, by doc hash.

    The margin matches lm-eval's ``acc`` (argmax of raw log-likelihoods); for ``acc_norm``
    the stored log-likelihoods would first need the same length normalisation.
    """
    return {
        r.doc_hash: choice_margin(r.choice_logprobs, r.gold)
        for r in records
        if r.choice_logprobs is not None and r.gold is not None and len(r.choice_logprobs) >= 2
    }


def _within_run_signed_ranks(margins: np.ndarray) -> np.ndarray:
    # Invariant to any odd increasing rescaling of one run's margins (e.g. a temperature).
    from scipy.stats import rankdata  # scipy.stats is imported only when a verdict is computed

    return np.sign(margins) * rankdata(np.abs(margins), axis=-1) / margins.shape[-1]


# Up to this many non-zero differences the Wilcoxon test uses its exact null distribution.
_WILCOXON_EXACT_MAX = 50


def _wilcoxon_rows(drops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Wilcoxon p-values per row: (drops tend positive, drops tend negative)."""
    worse = np.ones(drops.shape[0])
    better = np.ones(drops.shape[0])
    nonzero = np.count_nonzero(drops, axis=1)
    small = np.flatnonzero((nonzero > 0) & (nonzero <= _WILCOXON_EXACT_MAX))
    for i in small:
        worse[i] = stats.wilcoxon_signed_rank(drops[i], "greater")
        better[i] = stats.wilcoxon_signed_rank(drops[i], "less")
    large = np.flatnonzero(nonzero > _WILCOXON_EXACT_MAX)
    if large.size:
        # Normal approximation without continuity correction: the two sides add up to 1.
        worse[large] = scipy_stats().wilcoxon(drops[large], alternative="greater", zero_method="wilcox",
                                    method="asymptotic", axis=1).pvalue
        better[large] = 1.0 - worse[large]
    return worse, better


def _mcnemar_rows(lost: np.ndarray, gained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact one-sided McNemar per row, (worse, better): lost ~ Binomial(lost + gained, 1/2).
    Rows without discordant items get p = 1 from both tails, as in stats.mcnemar_exact."""
    changed = lost + gained
    binom = scipy_stats().binom
    return (np.where(changed > 0, binom.sf(lost - 1, changed, 0.5), 1.0),
            np.where(changed > 0, binom.cdf(lost, changed, 0.5), 1.0))


Sides = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def margin_split_sides(baseline_margins: npt.ArrayLike, current_margins: npt.ArrayLike) -> Sides:
    """The two halves of the split margin test (``method="margin-split"``), each as one-sided
    p-values per row: ``((right_worse, right_better), (wrong_worse, wrong_better))``.

    Write each margin as its positive part plus its negative part, m = max(m, 0) + min(m, 0).
    The "right" side is one Wilcoxon signed-rank test on the per-item drops of the positive
    part, the "wrong" side the same on the negative part; so the right side never reads the
    size of a negative margin and the wrong side never reads the size of a positive one.
    An item answered right in both runs enters the right side with its margin drop, one
    answered wrong in both the wrong side; an item whose answer changed enters both, with
    the sign of the change (+ lost, - gained). Its size on the right side is its positive
    margin ``a`` plus ``mean(a)`` over the changed items, on the wrong side its negative
    margin's size ``b`` plus ``mean(b)``.

    Why: under a normal model with a shared item latent, the locally most powerful
    permutation test for a uniform margin shift weights every item by its raw margin drop,
    which for a changed item is ``a + b``. A side may read only one of the two, so the other
    is replaced by its typical size, estimated from the same side's own margins (for
    changed items near the decision boundary the two parts are alike in size). Without that
    term a changed item near zero would count for almost nothing, and those items carry
    the accuracy change itself (the earlier version combined a Wilcoxon test on the
    unchanged items with exact McNemar by Stouffer instead; ``benchmarks/verdicts.py``
    keeps it as the column "split v1").

    Validity: swapping the two runs of an item turns its positive part's drop into its
    negation, keeps ``a``, ``b`` and the set of changed items (so both means), and flips
    the item's sign. Each side is therefore a sign-flip rank test, valid when the runs are
    exchangeable item by item, and stays valid when either run's negative margins (for the
    right side) or positive margins (for the wrong side) are recalibrated in any
    sign-preserving way. The test is the intersection-union of the two sides: a run is
    worse only if both say so, p is the larger of the two (likewise for better), level
    alpha without correction whenever either side's null holds.
    """
    m0, m1 = _as_rows(baseline_margins, "baseline margins"), _as_rows(current_margins, "current margins")
    if m0.shape != m1.shape:
        raise ValueError(f"baseline and current margins differ in shape: {m0.shape} != {m1.shape}")
    right0, right1 = m0 > 0, m1 > 0
    changed = right0 != right1
    direction = np.where(right0 & ~right1, 1.0, np.where(~right0 & right1, -1.0, 0.0))
    n_changed = np.maximum(np.sum(changed, axis=1, keepdims=True), 1)
    sides = []
    for part in (np.maximum, np.minimum):  # positive parts: the right side; negative parts: the wrong side
        drops = part(m0, 0.0) - part(m1, 0.0)
        typical = np.sum(np.where(changed, np.abs(drops), 0.0), axis=1, keepdims=True) / n_changed
        sides.append(_wilcoxon_rows(drops + direction * typical))
    return sides[0], sides[1]


def margin_scale_change(baseline_margins: npt.ArrayLike, current_margins: npt.ArrayLike) -> np.ndarray:
    """Per row, the log of how much larger the current run's margins are overall than the
    baseline's (0: same scale; log 2: twice as large; nan: no item kept its sign).

    On each side of zero, the items on that side in both runs give the mean of
    ``log(|m1| / |m0|)`` weighted by ``|m0 * m1|`` (a ratio of two margins near zero is mostly
    noise); the estimate is the mean of the two sides. A temperature change moves both sides
    the same way, while a real drop shrinks the right answers' margins and widens the wrong
    ones' by about the same amount, so it largely cancels. Swapping the runs negates it."""
    m0, m1 = _as_rows(baseline_margins, "baseline margins"), _as_rows(current_margins, "current margins")
    sides = []
    for sign in (1.0, -1.0):
        kept = (np.sign(m0) == sign) & (np.sign(m1) == sign)
        a, b = np.where(kept, np.abs(m0), 1.0), np.where(kept, np.abs(m1), 1.0)
        weight = np.where(kept, a * b, 0.0)
        total = weight.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            sides.append(np.where(total > 0, (weight * np.log(b / a)).sum(axis=1) / total, np.nan))
    both = np.stack(sides)
    counted = np.isfinite(both).sum(axis=0)
    with np.errstate(invalid="ignore"):
        return np.where(counted > 0, np.nansum(both, axis=0) / np.maximum(counted, 1), np.nan)


def _as_rows(values: npt.ArrayLike, what: str) -> np.ndarray:
    rows = np.asarray(values, dtype=float)
    rows = rows[None, :] if rows.ndim == 1 else rows
    if rows.ndim != 2 or rows.shape[1] == 0:
        raise ValueError(f"{what} must hold at least one item per run")
    return rows


def _scale_text(scale: float) -> str:
    factor = math.exp(scale)
    return (f"the run's margins are {abs(factor - 1):.1%} {'larger' if scale > 0 else 'smaller'} overall "
            f"than the baseline's (a margin test needs about ±{SCALE_TOLERANCE:.0%})")


def compare_paired_arrays(
    baseline: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    baseline_margins: npt.ArrayLike | None = None,
    current_margins: npt.ArrayLike | None = None,
    method: str = "mcnemar",
    name: str = "",
) -> list[PairedComparison]:
    """The array form of :func:`compare_paired`: one comparison per row, columns are items.

    Arrays are ``(items,)`` or ``(runs, items)``, already aligned item by item. Vectorised
    over rows so a simulation of thousands of runs tests exactly the shipped code.
    """
    if method not in METHODS:
        raise DistillbenchError(
            f"unknown regression test {method!r}", key="method", fix=f"use one of: {', '.join(METHODS)}"
        )
    base, cur = _as_rows(baseline, "baseline scores"), _as_rows(current, "current scores")
    if base.shape != cur.shape:
        raise ValueError(f"baseline and current scores differ in shape: {base.shape} != {cur.shape}")
    if not (np.all(np.isfinite(base)) and np.all(np.isfinite(cur))):
        raise ValueError("per-item scores must be finite numbers")
    runs, n = base.shape

    base_right, cur_right = base >= 0.5, cur >= 0.5
    lost = np.sum(base_right & ~cur_right, axis=1)
    gained = np.sum(~base_right & cur_right, axis=1)
    binary = np.all(np.isin(base, (0.0, 1.0)), axis=1) & np.all(np.isin(cur, (0.0, 1.0)), axis=1)
    acc_worse, acc_better = _mcnemar_rows(lost, gained)
    for i in np.flatnonzero(~binary):
        acc_worse[i] = stats.sign_flip_test(base[i] - cur[i], alternative="greater")
        acc_better[i] = stats.sign_flip_test(base[i] - cur[i], alternative="less")
    accuracy_method = np.where(binary, "mcnemar", "sign-flip")

    worse, better = acc_worse.copy(), acc_better.copy()
    used = accuracy_method.astype(object)
    margin_p: list[float | None] = [None] * runs
    sides: list[tuple[float, float] | None] = [None] * runs
    scales: list[float | None] = [None] * runs
    notes = [""] * runs
    if method in _MARGIN_METHODS:
        usable = np.zeros(runs, dtype=bool)
        if baseline_margins is None or current_margins is None:
            reason = "margins not available for both runs"
        else:
            m0 = _as_rows(baseline_margins, "baseline margins")
            m1 = _as_rows(current_margins, "current margins")
            if m0.shape != base.shape or m1.shape != base.shape:
                raise ValueError("margins must have the same shape as the scores")
            usable = np.all(np.isfinite(m0), axis=1) & np.all(np.isfinite(m1), axis=1)
            reason = "margins contain non-finite values"
            rows = np.flatnonzero(usable)
            if rows.size and method == "auto":
                scale = margin_scale_change(m0[rows], m1[rows])
                for j, i in enumerate(rows):
                    scales[i] = None if math.isnan(scale[j]) else float(scale[j])
                comparable = np.abs(np.nan_to_num(scale, nan=np.inf)) <= SCALE_TOLERANCE
                for i in rows[~comparable]:
                    why = (_scale_text(scales[i]) if scales[i] is not None
                           else "no item kept its sign in both runs")
                    test = "McNemar" if accuracy_method[i] == "mcnemar" else "the sign-flip test"
                    notes[i] = f"auto: {why}, so {test} decided"
                rows = rows[comparable]
                method_used = "margin-split"
            else:
                method_used = method
            if rows.size and method_used == "margin":
                drops = _within_run_signed_ranks(m0[rows]) - _within_run_signed_ranks(m1[rows])
                worse[rows], better[rows] = _wilcoxon_rows(drops)
            elif rows.size:
                (right, right_better), (wrong, wrong_better) = margin_split_sides(m0[rows], m1[rows])
                worse[rows], better[rows] = np.maximum(right, wrong), np.maximum(right_better, wrong_better)
                for j, i in enumerate(rows):
                    sides[i] = (float(right[j]), float(wrong[j]))
            used[rows] = method_used
            for i in rows:
                margin_p[i] = float(worse[i])
        for i in np.flatnonzero(~usable):
            notes[i] = f"margin test not used ({reason}); fell back to {accuracy_method[i]}"

    base_score, cur_score = base.mean(axis=1), cur.mean(axis=1)
    return [
        PairedComparison(
            n=n,
            baseline_score=float(base_score[i]),
            current_score=float(cur_score[i]),
            lost=int(lost[i]),
            gained=int(gained[i]),
            effect=float(cur_score[i] - base_score[i]),
            p_value=float(worse[i]),
            p_value_improved=float(better[i]),
            method=str(used[i]),
            accuracy_p_value=float(acc_worse[i]),
            accuracy_method=str(accuracy_method[i]),
            margin_p_value=margin_p[i],
            margin_sides=sides[i],
            margin_scale=scales[i],
            name=name,
            note=notes[i],
        )
        for i in range(runs)
    ]


def compare_paired(
    baseline: Mapping[str, float],
    current: Mapping[str, float],
    *,
    baseline_margins: Mapping[str, float] | None = None,
    current_margins: Mapping[str, float] | None = None,
    method: str = "mcnemar",
    name: str = "",
) -> PairedComparison:
    """Compare per-item scores on the doc hashes both runs contain (the caller checks that the
    item sets match). Scores of 1.0 mean correct; an item counts as correct at score >= 0.5.
    Margins (see :func:`item_margins`) are used by ``method="margin"`` only."""
    # Baseline order, not set order, so Monte Carlo p-values do not depend on hash seeds.
    keys = [k for k in baseline if k in current]
    if not keys:
        raise ValueError("the baseline and the run have no items in common")
    margins: dict[str, np.ndarray] = {}
    if method in _MARGIN_METHODS and baseline_margins is not None and current_margins is not None:
        missing = sum(1 for k in keys if k not in baseline_margins or k not in current_margins)
        if missing:
            comparison = compare_paired(baseline, current, method="mcnemar", name=name)
            note = (f"margin test not used (margins missing for {missing} of {len(keys)} paired "
                    f"items); fell back to {comparison.method}")
            return replace(comparison, note=note)
        margins = {
            "baseline_margins": np.array([baseline_margins[k] for k in keys], dtype=float),
            "current_margins": np.array([current_margins[k] for k in keys], dtype=float),
        }
    return compare_paired_arrays(
        [baseline[k] for k in keys], [current[k] for k in keys], method=method, name=name, **margins
    )[0]


def gate_comparison(
    baseline: Mapping[str, float],
    current: Mapping[str, float],
    *,
    baseline_margins: Mapping[str, float] | None,
    current_margins: Mapping[str, float] | None,
    method: str,
    name: str = "",
) -> PairedComparison:
    """The comparison the gate (baselines, ``distillbench compare``) makes: ``method`` where both
    runs carry margins, McNemar where a task has none (generation), without a fallback note,
    since a task without margins is not a margin test that failed to run."""
    if method in _MARGIN_METHODS and baseline_margins is not None and current_margins is not None:
        return compare_paired(baseline, current, baseline_margins=baseline_margins,
                              current_margins=current_margins, method=method, name=name)
    return compare_paired(baseline, current, name=name)


def _reason(c: PairedComparison, adjusted: float, adjusted_improved: float, alpha: float,
            min_effect: float) -> tuple[bool, bool, str]:
    significant_drop = adjusted < alpha
    # Strictly worse as well, so a failure always means a lower score (even at min_effect 0).
    large_drop = c.drop > 0 and c.drop >= min_effect - _EPS
    if significant_drop and large_drop:
        return True, False, (
            f"REGRESSED: score fell by {c.drop:.4f} (>= minimum effect {min_effect:.4f}) and the "
            f"adjusted p-value {_fmt_p(adjusted)} is below alpha {alpha:g}")
    if adjusted_improved < alpha and -c.drop > 0 and -c.drop >= min_effect - _EPS:
        return False, True, (
            f"improved: score rose by {-c.drop:.4f} with adjusted p-value {_fmt_p(adjusted_improved)}; "
            "consider updating the baseline")
    if significant_drop:
        return False, False, (
            f"no regression: the drop is significant (adjusted p {_fmt_p(adjusted)}) but "
            f"{c.drop:.4f} is below the minimum effect {min_effect:.4f}")
    return False, False, (
        f"no regression: adjusted p-value {_fmt_p(adjusted)} is not below alpha {alpha:g}")


def decide(
    comparisons: Sequence[PairedComparison], *, alpha: float = 0.05, min_effect: float = 0.01
) -> list[Verdict]:
    """One verdict per comparison, with Holm's adjustment across all of them (the session)."""
    if not 0.0 < alpha < 1.0:
        raise DistillbenchError(f"alpha must lie strictly between 0 and 1, got {alpha}", key="alpha")
    if not (min_effect >= 0.0 and math.isfinite(min_effect)):
        raise DistillbenchError(f"minimum effect must be a non-negative number, got {min_effect}",
                                key="min_effect")
    adjusted = stats.holm([c.p_value for c in comparisons])
    adjusted_improved = stats.holm([c.p_value_improved for c in comparisons])
    verdicts = []
    for c, adj, adj_imp in zip(comparisons, adjusted, adjusted_improved, strict=True):
        regressed, improved, reason = _reason(c, adj, adj_imp, alpha, min_effect)
        verdicts.append(Verdict(
            comparison=c, adjusted_p=adj, adjusted_p_improved=adj_imp, regressed=regressed,
            improved=improved, reason=reason, alpha=alpha, min_effect=min_effect,
            family_size=len(comparisons)))
    return verdicts
