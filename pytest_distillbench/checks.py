"""What each kind of item asserts. Pure reads of ``TaskRun``s; messages show every number."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import stats
from .records import TaskRun
from .suites import TaskSpec

if TYPE_CHECKING:
    from .session import DistillbenchSession


@dataclass(frozen=True)
class CheckResult:
    figures: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None


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
    lo, hi = stats.score_interval([r.score for r in run.records])
    return {"score": run.score, "ci_low": lo, "ci_high": hi, "n": run.n, **repeat_figures(run)}


def describe_score(model: str, run: TaskRun) -> str:
    f = score_figures(run)
    if run.repeats > 1:
        extra = ", ".join(f"{k} {f[k]:.3f}" for k in f if k.startswith(("pass@", "maj@")) and k != "pass@1")
        return (f"{model} scored pass@1 {f['score']:.3f} averaged over {run.repeats} samples per item "
                f"(95% t interval over items {f['ci_low']:.3f}-{f['ci_high']:.3f}, n={run.n}"
                f"{', ' + extra if extra else ''}, metric {run.metric})")
    return (f"{model} scored {f['score']:.3f} (95% Wilson interval {f['ci_low']:.3f}-{f['ci_high']:.3f}, "
            f"n={run.n}, {run.successes} correct, metric {run.metric})")


def check_score(session: DistillbenchSession, task: TaskSpec, model: str) -> CheckResult:
    run = session.outcome(model, task.id)
    spec = session.settings.model(model)
    figures = score_figures(run)
    if run.cost is not None and run.cost.flops is not None:
        figures["flops_per_item"] = run.cost.flops / run.n
    limit = task.thresholds_for(model, spec.role).min
    figures["threshold_min"] = limit
    if run.n == 0:
        return CheckResult(figures, f"{model} produced no scored items on {task.id}")
    if limit is not None and run.score < limit:
        return CheckResult(figures, f"{task.id}: {model} is below its minimum score\n"
                                    f"  {describe_score(model, run)}\n"
                                    f"  threshold: min {limit:.3f} (for {model if model in dict(task.thresholds) else spec.role})")
    return CheckResult(figures)


def paired(a: TaskRun, b: TaskRun) -> tuple[list[float], list[float]]:
    """Scores of the items both runs share, in one order (by doc hash)."""
    sa, sb = a.outcomes(), b.outcomes()
    common = sorted(set(sa) & set(sb))
    return [sa[h] for h in common], [sb[h] for h in common]


def retention_figures(student: TaskRun, teacher: TaskRun, seed: int) -> dict[str, Any]:
    s, t = paired(student, teacher)
    point, lo, hi = stats.paired_bootstrap_ratio(s, t, seed=seed)
    return {"retention": point, "retention_low": lo, "retention_high": hi, "paired_n": len(s),
            "student_score": student.score, "teacher_score": teacher.score}


def check_retention(session: DistillbenchSession, task: TaskSpec, model: str) -> CheckResult:
    spec = session.settings.model(model)
    teacher = session.settings.teacher_of(spec)
    assert teacher is not None
    srun = session.outcome(model, task.id)
    trun = session.outcome(teacher.name, task.id)
    figures = retention_figures(srun, trun, session.settings.seed)
    limit = task.thresholds_for(model, spec.role).min_retention
    figures["threshold_min_retention"] = limit
    if figures["paired_n"] == 0:
        return CheckResult(figures, f"{task.id}: {model} and {teacher.name} share no items")
    if limit is not None and not figures["retention"] >= limit:
        return CheckResult(figures, (
            f"{task.id}: {model} keeps too little of {teacher.name}'s quality\n"
            f"  retention {fmt(figures['retention'])} (95% paired-bootstrap interval "
            f"{fmt(figures['retention_low'])}-{fmt(figures['retention_high'])}, n={figures['paired_n']})\n"
            f"  {model} {srun.score:.3f} / {teacher.name} {trun.score:.3f}\n"
            f"  threshold: min_retention {limit:.3f}"))
    return CheckResult(figures)


def compute_figures(student: TaskRun, teacher: TaskRun, seed: int) -> dict[str, Any]:
    from .flops import compute_ratio, distillation_efficiency

    def per_item(run: TaskRun) -> float | None:
        return None if run.cost is None or run.cost.flops is None else run.cost.flops / run.n

    ratio = compute_ratio(per_item(student), per_item(teacher))
    retention = retention_figures(student, teacher, seed)["retention"]
    return {"compute_ratio": ratio, "efficiency": distillation_efficiency(retention, ratio),
            "retention": retention, "student_flops_per_item": per_item(student),
            "teacher_flops_per_item": per_item(teacher)}


def check_compute(session: DistillbenchSession, task: TaskSpec, model: str) -> CheckResult:
    spec = session.settings.model(model)
    teacher = session.settings.teacher_of(spec)
    assert teacher is not None
    figures = compute_figures(session.outcome(model, task.id), session.outcome(teacher.name, task.id),
                              session.settings.seed)
    limits = task.thresholds_for(model, spec.role)
    problems = []
    if limits.max_compute_ratio is not None:
        if figures["compute_ratio"] is None:
            problems.append("compute ratio is unknown (FLOPs of a model are not known)")
        elif figures["compute_ratio"] > limits.max_compute_ratio:
            problems.append(f"compute ratio {figures['compute_ratio']:.4f} > max_compute_ratio "
                            f"{limits.max_compute_ratio:.4f}")
    if limits.min_efficiency is not None:
        if figures["efficiency"] is None:
            problems.append("distillation efficiency is unknown (FLOPs of a model are not known)")
        elif figures["efficiency"] < limits.min_efficiency:
            problems.append(f"efficiency {figures['efficiency']:.2f} < min_efficiency "
                            f"{limits.min_efficiency:.2f}")
    if problems:
        return CheckResult(figures, (
            f"{task.id}: {model} vs {teacher.name}: " + "; ".join(problems) + "\n"
            f"  FLOPs per item: {model} {fmt(figures['student_flops_per_item'], 0)}, "
            f"{teacher.name} {fmt(figures['teacher_flops_per_item'], 0)}; retention {fmt(figures['retention'])}"))
    return CheckResult(figures)


def check_baseline(session: DistillbenchSession, task: TaskSpec, model: str) -> CheckResult:
    from .baselines import check_against_baseline

    return check_against_baseline(session, task, model)


def check_evidence(session: DistillbenchSession, task: TaskSpec, model: str) -> CheckResult:
    from .evidence import check_evidence_item

    return check_evidence_item(session, task, model)
