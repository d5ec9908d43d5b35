"""Distillation evidence: does a model share the teacher's answers and mistakes beyond what
models that never saw the teacher (the controls) do?

Accuracy cannot answer "was this model distilled from ours?"; the item-by-item pattern of
shared answers and shared mistakes can, measured against models trained without the teacher.

Descriptive figures per task and (teacher, model) pair, on the items all compared runs share:

* **agreement**: share of items where the two give the same answer (two right answers count
  as the same, so code that passes counts even when it is written differently);
* **same wrong answer**: among the items both got wrong, the share with the same answer
  (always 1 on two-choice tasks, where there is only one wrong answer);
* **error consistency** kappa (Geirhos et al. 2020) on right/wrong, with a bootstrap interval;
* **JSD** (multiple choice): mean Jensen-Shannon divergence between the two models' choice
  distributions (softmax of the choice log-likelihoods), in nats;
* **probe** (models sharing the teacher's tokenizer): top-1 next-token agreement and mean
  KL(teacher || model) after the task's probe prompts (see ``probes.py``).

The verdict (one per task and model) uses *answer consistency*, kappa with "both wrong" counted
as agreement only when the wrong answers are the same: per item ``u = (agree - c_exp) / (1 -
c_exp)`` with ``c_exp = p_t p_m + (1 - p_t)(1 - p_m)`` from the two accuracies, so its mean is
the chance-corrected agreement. Correcting by the accuracies matters: an accurate model agrees
with an accurate teacher simply by being right, and a weak one shares its errors by being
wrong. On two-choice tasks it equals error consistency.

* **References**: a student (or any non-control) is compared with every control; a control with
  the other controls, or, when it is the only one, with the students of its teacher (then its
  check can only catch a "control" that tracks the teacher more closely than the distilled
  students do). With no reference the verdict is *undetermined*, never guessed.
* **Test**: the per-item difference ``u_model - mean(u_references)`` goes into a one-sided paired
  sign-flip test (exact up to 16 non-zero differences, Monte Carlo beyond), whose null hypothesis
  is that the model and its references relate to the teacher in the same way, item by item.
* **Power**: an item informs the test only when the model and its references differ in agreeing
  with the teacher. With k such items no outcome gives p below 2**-k; a task where 2**-k >=
  alpha can never be flagged. It is reported as *no power*, with the reason (e.g. both at
  ceiling), and, as in Tarone's procedure for discrete tests, left out of the multiple-testing
  family, so it costs the other tasks nothing.
* **Multiple tasks**: Holm across a model's tasks. A model is flagged overall when any task is
  flagged after Holm. That keeps the chance of wrongly flagging a model that never saw the
  teacher at or below alpha whatever the dependence between tasks, and it says *where* the
  evidence is; Fisher's or Stouffer's combination would add power when a small effect is spread
  over many tasks but assumes independent tasks and cannot name one.

There is no absolute cutoff on any statistic: "flagged" always means "beyond the references".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import softmax

from . import stats
from .checks import CheckResult
from .errors import DistillbenchError
from .records import ItemRecord, TaskRun

if TYPE_CHECKING:
    from .probes import ProbeResult
    from .session import DistillbenchSession
    from .suites import TaskSpec

FLAGGED, NOT_FLAGGED, NO_POWER, UNDETERMINED = "flagged", "not flagged", "no power", "undetermined"
TEST_DESCRIPTION = ("answer consistency with the teacher (kappa counting only identical wrong "
                    "answers as shared mistakes), one-sided paired sign-flip test over items "
                    "against the references, Holm across each model's tasks")
# Accuracies further apart than this make kappa comparisons approximate; the reason says so.
ACCURACY_GAP_NOTE = 0.10
# A teacher right on all but this many items leaves too few mistakes to fingerprint.
CEILING_ERRORS = 2


# -- per-pair statistics -------------------------------------------------------------------------

@dataclass(frozen=True)
class PairStatistics:
    """The teacher and one other model on one task, over the items all compared runs share."""

    model: str
    n: int
    accuracy: float
    teacher_accuracy: float
    agreement: float  # same answer (two right answers count as the same)
    both_wrong: int
    same_wrong: float | None  # among items both got wrong: share with the same answer
    kappa: float  # error consistency on right/wrong
    kappa_low: float
    kappa_high: float
    answer_consistency: float  # the verdict's statistic: chance-corrected answer agreement
    jsd: float | None  # multiple choice: mean Jensen-Shannon divergence of choice distributions
    jsd_items: int


def normalise_answer(text: str) -> str:
    return " ".join(text.split()).casefold()


def _records(run: TaskRun, hashes: Sequence[str]) -> list[ItemRecord]:
    by_hash = {r.doc_hash: r for r in run.records}
    return [by_hash[h] for h in hashes]


def common_items(runs: Iterable[TaskRun]) -> list[str]:
    """Doc hashes present in every run, sorted (a fixed order keeps Monte Carlo p-values fixed)."""
    sets = [{r.doc_hash for r in run.records} for run in runs]
    return sorted(set.intersection(*sets)) if sets else []


def agreement_vector(teacher: Sequence[ItemRecord], other: Sequence[ItemRecord]) -> np.ndarray:
    """Per item: both right, or both wrong with the same answer."""
    return np.array([
        (t.correct and o.correct)
        or (not t.correct and not o.correct
            and normalise_answer(t.response) == normalise_answer(o.response))
        for t, o in zip(teacher, other, strict=True)
    ], dtype=float)


def consistency_scores(agree: np.ndarray, teacher_correct: np.ndarray,
                       other_correct: np.ndarray) -> np.ndarray:
    """Per-item chance-corrected agreement; its mean is the answer consistency.

    When both models are always right (or always wrong) nothing is left to chance (1 - c_exp
    = 0) and the agreement itself is the score, as error consistency does in that case.
    """
    p_t = float(np.mean(teacher_correct))
    p_o = float(np.mean(other_correct))
    c_exp = p_t * p_o + (1.0 - p_t) * (1.0 - p_o)
    agree = np.asarray(agree, dtype=float)
    if 1.0 - c_exp <= 1e-12:
        return agree
    return (agree - c_exp) / (1.0 - c_exp)


def choice_distribution(record: ItemRecord) -> np.ndarray | None:
    if record.choice_logprobs is None or len(record.choice_logprobs) < 2:
        return None
    return softmax(np.asarray(record.choice_logprobs, dtype=float))


def mean_choice_jsd(teacher: Sequence[ItemRecord], other: Sequence[ItemRecord]) -> tuple[float | None, int]:
    """Mean Jensen-Shannon divergence of the choice distributions, over items where both have one."""
    values = []
    for t, o in zip(teacher, other, strict=True):
        pt, po = choice_distribution(t), choice_distribution(o)
        if pt is not None and po is not None and pt.size == po.size:
            with np.errstate(invalid="ignore"):
                value = stats.jensen_shannon(pt, po)
            # scipy takes the square root of the divergence, which rounding can make slightly
            # negative for equal distributions: nan then means 0.
            values.append(0.0 if math.isnan(value) else value)
    return (float(np.mean(values)), len(values)) if values else (None, 0)


def pair_statistics(teacher: TaskRun, other: TaskRun, hashes: Sequence[str] | None = None, *,
                    seed: int = 0, iters: int = 2000) -> PairStatistics:
    hashes = common_items([teacher, other]) if hashes is None else list(hashes)
    if not hashes:
        raise ValueError(f"{teacher.model} and {other.model} share no items on {teacher.task}")
    t, o = _records(teacher, hashes), _records(other, hashes)
    t_ok = np.array([r.correct for r in t])
    o_ok = np.array([r.correct for r in o])
    agree = agreement_vector(t, o)
    both_wrong = ~t_ok & ~o_ok
    same = agree[both_wrong]
    kappa, lo, hi = stats.error_consistency_interval(t_ok, o_ok, iters=iters, seed=seed)
    jsd, jsd_items = mean_choice_jsd(t, o)
    return PairStatistics(
        model=other.model, n=len(hashes), accuracy=float(o_ok.mean()),
        teacher_accuracy=float(t_ok.mean()), agreement=float(agree.mean()),
        both_wrong=int(both_wrong.sum()), same_wrong=float(same.mean()) if same.size else None,
        kappa=kappa, kappa_low=lo, kappa_high=hi,
        answer_consistency=float(consistency_scores(agree, t_ok, o_ok).mean()),
        jsd=jsd, jsd_items=jsd_items)


# -- the comparison with the references ------------------------------------------------------------

@dataclass(frozen=True)
class ReferenceTest:
    n: int
    difference: float  # answer consistency of the model minus the references' mean
    p_value: float  # one-sided: the model is closer to the teacher than the references
    informative: int  # items where the model and the references differ in agreeing with the teacher
    teacher_errors: int

    @property
    def min_p(self) -> float:
        """The smallest p-value any outcome on these items could give."""
        return 2.0 ** -self.informative


def reference_test(teacher: TaskRun, model: TaskRun, references: Sequence[TaskRun],
                   hashes: Sequence[str] | None = None, *, seed: int = 0,
                   iters: int = 10000) -> ReferenceTest:
    if not references:
        raise ValueError("a reference test needs at least one reference run")
    hashes = common_items([teacher, model, *references]) if hashes is None else list(hashes)
    if not hashes:
        raise ValueError(f"the runs share no items on {teacher.task}")
    t = _records(teacher, hashes)
    t_ok = np.array([r.correct for r in t])

    def scores(run: TaskRun) -> tuple[np.ndarray, np.ndarray]:
        recs = _records(run, hashes)
        agree = agreement_vector(t, recs)
        return agree, consistency_scores(agree, t_ok, np.array([r.correct for r in recs]))

    model_agree, model_u = scores(model)
    ref = [scores(r) for r in references]
    ref_agree = np.mean([a for a, _ in ref], axis=0)
    ref_u = np.mean([u for _, u in ref], axis=0)
    differences = model_u - ref_u
    return ReferenceTest(
        n=len(hashes), difference=float(differences.mean()),
        p_value=stats.sign_flip_test(differences, iters=iters, seed=seed, alternative="greater"),
        informative=int(np.sum(~np.isclose(model_agree, ref_agree))),
        teacher_errors=int((~t_ok).sum()))


# -- verdicts ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProbeSummary:
    prompts: int
    top1: float | None
    kl: float | None
    exact: bool | None
    note: str = ""


@dataclass(frozen=True)
class TaskEvidence:
    """One model's evidence on one task; ``status`` and ``reason`` are set by :func:`decide`."""

    task: str
    model: str
    teacher: str
    references: tuple[str, ...]
    reference_kind: str  # "controls", "other controls", "students", or "" with no reference
    pair: PairStatistics
    reference_pairs: tuple[PairStatistics, ...]
    test: ReferenceTest | None
    probe: ProbeSummary | None = None
    p_holm: float | None = None
    family_size: int = 0
    status: str = UNDETERMINED
    reason: str = ""

    @property
    def flagged(self) -> bool | None:
        return {FLAGGED: True, NOT_FLAGGED: False}.get(self.status)

    def _reference_mean(self, attr: str) -> float | None:
        values = [getattr(p, attr) for p in self.reference_pairs]
        values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return float(np.mean(values)) if values else None

    def figures(self) -> dict[str, Any]:
        """Flat JSON-able numbers for the item, its JUnit properties and the run file."""
        p = self.pair
        out: dict[str, Any] = {
            "teacher": self.teacher, "references": ", ".join(self.references),
            "reference_kind": self.reference_kind, "n": p.n, "accuracy": p.accuracy,
            "teacher_accuracy": p.teacher_accuracy, "agreement": p.agreement,
            "both_wrong": p.both_wrong, "same_wrong": p.same_wrong, "kappa": p.kappa,
            "kappa_low": p.kappa_low, "kappa_high": p.kappa_high,
            "answer_consistency": p.answer_consistency, "jsd": p.jsd,
            "reference_accuracy": self._reference_mean("accuracy"),
            "reference_agreement": self._reference_mean("agreement"),
            "reference_kappa": self._reference_mean("kappa"),
            "reference_answer_consistency": self._reference_mean("answer_consistency"),
            "reference_jsd": self._reference_mean("jsd"),
            "status": self.status, "flagged": self.flagged, "reason": self.reason,
            "p_holm": self.p_holm, "family_size": self.family_size,
        }
        if self.test is not None:
            out.update(difference=self.test.difference, p_value=self.test.p_value,
                       informative_items=self.test.informative,
                       teacher_errors=self.test.teacher_errors)
        if self.probe is not None:
            out.update(probe_prompts=self.probe.prompts, probe_top1=self.probe.top1,
                       probe_kl=self.probe.kl)
        return out


