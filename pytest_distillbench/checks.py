"""What each kind of item asserts: the face's reading of measured results. Each check gathers
the runs an item needs from the session, asks the pure measures (``measures/``) and the stored
baselines (``store/``) for figures and verdicts, and returns them with a failure message that
shows every number, or skips with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .errors import DistillbenchError
from .measures.figures import compute_figures, fmt, retention_figures, score_figures
from .records import TaskRun, Unavailable
from .spec.suites import TaskSpec
from .store.baselines import (
    any_baseline,
    baseline_document,
    baseline_path,
    comparability,
    fingerprint_of,
    margins,
    read_baseline,
    refuse_newer,
    write_baseline,
)

if TYPE_CHECKING:
    from .measures.evidence import SessionEvidence
    from .session import DistillbenchSession


class DistillbenchFailure(AssertionError):
    """A threshold or verdict not met; the message is the whole report."""


@dataclass(frozen=True)
class CheckResult:
    figures: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None


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
    if figures["retention"] is None and limit is not None:
        # Decision: skip, not fail. With a teacher at 0 there is nothing to retain, so the
        # threshold says nothing about the student; the teacher's own score item is where a
        # broken teacher fails.
        pytest.skip(f"{task.id}: retention of {model} is undefined: {teacher.name} scored "
                    f"{trun.score:.3f} on the {figures['paired_n']} shared items, so min_retention "
                    f"{limit:.3f} cannot be checked")
    if limit is not None and not figures["retention"] >= limit:
        return CheckResult(figures, (
            f"{task.id}: {model} keeps too little of {teacher.name}'s quality\n"
            f"  retention {fmt(figures['retention'])} (95% paired-bootstrap interval "
            f"{fmt(figures['retention_low'])}-{fmt(figures['retention_high'])}, n={figures['paired_n']})\n"
            f"  {model} {srun.score:.3f} / {teacher.name} {trun.score:.3f}\n"
            f"  threshold: min_retention {limit:.3f}"))
    return CheckResult(figures)


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


def _session_verdicts(session: DistillbenchSession) -> dict[tuple[str, str], Any]:
    """Compare every selected baseline item of the session at once, Holm-corrected across them."""
    cached = session.extra.get("baseline_verdicts")
    if cached is not None:
        return cached
    from .measures.verdicts import decide, gate_comparison

    keys, comparisons = [], []
    for entry in session.items.values():
        if entry.kind != "baseline":
            continue
        task = session.tasks[entry.task]
        spec = session.settings.model(entry.model)
        outcome = session.evaluator.result(entry.model, entry.task)
        if isinstance(outcome, Unavailable):
            continue
        path = baseline_path(session.settings.baselines_dir, task, entry.model, spec.backend)
        try:
            base = read_baseline(path)
        except DistillbenchError:
            continue
        if base is None or comparability(base, fingerprint_of(outcome, task, session.settings.seed), outcome).blocking:
            continue
        comparisons.append(gate_comparison(base.items, outcome.outcomes(), baseline_margins=base.margins,
                                           current_margins=margins(outcome), method=session.settings.verdict))
        keys.append((entry.task, entry.model))
    verdicts = decide(comparisons, alpha=session.settings.alpha, min_effect=session.settings.min_effect)
    result = dict(zip(keys, verdicts, strict=True))
    session.extra["baseline_verdicts"] = result
    return result


def check_baseline(session: DistillbenchSession, task: TaskSpec, model: str) -> CheckResult:
    spec = session.settings.model(model)
    run = session.outcome(model, task.id)
    path = baseline_path(session.settings.baselines_dir, task, model, spec.backend)
    rel = _relative(path, session.settings.rootdir)
    current = fingerprint_of(run, task, session.settings.seed)
    if session.settings.update_baselines:
        refuse_newer(path)
        write_baseline(path, baseline_document(run, task, spec.role, session.settings.seed))
        return CheckResult({"baseline_written": str(rel), "score": run.score})
    base = read_baseline(path)  # raises a readable error for a corrupt file, which stays as is
    if base is None and not any_baseline(session.settings.baselines_dir):
        # Decision: a first run (no baseline file anywhere under the folder) skips its baseline
        # items with the command that records them, instead of failing every one and marking
        # every row FAIL: there is nothing to regress from yet. Once any baseline exists, a
        # missing one fails, as a missing snapshot does, so a CI run cannot quietly lose one.
        pytest.skip(f"no baselines yet ({_relative(session.settings.baselines_dir, session.settings.rootdir)}/ "
                    "holds none): record them with --distillbench-update-baselines")
    if base is None:
        return CheckResult({"baseline": None}, (
            f"{task.id}: no baseline for {model} ({rel})\n"
            f"  create it with: pytest --distillbench {_relative(task.source, session.settings.rootdir)} "
            f"--distillbench-update-baselines -k \"{task.name} and {model}-baseline\""))
    comp = comparability(base, current, run)
    if comp.drift:
        session.warnings.append(f"{task.id} [{model}]: compared with a baseline made under other "
                                f"conditions ({'; '.join(comp.drift)})")
    if comp.blocking:
        return CheckResult({"comparable": False}, (
            f"{task.id}: {model} cannot be compared with its baseline {rel}: "
            + "; ".join(comp.blocking)
            + "\n  if the change is intended, refresh the baseline with --distillbench-update-baselines"))
    verdict = _session_verdicts(session).get((task.id, model))
    figures: dict[str, Any] = {"baseline_score": base.score, "score": run.score}
    problems = []
    if verdict is not None:
        c = verdict.comparison
        figures.update(lost=c.lost, gained=c.gained, p_value=c.p_value, p_holm=verdict.adjusted_p,
                       regressed=verdict.regressed, improved=verdict.improved, test=c.method,
                       **({"test_note": c.note} if c.note else {}),
                       **({"margin_scale": c.margin_scale} if c.margin_scale is not None else {}))
        if verdict.improved:
            session.warnings.append(f"{task.id} [{model}]: improved on its baseline "
                                    f"({base.score:.3f} -> {run.score:.3f}, p={verdict.adjusted_p:.3g})")
        if verdict.regressed:
            problems.append(verdict.message())
    base_flops = (base.data.get("cost") or {}).get("flops_per_item")
    limit = task.thresholds_for(model, spec.role).max_flops_increase
    limit = session.settings.max_flops_increase if limit is None else limit
    if base_flops and run.cost is not None and run.cost.flops is not None:
        now = run.cost.flops / run.n
        figures.update(baseline_flops_per_item=base_flops, flops_per_item=now)
        if now > base_flops * (1 + limit):
            problems.append(f"cost regression: {fmt(now, 0)} FLOPs per item vs baseline "
                            f"{fmt(base_flops, 0)} (+{100 * (now / base_flops - 1):.1f}% > allowed "
                            f"+{100 * limit:.1f}%)")
    if problems:
        return CheckResult(figures, f"{task.id}: {model} regressed against {rel}\n  "
                           + "\n  ".join(p.replace("\n", "\n  ") for p in problems))
    return CheckResult(figures)


def session_evidence(session: DistillbenchSession) -> SessionEvidence:
    """Evidence for every selected evidence item of the session, computed once."""
    # numpy and scipy only when the session has evidence items: a warm run stays light
    from .measures.evidence import assess_session
    from .measures.probes import ProbeResult

    cached = session.extra.get("evidence")
    if cached is not None:
        return cached
    settings = session.settings
    pairs = sorted({(e.task, e.model) for e in session.items.values() if e.kind == "evidence"})
    runs: dict[tuple[str, str], TaskRun | str] = {}
    for task_id in sorted({t for t, _ in pairs}):  # evaluate first: probes are taken with the runs
        for spec in settings.models:
            runs[(spec.name, task_id)] = _available(session, spec.name, task_id)
    raw = getattr(session.evaluator, "probes", None) or {}
    probes = {name: p if isinstance(p, ProbeResult) else ProbeResult.from_dict(p)
              for name, p in raw.items() if p is not None}
    result = assess_session(settings, pairs, runs, probes)
    session.extra["evidence"] = result
    session.extra.setdefault("run_sections", {})["evidence"] = result.to_dict()
    return result


def _available(session: DistillbenchSession, model: str, task: str) -> TaskRun | str:
    try:
        outcome = session.evaluator.result(model, task)
    except DistillbenchError as exc:
        return str(exc).splitlines()[0]
    return outcome.reason if isinstance(outcome, Unavailable) else outcome


def check_evidence(session: DistillbenchSession, task: TaskSpec, model: str) -> CheckResult:
    """``<task>[<model>-evidence]``: the model's verdict (its population test against the
    controls, see ``measures/evidence.py``) matches the declared expectation; the item carries
    this task's figures. The verdict pools the model's tasks, so every one of its evidence items
    carries it (a reference alone, ``scored = false``, has items on tasks it was not evaluated on)."""
    from .measures.evidence import describe

    spec = session.settings.model(model)
    teacher = session.settings.teacher_of(spec)
    assert teacher is not None
    if spec.scored:
        session.outcome(model, task.id)  # skips when this model's run is unavailable
    session.outcome(teacher.name, task.id)
    result = session_evidence(session)
    verdict = result.verdict(model)
    if verdict is None:
        pytest.skip(f"{task.id}: no evidence for {model} (its runs, its teacher's or its "
                    "references' are unavailable)")
    ev = result.get(task.id, model)
    figures = {**(ev.figures() if ev is not None else {}), "expect_distilled": spec.expect_distilled,
               "model_flagged": verdict.flagged, "model_p": verdict.p_value,
               "evidence_kind": ", ".join(verdict.evidence)}
    if verdict.flagged is None:  # a task's row is undetermined exactly when the verdict is
        pytest.skip(f"{task.id}: {model} vs {teacher.name}: undetermined: {verdict.line()}")
    expected = spec.expect_distilled
    if expected is None or verdict.flagged == expected:
        return CheckResult(figures)
    if expected:
        head = f"{task.id}: {model} was expected to be distilled from {teacher.name} but is not flagged"
    else:
        head = f"{task.id}: {model} was expected NOT to be distilled from {teacher.name} but is flagged"
    detail = (describe(ev, verdict) if ev is not None else
              "\n".join([f"  verdict: {verdict.line()}", *(f"    {s}" for s in verdict.strips())]))
    return CheckResult(figures, f"{head}\n{detail}")


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return path
