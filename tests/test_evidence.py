"""Distillation evidence: constructed outcome tables with known answers, properties, probes and
the plugin end to end (tiny models always, the embedded zoo models when they are built)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_distillbench.engine.probes import probe_distributions, probe_prompts, summarise
from pytest_distillbench.measures import stats
from pytest_distillbench.measures.evidence import (
    UNDETERMINED,
    assess_session,
    chance_matches,
    describe,
    discordance_scores,
    kendall_tau_b,
    mean_choice_jsd,
    pair_statistics,
    reference_test,
    references_for,
    wrong_choice_order,
)
from pytest_distillbench.measures.population import wrong_answer_excess
from pytest_distillbench.measures.probes import (
    FULL_VOCAB_MAX,
    ProbeResult,
    kl_divergence,
    probe_agreement,
)
from pytest_distillbench.records import ItemRecord, TaskRun
from pytest_distillbench.spec.models import ModelSpec
from pytest_distillbench.spec.settings import Settings

from conftest import MC_ROWS, mc_task, needs_zoo, write_jsonl

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

N = 200
WRONG = [f"w{k}" for k in range(5)]


# -- constructed outcome tables --------------------------------------------------------------------

def make_run(name: str, correct, answers, *, task: str = "s/t", logprobs=None, gold=None) -> TaskRun:
    records = []
    for i, (ok, answer) in enumerate(zip(correct, answers, strict=True)):
        records.append(ItemRecord(
            doc_id=i, doc_hash=f"h{i:04d}", prompt=f"question {i}", target="gold", response=str(answer),
            raw_response=str(answer), score=float(bool(ok)), prompt_tokens=3, output_tokens=1,
            choice_logprobs=None if logprobs is None else tuple(float(x) for x in logprobs[i]),
            gold=None if gold is None else int(gold[i])))
    return TaskRun(task=task, model=name, metric="acc", records=tuple(records), wall_seconds=0.0,
                   model_fingerprint=name, task_fingerprint="t")


def generation_model(rng: np.random.Generator, accuracy: float, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """Right answers are "gold"; wrong ones one of five plausible wrong answers."""
    correct = rng.random(n) < accuracy
    answers = np.where(correct, "gold", rng.choice(WRONG, size=n)).astype(object)
    return correct, answers


def shuffled_copy(correct: np.ndarray, answers: np.ndarray, rng: np.random.Generator):
    """The teacher's outcomes moved to other items: same accuracy, same wrong answers, no copying."""
    order = rng.permutation(correct.size)
    return correct[order], answers[order]


def mc_model(rng: np.random.Generator, gold: np.ndarray, accuracy: float, choices: int = 4):
    """Choice log-likelihoods whose argmax is the gold choice with probability ``accuracy``."""
    n = gold.size
    logits = rng.normal(0.0, 1.0, size=(n, choices))
    correct = rng.random(n) < accuracy
    wrong = (gold + rng.integers(1, choices, size=n)) % choices
    chosen = np.where(correct, gold, wrong)
    logits[np.arange(n), chosen] = logits.max(axis=1) + rng.exponential(1.0, size=n)
    return mc_run_parts(logits, gold)


def mc_run_parts(logits: np.ndarray, gold: np.ndarray):
    logprobs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    chosen = logprobs.argmax(axis=1)
    answers = np.array([f"{i}:{c}" for i, c in enumerate(chosen)], dtype=object)
    return chosen == gold, answers, logprobs


def mc_shuffled_copy(logprobs: np.ndarray, gold: np.ndarray, rng: np.random.Generator):
    """Item i gets the teacher's choice distribution of another item, rotated so the teacher's
    position relative to the gold choice (and so right/wrong and confidence) is kept."""
    order = rng.permutation(gold.size)
    rows = [np.roll(logprobs[j], gold[i] - gold[j]) for i, j in enumerate(order)]
    return mc_run_parts(np.array(rows), gold)


def item_test(teacher: TaskRun, model: TaskRun, refs: list[TaskRun]):
    """The item-only test (no longer the verdict; the calibration benchmark's comparison)."""
    return reference_test(teacher, model, refs, seed=7)


@pytest.fixture
def tables() -> dict[str, TaskRun]:
    rng = np.random.default_rng(20240607)
    t_ok, t_ans = generation_model(rng, 0.7)
    out = {"teacher": make_run("teacher", t_ok, t_ans), "copy": make_run("copy", t_ok, t_ans)}
    out["independent"] = make_run("independent", *generation_model(rng, 0.7))
    out["control"] = make_run("control", *generation_model(rng, 0.7))
    out["shuffled"] = make_run("shuffled", *shuffled_copy(t_ok, t_ans, rng))
    # copies the teacher on 40% of items, answers on its own otherwise
    own_ok, own_ans = generation_model(rng, 0.7)
    copy_mask = rng.random(N) < 0.4
    out["partial"] = make_run("partial", np.where(copy_mask, t_ok, own_ok),
                              np.where(copy_mask, t_ans, own_ans))
    return out


def test_item_test_separates_a_copy_from_an_independent_model(tables: dict[str, TaskRun]) -> None:
    copy = item_test(tables["teacher"], tables["copy"], [tables["control"]])
    assert copy.p_value < 1e-3 and copy.score > 0
    pair = pair_statistics(tables["teacher"], tables["copy"])
    assert pair.agreement == 1.0 and pair.kappa == 1.0 and pair.same_wrong == 1.0
    independent = item_test(tables["teacher"], tables["independent"], [tables["control"]])
    assert independent.p_value > 0.05