def assess_task(teacher: TaskRun, model: TaskRun, references: Sequence[TaskRun], *,
                reference_kind: str = "controls", seed: int = 0,
                probe: ProbeSummary | None = None, iters: int = 10000) -> TaskEvidence:
    """Statistics and the raw test of one model on one task (no multiple-testing adjustment)."""
    hashes = common_items([teacher, model, *references])
    if not hashes:
        raise ValueError(f"{teacher.model}, {model.model} and the references share no items on {teacher.task}")
    return TaskEvidence(
        task=teacher.task, model=model.model, teacher=teacher.model,
        references=tuple(r.model for r in references),
        reference_kind=reference_kind if references else "",
        pair=pair_statistics(teacher, model, hashes, seed=seed),
        reference_pairs=tuple(pair_statistics(teacher, r, hashes, seed=seed) for r in references),
        test=reference_test(teacher, model, references, hashes, seed=seed, iters=iters) if references else None,
        probe=probe)


def fmt_p(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


def _no_power_reason(ev: TaskEvidence, alpha: float) -> str:
    test = ev.test
    assert test is not None
    accuracies = [ev.pair.accuracy] + [r.accuracy for r in ev.reference_pairs]
    needed = math.floor(math.log2(1.0 / alpha)) + 1
    where = (f"only {test.informative} of {test.n} items separate {ev.model} from the "
             f"{ev.reference_kind} in agreeing with {ev.teacher}; at least {needed} are needed "
             f"to reach alpha {alpha:g}")
    if test.teacher_errors <= CEILING_ERRORS and min(accuracies) >= 0.95:
        return (f"both at ceiling: {ev.teacher} is wrong on {test.teacher_errors} of {test.n} items "
                f"and {ev.model} and the {ev.reference_kind} score {min(accuracies):.2f} or more, so "
                f"agreeing with the teacher shows competence, not copying ({where})")
    if test.teacher_errors <= CEILING_ERRORS:
        return (f"{ev.teacher} is almost never wrong ({test.teacher_errors} of {test.n} items): too "
                f"few mistakes to fingerprint ({where})")
    return where


def _verdict_reason(ev: TaskEvidence, alpha: float) -> tuple[str, str]:
    test = ev.test
    assert test is not None and ev.p_holm is not None
    mine = ev.pair.answer_consistency
    theirs = ev._reference_mean("answer_consistency")
    family = f"Holm over {ev.family_size} task{'s' if ev.family_size != 1 else ''}"
    figures = (f"answer consistency {mine:.3f} vs {theirs:.3f} for the {ev.reference_kind} "
               f"({', '.join(ev.references)})")
    if ev.p_holm < alpha and test.difference > 0:
        return FLAGGED, (f"{ev.model} agrees with {ev.teacher} beyond what the {ev.reference_kind} "
                         f"explain (p = {fmt_p(test.p_value)}, {fmt_p(ev.p_holm)} after {family}): {figures}")
    if test.difference <= 0:
        why = f"{ev.model} is no closer to {ev.teacher} than the {ev.reference_kind}"
    else:
        why = f"{ev.model} is closer to {ev.teacher} than the {ev.reference_kind}, but not beyond chance"
    notes = [f"{why} (p = {fmt_p(test.p_value)}, {fmt_p(ev.p_holm)} after {family} >= alpha "
             f"{alpha:g}): {figures}"]
    if test.teacher_errors < 10:
        notes.append(f"{ev.teacher} is wrong on only {test.teacher_errors} of {test.n} items, so "
                     "there are few mistakes to share")
    ref_acc = ev._reference_mean("accuracy")
    if ref_acc is not None and abs(ev.pair.accuracy - ref_acc) > ACCURACY_GAP_NOTE:
        notes.append(f"accuracies differ ({ev.model} {ev.pair.accuracy:.2f}, {ev.reference_kind} "
                     f"{ref_acc:.2f}); kappa compares models of unequal accuracy only approximately")
    return NOT_FLAGGED, "; ".join(notes)


def decide(evidence: Sequence[TaskEvidence], alpha: float = 0.05) -> list[TaskEvidence]:
    """Status and reason of every task, with Holm's adjustment across each model's tasks."""
    if not 0.0 < alpha < 1.0:
        raise DistillbenchError(f"alpha must lie strictly between 0 and 1, got {alpha}", key="alpha")
    out = list(evidence)
    for model in dict.fromkeys(ev.model for ev in out):
        rows = [i for i, ev in enumerate(out) if ev.model == model]
        family = []
        for i in rows:
            ev = out[i]
            if ev.test is None:
                out[i] = replace(ev, status=UNDETERMINED, reason=(
                    f"no reference model: nothing tells how much any model of this kind agrees with "
                    f"{ev.teacher}; declare a control (similar size, trained without the teacher)"))
            elif ev.test.min_p >= alpha:
                out[i] = replace(ev, status=NO_POWER, reason=_no_power_reason(ev, alpha))
            else:
                family.append(i)
        adjusted = stats.holm([out[i].test.p_value for i in family])  # type: ignore[union-attr]
        for i, p_holm in zip(family, adjusted, strict=True):
            ev = replace(out[i], p_holm=p_holm, family_size=len(family))
            status, reason = _verdict_reason(ev, alpha)
            out[i] = replace(ev, status=status, reason=reason)
    return out


@dataclass(frozen=True)
class ModelVerdict:
    model: str
    teacher: str
    expect_distilled: bool | None
    flagged: bool | None  # None: no task could tell
    tasks_flagged: tuple[str, ...]
    tasks_tested: tuple[str, ...]
    tasks_without_power: tuple[str, ...]
    min_p_holm: float | None
    reference_kind: str
    probe: ProbeSummary | None = None

    @property
    def as_expected(self) -> bool | None:
        if self.expect_distilled is None or self.flagged is None:
            return None
        return self.flagged == self.expect_distilled

    def line(self) -> str:
        if self.flagged is None:
            head = (f"{self.model}: undetermined, no task could separate it from the references"
                    if self.reference_kind else f"{self.model}: undetermined, no reference model")
        elif self.flagged:
            best = f"smallest Holm-adjusted p = {fmt_p(self.min_p_holm)}"
            head = (f"{self.model}: FLAGGED as distilled from {self.teacher} on {len(self.tasks_flagged)} "
                    f"of {len(self.tasks_tested)} tasks ({best}; {', '.join(self.tasks_flagged)})")
        else:
            head = (f"{self.model}: not flagged on any of {len(self.tasks_tested)} tasks "
                    f"(smallest Holm-adjusted p = {fmt_p(self.min_p_holm)})")
        parts = [head]
        if self.reference_kind:
            parts.append(f"relative to the {self.reference_kind}")
        if self.tasks_without_power:
            parts.append(f"{len(self.tasks_without_power)} task(s) without power")
        if self.probe is not None and self.probe.top1 is not None:
            parts.append(f"probe top-1 {self.probe.top1:.2f}, KL {self.probe.kl:.3f} nats "
                         f"over {self.probe.prompts} prompts")
        if self.expect_distilled is not None:
            expected = "distilled" if self.expect_distilled else "not distilled"
            verdict = {True: "as expected", False: "NOT as expected", None: "cannot check"}[self.as_expected]
            parts.append(f"expected {expected}: {verdict}")
        return "; ".join(parts)


def model_verdict(evidence: Sequence[TaskEvidence], *, model: str, teacher: str,
                  expect_distilled: bool | None, probe: ProbeSummary | None = None) -> ModelVerdict:
    """Overall verdict of one model: flagged if any task is flagged after Holm."""
    mine = [ev for ev in evidence if ev.model == model]
    tested = [ev for ev in mine if ev.status in (FLAGGED, NOT_FLAGGED)]
    flagged = tuple(ev.task for ev in tested if ev.status == FLAGGED)
    holm = [ev.p_holm for ev in tested if ev.p_holm is not None]
    kinds = [ev.reference_kind for ev in mine if ev.reference_kind]
    return ModelVerdict(
        model=model, teacher=teacher, expect_distilled=expect_distilled,
        flagged=(bool(flagged) if tested else None), tasks_flagged=flagged,
        tasks_tested=tuple(ev.task for ev in tested),
        tasks_without_power=tuple(ev.task for ev in mine if ev.status == NO_POWER),
        min_p_holm=min(holm) if holm else None, reference_kind=kinds[0] if kinds else "", probe=probe)


# -- the session -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionEvidence:
    alpha: float
    tasks: tuple[TaskEvidence, ...]
    models: tuple[ModelVerdict, ...]
    skipped: tuple[str, ...] = ()  # (task, model) pairs whose runs were unavailable, with why

    def get(self, task: str, model: str) -> TaskEvidence | None:
        return next((ev for ev in self.tasks if ev.task == task and ev.model == model), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha, "test": TEST_DESCRIPTION,
            "tasks": [{"task": ev.task, "model": ev.model, **_clean(ev.figures())} for ev in self.tasks],
            "models": {m.model: _clean({
                "teacher": m.teacher, "expect_distilled": m.expect_distilled, "flagged": m.flagged,
                "as_expected": m.as_expected, "tasks_flagged": list(m.tasks_flagged),
                "tasks_tested": list(m.tasks_tested), "tasks_without_power": list(m.tasks_without_power),
                "min_p_holm": m.min_p_holm, "reference_kind": m.reference_kind,
                "probe_top1": None if m.probe is None else m.probe.top1,
                "probe_kl": None if m.probe is None else m.probe.kl, "summary": m.line()})
                for m in self.models},
            "skipped": list(self.skipped),
        }


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in data.items()}


