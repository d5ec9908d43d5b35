"""How often does each regression gate fail an unchanged model, and how often does it catch a
real 5-point drop? (issue #11)

    python benchmarks/verdicts.py [--runs 2000] [--seed 0]

Every row simulates ``--runs`` baseline/new-run pairs with a known truth and reports, per
gate, the share of runs it fails. "no change" rows measure the false-alarm rate (must stay
at or under alpha = 0.05), "5-pt drop" rows the power.

Generative model (one latent per item, both runs share it):

    z_i ~ N(mu, rho)                      item easiness, shared by the two runs
    baseline margin  m0_i = z_i + e0_i    e ~ N(0, 1 - rho), independent per run
    new-run margin   m1_i = z_i + e1_i - delta
    correct  <=>  margin > 0

The margin plays the part of a multiple-choice log-likelihood margin (gold choice minus the
best wrong one), in units of its own spread. ``mu`` sets the baseline accuracy to 70 %,
``delta`` gives the row's drop in expected accuracy (0 or 5 points) and ``rho`` (how much of
a margin is the item rather than the run) is solved so that the expected share of items
whose correctness differs between the runs equals the row's discordance. So for n = 500 and
20 % discordance a 5-point drop means E[b + c] = 100, E[b - c] = 25, as in the issue.

Four extra kinds of "no change" row test the margin tests' assumptions with accuracy held
exactly unchanged: the new run is less confident everywhere (all margins halved, like a
higher softmax temperature) or only on the items it gets right (positive margins halved),
or the mirror images, more confident everywhere (all margins doubled) or more confidently
wrong (negative margins doubled). The last two are drawn after the session rows so that
adding them did not move the numbers of the rows before.

Is the normal model realistic? The per-item margins of the bundled multiple-choice tasks
(three students of one recipe, different seeds, in ``.distillbench/real-verdicts/run.json``)
say: not quite. Differences between equally good runs have heavy tails (excess kurtosis
1-20), larger margins move more, positive and negative margins spread differently, and the
seeds' margins differ in spread by up to a quarter with accuracy unchanged. So the last rows
(drawn after all others; the rows above keep their numbers) add a real 5-point drop that
comes with a 10 % change of confidence (all new-run margins x0.9 or x1.1), and margins with
heavy tails (see HEAVY_TAIL_K), no change and a drop, at 200 items / 30 % and 500 items / 20 %.
The rows after those (drawn last again) widen the spread change: unchanged runs with all
margins x0.95 or x1.05, and real drops with x0.8, x0.95, x1.05 and x1.25, at 200 / 30 %,
500 / 20 % and 500 / 30 %.

Columns (each a gate failing the run):
  shipped       compare_paired + decide with the plugin's defaults: method="auto" (margin-split
                while the runs' margins are on one scale, McNemar otherwise), Holm, alpha 0.05,
                minimum effect 0.01
  tol 2pt       fail when the new score is more than 2 points below the baseline
  z unpaired    pooled two-proportion z-test, one-sided, alpha 0.05 (ignores the pairing)
  McNemar       plain one-sided exact McNemar, alpha 0.05, no minimum effect
  mid-p         one-sided mid-p McNemar, alpha 0.05, no minimum effect
  margin raw    Wilcoxon signed-rank on raw margin differences + minimum effect 0.01
  margin        the shipped method="margin": Wilcoxon on within-run signed ranks of the
                margins, through compare_paired + decide (minimum effect 0.01)
  sum-sign IUT  the first split tried: items grouped by the sign of the sum of the two runs'
                within-run signed ranks, one-sided Wilcoxon in each group, the larger p
                counts + minimum effect 0.01
  split v1      the first version of method="margin-split": items right in both runs and
                items wrong in both runs, each half a Wilcoxon on raw margin drops
                Stouffer-combined with exact McNemar, the larger p counts + minimum effect 0.01
  margin-split  the shipped method="margin-split" through compare_paired + decide: a Wilcoxon
                test on the drops of the margins' positive parts and one on their negative
                parts, changed items counted on both with the mean size of the part a side
                cannot see, the larger p counts (minimum effect 0.01)
"Session" rows run ten unchanged tasks per session and report the share of sessions with
any failure; every test column applies Holm across the ten tasks, the tolerance cannot.

Measured (2000 runs per row, seed 0, 286 s on 2 cores, one of them busy), share of runs
failed ("shipped" is method="auto"):

    500 items, 20 % discordant       shipped  McNemar  margin  split v1  margin-split
    no change                          0.011    0.031   0.021     0.004         0.007
    5-pt drop                          0.919    0.781   0.976     0.891         0.925
    all margins x0.5                   0.042    0.042   0.042     0.000         0.000
    right answers' margins x0.5        0.045    0.045   0.327     0.043         0.052
    all margins x2                     0.037    0.037   0.029     0.000         0.000
    wrong answers' margins x2          0.042    0.042   0.340     0.038         0.048
    session of 10 unchanged tasks      0.009    0.034   0.022     0.002         0.004
    5-pt drop, all margins x0.9        0.799    0.788   0.971     0.579         0.692
    5-pt drop, all margins x1.1        0.775    0.781   0.970     0.453         0.615
    no change, heavy tails             0.018    0.034   0.029     0.004         0.006
    5-pt drop, heavy tails             0.878    0.790   0.963     0.892         0.925
    5-pt drop, all margins x0.8        0.790    0.790   0.975     0.183         0.246
    5-pt drop, all margins x1.25       0.781    0.781   0.972     0.001         0.005

Power of margin-split against McNemar for a 5-point drop at 10 / 20 / 30 % discordant:
200 items 0.971 / 0.562 / 0.324 against 0.677 / 0.423 / 0.312, 500 items 0.999 / 0.925 /
0.722 against 0.971 / 0.781 / 0.651, 2000 items 1.000 / 1.000 / 0.997 against 1.000 / 1.000 /
0.992 (split v1: 0.962 / 0.457 / 0.251, 0.999 / 0.891 / 0.630, 1.000 / 1.000 / 0.991). It
failed at most 0.022 of unchanged runs without a distortion (McNemar 0.031-0.055) and 0.035-
0.052 with a one-sided one, the intersection-union test's worst case (one side fooled, the
other at level alpha; 0.052 is within the Monte Carlo error of 0.05). "margin" and "sum-sign
IUT" failed up to 0.40 and 0.37 there; the sum-sign split fails because ranking within a run
ties the halves together (halving the positive margins raises the ranks of the negative ones).
But a drop that comes with a change of confidence hides from margin-split (x0.8 / x1.25 at
500 items / 20 %: 0.246 / 0.005 against McNemar's 0.790 / 0.781): the side whose margins
grew with the new confidence no longer calls the run worse. "margin" catches those (its
within-run ranks remove a global temperature) but fails unchanged runs whose confidence
changed on one side only.

"shipped" (method="auto") runs margin-split only when the two runs' margins are within about
6 % of each other in overall size, McNemar otherwise. It catches 0.957 / 0.533 / 0.316 of the
drops at 200 items, 0.999 / 0.919 / 0.708 at 500 and 1.000 / 1.000 / 0.998 at 2000, at least
McNemar's in every cell, and fails no more unchanged runs than McNemar in any "no change" row
(at most 0.047, the 2000-item one-sided rows, where McNemar also fails 0.047; sessions 0.015 /
0.009). In the rows where a drop comes with wider or narrower margins it stays within 0.012 of
McNemar (its worst: x1.1 at 200 items / 30 %, 0.304 against 0.316), against margin-split's
losses of up to 0.78. Why no test is both as powerful as margin-split and as robust as McNemar:
a test blind to every sign-preserving rescaling of each run's margins sees only each run's
ordering of the items and how many it gets right, and a uniform drop does not move the
ordering; such a test has about McNemar's power (a rank-trend test on the log-ratios of the
kept margins, combined with McNemar by Stouffer, caught 0.807 against 0.787 at 500 / 20 % in a
400-run pilot). Extra power must come from trusting margin sizes, so "auto" trusts them only
where the two runs agree on their scale.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import optimize
from scipy import stats as sps
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_distillbench.measures import stats  # noqa: E402
from pytest_distillbench.measures.verdicts import (  # noqa: E402
    DEFAULT_METHOD,
    _mcnemar_rows,
    _wilcoxon_rows,
    _within_run_signed_ranks,
    compare_paired,
    compare_paired_arrays,
    decide,
)

ALPHA = 0.05
MIN_EFFECT = 0.01
TOLERANCE = 0.02
BASELINE_ACCURACY = 0.70
DROP = 0.05
SESSION_TASKS = 10
SESSION_SIZES = (200, 500)  # n = 2000 sessions would take longer than the rest together
COLUMNS = ("shipped", "tol 2pt", "z unpaired", "McNemar", "mid-p", "margin raw", "margin", "sum-sign IUT",
           "split v1", "margin-split", "McN or split")
# Recalibrations of the new run with accuracy unchanged: (which margins, factor).
DISTORTIONS = {
    "all margins x0.5": ("all", 0.5),
    "right answers' margins x0.5": ("right", 0.5),
    "all margins x2": ("all", 2.0),
    "wrong answers' margins x2": ("wrong", 2.0),
    # Applied on top of a real drop: the new run is worse *and* a little more or less sure.
    "all margins x0.9": ("all", 0.9),
    "all margins x1.1": ("all", 1.1),
    # Smaller and larger changes of spread, with and without a drop (method="auto" reads the
    # spread to decide whether margin sizes can be compared).
    "all margins x0.8": ("all", 0.8),
    "all margins x0.95": ("all", 0.95),
    "all margins x1.05": ("all", 1.05),
    "all margins x1.25": ("all", 1.25),
}
# Heavy tails: both runs' margins pass through m -> s * sinh(k m) / k, s = 2 for m > 0 and 1
# otherwise. Signs (so accuracy and discordance) are those of the normal model; differences
# get heavy tails (excess kurtosis about 8), larger margins move more between runs, and positive
# margins spread about three times as wide as negative ones. In the bundled multiple-choice
# tasks (three students of equal recipe) the excess kurtosis of margin differences is 1-20,
# its rank correlation with the margins' size 0.2-0.5, the spread ratio 0.2-2.
HEAVY_TAIL_K = 0.7


@dataclass(frozen=True)
class Model:
    mu: float  # mean item easiness; sets the baseline accuracy
    rho: float  # share of a margin's variance that belongs to the item
    delta: float  # shift of the new run's margins


def solve_model(discordance: float, drop: float) -> Model:
    """Parameters whose expected baseline accuracy, drop and discordance hit the targets."""
    mu = float(sps.norm.ppf(BASELINE_ACCURACY))
    p1 = BASELINE_ACCURACY - drop
    delta = mu - float(sps.norm.ppf(p1))

    def discordance_gap(rho: float) -> float:
        both_right = sps.multivariate_normal(mean=[0.0, 0.0], cov=[[1.0, rho], [rho, 1.0]]).cdf([mu, mu - delta])
        return BASELINE_ACCURACY + p1 - 2.0 * both_right - discordance

    rho = optimize.brentq(discordance_gap, 1e-6, 1.0 - 1e-9, xtol=1e-10)
    return Model(mu=mu, rho=float(rho), delta=delta)


def simulate(model: Model, runs: int, n: int, rng: np.random.Generator,
             distortion: str = "", heavy_tails: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Baseline and new-run margins, shape (runs, n); ``distortion`` is a key of DISTORTIONS,
    ``heavy_tails`` passes both runs through the map described at HEAVY_TAIL_K first."""
    z = model.mu + math.sqrt(model.rho) * rng.standard_normal((runs, n))
    noise = math.sqrt(1.0 - model.rho)
    m0 = z + noise * rng.standard_normal((runs, n))
    m1 = z + noise * rng.standard_normal((runs, n)) - model.delta
    if heavy_tails:
        m0, m1 = (np.where(m > 0, 2.0, 1.0) * np.sinh(HEAVY_TAIL_K * m) / HEAVY_TAIL_K for m in (m0, m1))
    if distortion:
        which, factor = DISTORTIONS[distortion]
        scaled = {"all": np.ones_like(m1, dtype=bool), "right": m1 > 0, "wrong": m1 <= 0}[which]
        m1 = np.where(scaled, factor * m1, m1)
    return m0, m1


