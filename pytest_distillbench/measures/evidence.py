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
  KL(teacher || model) after the task's probe prompts (see ``measures/probes.py``).

The verdict (one per task and model) weighs three fingerprints of copying, item by item:

* **shared right/wrong pattern**: on the items where the model and a reference differ in being
  right (one right, the other wrong), is the teacher right more often where the model is the
  right one? Per item the score is ``[teacher right] - q`` where the model is right and ``q -
  [teacher right]`` where the reference is, with ``q`` the teacher's accuracy on those items.
  How *many* items each side wins is left out, so accuracy does not enter: when each model's
  chance of being right is a logistic function of its skill minus the item's difficulty (the
  Rasch model), the items the model wins and those the reference wins have the same mix of
  difficulties however far apart the two skills are, and the teacher is right on the same share
  of both. A copy of the teacher is right where the teacher is and wrong where it is. (Per-item
  kappa terms, used before, are corrected for the two accuracies but not for how varied the
  items are: on a code task of easy and hard operations a control 0.19 more accurate than the
  other was "flagged" at p = 0.0002 (0.0022 after Holm); the test below gives it p = 0.09.)
* **shared wrong answers**: on the items that the teacher, the model and every reference got
  wrong, whether the model gave the teacher's wrong answer, beyond the matches its answer
  frequencies give by chance (see :func:`wrong_answer_scores`: a model with one favourite
  answer, or the teacher's wrong answers moved to other items, is not copying). Conditioning
  on "all wrong" keeps accuracy out of it; it is what tells models apart near the floor, where
  right/wrong carries no information, and it is empty on two-choice tasks (one wrong answer).
* **order of the wrong choices** (multiple choice with three or more choices): Kendall tau
  between the teacher's and the model's ranking of the wrong choices, the "dark knowledge"
  that distillation hands on. Ranks do not move with a model's temperature or with how much
  it favours the right answer.

The per-item differences from the references' mean, each part scaled to unit length (so none
dominates by its units), are added into one per-item score. The divergences (JSD, probe KL)
stay descriptive: closeness of probabilities grows with accuracy and with calibration, so
they would accuse honest models. In simulated 4-choice tables (200 items, alpha 0.05), a
paired JSD test flagged an independent model 4 points more accurate than the control in 17%
of tables and an equally accurate but less confident one in 39%; the wrong-choice order
flagged either in 1%, and a model whose logits mix in 20% of the teacher's in 73%.

* **References**: a student (or any non-control) is compared with every control, a control
  with the other controls. With none the verdict is *undetermined*, never guessed. Students are
  not used as references for a control: they are not independent of the teacher, and a control
  would be "flagged" wherever a student happens to track the teacher less than it does (on an
  under-trained zoo build that accused the control on one task at Holm p = 0.01).
* **Test**: the summed score goes into a one-sided Monte Carlo randomisation test whose null
  hypothesis is that the model and its references relate to the teacher in the same way, item
  by item (:func:`stats.side_permutation_test`). The wrong-answer and wrong-order parts flip
  signs item by item, as a paired sign-flip test does. The right/wrong part shuffles which of
  the split items the model wins while keeping how many it wins, so its null distribution
  conditions on the accuracy gap, as Fisher's exact test conditions on a 2x2 table's margins;
  flipping those signs one by one would treat "the more accurate model wins most split items"
  as evidence (it flagged a control 0.19 more accurate than the other at p = 1e-4). Scaling
  by the lengths keeps it a valid randomisation test: no length changes under either move.