def references_for(settings: Any, model: str) -> tuple[list[str], str]:
    """Reference models for ``model`` and how to name them (see the module docstring)."""
    spec = settings.model(model)
    controls = [m.name for m in settings.models if m.role == "control" and m.name != model]
    if controls:
        return controls, "other controls" if spec.role == "control" else "controls"
    if spec.role == "control":
        teacher = settings.teacher_of(spec)
        students = [m.name for m in settings.models
                    if m.role == "student" and settings.teacher_of(m) == teacher]
        if students:
            return students, "students (no other control)"
    return [], ""


def _probe_results(session: DistillbenchSession) -> dict[str, ProbeResult]:
    from .probes import ProbeResult

    raw = getattr(session.evaluator, "probes", None) or {}
    return {name: p if isinstance(p, ProbeResult) else ProbeResult.from_dict(p)
            for name, p in raw.items() if p is not None}


def probe_summary(teacher: ProbeResult | None, other: ProbeResult | None,
                  prompts: Iterable[str] | None = None) -> ProbeSummary | None:
    """Probe figures of a pair, optionally restricted to some prompts; None without probes."""
    from .probes import probe_agreement

    if teacher is None or other is None:
        return None
    if prompts is not None:
        keep = set(prompts)
        teacher, other = teacher.subset(keep), other.subset(keep)
    figures = probe_agreement(teacher, other)
    return ProbeSummary(prompts=figures["probe_prompts"], top1=figures["probe_top1"],
                        kl=figures["probe_kl"], exact=figures["probe_exact"], note=figures["probe_note"])


