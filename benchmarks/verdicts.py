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

Two extra kinds of "no change" row test the margin test's assumption with accuracy held
exactly unchanged: the new run is less confident everywhere (all margins halved, like a
higher softmax temperature) or only on the items it gets right (positive margins halved).

Columns (each a gate failing the run):
  shipped       compare_paired + decide with the defaults (exact McNemar, Holm, alpha 0.05,
                minimum effect 0.01)
  tol 2pt       fail when the new score is more than 2 points below the baseline
  z unpaired    pooled two-proportion z-test, one-sided, alpha 0.05 (ignores the pairing)
  McNemar       plain one-sided exact McNemar, alpha 0.05, no minimum effect
  mid-p         one-sided mid-p McNemar, alpha 0.05, no minimum effect
  margin raw    Wilcoxon signed-rank on raw margin differences + minimum effect 0.01
  margin        the shipped method="margin": Wilcoxon on within-run signed ranks of the
                margins, through compare_paired + decide (minimum effect 0.01)
"Session" rows run ten unchanged tasks per session and report the share of sessions with
any failure; every test column applies Holm across the ten tasks, the tolerance cannot.
"""

from __future__ import annotations

import argparse
import functools
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

from pytest_distillbench import stats  # noqa: E402
from pytest_distillbench.verdicts import compare_paired, compare_paired_arrays, decide  # noqa: E402

ALPHA = 0.05
MIN_EFFECT = 0.01
TOLERANCE = 0.02
BASELINE_ACCURACY = 0.70
DROP = 0.05
SESSION_TASKS = 10
SESSION_SIZES = (200, 500)  # n = 2000 sessions would take longer than the rest together
COLUMNS = ("shipped", "tol 2pt", "z unpaired", "McNemar", "mid-p", "margin raw", "margin")


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
             distortion: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Baseline and new-run margins, shape (runs, n)."""
    z = model.mu + math.sqrt(model.rho) * rng.standard_normal((runs, n))
    noise = math.sqrt(1.0 - model.rho)
    m0 = z + noise * rng.standard_normal((runs, n))
    m1 = z + noise * rng.standard_normal((runs, n)) - model.delta
    if distortion == "all":
        m1 *= 0.5
    elif distortion == "right":
        m1 = np.where(m1 > 0, 0.5 * m1, m1)
    return m0, m1


@functools.cache
def _mid_p(b: int, c: int) -> float:
    return stats.mcnemar_mid_p(b, c, "greater")


@functools.cache
def _z_unpaired(right_base: int, right_new: int, n: int) -> float:
    return stats.two_proportion_z(right_base, n, right_new, n, "greater")


def _raw_margin_p(m0: np.ndarray, m1: np.ndarray) -> np.ndarray:
    return sps.wilcoxon(m0 - m1, alternative="greater", zero_method="wilcox", method="asymptotic", axis=1).pvalue


def _fails_per_column(m0: np.ndarray, m1: np.ndarray) -> dict[str, np.ndarray]:
    """Per run: did each gate fail it? Columns as in the module docstring."""
    y0, y1 = (m0 > 0).astype(float), (m1 > 0).astype(float)
    n = y0.shape[1]
    shipped = compare_paired_arrays(y0, y1)
    margin = compare_paired_arrays(y0, y1, baseline_margins=m0, current_margins=m1, method="margin")
    drop = y0.mean(axis=1) - y1.mean(axis=1)
    big_enough = drop >= MIN_EFFECT - 1e-9
    return {
        "shipped": np.array([decide([c])[0].regressed for c in shipped]),
        "tol 2pt": drop > TOLERANCE + 1e-9,
        "z unpaired": np.array([_z_unpaired(int(a), int(b), n) < ALPHA
                                for a, b in zip(y0.sum(axis=1), y1.sum(axis=1), strict=True)]),
        "McNemar": np.array([c.accuracy_p_value < ALPHA for c in shipped]),
        "mid-p": np.array([_mid_p(c.lost, c.gained) < ALPHA for c in shipped]),
        "margin raw": (_raw_margin_p(m0, m1) < ALPHA) & big_enough,
        "margin": np.array([decide([c])[0].regressed for c in margin]),
        "_discordant": np.array([c.lost + c.gained for c in shipped]),
        "_net_lost": np.array([c.lost - c.gained for c in shipped]),
    }