def test_item_test_shuffled_copy_is_not_copying(tables: dict[str, TaskRun]) -> None:
    teacher, shuffled = tables["teacher"], tables["shuffled"]
    # same accuracy and the same wrong answers overall as the teacher ...
    assert shuffled.score == teacher.score
    assert sorted(r.response for r in shuffled.records) == sorted(r.response for r in teacher.records)
    # ... but none of them copied item by item
    assert item_test(teacher, shuffled, [tables["control"]]).p_value > 0.05
    assert abs(pair_statistics(teacher, shuffled).kappa) < 0.15


def test_item_test_partial_copy(tables: dict[str, TaskRun]) -> None:
    assert item_test(tables["teacher"], tables["partial"], [tables["control"]]).p_value < 0.05
    assert (pair_statistics(tables["teacher"], tables["partial"]).same_wrong
            > pair_statistics(tables["teacher"], tables["control"]).same_wrong)


def test_near_the_floor_shared_wrong_answers_decide() -> None:
    """All models almost always wrong, with many possible wrong answers: right/wrong says
    nothing, so a model that gives the teacher's wrong answers is found through them, and a
    control that is a little more accurate than the other reference is not."""
    rng = np.random.default_rng(8)
    many_wrong = [f"w{k}" for k in range(30)]

    def at_floor(accuracy: float) -> tuple[np.ndarray, np.ndarray]:
        ok = rng.random(N) < accuracy
        return ok, np.where(ok, "gold", rng.choice(many_wrong, size=N)).astype(object)

    t_ok, t_ans = at_floor(0.02)
    teacher = make_run("teacher", t_ok, t_ans)
    own_ok, own_ans = at_floor(0.01)
    copying = rng.random(N) < 0.3
    student = make_run("student", np.where(copying, t_ok, own_ok), np.where(copying, t_ans, own_ans))
    control = make_run("control", *at_floor(0.0))
    better_control = make_run("better", *at_floor(0.04))
    found = item_test(teacher, student, [control])
    assert found.p_value < 0.05 and found.same_answer > found.reference_same_answer
    assert item_test(teacher, better_control, [control]).p_value > 0.05
    assert wrong_answer_excess(teacher.records, student.records) > wrong_answer_excess(
        teacher.records, control.records) + 0.1


def test_favourite_wrong_answers_are_not_copying() -> None:
    """The teacher gives one wrong answer most of the time. A copy of its outcomes moved to
    other items matches it more often than a control does on the items all got wrong, yet it
    copies nothing item by item; so does a model that always gives that favourite answer."""
    rng = np.random.default_rng(21)
    n = 400

    def favouring(accuracy: float, favourite: float) -> tuple[np.ndarray, np.ndarray]:
        ok = rng.random(n) < accuracy
        wrong = np.where(rng.random(n) < favourite, "w0", rng.choice(WRONG[1:], size=n))
        return ok, np.where(ok, "gold", wrong).astype(object)

    t_ok, t_ans = favouring(0.3, 0.6)
    teacher = make_run("teacher", t_ok, t_ans)
    control = make_run("control", *favouring(0.3, 0.0))
    shuffled = make_run("shuffled", *shuffled_copy(t_ok, t_ans, rng))
    test = item_test(teacher, shuffled, [control])
    assert test.all_wrong > 60
    assert test.same_answer > test.reference_same_answer + 0.1  # raw shares favour it ...
    assert test.p_value > 0.05  # ... chance explains them
    # the population statistic subtracts the same chance: near zero for both
    assert abs(wrong_answer_excess(teacher.records, shuffled.records)) < 0.1
    o_ok, _ = favouring(0.3, 0.0)
    always = make_run("always", o_ok, np.where(o_ok, "gold", "w0"))
    assert item_test(teacher, always, [control]).p_value > 0.05


def test_chance_matches() -> None:
    assert chance_matches(["a", "a", "b", "c"], ["a", "b", "b", "d"]) == pytest.approx((2 * 1 + 1 * 2) / 4)
    assert chance_matches(["x"] * 5, ["x"] * 5) == 5.0
    assert chance_matches([], []) == 0.0


def test_multiple_choice_tables() -> None:
    rng = np.random.default_rng(11)
    gold = rng.integers(0, 4, size=N)
    t_ok, t_ans, t_lp = mc_model(rng, gold, 0.7)
    teacher = make_run("teacher", t_ok, t_ans, logprobs=t_lp, gold=gold)
    copy = make_run("copy", t_ok, t_ans, logprobs=t_lp, gold=gold)
    c_ok, c_ans, c_lp = mc_model(rng, gold, 0.7)
    control = make_run("control", c_ok, c_ans, logprobs=c_lp, gold=gold)
    s_ok, s_ans, s_lp = mc_shuffled_copy(t_lp, gold, rng)
    shuffled = make_run("shuffled", s_ok, s_ans, logprobs=s_lp, gold=gold)

    assert shuffled.score == teacher.score
    assert item_test(teacher, copy, [control]).p_value < 0.05
    assert pair_statistics(teacher, copy).jsd == pytest.approx(0.0, abs=1e-12)
    assert item_test(teacher, shuffled, [control]).p_value > 0.05
    jsd = pair_statistics(teacher, shuffled).jsd
    assert jsd is not None and jsd > 0.05
    assert pair_statistics(teacher, shuffled).jsd_items == N


def _mc_logits(rng: np.random.Generator, attraction: np.ndarray, gold: np.ndarray, skill: float,
               temperature: float = 1.0, teacher: np.ndarray | None = None, share: float = 0.0):
    """Choice logits: the item's shared attraction of each choice, own noise, a pull towards the
    gold choice; a distilled model mixes in ``share`` of the teacher's logits."""
    logits = attraction + rng.normal(size=attraction.shape)
    logits[np.arange(gold.size), gold] += skill
    if teacher is not None:
        logits = (1.0 - share) * logits + share * teacher
    return logits / temperature