@functools.cache
def _mid_p(b: int, c: int) -> float:
    return stats.mcnemar_mid_p(b, c, "greater")


@functools.cache
def _z_unpaired(right_base: int, right_new: int, n: int) -> float:
    return stats.two_proportion_z(right_base, n, right_new, n, "greater")


def _raw_margin_p(m0: np.ndarray, m1: np.ndarray) -> np.ndarray:
    return sps.wilcoxon(m0 - m1, alternative="greater", zero_method="wilcox", method="asymptotic", axis=1).pvalue


def _sum_sign_p(m0: np.ndarray, m1: np.ndarray) -> np.ndarray:
    """The first split tried: items grouped by the sign of the sum of the two runs' within-run
    signed ranks, one-sided Wilcoxon on the signed-rank drops in each group, larger p counts."""
    r0, r1 = _within_run_signed_ranks(m0), _within_run_signed_ranks(m1)
    lean, drops = r0 + r1, r0 - r1
    return np.maximum(_wilcoxon_rows(np.where(lean > 0, drops, 0.0))[0],
                      _wilcoxon_rows(np.where(lean < 0, drops, 0.0))[0])


def _split_v1_p(m0: np.ndarray, m1: np.ndarray) -> np.ndarray:
    """The first version of method="margin-split" (one-sided p, run worse): items right in both
    runs and items wrong in both runs, each a Wilcoxon test on raw margin drops Stouffer-combined
    (weights sqrt(items)) with exact McNemar on the changed items; the larger p counts."""
    right0, right1 = m0 > 0, m1 > 0
    mc_worse = np.clip(sps.norm.isf(_mcnemar_rows(np.sum(right0 & ~right1, axis=1),
                                                  np.sum(~right0 & right1, axis=1))[0]), -8.0, 8.0)
    changed = np.sqrt(np.sum(right0 != right1, axis=1))
    sides = []
    for group in (right0 & right1, ~right0 & ~right1):
        drops = np.where(group, m0 - m1, 0.0)
        weight = np.sqrt(np.count_nonzero(drops, axis=1))
        z = weight * np.clip(sps.norm.isf(_wilcoxon_rows(drops)[0]), -8.0, 8.0) + changed * mc_worse
        total = np.sqrt(weight**2 + changed**2)
        sides.append(np.where(total > 0, sps.norm.sf(z / np.where(total > 0, total, 1.0)), 1.0))
    return np.maximum(*sides)


