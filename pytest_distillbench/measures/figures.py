"""The figures an item or a report row shows for one run or a (student, teacher) pair: score
with its Wilson interval, retention with a paired-bootstrap interval, compute ratio and
distillation efficiency. Pure: runs in, plain numbers out."""

from __future__ import annotations

from typing import Any

from ..records import TaskRun
from . import stats
from .flops import compute_ratio, distillation_efficiency


def fmt(x: float | None, digits: int = 3) -> str:
    return "unknown" if x is None else f"{x:.{digits}f}"


def repeat_figures(run: TaskRun) -> dict[str, Any]:
    """pass@1 (the score: mean over items of the share of right samples), pass@k by the unbiased
    estimator and maj@k (the majority answer's score), for a run whose task samples k > 1 times."""
    k = run.repeats
    if k <= 1:
        return {}
    counts = [(r.repeats, r.samples_correct) for r in run.records if r.sample_scores is not None]
    votes = [r.majority_score for r in run.records if r.majority_score is not None]
    out: dict[str, Any] = {"repeats": k, "pass@1": run.score}
    if len(counts) == run.n:
        out[f"pass@{k}"] = stats.mean_pass_at_k(counts, k)
    if len(votes) == run.n:
        out[f"maj@{k}"] = sum(votes) / len(votes)
    return out


def score_figures(run: TaskRun) -> dict[str, Any]:
    """Score and interval (Wilson for right/wrong items, a t interval over items for scores
    averaged over repeated samples: the item is the unit), with pass@k / maj@k under repeats."""
    lo, hi = stats.score_interval([r.score for r in run.records])
    return {"score": run.score, "ci_low": lo, "ci_high": hi, "n": run.n, **repeat_figures(run)}


def paired(a: TaskRun, b: TaskRun) -> tuple[list[float], list[float]]:
    """Scores of the items both runs share, in one order (by doc hash)."""
    sa, sb = a.outcomes(), b.outcomes()
    common = sorted(set(sa) & set(sb))
    return [sa[h] for h in common], [sb[h] for h in common]


def retention_figures(student: TaskRun, teacher: TaskRun, seed: int) -> dict[str, Any]:
    s, t = paired(student, teacher)
    if not s or sum(t) == 0:
        # a teacher that scores 0 leaves no quality to keep: retention is undefined, reported as
        # unknown (None), never as nan
        point = lo = hi = None
    else:
        point, lo, hi = (None if x != x else x for x in stats.paired_bootstrap_ratio(s, t, seed=seed))
    return {"retention": point, "retention_low": lo, "retention_high": hi, "paired_n": len(s),
            "student_score": student.score, "teacher_score": teacher.score}


def flops_per_item(run: TaskRun) -> float | None:
    return None if run.cost is None or run.cost.flops is None else run.cost.flops / run.n


def compute_figures(student: TaskRun, teacher: TaskRun, seed: int) -> dict[str, Any]:
    ratio = compute_ratio(flops_per_item(student), flops_per_item(teacher))
    retention = retention_figures(student, teacher, seed)["retention"]
    return {"compute_ratio": ratio, "efficiency": distillation_efficiency(retention, ratio),
            "retention": retention, "student_flops_per_item": flops_per_item(student),
            "teacher_flops_per_item": flops_per_item(teacher)}