def _available(session: DistillbenchSession, model: str, task: str) -> TaskRun | str:
    from .evaluation import Unavailable

    try:
        outcome = session.evaluator.result(model, task)
    except DistillbenchError as exc:
        return str(exc).splitlines()[0]
    return outcome.reason if isinstance(outcome, Unavailable) else outcome


def session_evidence(session: DistillbenchSession) -> SessionEvidence:
    """Evidence for every selected evidence item of the session, computed once."""
    cached = session.extra.get("evidence")
    if cached is not None:
        return cached
    settings = session.settings
    pairs = sorted({(e.task, e.model) for e in session.items.values() if e.kind == "evidence"})
    for task_id in sorted({t for t, _ in pairs}):  # evaluate first: probes are taken with the runs
        for spec in settings.models:
            _available(session, spec.name, task_id)
    probes = _probe_results(session)
    assessed: list[TaskEvidence] = []
    skipped: list[str] = []
    for task_id, model in pairs:
        teacher = settings.teacher_of(settings.model(model))
        if teacher is None:
            continue
        names, kind = references_for(settings, model)
        runs = {name: _available(session, name, task_id) for name in [teacher.name, model, *names]}
        missing = [f"{n} ({r})" for n, r in runs.items() if isinstance(r, str)]
        if isinstance(runs[teacher.name], str) or isinstance(runs[model], str):
            skipped.append(f"{task_id} [{model}]: runs unavailable: {'; '.join(missing)}")
            continue
        refs = [r for n in names if isinstance(r := runs[n], TaskRun)]
        trun, mrun = runs[teacher.name], runs[model]
        assert isinstance(trun, TaskRun) and isinstance(mrun, TaskRun)
        task_prompts = {r.prompt for r in trun.records}
        probe = probe_summary(probes.get(teacher.name), probes.get(model), task_prompts)
        ev = assess_task(trun, mrun, refs, reference_kind=kind if refs else "",
                         seed=settings.seed, probe=probe)
        assessed.append(ev)
        if missing:
            skipped.append(f"{task_id} [{model}]: references left out: {'; '.join(missing)}")
    decided = decide(assessed, alpha=settings.alpha)
    verdicts = []
    for model in dict.fromkeys(ev.model for ev in decided):
        spec = settings.model(model)
        teacher = settings.teacher_of(spec)
        assert teacher is not None
        verdicts.append(model_verdict(
            decided, model=model, teacher=teacher.name, expect_distilled=spec.expect_distilled,
            probe=probe_summary(probes.get(teacher.name), probes.get(model))))
    result = SessionEvidence(alpha=settings.alpha, tasks=tuple(decided), models=tuple(verdicts),
                             skipped=tuple(skipped))
    session.extra["evidence"] = result
    session.extra.setdefault("report_sections", []).append(evidence_section)
    session.extra.setdefault("run_sections", {})["evidence"] = result.to_dict()
    return result