def _mc_run(name: str, logits: np.ndarray, gold: np.ndarray) -> TaskRun:
    ok, answers, logprobs = mc_run_parts(logits, gold)
    return make_run(name, ok, answers, logprobs=logprobs, gold=gold)


def test_wrong_choice_order_flags_distillation_not_competence_or_temperature() -> None:
    rng = np.random.default_rng(17)
    reps, n = 40, 150
    flags = {"more accurate": 0, "less confident": 0, "distilled": 0}
    for rep in range(reps):
        gold = rng.integers(0, 4, size=n)
        attraction = rng.normal(size=(n, 4))
        t_logits = _mc_logits(rng, attraction, gold, 2.0)
        teacher = _mc_run("teacher", t_logits, gold)
        control = _mc_run("control", _mc_logits(rng, attraction, gold, 1.0), gold)
        models = {
            "more accurate": _mc_logits(rng, attraction, gold, 2.0),
            "less confident": _mc_logits(rng, attraction, gold, 1.0, temperature=2.0),
            "distilled": _mc_logits(rng, attraction, gold, 1.0, teacher=t_logits, share=0.3),
        }
        for case, logits in models.items():
            test = reference_test(teacher, _mc_run(case, logits, gold), [control], seed=rep, iters=1000)
            flags[case] += test.p_value < 0.05
    # 99th percentile of Binomial(40, 0.05) is 6
    assert flags["more accurate"] <= 6 and flags["less confident"] <= 6, flags
    assert flags["distilled"] >= 30, flags


# Log-likelihoods on a 1e-6 grid: a temperature must not merge two choices by underflow (with
# 0.0 and -5e-324, halving turns the latter into -0.0, a tie no real model produces).
@given(st.lists(st.floats(-30, 0).map(lambda v: round(v, 6)), min_size=3, max_size=6),
       st.floats(0.1, 10), st.data())
def test_wrong_choice_order_ignores_gold_and_temperature(logprobs: list[float], scale: float,
                                                         data: st.DataObject) -> None:
    gold = data.draw(st.integers(0, len(logprobs) - 1))

    def record(values) -> ItemRecord:
        return make_run("x", [True], ["a"], logprobs=[values], gold=[gold]).records[0]

    base = record(logprobs)
    itself = wrong_choice_order(base, base)
    wrong = [i for i in range(len(logprobs)) if i != gold]
    ties = len({logprobs[i] for i in wrong}) == 1
    assert itself == pytest.approx(0.0 if ties else 1.0)  # 0.0 only when all wrong choices tie
    scaled = [v * scale for v in logprobs]
    scaled[gold] = 5.0
    assert wrong_choice_order(base, record(scaled)) == pytest.approx(itself)
    if len({logprobs[i] for i in wrong}) == len(wrong):
        by_value = sorted(wrong, key=lambda i: logprobs[i])
        reversed_ = list(logprobs)
        for low, high in zip(by_value, reversed(by_value), strict=True):
            reversed_[high] = logprobs[low]
        assert wrong_choice_order(base, record(reversed_)) == pytest.approx(-1.0)


def test_wrong_choice_order_needs_three_choices() -> None:
    two = make_run("x", [True], ["a"], logprobs=[[-1.0, -2.0]], gold=[0]).records[0]
    assert wrong_choice_order(two, two) is None
    no_logprobs = make_run("x", [True], ["a"]).records[0]
    assert wrong_choice_order(no_logprobs, no_logprobs) is None


@pytest.mark.parametrize("spread", [1.5, 4.0])
def test_false_flag_rate_with_shared_difficulty_and_unequal_accuracy(spread: float) -> None:
    """Independent models that share item difficulty (so their errors correlate) are flagged at
    most about alpha of the time, even when the model is much more (or less) accurate than the
    control: raw agreement would flag the stronger one nearly always. ``spread`` 4 makes items
    nearly all-easy or all-hard, as a code task's operations are; in 300 such tables per-item
    kappa terms flagged the stronger model in 11%, the side-shuffling test in 7%."""
    rng = np.random.default_rng(3)
    reps, flags = 100, {"equal": 0, "stronger": 0, "weaker": 0}
    for rep in range(reps):
        difficulty = rng.normal(size=N)
        preferred = rng.dirichlet(np.full(len(WRONG), 0.5), size=N)

        def model(skill: float, difficulty: np.ndarray = difficulty,
                  preferred: np.ndarray = preferred) -> TaskRun:
            ok = rng.random(N) < 1.0 / (1.0 + np.exp(-(skill - spread * difficulty)))
            wrong = [WRONG[rng.choice(len(WRONG), p=p)] for p in preferred]
            return make_run(f"m{skill}", ok, np.where(ok, "gold", wrong))

        teacher = model(2.0)
        control = model(0.5)
        for case, skill in (("equal", 0.5), ("stronger", 2.5), ("weaker", -1.0)):
            test = reference_test(teacher, model(skill), [control], seed=rep, iters=2000)
            flags[case] += test.p_value < 0.05
    # 99th percentile of Binomial(100, 0.05) is 11
    assert max(flags.values()) <= 11, flags


def _settings(*models: ModelSpec) -> Settings:
    return Settings(rootdir=Path("."), models=models, cache_dir=Path(".d"), baselines_dir=Path("b"))