def _check_mapping_api(m0: np.ndarray, m1: np.ndarray, rows: int = 20) -> None:
    """The table uses the array entry point for speed; make sure the Mapping one agrees."""
    keys = [f"doc{i}" for i in range(m0.shape[1])]
    for i in range(min(rows, m0.shape[0])):
        base = dict(zip(keys, (m0[i] > 0).astype(float).tolist(), strict=True))
        new = dict(zip(keys, (m1[i] > 0).astype(float).tolist(), strict=True))
        by_map = compare_paired(base, new, baseline_margins=dict(zip(keys, m0[i].tolist(), strict=True)),
                                current_margins=dict(zip(keys, m1[i].tolist(), strict=True)), method="margin")
        by_array = compare_paired_arrays(m0[i] > 0, m1[i] > 0, baseline_margins=m0[i],
                                         current_margins=m1[i], method="margin")[0]
        if by_map != by_array:
            raise AssertionError(f"compare_paired and compare_paired_arrays disagree:\n{by_map}\n{by_array}")


def _session_fails(m0: np.ndarray, m1: np.ndarray, sessions: int) -> dict[str, float]:
    """Share of sessions (SESSION_TASKS unchanged tasks each) in which any task fails."""
    y0, y1 = (m0 > 0).astype(float), (m1 > 0).astype(float)
    n = y0.shape[1]
    shipped = compare_paired_arrays(y0, y1)
    margin = compare_paired_arrays(y0, y1, baseline_margins=m0, current_margins=m1, method="margin")
    z_p = [_z_unpaired(int(a), int(b), n) for a, b in zip(y0.sum(axis=1), y1.sum(axis=1), strict=True)]
    raw_p = _raw_margin_p(m0, m1)
    drop = y0.mean(axis=1) - y1.mean(axis=1)
    fails = dict.fromkeys(COLUMNS, 0)
    for s in range(sessions):
        part = slice(s * SESSION_TASKS, (s + 1) * SESSION_TASKS)
        fails["shipped"] += any(v.regressed for v in decide(shipped[part]))
        fails["margin"] += any(v.regressed for v in decide(margin[part]))
        fails["tol 2pt"] += bool(np.any(drop[part] > TOLERANCE + 1e-9))
        fails["z unpaired"] += min(stats.holm(z_p[part])) < ALPHA
        fails["McNemar"] += min(stats.holm([c.accuracy_p_value for c in shipped[part]])) < ALPHA
        fails["mid-p"] += min(stats.holm([_mid_p(c.lost, c.gained) for c in shipped[part]])) < ALPHA
        adjusted_raw = stats.holm(raw_p[part].tolist())
        fails["margin raw"] += any(p < ALPHA and d >= MIN_EFFECT - 1e-9
                                   for p, d in zip(adjusted_raw, drop[part], strict=True))
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
        for label, distortion in (("no change, all margins x0.5", "all"),
                                  ("no change, right answers' margins x0.5", "right")):
            m0, m1 = simulate(null_model, args.runs, n, rng, distortion)
            rows.append(_row(n, 0.20, label, _fails_per_column(m0, m1)))
    for n in SESSION_SIZES:
        m0, m1 = simulate(null_model, args.runs * SESSION_TASKS, n, rng)
        rates = _session_fails(m0, m1, args.runs)
        rows.append([n, "20%", f"session of {SESSION_TASKS} unchanged tasks", "", ""]
                    + [f"{rates[c]:.3f}" for c in COLUMNS])

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