* **Power**: an item informs the test only when the model and its references differ in
  agreeing with the teacher (right/wrong, the wrong answer, or the wrong choices' order). With k such items no outcome
  gives p below 2**-k, so a task where 2**-k >= alpha can never be flagged. It is reported as
  *no power*, with the reason (e.g. both at ceiling), and, in the spirit of Tarone's procedure
  for discrete tests, left out of the multiple-testing family, so it costs the other tasks
  nothing.
* **Calibration**: with 200 items, independent models whose errors correlate through shared
  item difficulty were flagged in 1-5% of simulated tables at alpha 0.05, also when the model
  was far more (or less) accurate than the control; a model copying the teacher on 20% / 40%
  of items was flagged in about 45% / 93% (``tests/test_evidence.py`` keeps a smaller check).
* **Multiple tasks**: Holm across a model's tasks. A model is flagged overall when any task is
  flagged after Holm. That keeps the chance of wrongly flagging a model that never saw the
  teacher at or below alpha whatever the dependence between tasks, and it says *where* the
  evidence is; Fisher's or Stouffer's combination would add power when a small effect is spread
  over many tasks but assumes independent tasks and cannot name one.

There is no absolute cutoff on any statistic: "flagged" always means "beyond the references".
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import softmax

from ..errors import DistillbenchError
from ..records import ItemRecord, TaskRun
from . import stats
from .probes import ProbeResult, probe_agreement
from .stats import kendall_tau_b

if TYPE_CHECKING:
    from ..spec.settings import Settings

FLAGGED, NOT_FLAGGED, NO_POWER, UNDETERMINED = "flagged", "not flagged", "no power", "undetermined"
TEST_DESCRIPTION = ("shared right/wrong pattern (the teacher's accuracy where the model, not the "
                    "reference, is right), shared wrong answers "
                    "(items all got wrong) and order of the wrong choices, against the references; "
                    "one-sided randomisation test over items (signs flipped, split items' sides "
                    "shuffled), Holm across each model's tasks")
# Accuracies further apart than this make kappa comparisons approximate; the reason says so.
ACCURACY_GAP_NOTE = 0.10
# A teacher right on all but this many items leaves too few mistakes to fingerprint.
CEILING_ERRORS = 2
# Models that score at most this are "at the floor" in explanations.
FLOOR_ACCURACY = 0.05


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
    reference_kind: str  # "controls", "other controls", or "" with no reference
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
            "jsd": p.jsd, "wrong_order": p.wrong_order,
            "reference_accuracy": self._reference_mean("accuracy"),
            "reference_agreement": self._reference_mean("agreement"),
            "reference_kappa": self._reference_mean("kappa"),
            "reference_same_wrong": self._reference_mean("same_wrong"),
            "reference_jsd": self._reference_mean("jsd"),
            "reference_wrong_order": self._reference_mean("wrong_order"),
            "status": self.status, "flagged": self.flagged, "reason": self.reason,
            "p_holm": self.p_holm, "family_size": self.family_size,
        }
        if self.test is not None:
            out.update(kappa_difference=self.test.kappa_difference, all_wrong=self.test.all_wrong,
                       same_answer_all_wrong=self.test.same_answer,
                       reference_same_answer_all_wrong=self.test.reference_same_answer,
                       same_answer_chance=self.test.same_answer_chance,
                       reference_same_answer_chance=self.test.reference_same_answer_chance,
                       test_score=self.test.score, p_value=self.test.p_value,
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
    best = max([ev.pair.teacher_accuracy, *accuracies])
    if best <= FLOOR_ACCURACY:
        return (f"all at the floor: no model scores above {best:.2f}, so right/wrong carries no "
                f"information, and the wrong answers shared with {ev.teacher} are as many as their "
                f"answer frequencies give by chance ({where})")
    return where


def _test_figures(ev: TaskEvidence) -> str:
    test = ev.test
    assert test is not None
    theirs = ev._reference_mean("kappa")
    text = (f"kappa {ev.pair.kappa:.3f} vs {fmt_num(theirs, 3)} for the {ev.reference_kind} "
            f"({', '.join(ev.references)})")
    if test.answer_items and test.same_answer is not None and test.reference_same_answer is not None:
        text += (f"; on the {test.all_wrong} items all got wrong, the teacher's wrong answer "
                 f"{test.same_answer:.2f} vs {test.reference_same_answer:.2f} (by chance, from how "
                 f"often each gives each answer: {fmt_num(test.same_answer_chance)} vs "
                 f"{fmt_num(test.reference_same_answer_chance)})")
    if test.order_items and test.wrong_order is not None and test.reference_wrong_order is not None:
        text += (f"; order of the wrong choices on {test.order_items} items: Kendall tau "
                 f"{test.wrong_order:.2f} vs {test.reference_wrong_order:.2f}")
    return text


def _verdict_reason(ev: TaskEvidence, alpha: float) -> tuple[str, str]:
    test = ev.test
    assert test is not None and ev.p_holm is not None
    family = f"Holm over {ev.family_size} task{'s' if ev.family_size != 1 else ''}"
    figures = _test_figures(ev)
    if ev.p_holm < alpha and test.score > 0:
        return FLAGGED, (f"{ev.model} agrees with {ev.teacher} beyond what the {ev.reference_kind} "
                         f"explain (p = {fmt_p(test.p_value)}, {fmt_p(ev.p_holm)} after {family}): {figures}")
    if test.score <= 0:
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
                    f"no reference model: nothing tells how much a model that never saw "
                    f"{ev.teacher} agrees with it; declare a control (similar size and data, trained "
                    "without the teacher), or a second one to check a control"))
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
    """The controls other than ``model`` and how to name them (see the module docstring)."""
    spec = settings.model(model)
    controls = [m.name for m in settings.models if m.role == "control" and m.name != model]
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