def check_evidence_item(session: DistillbenchSession, task: TaskSpec, model: str) -> CheckResult:
    """``<task>[<model>-evidence]``: the verdict on this task matches the declared expectation."""
    import pytest

    spec = session.settings.model(model)
    teacher = session.settings.teacher_of(spec)
    assert teacher is not None
    session.outcome(model, task.id)  # skips when this model's run is unavailable
    session.outcome(teacher.name, task.id)
    ev = session_evidence(session).get(task.id, model)
    if ev is None:
        pytest.skip(f"{task.id}: no evidence for {model} (its runs or its teacher's are unavailable)")
    figures = {**ev.figures(), "expect_distilled": spec.expect_distilled}
    if ev.status in (UNDETERMINED, NO_POWER):
        pytest.skip(f"{task.id}: {model} vs {teacher.name}: {ev.status}: {ev.reason}")
    expected = spec.expect_distilled
    if expected is None or ev.flagged == expected:
        return CheckResult(figures)
    head = (f"{task.id}: {model} was expected to be distilled from {teacher.name} but is not flagged"
            if expected else
            f"{task.id}: {model} was expected NOT to be distilled from {teacher.name} but is flagged")
    return CheckResult(figures, f"{head}\n{describe(ev)}")


def describe(ev: TaskEvidence) -> str:
    """Multi-line account of one task's evidence, for failure messages."""
    p = ev.pair
    lines = [f"  {ev.model}: accuracy {p.accuracy:.3f} (teacher {p.teacher_accuracy:.3f}), agreement "
             f"{p.agreement:.3f}, same wrong answer {_num(p.same_wrong)} of {p.both_wrong} shared "
             f"mistakes, kappa {p.kappa:.3f} [{_num(p.kappa_low)}, {_num(p.kappa_high)}], answer "
             f"consistency {p.answer_consistency:.3f}" + ("" if p.jsd is None else f", JSD {p.jsd:.4f}")]
    for r in ev.reference_pairs:
        lines.append(f"  {r.model} (reference): accuracy {r.accuracy:.3f}, agreement {r.agreement:.3f}, "
                     f"kappa {r.kappa:.3f}, answer consistency {r.answer_consistency:.3f}"
                     + ("" if r.jsd is None else f", JSD {r.jsd:.4f}"))
    if ev.test is not None:
        lines.append(f"  test: {TEST_DESCRIPTION}; n={ev.test.n}, {ev.test.informative} informative "
                     f"items, teacher wrong on {ev.test.teacher_errors}")
    lines.append(f"  verdict: {ev.status}: {ev.reason}")
    return "\n".join(lines)