def _either_p(mcnemar, split) -> np.ndarray:
    """Bonferroni union of exact McNemar and margin-split: the run fails if either test does at
    alpha / 2, so the false-alarm rate stays at or under alpha whatever the margins do, and the
    power is at least each test's own at alpha / 2."""
    return np.array([min(1.0, 2 * min(a.accuracy_p_value, b.p_value))
                     for a, b in zip(mcnemar, split, strict=True)])


def _fails_per_column(m0: np.ndarray, m1: np.ndarray) -> dict[str, np.ndarray]:
    """Per run: did each gate fail it? Columns as in the module docstring."""
    y0, y1 = (m0 > 0).astype(float), (m1 > 0).astype(float)
    n = y0.shape[1]
    mcnemar = compare_paired_arrays(y0, y1)
    shipped = compare_paired_arrays(y0, y1, baseline_margins=m0, current_margins=m1, method=DEFAULT_METHOD)
    margin = compare_paired_arrays(y0, y1, baseline_margins=m0, current_margins=m1, method="margin")
    split = compare_paired_arrays(y0, y1, baseline_margins=m0, current_margins=m1, method="margin-split")
    drop = y0.mean(axis=1) - y1.mean(axis=1)
    big_enough = drop >= MIN_EFFECT - 1e-9
    return {
        "shipped": np.array([decide([c])[0].regressed for c in shipped]),
        "tol 2pt": drop > TOLERANCE + 1e-9,
        "z unpaired": np.array([_z_unpaired(int(a), int(b), n) < ALPHA
                                for a, b in zip(y0.sum(axis=1), y1.sum(axis=1), strict=True)]),
        "McNemar": np.array([c.accuracy_p_value < ALPHA for c in mcnemar]),
        "mid-p": np.array([_mid_p(c.lost, c.gained) < ALPHA for c in mcnemar]),
        "margin raw": (_raw_margin_p(m0, m1) < ALPHA) & big_enough,
        "margin": np.array([decide([c])[0].regressed for c in margin]),
        "sum-sign IUT": (_sum_sign_p(m0, m1) < ALPHA) & big_enough,
        "split v1": (_split_v1_p(m0, m1) < ALPHA) & big_enough,
        "margin-split": np.array([decide([c])[0].regressed for c in split]),
        "McN or split": (_either_p(mcnemar, split) < ALPHA) & big_enough,
        "_discordant": np.array([c.lost + c.gained for c in mcnemar]),
        "_net_lost": np.array([c.lost - c.gained for c in mcnemar]),
    }


