"""Distillation evidence on simulated populations: the item-only test beside the population test.

    python benchmarks/evidence.py [--tables 100] [--items 200] [--tasks 3] [--seed 0]

Each table is one teacher, one suspect and k references (controls) answering the same
multiple-choice items (4 choices) on several tasks. A model's choice logits on an item are
``g + s_m h + noise``: ``g`` what the data teach every model, ``h`` the teacher's own quirks
(the teacher's logits are ``g + h + noise``), and ``s_m`` how far the model happens to share
them. ``s_m`` is drawn per model and task around 0.3, with a relative standard deviation
``spread`` (0.3 x spread in absolute terms; half of the variance shared across the model's
tasks): the model-to-model spread that item sampling does not explain. A copying suspect mixes
a share ``c`` of the teacher's logits into its own.

Printed side by side, per spread and k: the share of tables in which the suspect is flagged
at alpha 0.05. For an independent suspect it is the false-flag rate (target: at most 0.05,
give or take the Monte Carlo error shown in the header); for a copying one, the power.

* **item-only**: the previous test (``evidence.reference_test`` per task: shared right/wrong
  pattern, shared wrong answers and wrong-choice order against the references' mean,
  randomisation over items; Holm across tasks, flagged when any task is);
* **population**: the plugin's verdict, ``measures.population.evidence_test`` on the tasks
  pooled by ``pool_tasks``: the strongest tier every model has decides (here the wrong-choice
  order; the simulation has no probes), Crawford-Howell t for k < 19, the exact rank test for
  k >= 19;
* **text-only**: the same on a teacher that shows answers only (no choice log-likelihoods):
  kappa and identical wrong answers, Holm between the two.

Last run (``--tables 400 --jobs 2``, 443 s on two cores; standard error of a 5% rate 0.011):
an independent suspect was flagged by the item-only test in 7-9% of tables at spread 0, 14-15%
at 0.3 and 26-33% at 0.6; by the population test in 3.7-6.5% and by its text-only form in
2.0-6.0%, at every spread and k. Power for a 20% copy at k = 8: 1.00 / 0.95 / 0.69 at spread
0 / 0.3 / 0.6 (text-only 0.90 / 0.78 / 0.54), against the item-only test's 1.00 / 0.99 / 0.97,
which buys it by flagging independent models; at k = 2 (one degree of freedom) the population
test has little power (0.47-0.88 for a 40% copy).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_distillbench.measures import stats  # noqa: E402
from pytest_distillbench.measures.evidence import reference_test  # noqa: E402
from pytest_distillbench.measures.population import (  # noqa: E402
    evidence_test,
    pool_tasks,
    population_statistics,
)
from pytest_distillbench.records import ItemRecord, TaskRun  # noqa: E402

CHOICES = 4
ALIGNMENT = 0.3  # mean share of the teacher's quirks a model trained on the same data picks up
SPREADS = (0.0, 0.3, 0.6)
KS = (2, 4, 8, 19)
COPY_STRENGTHS = (0.1, 0.2, 0.4)
ALPHA = 0.05


def _run(name: str, task: str, logits: np.ndarray, gold: np.ndarray) -> TaskRun:
    logprobs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    chosen = logits.argmax(axis=1)
    records = tuple(
        ItemRecord(doc_id=i, doc_hash=f"{task}-{i:04d}", prompt=f"q{i}", target=f"choice {gold[i]}",
                   response=f"choice {chosen[i]}", raw_response="", score=float(chosen[i] == gold[i]),
                   prompt_tokens=1, output_tokens=1, choice_logprobs=tuple(logprobs[i].tolist()),
                   gold=int(gold[i]))
        for i in range(len(gold)))
    return TaskRun(task=task, model=name, metric="acc", records=records, wall_seconds=0.0,
                   model_fingerprint=name, task_fingerprint=task)


def simulate_population(rng: np.random.Generator, *, k: int, spread: float, copy: float = 0.0,
                        items: int = 200, tasks: int = 3,
                        copies: Sequence[float] = ()) -> dict[str, dict[str, TaskRun]]:
    """model -> task -> run for "teacher", "suspect" and "ref-01" ... "ref-k" (see the module
    docstring); the suspect copies a share ``copy`` of the teacher's logits. Each share in
    ``copies`` adds a suspect "copy-<share>": the same suspect mixing in that share (the same
    population, so the rows of the table differ by the copying alone)."""
    names = ["suspect", *(f"ref-{i:02d}" for i in range(1, k + 1))]
    shared = rng.normal(size=len(names))
    out: dict[str, dict[str, TaskRun]] = {"teacher": {}, **{n: {} for n in names}}
    out.update({f"copy-{c:g}": {} for c in copies})
    for t in range(tasks):
        task = f"sim/task{t}"
        gold = rng.integers(CHOICES, size=items)
        g = rng.normal(size=(items, CHOICES))
        g[np.arange(items), gold] += rng.normal(1.0, 1.0, size=items)  # item difficulty
        h = rng.normal(size=(items, CHOICES))
        teacher = g + h + rng.normal(scale=0.5, size=(items, CHOICES))
        out["teacher"][task] = _run("teacher", task, teacher, gold)
        own = rng.normal(size=len(names))
        alignment = ALIGNMENT * (1 + spread * (math.sqrt(0.5) * shared + math.sqrt(0.5) * own))
        for name, s in zip(names, alignment, strict=True):
            logits = g + s * h + rng.normal(size=(items, CHOICES))
            if name == "suspect":
                for c in copies:
                    out[f"copy-{c:g}"][task] = _run(f"copy-{c:g}", task, (1 - c) * logits + c * teacher, gold)
                if copy:
                    logits = (1 - copy) * logits + copy * teacher
            out[name][task] = _run(name, task, logits, gold)
    return out


def item_only_flag(runs: dict[str, dict[str, TaskRun]], references: Sequence[str], *,
                   suspect: str = "suspect", iters: int = 1000, alpha: float = ALPHA) -> bool:
    """The previous verdict: reference_test per task, Holm across the tasks with power."""
    p_values, scores = [], []
    for task, teacher in runs["teacher"].items():
        test = reference_test(teacher, runs[suspect][task], [runs[r][task] for r in references],
                              seed=0, iters=iters)
        if test.min_p < alpha:
            p_values.append(test.p_value)
            scores.append(test.score)
    adjusted = stats.holm(p_values)
    return any(p < alpha and s > 0 for p, s in zip(adjusted, scores, strict=True))


def population_flag(runs: dict[str, dict[str, TaskRun]], references: Sequence[str], *,
                    suspect: str = "suspect", alpha: float = ALPHA, values=None) -> bool:
    """The verdict the plugin gives: tasks pooled by the fixed rule, the strongest tier decides
    (here the wrong-choice order: the simulation has no probes)."""
    values = pool_tasks(population_statistics("teacher", runs)) if values is None else values
    return evidence_test(values, suspect, references, alpha=alpha).flagged is True


SUSPECTS = (("independent", "suspect"), *((f"copy {c:.0%}", f"copy-{c:g}") for c in COPY_STRENGTHS))


def cell(spread: float, k: int, *, tables: int, items: int, tasks: int, seed: int,
         iters: int) -> list[tuple[str, float, float]]:
    """(suspect, item-only, population, text-only population flag rates) of one spread and k;
    the same simulated populations for every suspect (they differ by the copying alone)."""
    references = [f"ref-{i:02d}" for i in range(1, k + 1)]
    rng = np.random.default_rng([seed, int(round(spread * 10)), k])
    old = dict.fromkeys((name for _, name in SUSPECTS), 0)
    new, text = dict(old), dict(old)
    for _ in range(tables):
        runs = simulate_population(rng, k=k, spread=spread, items=items, tasks=tasks, copies=COPY_STRENGTHS)
        values = pool_tasks(population_statistics("teacher", runs))  # every model's, once
        # a teacher behind a text-only API: the same answers, no choice log-likelihoods
        answers = pool_tasks(population_statistics("teacher", runs, choices=False))
        for _, name in SUSPECTS:
            old[name] += item_only_flag(runs, references, suspect=name, iters=iters)
            new[name] += population_flag(runs, references, suspect=name, values=values)
            text[name] += population_flag(runs, references, suspect=name, values=answers)
    return [(label, old[name] / tables, new[name] / tables, text[name] / tables) for label, name in SUSPECTS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=100, help="simulated tables per cell")
    parser.add_argument("--items", type=int, default=200, help="items per task")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iters", type=int, default=500, help="randomisations of the item-only test")
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes, one (spread, k) cell each (the figures do not depend on it)")
    args = parser.parse_args(argv)
    se = math.sqrt(ALPHA * (1 - ALPHA) / args.tables)
    print(f"{args.tables} tables per cell, {args.items} items x {args.tasks} tasks, {CHOICES} choices, "
          f"alpha {ALPHA}; Monte Carlo standard error of a rate of 0.05: {se:.3f}")
    header = (f"{'spread':>6} {'k':>3} {'suspect':<12} {'item-only':>9} {'population':>10} "
              f"{'text-only':>9} {'method':<16}")
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    grid = [(spread, k) for spread in SPREADS for k in KS]
    options = {"tables": args.tables, "items": args.items, "tasks": args.tasks, "seed": args.seed,
               "iters": args.iters}
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"))
        # the largest populations first, so the last cells to finish are short ones
        futures = {c: pool.submit(cell, *c, **options) for c in sorted(grid, key=lambda c: -c[1])}
        results = (futures[c].result() for c in grid)
    else:
        results = (cell(*c, **options) for c in grid)
    for (spread, k), rows in zip(grid, results, strict=True):
        method = "exact rank" if k >= 19 else "Crawford-Howell"
        for label, old, new, text in rows:
            print(f"{spread:>6.1f} {k:>3} {label:<12} {old:>9.3f} {new:>10.3f} {text:>9.3f} {method:<16}",
                  flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
