"""Distillation evidence: is a model more like the teacher than models that never saw it?

Accuracy cannot answer "was this model distilled from ours?"; what a model shares with the
teacher beyond what its recipe explains can, measured against a *population* of models trained
without the teacher (the controls).

**The verdict** is :mod:`measures.population`'s, per model: every statistic (logit-level dark
knowledge on the probe prompts, the order of the wrong choices, error consistency and identical
wrong answers, the per-task ones pooled over the tasks) is computed the same way for the suspect
and for every control; the suspect is flagged when it lies beyond the controls' spread on the
strongest kind of evidence every model has (an exact rank test over models with 19 or more
controls, Crawford-Howell's t with fewer; :func:`population.evidence_test`), the weaker kinds
reported beside it as supporting evidence.
A control is tested against the other controls, and the controls' leave-one-out tests are the
calibration check, Holm over them: a recipe whose controls get flagged makes any flag
meaningless, and a control's own verdict is taken on that Holm-adjusted p.

Why not item by item: the test this module ran before (:func:`reference_test`, kept as the
calibration benchmark's comparison) treats items as the only randomness. Two models trained on
the same labels differ from each other by more than item sampling explains, so it accused
independent models (the embedded `control-b` against `control` on 2 of 7 tasks, Holm p 7e-4;
8% / 20% / 30% of simulated tables at model-to-model spread 0 / 0.3 / 0.6 at a nominal 5%).

Descriptive figures per task and (teacher, model) pair, on the items all compared runs share,
printed beside the references' means (they explain, they do not decide):

* **agreement**: share of items where the two give the same answer (two right answers count
  as the same, so code that passes counts even when it is written differently);
* **same wrong answer**: among the items both got wrong, the share with the same answer
  (always 1 on two-choice tasks, where there is only one wrong answer);
* **error consistency** kappa (Geirhos et al. 2020) on right/wrong, with a bootstrap interval;
* **JSD** (multiple choice): mean Jensen-Shannon divergence between the two models' choice
  distributions (softmax of the choice log-likelihoods), in nats;
* **probe** (models sharing the teacher's tokenizer): top-1 next-token agreement and mean
  KL(teacher || model) after the task's probe prompts (see ``measures/probes.py``). Closeness
  of probabilities grows with accuracy and calibration, so divergences stay descriptive; the
  rank-based dark-knowledge statistic is what the verdict reads.

The item-only test, :func:`reference_test`: per task, shared right/wrong pattern (on the items
where the model and a reference differ in being right, is the teacher right more often where
the model is?), shared wrong answers on the items all got wrong beyond the matches answer
frequencies give by chance, and the order of the wrong choices, in one one-sided randomisation
test over items. Valid when the models are fixed and only the items are random; it is not the
verdict (see above).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import softmax

from ..records import ItemRecord, TaskRun
from . import stats
from .population import (
    CHOICE,
    EXACT,
    LOGIT,
    METHOD_NAMES,
    PARAMETRIC,
    TEXT,
    Calibration,
    PopulationVerdict,
    Statistic,
    StatisticTest,
    carries_evidence,
    evidence_test,
    fmt_p,
    leave_one_out,
    pool_tasks,
    population_statistics,
    population_test,
    uniform_outcome,
)
from .probes import ProbeResult, probe_agreement
from .stats import kendall_tau_b

if TYPE_CHECKING:
    from ..spec.settings import Settings

FLAGGED, NOT_FLAGGED, UNDETERMINED = "flagged", "not flagged", "undetermined"
TEST_DESCRIPTION = ("population test over models on the strongest evidence every model has "
                    "(logit-level dark knowledge, else wrong-choice order, else error consistency "
                    "and identical wrong answers, pooled over tasks; weaker kinds shown as "
                    "supporting), against the controls' spread: exact rank test with 19+ "
                    "controls, Crawford-Howell t with fewer; controls checked leave-one-out, "
                    "Holm over them")


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
    jsd: float | None  # multiple choice: mean Jensen-Shannon divergence of choice distributions
    jsd_items: int
    wrong_order: float | None  # multiple choice, 3+ choices: mean Kendall tau of the wrong choices' order
    wrong_order_items: int


def normalise_answer(text: str) -> str:
    return " ".join(text.split()).casefold()


def same_answer(a: str, b: str) -> bool:
    """Two normalised answers are the same answer. A blank one is no answer at all: models that
    both fall silent (e.g. on prompts longer than their context) share a failure to answer,
    driven by the input, not a belief about it, so it never counts as a shared wrong answer."""
    return a == b and a != ""


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
            and same_answer(normalise_answer(t.response), normalise_answer(o.response)))
        for t, o in zip(teacher, other, strict=True)
    ], dtype=float)


def discordance_scores(teacher_correct: np.ndarray, model_correct: np.ndarray,
                       reference_correct: np.ndarray) -> np.ndarray:
    """Per item: on the items where exactly one of model and reference is right, the teacher's
    rightness (less its mean ``q`` there) signed for the model (see the module docstring); 0
    elsewhere. Swapping model and reference on an item flips its score, and the scores sum to
    ``2 n_m n_r (q_m - q_r) / (n_m + n_r)``: zero when the teacher is right as often on the items
    the model wins (n_m of them) as on those the reference wins, whatever n_m - n_r is."""
    t = np.asarray(teacher_correct, dtype=bool)
    m = np.asarray(model_correct, dtype=bool)
    r = np.asarray(reference_correct, dtype=bool)
    model_side, reference_side = m & ~r, ~m & r
    scores = np.zeros(len(t))
    split = model_side | reference_side
    if not split.any():
        return scores
    q = float(t[split].mean())
    scores[model_side] = t[model_side] - q
    scores[reference_side] = q - t[reference_side]
    return scores


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


def wrong_choice_order(teacher: ItemRecord, other: ItemRecord) -> float | None:
    """Kendall tau between the two models' orders of the *wrong* choices of one item.

    Which wrong answer a model finds second best is what distillation hands on (the teacher's
    "dark knowledge"), and the order does not change with the model's temperature or with
    how much it favours the right answer. None without three or more scored choices.
    """
    t, o = teacher.choice_logprobs, other.choice_logprobs
    gold = teacher.gold
    if t is None or o is None or gold is None or len(t) != len(o) or len(t) < 3 or not 0 <= gold < len(t):
        return None
    keep = [i for i in range(len(t)) if i != gold]
    tau = kendall_tau_b([t[i] for i in keep], [o[i] for i in keep])
    return 0.0 if math.isnan(tau) else tau  # nan: one model ties all wrong choices


def wrong_order_vector(teacher: Sequence[ItemRecord], other: Sequence[ItemRecord]) -> np.ndarray:
    """Per item: :func:`wrong_choice_order`, nan where it is not defined."""
    values = [wrong_choice_order(t, o) for t, o in zip(teacher, other, strict=True)]
    return np.array([math.nan if v is None else v for v in values], dtype=float)


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
    order = wrong_order_vector(t, o)
    defined = ~np.isnan(order)
    return PairStatistics(
        model=other.model, n=len(hashes), accuracy=float(o_ok.mean()),
        teacher_accuracy=float(t_ok.mean()), agreement=float(agree.mean()),
        both_wrong=int(both_wrong.sum()), same_wrong=float(same.mean()) if same.size else None,
        kappa=kappa, kappa_low=lo, kappa_high=hi, jsd=jsd, jsd_items=jsd_items,
        wrong_order=float(order[defined].mean()) if defined.any() else None,
        wrong_order_items=int(defined.sum()))


# -- the comparison with the references ------------------------------------------------------------

@dataclass(frozen=True)
class ReferenceTest:
    n: int
    kappa_difference: float  # error consistency of the model minus the references' mean
    all_wrong: int  # items the teacher, the model and every reference got wrong
    answer_items: int  # of those, items where the model and the references differ in matching it
    same_answer: float | None  # on those: share where the model gave the teacher's wrong answer
    reference_same_answer: float | None  # the same share, averaged over the references
    same_answer_chance: float | None  # the model's share expected from its answer frequencies
    reference_same_answer_chance: float | None
    order_items: int  # items with an order of wrong choices for every model
    wrong_order: float | None  # the model's mean Kendall tau with the teacher on those
    reference_wrong_order: float | None
    score: float  # sum of the per-item scores the test is run on (> 0: closer than the references)
    p_value: float  # one-sided: the model is closer to the teacher than the references
    informative: int  # items where the model and the references differ in agreeing with the teacher
    teacher_errors: int

    @property
    def min_p(self) -> float:
        """The smallest p-value any outcome on these items could give."""
        return 2.0 ** -self.informative


def _unit(values: np.ndarray) -> np.ndarray:
    length = float(np.sqrt(np.sum(values**2)))
    return values / length if length > 0 else values


def chance_matches(teacher_answers: Sequence[str], other_answers: Sequence[str]) -> float:
    """Expected number of items with the same answer if the other model's answers were
    reassigned to items at random: sum over answers of n_teacher(a) * n_other(a) / n (blank
    answers never match, see :func:`same_answer`)."""
    if not teacher_answers:
        return 0.0
    t, o = Counter(teacher_answers), Counter(other_answers)
    return sum(count * o[a] for a, count in t.items() if a) / len(teacher_answers)


def wrong_answer_scores(teacher: Sequence[str], model: Sequence[str],
                        references: Sequence[Sequence[str]]) -> np.ndarray:
    """Per item (all wrong): the model's excess over the references in giving the teacher's answer.

    Matches are counted beyond chance: a model that gives one favourite answer everywhere,
    or the teacher's wrong answers moved to other items, matches the teacher often without
    any item-level copying. The chance count (:func:`chance_matches`) is subtracted evenly
    from the items where the model and the references differ; items where they do not differ
    carry no evidence and score 0.
    """
    m_same = np.array([same_answer(a, b) for a, b in zip(model, teacher, strict=True)], dtype=float)
    r_same = np.mean([[same_answer(a, b) for a, b in zip(r, teacher, strict=True)] for r in references],
                     axis=0)
    raw = m_same - r_same
    differ = ~np.isclose(raw, 0.0)
    if not differ.any():
        return np.zeros(len(teacher))
    chance = chance_matches(teacher, model) - float(np.mean([chance_matches(teacher, r) for r in references]))
    return np.where(differ, raw - chance / differ.sum(), 0.0)


def reference_test(teacher: TaskRun, model: TaskRun, references: Sequence[TaskRun],
                   hashes: Sequence[str] | None = None, *, seed: int = 0,
                   iters: int = 10000) -> ReferenceTest:
    """Is ``model`` closer to ``teacher`` than ``references`` are? (see the module docstring)"""
    if not references:
        raise ValueError("a reference test needs at least one reference run")
    hashes = common_items([teacher, model, *references]) if hashes is None else list(hashes)
    if not hashes:
        raise ValueError(f"the runs share no items on {teacher.task}")

    teacher_records = _records(teacher, hashes)

    def outcomes(run: TaskRun) -> tuple[np.ndarray, list[str]]:
        recs = _records(run, hashes)
        return np.array([r.correct for r in recs]), [normalise_answer(r.response) for r in recs]

    t_ok, t_answers = outcomes(teacher)
    m_ok, m_answers = outcomes(model)
    refs = [outcomes(r) for r in references]
    # right/wrong pattern: discordance scores on the items the model and each reference split.
    # A teacher right (or wrong) everywhere gives the pattern nothing to share, so the term is
    # left out.
    pattern_used = bool(t_ok.any() and not t_ok.all())
    pattern = np.zeros(len(hashes))
    blocks = []  # per reference: the split items' centred teacher rightness and the model's side
    if pattern_used:
        for ok, _ in refs:
            part = discordance_scores(t_ok, m_ok, ok)
            norm = float(np.linalg.norm(part))
            if norm > 0:
                weight = 1.0 / (norm * len(refs))  # each reference's part at unit length
                pattern += weight * part
                # the randomisation moves the sides; the centred rightness stays with its item
                split = m_ok != ok
                blocks.append((np.where(m_ok[split], part[split], -part[split]), m_ok[split], weight))
    # wrong answers: only where everyone is wrong, so accuracy does not enter
    wrong = np.flatnonzero(~t_ok & ~m_ok & np.all([~ok for ok, _ in refs], axis=0))

    def pick(answers: list[str]) -> list[str]:
        return [answers[i] for i in wrong]

    answers = np.zeros(len(hashes))
    answers[wrong] = wrong_answer_scores(pick(t_answers), pick(m_answers), [pick(a) for _, a in refs])
    # order of the wrong choices (multiple choice with 3+ choices), where every model has one
    m_order = wrong_order_vector(teacher_records, _records(model, hashes))
    r_orders = np.array([wrong_order_vector(teacher_records, _records(r, hashes)) for r in references])
    ordered = ~np.isnan(m_order) & ~np.isnan(r_orders).any(axis=0)
    order = np.where(ordered, np.nan_to_num(m_order) - np.nan_to_num(r_orders).mean(axis=0), 0.0)
    flips = _unit(answers) + _unit(order)
    scores = pattern + flips

    informative = ~np.isclose(pattern, 0.0) | (answers != 0) | ~np.isclose(order, 0.0)

    def share_same(answers_of: list[str]) -> float | None:
        return float(np.mean([same_answer(answers_of[i], t_answers[i]) for i in wrong])) if wrong.size else None

    ref_shares = [x for _, a in refs if (x := share_same(a)) is not None]

    def chance_share(answers_of: list[str]) -> float:
        return chance_matches(pick(t_answers), pick(answers_of)) / wrong.size

    kappas = [stats.error_consistency(t_ok, ok) for ok, _ in refs]
    return ReferenceTest(
        n=len(hashes), kappa_difference=stats.error_consistency(t_ok, m_ok) - float(np.mean(kappas)),
        all_wrong=int(wrong.size), answer_items=int(np.count_nonzero(answers)),
        same_answer=share_same(m_answers),
        reference_same_answer=float(np.mean(ref_shares)) if ref_shares else None,
        same_answer_chance=chance_share(m_answers) if wrong.size else None,
        reference_same_answer_chance=float(np.mean([chance_share(a) for _, a in refs])) if wrong.size else None,
        order_items=int(ordered.sum()),
        wrong_order=float(m_order[ordered].mean()) if ordered.any() else None,
        reference_wrong_order=float(r_orders[:, ordered].mean()) if ordered.any() else None,
        score=float(scores.sum()),
        p_value=stats.side_permutation_test(blocks, flips, iters=iters, seed=seed),
        informative=int(informative.sum()), teacher_errors=int((~t_ok).sum()))


# -- verdicts: the population test ---------------------------------------------------------------

@dataclass(frozen=True)
class ProbeSummary:
    prompts: int
    top1: float | None
    kl: float | None
    exact: bool | None
    note: str = ""


@dataclass(frozen=True)
class TaskEvidence:
    """One model's figures on one task beside its references', and this task's statistics in
    the model's population test (the verdict itself is the model's: :class:`ModelVerdict`)."""

    task: str
    model: str
    teacher: str
    references: tuple[str, ...]
    reference_kind: str  # "controls", "other controls", or "" with no reference
    pair: PairStatistics
    reference_pairs: tuple[PairStatistics, ...]
    tests: tuple[StatisticTest, ...] = ()  # this task's statistics in the model's test
    probe: ProbeSummary | None = None
    status: str = UNDETERMINED  # flagged: the model is flagged and a statistic of this task is
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
            "jsd": p.jsd, "wrong_order": p.wrong_order,
            "reference_accuracy": self._reference_mean("accuracy"),
            "reference_agreement": self._reference_mean("agreement"),
            "reference_kappa": self._reference_mean("kappa"),
            "reference_same_wrong": self._reference_mean("same_wrong"),
            "reference_jsd": self._reference_mean("jsd"),
            "reference_wrong_order": self._reference_mean("wrong_order"),
            "status": self.status, "flagged": self.flagged, "reason": self.reason,
        }
        for t in self.tests:
            name = t.statistic.name
            out.update({name: t.suspect, f"{name}_references": t.reference_mean,
                        f"{name}_rank": t.rank, f"{name}_p": t.p_value, f"{name}_p_adjusted": t.p_adjusted})
        if self.probe is not None:
            out.update(probe_prompts=self.probe.prompts, probe_top1=self.probe.top1,
                       probe_kl=self.probe.kl)
        return out


@dataclass(frozen=True)
class ModelVerdict:
    """Is ``model`` distilled from ``teacher``? Its population test against the references."""

    model: str
    teacher: str
    expect_distilled: bool | None
    reference_kind: str  # "controls" or "other controls" (a control left out of the population)
    population: PopulationVerdict
    # The p-value the verdict is taken on: the population test's family-wise p, or for a control
    # Holm's adjustment over every control's leave-one-out test (the calibration family), so the
    # chance that any control that never saw the teacher is flagged stays at alpha.
    p_value: float | None
    tasks: tuple[str, ...] = ()
    probe: ProbeSummary | None = None
    # controls flagged by the calibration check: with any, a suspect's flag means nothing (the
    # recipe's own controls look distilled), so it becomes undetermined, never an accusation
    miscalibrated: tuple[str, ...] = ()

    @property
    def alpha(self) -> float:
        return self.population.alpha

    @property
    def flagged(self) -> bool | None:
        if self.population.status == UNDETERMINED or self.p_value is None:
            return None
        if self.p_value <= self.alpha and self.miscalibrated and self.reference_kind != "other controls":
            return None
        return self.p_value <= self.alpha

    @property
    def evidence(self) -> tuple[str, ...]:
        return self.population.evidence

    @property
    def as_expected(self) -> bool | None:
        if self.expect_distilled is None or self.flagged is None:
            return None
        return self.flagged == self.expect_distilled

    def line(self) -> str:
        v = self.population
        if self.flagged is None and v.status != UNDETERMINED:
            parts = [f"{self.model}: undetermined: beyond the controls (p = {fmt_p(self.p_value)}), but "
                     f"the calibration check failed ({', '.join(self.miscalibrated)} flagged against "
                     "the other controls), so the controls do not tell what an independent model "
                     "looks like on this evidence"]
        elif self.flagged is None:
            parts = [f"{self.model}: {v.reason}"]
        else:
            short = {LOGIT: "logit", CHOICE: "choice", TEXT: "text"}
            family = (", Holm over the controls' leave-one-out tests"
                      if self.reference_kind == "other controls" else "")
            word = f"FLAGGED as distilled from {self.teacher}" if self.flagged else "not flagged"
            method = {EXACT: "exact rank test", PARAMETRIC: "Crawford-Howell t"}.get(v.method, v.method)
            parts = [f"{self.model}: {word} (p = {fmt_p(self.p_value)}{family}; {method}, "
                     f"{len(v.references)} {self.reference_kind}, {len(v.tests)} "
                     f"statistic{'' if len(v.tests) == 1 else 's'}; "
                     f"evidence: {', '.join(short[k] for k in v.evidence) or 'none'})"]
        if self.probe is not None and self.probe.top1 is not None:
            parts.append(f"probe top-1 {self.probe.top1:.2f}, KL {self.probe.kl:.3f} nats "
                         f"over {self.probe.prompts} prompts")
        if self.expect_distilled is not None:
            expected = "distilled" if self.expect_distilled else "not distilled"
            verdict = {True: "as expected", False: "NOT as expected", None: "cannot check"}[self.as_expected]
            parts.append(f"expected {expected}: {verdict}")
        return "; ".join(parts)

    def strips(self, limit: int = 6) -> list[str]:
        """The suspect's statistics beside the references': the deciding tier's, then the
        supporting ones."""
        v = self.population
        lines = [f"{t.statistic.label:<20} {t.strip()}, p {fmt_p(t.p_adjusted)}" for t in v.tests]
        lines += [f"{t.statistic.label:<20} {t.strip()}, p {fmt_p(t.p_adjusted)} (supporting)"
                  for t in v.supporting]
        return lines[:limit]


# -- the session -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionEvidence:
    alpha: float
    tasks: tuple[TaskEvidence, ...]
    models: tuple[ModelVerdict, ...]
    skipped: tuple[str, ...] = ()  # (task, model) pairs whose runs were unavailable, with why
    calibration: tuple[tuple[str, Calibration], ...] = ()  # per teacher: the controls' check

    def get(self, task: str, model: str) -> TaskEvidence | None:
        return next((ev for ev in self.tasks if ev.task == task and ev.model == model), None)

    def verdict(self, model: str) -> ModelVerdict | None:
        return next((m for m in self.models if m.model == model), None)

    def to_dict(self) -> dict[str, Any]:
        def tests(v: PopulationVerdict) -> list[dict[str, Any]]:
            return [_clean({"kind": t.statistic.kind, "statistic": t.statistic.name,
                            "task": t.statistic.task, "suspect": t.suspect,
                            "references": list(t.references), "rank": t.rank, "score": t.score,
                            "p": t.p_value, "p_adjusted": t.p_adjusted}) for t in v.tests]

        return {
            "alpha": self.alpha, "test": TEST_DESCRIPTION,
            "tasks": [{"task": ev.task, "model": ev.model, **_clean(ev.figures())} for ev in self.tasks],
            "models": {m.model: {**_clean({
                "teacher": m.teacher, "expect_distilled": m.expect_distilled, "flagged": m.flagged,
                "as_expected": m.as_expected, "p_value": m.p_value,
                "population_p": m.population.p_value, "method": m.population.method,
                "assumption": m.population.assumption, "status": m.population.status,
                "references": ", ".join(m.population.references), "reference_kind": m.reference_kind,
                "evidence": ", ".join(m.evidence), "tasks": ", ".join(m.tasks),
                "probe_top1": None if m.probe is None else m.probe.top1,
                "probe_kl": None if m.probe is None else m.probe.kl, "summary": m.line(),
                "reason": m.population.reason}),
                "statistics": tests(m.population),
                "supporting": [_clean({"kind": t.statistic.kind, "statistic": t.statistic.name,
                                       "suspect": t.suspect, "references": list(t.references),
                                       "rank": t.rank, "p_adjusted": t.p_adjusted})
                               for t in m.population.supporting],
                "left_out": [f"{s.label}: {why}" for s, why in m.population.skipped]}
                for m in self.models},
            "calibration": {teacher: {"passed": c.passed, "lines": c.lines()}
                            for teacher, c in self.calibration},
            "skipped": list(self.skipped),
        }


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in data.items()}


def fmt_num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def controls_of(settings: Any, teacher: str) -> list[str]:
    """The controls whose teacher is ``teacher``: its reference population."""
    return [m.name for m in settings.models if m.role == "control"
            and (t := settings.teacher_of(m)) is not None and t.name == teacher]


def references_for(settings: Any, model: str) -> tuple[list[str], str]:
    """The controls of ``model``'s teacher other than ``model``, and how to name them. Students
    are never references: they are not independent of the teacher."""
    spec = settings.model(model)
    teacher = settings.teacher_of(spec)
    controls = [] if teacher is None else [c for c in controls_of(settings, teacher.name) if c != model]
    if not controls:
        return [], ""
    return controls, "other controls" if spec.role == "control" else "controls"


def probe_summary(teacher: ProbeResult | None, other: ProbeResult | None,
                  prompts: Iterable[str] | None = None) -> ProbeSummary | None:
    """Probe figures of a pair, optionally restricted to some prompts; None without probes."""
    if teacher is None or other is None:
        return None
    if prompts is not None:
        keep = set(prompts)
        teacher, other = teacher.subset(keep), other.subset(keep)
    figures = probe_agreement(teacher, other)
    return ProbeSummary(prompts=figures["probe_prompts"], top1=figures["probe_top1"],
                        kl=figures["probe_kl"], exact=figures["probe_exact"], note=figures["probe_note"])


def _restrict(values: Mapping[str, Mapping[Statistic, float]], tasks: set[str]
              ) -> dict[str, dict[Statistic, float]]:
    """Only the pooled statistics and those of ``tasks``."""
    return {m: {s: v for s, v in row.items() if not s.task or s.task in tasks} for m, row in values.items()}


def _restrict_task(values: Mapping[str, Mapping[Statistic, float]], task: str
                   ) -> dict[str, dict[Statistic, float]]:
    """Only the statistics of ``task``."""
    return {m: {s: v for s, v in row.items() if s.task == task} for m, row in values.items()}


def _task_status(verdict: ModelVerdict, tests: Sequence[StatisticTest]) -> tuple[str, str]:
    """A task's row carries the model's verdict and, to show where the model stands, this
    task's statistics beside the references' (rank and a one-statistic p, descriptive)."""
    v = verdict.population
    shown = "; ".join(f"{t.statistic.name} {t.suspect:.3f} vs {t.reference_mean:.3f} +- "
                      f"{fmt_num(t.reference_sd, 3)} (rank {t.rank} of {len(t.references) + 1})"
                      for t in tests) or "no statistic of this task defined for every model"
    if verdict.flagged is None:
        return UNDETERMINED, verdict.line()
    head = (f"{verdict.model} is {'flagged' if verdict.flagged else 'not flagged'} (p = "
            f"{fmt_p(verdict.p_value)}, {METHOD_NAMES.get(v.method, v.method)}, statistics pooled "
            "over the tasks)")
    return (FLAGGED if verdict.flagged else NOT_FLAGGED), f"{head}; on this task: {shown}"


def assess_session(settings: Settings, pairs: Iterable[tuple[str, str]],
                   runs: Mapping[tuple[str, str], TaskRun | str],
                   probes: Mapping[str, ProbeResult]) -> SessionEvidence:
    """Evidence for the (task, model) pairs asked for, from runs that are done: ``runs`` maps
    (model, task) to its run or to why it is unavailable; ``probes`` maps model to its probe
    distributions. Pure: the face gathers the runs, this decides.

    Per teacher, every statistic is computed for the suspects and for all of the teacher's
    controls on the tasks they all have (:func:`population.population_statistics`); each suspect
    is tested against the controls (a control against the other controls), and the controls'
    leave-one-out tests are the calibration check (Holm over them)."""
    pairs = sorted(set(pairs))
    alpha = settings.alpha
    method = settings.evidence_method
    skipped: list[str] = []
    assessed: list[TaskEvidence] = []
    verdicts: list[ModelVerdict] = []
    calibrations: list[tuple[str, Calibration]] = []
    by_teacher: dict[str, list[str]] = {}
    for _, model in pairs:
        teacher = settings.teacher_of(settings.model(model))
        if teacher is not None and model not in by_teacher.setdefault(teacher.name, []):
            by_teacher[teacher.name].append(model)
    for teacher, suspects in by_teacher.items():
        controls = controls_of(settings, teacher)
        wanted = {m: {t for t, x in pairs if x == m} for m in suspects}
        tasks = sorted(set().union(*wanted.values()))
        everyone = list(dict.fromkeys([teacher, *suspects, *controls]))
        usable: dict[str, dict[str, TaskRun]] = {n: {} for n in everyone}
        quiet: dict[str, dict[str, TaskRun]] = {n: {} for n in everyone}  # tasks without evidence
        for task in tasks:
            trun = runs.get((teacher, task))
            if isinstance(trun, TaskRun) and not carries_evidence(trun):
                # the teacher is right (or wrong) on every item: no per-task statistic, and a
                # reference alone is not even evaluated here; the models' rows still show
                for n in everyone:
                    if isinstance(r := runs.get((n, task)), TaskRun):
                        quiet[n][task] = r
                continue
            got = {n: runs.get((n, task), "not evaluated") for n in everyone}
            missing = {n: r for n, r in got.items() if isinstance(r, str)}
            if missing:
                # a model without the task would make its statistics undefined for everyone:
                # the task leaves the population, and the report says why
                for m in suspects:
                    if task in wanted[m]:
                        skipped.append(f"{task} [{m}]: runs unavailable: "
                                       + "; ".join(f"{n} ({r})" for n, r in missing.items()))
                continue
            for n, r in got.items():
                assert isinstance(r, TaskRun)
                usable[n][task] = r
        teacher_probe = probes.get(teacher)
        per_task = population_statistics(teacher, usable, probes, logits=teacher_probe is not None)
        values = pool_tasks(per_task)
        calibration = leave_one_out(values, controls, alpha=alpha, method=method)
        calibrations.append((teacher, calibration))
        loo = {v.suspect: (v, p) for v, p in zip(calibration.verdicts, calibration.p_holm, strict=True)}
        for model in suspects:
            spec = settings.model(model)
            names, kind = references_for(settings, model)
            mine = set(wanted[model]) & set(usable[model])
            if spec.role == "control" and model in loo and mine == set(usable[model]):
                # the same test the calibration ran, on every task the controls share: the
                # Holm-adjusted p over the leave-one-out family decides
                population, p = loo[model]
            else:
                population = evidence_test(pool_tasks(_restrict(per_task, mine)), model, names,
                                           alpha=alpha, method=method)
                p = population.p_value
            verdict = ModelVerdict(model=model, teacher=teacher, expect_distilled=spec.expect_distilled,
                                   reference_kind=kind, population=population, p_value=p,
                                   tasks=tuple(sorted(mine)),
                                   probe=probe_summary(teacher_probe, probes.get(model)),
                                   miscalibrated=calibration.flagged)
            verdicts.append(verdict)
            shown = sorted(mine | (set(wanted[model]) & set(quiet[model]) & set(quiet[teacher])))
            for task in shown:
                source = usable if task in mine else quiet
                trun, mrun = source[teacher][task], source[model][task]
                refs = [source[n][task] for n in names if task in source[n]]
                hashes = common_items([trun, mrun, *refs])
                if not hashes:
                    skipped.append(f"{task} [{model}]: the runs share no items")
                    continue
                # this task's statistics beside the references', descriptive: the verdict
                # reads them pooled over the tasks
                tests = population_test(_restrict_task(per_task, task), model, names, alpha=alpha,
                                        method=method).tests
                status, reason = _task_status(verdict, tests)
                if task not in mine:
                    reason += (f" ({teacher} is {uniform_outcome(trun)} on every item of this task, "
                               "so no per-task statistic reads it)")
                task_prompts = {r.prompt for r in trun.records}
                assessed.append(TaskEvidence(
                    task=task, model=model, teacher=teacher, references=tuple(r.model for r in refs),
                    reference_kind=kind if refs else "",
                    pair=pair_statistics(trun, mrun, hashes, seed=settings.seed),
                    reference_pairs=tuple(pair_statistics(trun, r, hashes, seed=settings.seed) for r in refs),
                    tests=tests, status=status, reason=reason,
                    probe=probe_summary(teacher_probe, probes.get(model), task_prompts)))
    return SessionEvidence(alpha=alpha, tasks=tuple(assessed), models=tuple(verdicts),
                           skipped=tuple(skipped), calibration=tuple(calibrations))


def describe(ev: TaskEvidence, verdict: ModelVerdict | None = None) -> str:
    """Multi-line account of one task's evidence (and the model's verdict), for failure messages."""
    def pair_line(p: PairStatistics, label: str) -> str:
        return (f"  {label}: accuracy {p.accuracy:.3f}, agreement {p.agreement:.3f}, kappa "
                f"{p.kappa:.3f} [{fmt_num(p.kappa_low, 3)}, {fmt_num(p.kappa_high, 3)}], same wrong "
                f"answer on {fmt_num(p.same_wrong)} of {p.both_wrong} shared mistakes"
                + ("" if p.jsd is None else f", JSD {p.jsd:.4f}")
                + ("" if p.wrong_order is None else f", wrong-choice order tau {p.wrong_order:.3f}"))

    lines = [pair_line(ev.pair, f"{ev.model} (teacher accuracy {ev.pair.teacher_accuracy:.3f})")]
    lines += [pair_line(r, f"{r.model} (reference)") for r in ev.reference_pairs]
    if verdict is not None:
        lines.append(f"  verdict: {verdict.line()}")
        lines += [f"    {line}" for line in verdict.strips()]
    lines.append(f"  this task: {ev.status}: {ev.reason}")
    return "\n".join(lines)