def _check_mapping_api(m0: np.ndarray, m1: np.ndarray, rows: int = 20) -> None:
    """The table uses the array entry point for speed; make sure the Mapping one agrees."""
    keys = [f"doc{i}" for i in range(m0.shape[1])]
    for i, method in itertools.product(range(min(rows, m0.shape[0])), ("auto", "margin", "margin-split")):
        base = dict(zip(keys, (m0[i] > 0).astype(float).tolist(), strict=True))
        new = dict(zip(keys, (m1[i] > 0).astype(float).tolist(), strict=True))
        by_map = compare_paired(base, new, baseline_margins=dict(zip(keys, m0[i].tolist(), strict=True)),
                                current_margins=dict(zip(keys, m1[i].tolist(), strict=True)), method=method)
        by_array = compare_paired_arrays(m0[i] > 0, m1[i] > 0, baseline_margins=m0[i],
                                         current_margins=m1[i], method=method)[0]
        if by_map != by_array:
            raise AssertionError(f"compare_paired and compare_paired_arrays disagree:\n{by_map}\n{by_array}")


def _session_fails(m0: np.ndarray, m1: np.ndarray, sessions: int) -> dict[str, float]:
    """Share of sessions (SESSION_TASKS unchanged tasks each) in which any task fails."""
    y0, y1 = (m0 > 0).astype(float), (m1 > 0).astype(float)
    n = y0.shape[1]
    mcnemar = compare_paired_arrays(y0, y1)
    shipped = compare_paired_arrays(y0, y1, baseline_margins=m0, current_margins=m1, method=DEFAULT_METHOD)
    margin = compare_paired_arrays(y0, y1, baseline_margins=m0, current_margins=m1, method="margin")
    split = compare_paired_arrays(y0, y1, baseline_margins=m0, current_margins=m1, method="margin-split")
    sum_sign_p = _sum_sign_p(m0, m1)
    split_v1_p = _split_v1_p(m0, m1)
    either_p = _either_p(mcnemar, split)
    z_p = [_z_unpaired(int(a), int(b), n) for a, b in zip(y0.sum(axis=1), y1.sum(axis=1), strict=True)]
    raw_p = _raw_margin_p(m0, m1)
    drop = y0.mean(axis=1) - y1.mean(axis=1)
    fails = dict.fromkeys(COLUMNS, 0)
    for s in range(sessions):
        part = slice(s * SESSION_TASKS, (s + 1) * SESSION_TASKS)
        fails["shipped"] += any(v.regressed for v in decide(shipped[part]))
        fails["margin"] += any(v.regressed for v in decide(margin[part]))
        fails["margin-split"] += any(v.regressed for v in decide(split[part]))
        fails["tol 2pt"] += bool(np.any(drop[part] > TOLERANCE + 1e-9))
        fails["z unpaired"] += min(stats.holm(z_p[part])) < ALPHA
        fails["McNemar"] += min(stats.holm([c.accuracy_p_value for c in mcnemar[part]])) < ALPHA
        fails["mid-p"] += min(stats.holm([_mid_p(c.lost, c.gained) for c in mcnemar[part]])) < ALPHA
        for column, p_values in (("margin raw", raw_p), ("sum-sign IUT", sum_sign_p),
                                 ("McN or split", either_p), ("split v1", split_v1_p)):
            adjusted = stats.holm(p_values[part].tolist())
            fails[column] += any(p < ALPHA and d >= MIN_EFFECT - 1e-9
                                 for p, d in zip(adjusted, drop[part], strict=True))
    return {k: v / sessions for k, v in fails.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="simulated runs per row (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()

    rows = []
    scenarios = [("no change", 0.0, ""), ("5-pt drop", DROP, "")]
    for n in (200, 500, 2000):
        for discordance in (0.10, 0.20, 0.30):
            for label, drop, distortion in scenarios:
                model = solve_model(discordance, drop)
                m0, m1 = simulate(model, args.runs, n, rng, distortion)
                if n == 200 and discordance == 0.10:
                    _check_mapping_api(m0, m1)
                rows.append(_row(n, discordance, label, _fails_per_column(m0, m1)))
    null_model = solve_model(0.20, 0.0)
    for n in (200, 500, 2000):
        for distortion in ("all margins x0.5", "right answers' margins x0.5"):
            m0, m1 = simulate(null_model, args.runs, n, rng, distortion)
            rows.append(_row(n, 0.20, f"no change, {distortion}", _fails_per_column(m0, m1)))
    for n in SESSION_SIZES:
        m0, m1 = simulate(null_model, args.runs * SESSION_TASKS, n, rng)
        rates = _session_fails(m0, m1, args.runs)
        rows.append([n, "20%", f"session of {SESSION_TASKS} unchanged tasks", "", ""]
                    + [f"{rates[c]:.3f}" for c in COLUMNS])
    # Drawn after the rows above so that their numbers do not move when rows are added here.
    for n in (200, 500, 2000):
        for distortion in ("all margins x2", "wrong answers' margins x2"):
            m0, m1 = simulate(null_model, args.runs, n, rng, distortion)
            rows.append(_row(n, 0.20, f"no change, {distortion}", _fails_per_column(m0, m1)))
    # Realism rows, drawn last for the same reason: a real drop that comes with a small change
    # of confidence (equally good seeds of the bundled students differ by up to a quarter in
    # margin spread), and margins with heavy tails.
    for n, discordance in ((200, 0.30), (500, 0.20)):
        drop_model = solve_model(discordance, DROP)
        for distortion in ("all margins x0.9", "all margins x1.1"):
            m0, m1 = simulate(drop_model, args.runs, n, rng, distortion)
            rows.append(_row(n, discordance, f"5-pt drop, {distortion}", _fails_per_column(m0, m1)))
        for label, drop in (("no change", 0.0), ("5-pt drop", DROP)):
            m0, m1 = simulate(solve_model(discordance, drop), args.runs, n, rng, heavy_tails=True)
            rows.append(_row(n, discordance, f"{label}, heavy tails", _fails_per_column(m0, m1)))
    # Wider and narrower spreads (seeds of one recipe differ by up to a quarter): unchanged runs,
    # and real drops, at the two sizes where the margin tests gain or lose most. Drawn last.
    for n, discordance in ((200, 0.30), (500, 0.20), (500, 0.30)):
        for distortion in ("all margins x0.95", "all margins x1.05"):
            m0, m1 = simulate(solve_model(discordance, 0.0), args.runs, n, rng, distortion)
            rows.append(_row(n, discordance, f"no change, {distortion}", _fails_per_column(m0, m1)))
        drop_model = solve_model(discordance, DROP)
        for distortion in ("all margins x0.8", "all margins x0.95", "all margins x1.05", "all margins x1.25"):
            m0, m1 = simulate(drop_model, args.runs, n, rng, distortion)
            rows.append(_row(n, discordance, f"5-pt drop, {distortion}", _fails_per_column(m0, m1)))

    headers = ["n", "discordant", "scenario", "E b+c", "E b-c", *COLUMNS]
    print(tabulate(rows, headers=headers, tablefmt="github"))
    se = math.sqrt(ALPHA * (1 - ALPHA) / args.runs)
    print(f"\n{args.runs} runs per row (sessions: {args.runs} sessions of {SESSION_TASKS} tasks); "
          f"Monte Carlo standard error at a 5% rate: {se:.4f}. "
          f"Baseline accuracy {BASELINE_ACCURACY:.0%}, alpha {ALPHA}, minimum effect {MIN_EFFECT}. "
          f"{time.perf_counter() - started:.0f} s.")


def _row(n: int, discordance: float, label: str, fails: dict[str, np.ndarray]) -> list[object]:
    # + 0.0 turns a rounded -0.0 into 0.0
    means = [round(float(fails[k].mean()), 1) + 0.0 for k in ("_discordant", "_net_lost")]
    return ([n, f"{discordance:.0%}", label, f"{means[0]:.1f}", f"{means[1]:.1f}"]
            + [f"{fails[c].mean():.3f}" for c in COLUMNS])


if __name__ == "__main__":
    main()
