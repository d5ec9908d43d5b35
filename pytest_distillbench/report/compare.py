"""``distillbench compare RUN_A RUN_B``: paired differences between two stored runs.

Runs are matched by (task, model); two backends of one model compare the same way, since the
backend is recorded on each run. The statistics are the regression gate's own: the paired test
chosen with ``method`` (by default the plugin's, which reads multiple-choice margins when both runs
have them), Holm across rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..records import TaskRun


@dataclass(frozen=True)
class ComparisonRow:
    task: str
    model: str
    backend_a: str
    backend_b: str
    n: int
    score_a: float
    score_b: float
    lost: int
    gained: int
    p_value: float
    p_holm: float
    regressed: bool
    improved: bool
    flops_a: float | None
    flops_b: float | None
    note: str = ""
    test: str = ""  # the paired test that decided


def _flops_per_item(run: TaskRun) -> float | None:
    return None if run.cost is None or run.cost.flops is None else run.cost.flops / run.n


def compare_runs(a: dict[str, Any], b: dict[str, Any], *, alpha: float = 0.05,
                 min_effect: float = 0.01, method: str | None = None) -> list[ComparisonRow]:
    from ..measures.verdicts import DEFAULT_METHOD, decide, gate_comparison
    from ..store.baselines import margins

    method = method or DEFAULT_METHOD
    runs_a = {(r.task, r.model): r for r in a["runs"]}
    runs_b = {(r.task, r.model): r for r in b["runs"]}
    keys = [k for k in runs_a if k in runs_b]
    comparisons, pairs = [], []
    for key in keys:
        ra, rb = runs_a[key], runs_b[key]
        if ra.task_fingerprint != rb.task_fingerprint:
            continue
        comparisons.append(gate_comparison(ra.outcomes(), rb.outcomes(), baseline_margins=margins(ra),
                                           current_margins=margins(rb), method=method))
        pairs.append((ra, rb))
    verdicts = decide(comparisons, alpha=alpha, min_effect=min_effect)
    rows = []
    for (ra, rb), v in zip(pairs, verdicts, strict=True):
        c = v.comparison
        rows.append(ComparisonRow(
            task=ra.task, model=ra.model, backend_a=ra.backend, backend_b=rb.backend, n=c.n,
            score_a=c.baseline_score, score_b=c.current_score, lost=c.lost, gained=c.gained,
            p_value=c.p_value, p_holm=v.adjusted_p, regressed=v.regressed, improved=v.improved,
            flops_a=_flops_per_item(ra), flops_b=_flops_per_item(rb), test=c.method))
    for key in keys:
        ra, rb = runs_a[key], runs_b[key]
        if ra.task_fingerprint != rb.task_fingerprint:
            rows.append(ComparisonRow(
                task=ra.task, model=ra.model, backend_a=ra.backend, backend_b=rb.backend, n=0,
                score_a=ra.score, score_b=rb.score, lost=0, gained=0, p_value=float("nan"),
                p_holm=float("nan"), regressed=False, improved=False, flops_a=_flops_per_item(ra),
                flops_b=_flops_per_item(rb), note="not comparable: data or prompt changed"))
    for key in sorted(set(runs_a) ^ set(runs_b)):
        only = "A" if key in runs_a else "B"
        run = runs_a.get(key) or runs_b[key]
        rows.append(ComparisonRow(
            task=run.task, model=run.model, backend_a=run.backend, backend_b=run.backend, n=0,
            score_a=run.score if only == "A" else float("nan"),
            score_b=run.score if only == "B" else float("nan"), lost=0, gained=0,
            p_value=float("nan"), p_holm=float("nan"), regressed=False, improved=False,
            flops_a=None, flops_b=None, note=f"only in run {only}"))
    return rows


def render_comparison(rows: list[ComparisonRow], name_a: str, name_b: str) -> str:
    from tabulate import tabulate

    def num(x: float, fmt: str = ".3f") -> str:
        return "-" if x != x else format(x, fmt)

    body = []
    for r in rows:
        verdict = "REGRESSED" if r.regressed else ("improved" if r.improved else (r.note or "same"))
        backend = r.backend_a if r.backend_a == r.backend_b else f"{r.backend_a}/{r.backend_b}"
        body.append([r.task, r.model, backend, r.n or "-", num(r.score_a), num(r.score_b),
                     num(r.score_b - r.score_a, "+.3f"), r.lost, r.gained, r.test or "-",
                     num(r.p_holm, ".3g"), verdict])
    headers = ["task", "model", "backend", "n", "A", "B", "B-A", "lost", "gained", "test", "p (Holm)", "verdict"]
    return (f"A = {name_a}\nB = {name_b}\n"
            + tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True))