def test_references_for() -> None:
    teacher = ModelSpec("teacher", "teacher", "t")
    student = ModelSpec("student", "student", "s", teacher="teacher", expect_distilled=True)
    control = ModelSpec("control", "control", "c", expect_distilled=False)
    other = ModelSpec("other", "control", "o", expect_distilled=False)
    assert references_for(_settings(teacher, student, control), "student") == (["control"], "controls")
    assert references_for(_settings(teacher, student, control), "control") == ([], "")
    assert references_for(_settings(teacher, student, control, other), "control") == (["other"], "other controls")
    assert references_for(_settings(teacher, student), "student") == ([], "")


TASKS = ("s/a", "s/b")


def _population(rng: np.random.Generator, controls: int, *, copy: float = 0.6,
                spread: float = 0.0) -> dict[tuple[str, str], TaskRun]:
    """Runs of a teacher, a student copying it on ``copy`` of the items, and ``controls``
    independent models whose accuracy varies by ``spread`` (logit units) between models."""
    runs: dict[tuple[str, str], TaskRun] = {}
    skills = {f"c{i}": 0.8 + spread * rng.normal() for i in range(controls)}
    for task in TASKS:
        t_ok, t_ans = generation_model(rng, 0.7)
        runs[("teacher", task)] = make_run("teacher", t_ok, t_ans, task=task)
        own_ok, own_ans = generation_model(rng, 0.7)
        mask = rng.random(N) < copy
        runs[("student", task)] = make_run("student", np.where(mask, t_ok, own_ok),
                                           np.where(mask, t_ans, own_ans), task=task)
        for name, skill in skills.items():
            accuracy = 1.0 / (1.0 + math.exp(-skill))
            runs[(name, task)] = make_run(name, *generation_model(rng, accuracy), task=task)
    return runs


def _population_settings(controls: int, teacher_backend: str = "hf") -> Settings:
    return _settings(ModelSpec("teacher", "teacher", "t", backend=teacher_backend),
                     ModelSpec("student", "student", "s", teacher="teacher", expect_distilled=True),
                     *(ModelSpec(f"c{i}", "control", f"c{i}", teacher="teacher", expect_distilled=False)
                       for i in range(controls)))


def _pairs(settings: Settings) -> list[tuple[str, str]]:
    return [(t, m.name) for t in TASKS for m in settings.models if m.role != "teacher"]


def test_session_flags_a_copying_student_and_no_control() -> None:
    settings = _population_settings(6)
    result = assess_session(settings, _pairs(settings), _population(np.random.default_rng(4), 6), {})
    student = result.verdict("student")
    assert student is not None and student.flagged is True and student.as_expected is True
    assert student.population.method == "parametric" and len(student.population.references) == 6
    assert student.evidence == ("text",)  # no probes, no multiple choice: answers only
    # the tasks are pooled by a fixed rule: one statistic per kind, not one per task
    assert {t.statistic.label for t in student.population.tests} == {"kappa", "same_wrong_answer"}
    assert student.tasks == TASKS
    (teacher, calibration), = result.calibration
    assert teacher == "teacher" and calibration.passed is True
    for i in range(6):
        control = result.verdict(f"c{i}")
        assert control is not None and control.flagged is False, control.line()
        assert control.reference_kind == "other controls" and len(control.population.references) == 5
        # a control's verdict is taken on the Holm-adjusted p of the calibration family
        assert control.p_value is not None and control.p_value >= control.population.p_value
    ev = result.get("s/a", "student")
    assert ev is not None and ev.references == tuple(f"c{i}" for i in range(6))
    assert {t.statistic.name for t in ev.tests} == {"kappa", "same_wrong_answer"}
    assert all(t.rank >= 1 for t in ev.tests)
    text = describe(ev, student)
    assert "rank" in text and "[" in text and "Crawford-Howell" in text and "pooled" in text
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["models"]["student"]["flagged"] is True and doc["calibration"]["teacher"]["passed"] is True
    assert doc["models"]["student"]["statistics"][0]["references"]


def test_a_failed_calibration_turns_a_flag_into_undetermined() -> None:
    """One "control" copies the teacher too: the calibration check catches it, and the student,
    beyond the controls, is not accused on a population that does not calibrate."""
    settings = _population_settings(6)
    runs = _population(np.random.default_rng(4), 6, copy=0.9)
    rng = np.random.default_rng(9)
    for task in TASKS:
        teacher, own = runs[("teacher", task)], runs[("c0", task)]
        mask = rng.random(N) < 0.6
        records = tuple(t if m else o for t, o, m in zip(teacher.records, own.records, mask, strict=True))
        runs[("c0", task)] = replace(own, records=records)
    result = assess_session(settings, _pairs(settings), runs, {})
    (_, calibration), = result.calibration
    assert calibration.passed is False and calibration.flagged == ("c0",)
    assert result.verdict("c0").flagged is True
    student = result.verdict("student")
    assert student.population.flagged is True and student.flagged is None
    assert "calibration check failed (c0 flagged" in student.line()
    assert all(ev.status == UNDETERMINED for ev in result.tasks if ev.model == "student")


def test_session_with_one_control_is_undetermined_never_a_flag() -> None:
    settings = _population_settings(1)
    result = assess_session(settings, _pairs(settings), _population(np.random.default_rng(5), 1), {})
    for name in ("student", "c0"):
        verdict = result.verdict(name)
        assert verdict is not None and verdict.flagged is None and verdict.as_expected is None
        assert "needs at least two references" in verdict.population.reason
    assert all(ev.status == UNDETERMINED for ev in result.tasks)


def test_session_leaves_out_a_task_a_reference_lacks_and_says_so() -> None:
    settings = _population_settings(4)
    runs: dict = _population(np.random.default_rng(6), 4)
    runs[("c2", "s/b")] = "the model failed to load"
    result = assess_session(settings, _pairs(settings), runs, {})
    assert result.get("s/b", "student") is None and result.get("s/a", "student") is not None
    assert any("s/b [student]" in s and "c2 (the model failed to load)" in s for s in result.skipped)
    student = result.verdict("student")
    assert student is not None and student.tasks == ("s/a",)