def assess_session(settings: Settings, pairs: Iterable[tuple[str, str]],
                   runs: Mapping[tuple[str, str], TaskRun | str],
                   probes: Mapping[str, ProbeResult]) -> SessionEvidence:
    """Evidence for the (task, model) pairs asked for, from runs that are done: ``runs`` maps
    (model, task) to its run or to why it is unavailable; ``probes`` maps model to its probe
    distributions. Pure: the face gathers the runs, this decides."""
    assessed: list[TaskEvidence] = []
    skipped: list[str] = []
    pairs = sorted(set(pairs))
    for task_id, model in pairs:
        teacher = settings.teacher_of(settings.model(model))
        if teacher is None:
            continue
        names, kind = references_for(settings, model)
        got = {name: runs.get((name, task_id), "not evaluated") for name in [teacher.name, model, *names]}
        missing = [f"{n} ({r})" for n, r in got.items() if isinstance(r, str)]
        if isinstance(got[teacher.name], str) or isinstance(got[model], str):
            skipped.append(f"{task_id} [{model}]: runs unavailable: {'; '.join(missing)}")
            continue
        refs = [r for n in names if isinstance(r := got[n], TaskRun)]
        trun, mrun = got[teacher.name], got[model]
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
    return SessionEvidence(alpha=settings.alpha, tasks=tuple(decided), models=tuple(verdicts),
                           skipped=tuple(skipped))


def describe(ev: TaskEvidence) -> str:
    """Multi-line account of one task's evidence, for failure messages."""
    def pair_line(p: PairStatistics, label: str) -> str:
        return (f"  {label}: accuracy {p.accuracy:.3f}, agreement {p.agreement:.3f}, kappa "
                f"{p.kappa:.3f} [{fmt_num(p.kappa_low, 3)}, {fmt_num(p.kappa_high, 3)}], same wrong "
                f"answer on {fmt_num(p.same_wrong)} of {p.both_wrong} shared mistakes"
                + ("" if p.jsd is None else f", JSD {p.jsd:.4f}")
                + ("" if p.wrong_order is None else f", wrong-choice order tau {p.wrong_order:.3f}"))

    lines = [pair_line(ev.pair, f"{ev.model} (teacher accuracy {ev.pair.teacher_accuracy:.3f})")]
    lines += [pair_line(r, f"{r.model} (reference)") for r in ev.reference_pairs]
    if ev.test is not None:
        lines.append(f"  test: {TEST_DESCRIPTION}; n={ev.test.n}, {ev.test.informative} informative "
                     f"items, teacher wrong on {ev.test.teacher_errors}")
    lines.append(f"  verdict: {ev.status}: {ev.reason}")
    return "\n".join(lines)


def fmt_num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"