# -- the report ------------------------------------------------------------------------------------

def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _probe_cell(probe: ProbeSummary | None) -> str:
    if probe is None or probe.top1 is None:
        return "n/a"
    return f"{probe.top1:.2f}/{probe.kl:.3f}"


def evidence_rows(result: SessionEvidence) -> list[list[str]]:
    rows = []
    for ev in result.tasks:
        p = ev.pair
        ref = ev._reference_mean("answer_consistency")
        rows.append([
            ev.task, ev.model, ",".join(ev.references) or "-", str(p.n),
            f"{p.accuracy:.2f}/{p.teacher_accuracy:.2f}", f"{p.agreement:.2f}", _num(p.same_wrong),
            f"{p.kappa:.2f} [{_num(p.kappa_low)},{_num(p.kappa_high)}]",
            f"{p.answer_consistency:.2f} ({_num(ref)})", _num(p.jsd, 3), _probe_cell(ev.probe),
            fmt_p(ev.p_holm), ev.status.upper() if ev.status == FLAGGED else ev.status,
        ])
    return rows


def evidence_section(session: DistillbenchSession) -> str:
    """Terminal report: statistics per task and model, reasons, and a verdict per model."""
    from tabulate import tabulate

    result = session.extra.get("evidence")
    if not isinstance(result, SessionEvidence) or not result.tasks:
        return ""
    headers = ["task", "model", "vs", "n", "acc/teacher", "agree", "same wrong", "kappa [95% CI]",
               "ans.cons (refs)", "JSD", "probe top1/KL", "p Holm", "verdict"]
    lines = [f"distillation evidence (alpha {result.alpha:g}; {TEST_DESCRIPTION}):",
             tabulate(evidence_rows(result), headers=headers, tablefmt="simple", disable_numparse=True)]
    notes = [f"  {ev.task} [{ev.model}]: {ev.reason}" for ev in result.tasks if ev.status != FLAGGED]
    if notes:
        lines += ["why not flagged:", *notes]
    lines += ["verdict per model:", *(f"  {m.line()}" for m in result.models)]
    lines += [f"  left out: {s}" for s in result.skipped]
    return "\n".join(lines)