def test_session_an_independent_student_of_a_spread_population_is_not_flagged() -> None:
    """The student copies nothing; the controls differ from each other by a model-level spread
    in accuracy. Over 40 seeds the student is flagged at most 6 times (Binomial(40, 0.05): 99th
    percentile 6), the controls' calibration fails at most as often."""
    flags = calibration_fails = 0
    settings = _population_settings(6)
    for seed in range(40):
        runs = _population(np.random.default_rng(100 + seed), 6, copy=0.0, spread=0.6)
        result = assess_session(settings, _pairs(settings), runs, {})
        flags += bool(result.verdict("student").flagged)
        calibration_fails += result.calibration[0][1].passed is False
    assert flags <= 6 and calibration_fails <= 6, (flags, calibration_fails)


# -- properties ----------------------------------------------------------------------------------------

outcomes = st.lists(st.booleans(), min_size=1, max_size=60)


@given(outcomes)
def test_kappa_is_one_for_identical_outcomes(correct: list[bool]) -> None:
    assert stats.error_consistency(correct, correct) == 1.0
    answers = ["gold" if ok else f"w{i % 3}" for i, ok in enumerate(correct)]
    pair = pair_statistics(make_run("t", correct, answers), make_run("m", correct, answers), iters=50)
    assert pair.kappa == 1.0 and pair.agreement == 1.0


@settings(max_examples=15, deadline=None)
@given(st.floats(0.15, 0.85), st.floats(0.15, 0.85), st.integers(0, 2**32 - 1))
def test_kappa_of_independent_outcomes_is_zero_in_expectation(p1: float, p2: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    kappas = [stats.error_consistency(rng.random(N) < p1, rng.random(N) < p2) for _ in range(300)]
    # standard error of the mean is about 0.07 / sqrt(300) = 0.004; kappa's bias is about 1/N
    assert abs(float(np.mean(kappas))) < 0.02


distributions = st.integers(2, 6).flatmap(lambda k: st.tuples(
    st.lists(st.floats(0.0, 10.0), min_size=k, max_size=k).filter(lambda v: sum(v) > 1e-6),
    st.lists(st.floats(0.0, 10.0), min_size=k, max_size=k).filter(lambda v: sum(v) > 1e-6)))


@given(distributions)
def test_jensen_shannon_is_symmetric_and_bounded(pq: tuple[list[float], list[float]]) -> None:
    p, q = pq
    forward, backward = stats.jensen_shannon(p, q), stats.jensen_shannon(q, p)
    assert forward == pytest.approx(backward, abs=1e-12)
    assert 0.0 <= forward <= math.log(2.0)


@given(outcomes, st.data())
def test_discordance_scores_flip_with_a_swap_and_sum_to_the_split_difference(
        t: list[bool], data: st.DataObject) -> None:
    m = np.array(data.draw(st.lists(st.booleans(), min_size=len(t), max_size=len(t))))
    r = np.array(data.draw(st.lists(st.booleans(), min_size=len(t), max_size=len(t))))
    t = np.array(t)
    scores = discordance_scores(t, m, r)
    assert np.allclose(discordance_scores(t, r, m), -scores)
    assert np.all(scores[m == r] == 0.0)
    model_side, reference_side = m & ~r, ~m & r
    n_m, n_r = int(model_side.sum()), int(reference_side.sum())
    if n_m and n_r:
        q_m, q_r = t[model_side].mean(), t[reference_side].mean()
        assert scores.sum() == pytest.approx(2 * n_m * n_r * (q_m - q_r) / (n_m + n_r), abs=1e-9)
    else:  # one side wins every split item: how many it wins is accuracy, not copying
        assert scores.sum() == pytest.approx(0.0, abs=1e-9)


@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 2)), min_size=2, max_size=40))
def test_reference_test_properties(rows: list[tuple[bool, bool, int]]) -> None:
    t = make_run("t", [a for a, _, _ in rows], ["g" if a else "w" for a, _, _ in rows])
    m = make_run("m", [b for _, b, _ in rows], ["g" if b else f"w{c}" for _, b, c in rows])
    r = make_run("r", [not b for _, b, _ in rows], ["w" if b else "g" for _, b, _ in rows])
    same = reference_test(t, m, [m], iters=200)
    assert same.p_value == 1.0 and same.informative == 0 and same.score == pytest.approx(0.0, abs=1e-12)
    forward, backward = reference_test(t, m, [r], iters=200), reference_test(t, r, [m], iters=200)
    assert forward.score == pytest.approx(-backward.score, abs=1e-9)
    assert forward.kappa_difference == pytest.approx(-backward.kappa_difference, abs=1e-9)
    assert forward.informative == backward.informative


def test_mean_choice_jsd_of_equal_distributions_is_zero() -> None:
    # rotating these log-likelihoods by one place and back reproduces them up to rounding, which
    # made scipy's distance nan
    rng = np.random.default_rng(0)
    rows = [rng.normal(size=4) * 3 for _ in range(200)]
    a = make_run("a", [True] * 200, ["x"] * 200, logprobs=rows, gold=[0] * 200)
    b = make_run("b", [True] * 200, ["x"] * 200, logprobs=[np.roll(np.roll(r, 1), -1) + 1e-15 for r in rows],
                 gold=[0] * 200)
    value, n = mean_choice_jsd(a.records, b.records)
    assert n == 200 and value == pytest.approx(0.0, abs=1e-12)


@given(st.lists(st.lists(st.floats(-20, 5), min_size=3, max_size=3), min_size=1, max_size=10))
def test_mean_choice_jsd_is_symmetric(rows: list[list[float]]) -> None:
    a = make_run("a", [True] * len(rows), ["x"] * len(rows), logprobs=rows, gold=[0] * len(rows))
    b = make_run("b", [True] * len(rows), ["x"] * len(rows), logprobs=[r[::-1] for r in rows],
                 gold=[0] * len(rows))
    forward, _ = mean_choice_jsd(a.records, b.records)
    backward, n = mean_choice_jsd(b.records, a.records)
    assert forward == pytest.approx(backward, abs=1e-12) and n == len(rows)
    assert 0.0 <= forward <= math.log(2.0)


# -- probes ----------------------------------------------------------------------------------------------

def _logdist(logits: np.ndarray) -> np.ndarray:
    return logits - np.logaddexp.reduce(logits)


def _probe(rows: list[np.ndarray], *, top_k: int = 64, tokenizer: str = "tok") -> ProbeResult:
    parts = [summarise(r, top_k=top_k) for r in rows]
    return ProbeResult(tokenizer_hash=tokenizer, vocab_size=rows[0].size,
                       prompts=tuple(f"p{i}" for i in range(len(rows))),
                       token_ids=tuple(p[0] for p in parts), logprobs=tuple(p[1] for p in parts),
                       tail=tuple(p[2] for p in parts))


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([40, FULL_VOCAB_MAX + 500]), st.integers(0, 2**32 - 1))
def test_summarised_distributions_keep_all_mass(vocab: int, seed: int) -> None:
    lp = _logdist(np.random.default_rng(seed).normal(0, 3, size=vocab))
    probe = _probe([lp], top_k=16)
    assert probe.full == (vocab <= FULL_VOCAB_MAX)
    assert np.logaddexp.reduce(probe.dense_logprobs(0)) == pytest.approx(0.0, abs=1e-9)
    assert probe.top1(0) == int(np.argmax(lp))
    assert list(probe.logprobs[0]) == sorted(probe.logprobs[0], reverse=True)
    if probe.full:
        assert np.allclose(probe.dense_logprobs(0), lp)
    restored = ProbeResult.from_dict(json.loads(json.dumps(probe.to_dict())))
    assert restored == probe


@given(st.integers(0, 2**32 - 1))
def test_kl_is_zero_for_itself_and_positive_otherwise(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p, q = _logdist(rng.normal(size=30)), _logdist(rng.normal(size=30))
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence(p, q) > 0.0


def test_top_k_tail_is_exact_when_the_tail_is_flat() -> None:
    vocab = FULL_VOCAB_MAX * 2
    logits_a = np.zeros(vocab)
    logits_a[:5] = [9.0, 7.0, 6.0, 4.0, 3.0]
    logits_b = np.zeros(vocab)
    logits_b[[0, 1, 2, 3, 4]] = [3.0, 8.0, 6.0, 1.0, 2.0]
    a, b = _logdist(logits_a), _logdist(logits_b)
    pa, pb = _probe([a], top_k=5), _probe([b], top_k=5)
    assert not pa.full and np.allclose(pa.dense_logprobs(0), a)
    out = probe_agreement(pa, pb)
    assert out["probe_exact"] is False and out["probe_top1"] == 0.0
    assert out["probe_kl"] == pytest.approx(kl_divergence(a, b), rel=1e-9)


def test_probe_agreement_needs_the_same_tokenizer() -> None:
    rng = np.random.default_rng(0)
    rows = [_logdist(rng.normal(size=50)) for _ in range(4)]
    same = probe_agreement(_probe(rows), _probe(rows))
    assert same["probe_top1"] == 1.0 and same["probe_kl"] == pytest.approx(0.0, abs=1e-12)
    assert same["probe_prompts"] == 4 and same["probe_exact"] is True
    other = probe_agreement(_probe(rows), _probe(rows, tokenizer="another"))
    assert other["probe_top1"] is None and other["probe_kl"] is None
    assert "different tokenizers" in other["probe_note"]
    subset = probe_agreement(_probe(rows).subset(["p1", "p3"]), _probe(rows))
    assert subset["probe_prompts"] == 2


@pytest.fixture(scope="module")
def tiny_lms(tiny_model: Path, tiny_model_b: Path):
    from lm_eval.models.huggingface import HFLM

    return (HFLM(pretrained=str(tiny_model), device="cpu", batch_size=1),
            HFLM(pretrained=str(tiny_model_b), device="cpu", batch_size=1))


def test_probe_distributions_on_real_models(tiny_lms) -> None:
    lm_a, lm_b = tiny_lms
    prompts = [row["prompt"] for row in MC_ROWS[:5]] + ["Q: 1+2="]
    one_by_one = probe_distributions(lm_a, prompts, batch_size=1)
    batched = probe_distributions(lm_a, prompts, batch_size=4)  # right padding must not matter
    assert one_by_one.full and one_by_one.vocab_size == len(lm_a.tokenizer)
    for i in range(len(prompts)):
        assert np.allclose(one_by_one.dense_logprobs(i), batched.dense_logprobs(i), atol=1e-5)
        assert np.logaddexp.reduce(one_by_one.dense_logprobs(i)) == pytest.approx(0.0, abs=1e-6)
    same = probe_agreement(one_by_one, batched)
    assert same["probe_top1"] == 1.0 and same["probe_kl"] == pytest.approx(0.0, abs=1e-6)
    other = probe_agreement(one_by_one, probe_distributions(lm_b, prompts))
    assert other["probe_prompts"] == len(prompts) and other["probe_kl"] > 1e-3


def test_probe_prompts_are_the_tasks_test_contexts(tmp_path: Path) -> None:
    from pytest_distillbench.spec.suites import load_suite

    from conftest import gen_task, write_project

    suite = load_suite(write_project(tmp_path, {}, [mc_task(), gen_task()]))
    prompts = probe_prompts(suite.tasks, per_task=3)
    assert prompts == [r["prompt"] for r in MC_ROWS[:3]] + ["Q: 1+2=", "Q: 3+4=", "Q: 5+1="]
    assert probe_prompts(suite.tasks, per_task=3) == prompts


# -- the plugin end to end -----------------------------------------------------------------------------

def _compare_rows(n: int = 80) -> list[dict]:
    rng = np.random.default_rng(5)
    rows = []
    for a, b in rng.choice(np.arange(1, 100), size=(n, 2)):
        rows.append({"prompt": f"Q: Which is larger, {a} or {b}? A:", "choices": [str(a), str(b)],
                     "label": 0 if a >= b else 1})
    return rows


def _project(root: Path, models: dict[str, tuple[str, Path, bool | None]]) -> None:
    write_jsonl(root / "suites" / "data" / "compare.jsonl", _compare_rows())
    lines = ["[tool.distillbench]"]
    for name, (role, path, expect) in models.items():
        lines += [f"[tool.distillbench.models.{name}]", f'role = "{role}"', f'path = "{path}"']
        if role != "teacher":
            lines.append('teacher = "teacher"')
        if expect is not None:
            lines.append(f"expect_distilled = {str(expect).lower()}")
    (root / "pyproject.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "suites" / "demo.yaml").write_text("suite: demo\ntasks:\n" + mc_task(), encoding="utf-8")


@pytest.fixture(scope="module")
def tiny_controls(tmp_path_factory: pytest.TempPathFactory, tiny_model_b: Path) -> list[Path]:
    """Four independent random models: a population of references."""
    from conftest import build_tiny_model

    root = tmp_path_factory.mktemp("controls")
    return [tiny_model_b, *(build_tiny_model(root / f"m{seed}", seed=seed) for seed in (3, 4, 5))]


def _with_controls(teacher: Path, copy: tuple[Path, bool | None], controls: list[Path],
                   expect: bool | None = False) -> dict[str, tuple[str, Path, bool | None]]:
    return {"teacher": ("teacher", teacher, None), "copy": ("student", *copy),
            **{f"ref{i}": ("control", path, expect) for i, path in enumerate(controls)}}


def test_plugin_flags_a_copy_and_not_independent_models(pytester: pytest.Pytester, tiny_model: Path,
                                                        tiny_controls: list[Path]) -> None:
    """A "student" that is the teacher's own checkpoint is flagged against four independent
    models; none of them is flagged against the other three (leave-one-out)."""
    _project(pytester.path, _with_controls(tiny_model, (tiny_model, True), tiny_controls))
    result = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites", "-k", "evidence",
                                "--distillbench-json", "run.json", "-rs")
    result.assert_outcomes(passed=5)
    out = result.stdout.str()
    assert "distillation evidence" in out and "verdict per model" in out
    assert "copy: FLAGGED as distilled from teacher" in out and "Crawford-Howell" in out
    assert "ref0: not flagged" in out and "calibration (each control against the others" in out
    assert "passed: no control flagged" in out and "rank 1 of 5" in out
    section = json.loads((pytester.path / "run.json").read_text())["sections"]["evidence"]
    models = section["models"]
    assert models["copy"]["flagged"] is True and models["copy"]["as_expected"] is True
    assert "logit" in models["copy"]["evidence"]  # the tiny models share the teacher's tokenizer
    assert all(models[f"ref{i}"]["flagged"] is False for i in range(4))
    assert section["calibration"]["teacher"]["passed"] is True
    rows = {row["model"]: row for row in section["tasks"]}
    assert rows["copy"]["agreement"] == 1.0 and rows["copy"]["jsd"] == 0.0
    assert rows["copy"]["references"] == "ref0, ref1, ref2, ref3"
    assert rows["ref0"]["references"] == "ref1, ref2, ref3"


def test_plugin_fails_a_wrong_expectation(pytester: pytest.Pytester, tiny_model: Path,
                                          tiny_controls: list[Path]) -> None:
    models = _with_controls(tiny_model, (tiny_model, False), tiny_controls, expect=None)
    models["ref0"] = ("control", tiny_controls[0], True)
    _project(pytester.path, models)
    result = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites", "-k", "evidence")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "copy was expected NOT to be distilled from teacher but is flagged" in out
    assert "ref0 was expected to be distilled from teacher but is not flagged" in out
    assert "kappa" in out and "(reference)" in out and "rank" in out and "Traceback" not in out


def test_plugin_a_lone_control_is_undetermined(pytester: pytest.Pytester, tiny_model: Path,
                                               tiny_model_b: Path) -> None:
    _project(pytester.path, {"teacher": ("teacher", tiny_model, None),
                             "copy": ("student", tiny_model, True),
                             "other": ("control", tiny_model_b, False)})
    result = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites", "-k", "evidence", "-rs")
    result.assert_outcomes(skipped=2)
    out = result.stdout.str()
    assert "undetermined (needs at least two references, has 1)" in out
    assert "undetermined (needs at least two references, has 0)" in out
    assert "FLAGGED" not in out


@needs_zoo
@pytest.mark.slow
def test_embedded_models_student_flagged_and_no_control(pytester: pytest.Pytester) -> None:
    """The zoo's student is flagged against its eight controls, and no control is flagged
    against the other seven (Holm over the eight leave-one-out tests)."""
    suites = Path(__file__).resolve().parents[1] / "suites"
    (pytester.path / "suites").symlink_to(suites)
    result = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites/math.yaml",
                                "suites/reasoning.yaml", "-k", "evidence", "--distillbench-limit", "200",
                                "--distillbench-json", "run.json", "-rs")
    doc = json.loads((pytester.path / "run.json").read_text())
    section = doc["sections"]["evidence"]
    models = section["models"]
    assert set(models) == {"student", *(f"control-{i:02d}" for i in range(1, 9))}
    assert models["student"]["flagged"] is True, models["student"]["summary"]
    assert models["student"]["as_expected"] is True
    for name, verdict in models.items():
        if name != "student":
            assert verdict["flagged"] is False, verdict["summary"]
    assert section["calibration"]["teacher"]["passed"] is True
    for row in section["tasks"]:
        assert row["reason"], row
    out = result.stdout.str()
    assert "student: FLAGGED as distilled from teacher" in out and "passed: no control flagged" in out
    assert result.parseoutcomes().get("failed", 0) == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3)), min_size=2, max_size=8))
def test_kendall_tau_b_matches_scipy(pairs):
    from scipy.stats import kendalltau

    x, y = [float(a) for a, _ in pairs], [float(b) for _, b in pairs]
    expected = kendalltau(x, y).statistic
    got = kendall_tau_b(x, y)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)


def test_a_teacher_wrong_everywhere_gives_the_right_wrong_pattern_no_weight() -> None:
    """At the floor, a model as hopeless as the teacher is not "consistent" with it: kappa is
    0/0 there, and a reference that gets a few items right must not make the model look close."""
    n = 200
    teacher = make_run("t", [False] * n, [f"t{i % 7}" for i in range(n)])
    model = make_run("m", [False] * n, [f"m{i % 5}" for i in range(n)])
    reference = make_run("r", [i < 6 for i in range(n)], ["gold" if i < 6 else f"r{i % 3}" for i in range(n)])
    test = reference_test(teacher, model, [reference], iters=2000)
    assert test.p_value > 0.5


def test_shared_blank_answers_are_not_shared_wrong_answers() -> None:
    """Both silent on the same (say, too long) prompts: a shared failure to answer, not copying."""
    n = 200
    silent = [i % 2 == 0 for i in range(n)]
    teacher = make_run("t", [False] * n, ["" if s else f"t{i}" for i, s in enumerate(silent)])
    model = make_run("m", [False] * n, ["  \n" if s else f"m{i}" for i, s in enumerate(silent)])
    reference = make_run("r", [False] * n, [f"r{i}" for i in range(n)])
    assert reference_test(teacher, model, [reference], iters=2000).p_value > 0.5
    # the same items with a real shared wrong answer are evidence
    copied = make_run("c", [False] * n, [f"t{i}" if not s else f"c{i}" for i, s in enumerate(silent)])
    assert reference_test(teacher, copied, [reference], iters=2000).p_value < 0.01


def test_plugin_a_reference_alone_has_evidence_items_only_and_skips_a_task_without_evidence(
        pytester: pytest.Pytester, tiny_model: Path, tiny_controls: list[Path]) -> None:
    """Controls declared ``scored = false`` get no score or baseline items, are evaluated where
    the evidence reads them, and not on a task whose teacher is right on every item."""
    _project(pytester.path, _with_controls(tiny_model, (tiny_model, True), tiny_controls))
    toml = pytester.path / "pyproject.toml"
    toml.write_text(toml.read_text().replace('role = "control"', 'role = "control"\nscored = false'))
    # a second task; relabelled below with the teacher's own choices
    rows = [{"prompt": f"Q: {i}?", "choices": ["a", "b"], "label": 0} for i in range(30)]
    write_jsonl(pytester.path / "suites" / "data" / "easy.jsonl", rows)
    suite = pytester.path / "suites" / "demo.yaml"
    suite.write_text(suite.read_text() + mc_task("easy", "data/easy.jsonl"))
    first = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites",
                               "--distillbench-json", "run.json", "--collect-only", "-q")
    collected = first.stdout.str()
    assert "compare[ref0-evidence]" in collected and "compare[ref0]" not in collected
    assert "compare[ref0-baseline]" not in collected and "compare[copy]" in collected
    # relabel the easy task with the teacher's own choices, so it is right on every item
    pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites", "-k", "easy and teacher",
                       "--distillbench-json", "teacher.json")
    records = next(r for r in json.loads((pytester.path / "teacher.json").read_text())["runs"]
                   if r["task"] == "demo/easy")["records"]
    chosen = [max(range(2), key=lambda j, r=r: r["choice_logprobs"][j]) for r in records]
    write_jsonl(pytester.path / "suites" / "data" / "easy.jsonl",
                [{**row, "label": c} for row, c in zip(rows, chosen, strict=True)])
    run = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites",
                             "--distillbench-json", "run.json", "-rs")
    doc = json.loads((pytester.path / "run.json").read_text())
    evaluated = {(r["model"], r["task"]) for r in doc["runs"]}
    assert ("teacher", "demo/easy") in evaluated and ("ref0", "demo/compare") in evaluated
    assert not any(m.startswith("ref") and t == "demo/easy" for m, t in evaluated)
    easy = next(i for k, i in doc["items"].items() if "easy[ref0-evidence]" in k)
    assert easy["outcome"] == "passed"  # the verdict, pooled over the tasks, still speaks here
    out = run.stdout.str()
    assert "right on every item of this task" in json.dumps(doc["sections"]["evidence"])
    header = next(line for line in out.splitlines() if line.startswith("suite "))
    assert "teacher" in header and "copy" in header and "ref0" not in header  # no score columns
    assert run.ret == 0
