"""measures/population.py: the population null (exact rank test, Crawford-Howell), its
calibration over many constructed populations, and the statistics every model gets."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from pytest_distillbench.engine.probes import summarise
from pytest_distillbench.measures.population import (
    CHOICE,
    EXACT,
    FLAGGED,
    LOGIT,
    NOT_FLAGGED,
    PARAMETRIC,
    TEXT,
    UNDETERMINED,
    Statistic,
    choice_order,
    dark_knowledge,
    error_consistency,
    evidence_test,
    leave_one_out,
    pool_tasks,
    population_statistics,
    population_test,
    wrong_answer_excess,
)
from pytest_distillbench.measures.probes import ProbeResult
from pytest_distillbench.measures.stats import kendall_tau_b
from pytest_distillbench.records import ItemRecord

ROOT = Path(__file__).resolve().parents[1]
A, B, C = Statistic(TEXT, "a", "t1"), Statistic(TEXT, "b", "t2"), Statistic(LOGIT, "dark_knowledge")


def _bench():
    spec = importlib.util.spec_from_file_location("evidence_benchmark", ROOT / "benchmarks" / "evidence.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("evidence_benchmark", module)
    spec.loader.exec_module(module)
    return module


def table(suspect: list[float], references: list[list[float]], stats=(A, B)) -> tuple[dict, list[str]]:
    names = [f"r{i:02d}" for i in range(len(references))]
    values = {"s": dict(zip(stats, suspect, strict=True))}
    values.update({n: dict(zip(stats, row, strict=True)) for n, row in zip(names, references, strict=True)})
    return values, names


def constructed(rng: np.random.Generator, k: int, statistics: int, *, spread: float,
                heavy: bool = False, copy: float = 0.0) -> tuple[dict, list[str]]:
    """k + 1 models' statistics: a common item-sampling shift shared by every model, a
    model-level effect of size ``spread`` (correlated across statistics) and per-model noise;
    the suspect adds ``copy`` to every statistic."""
    common = rng.normal(size=statistics)
    level = rng.standard_t(3, size=(k + 1, 1)) if heavy else rng.normal(size=(k + 1, 1))
    own = rng.standard_t(3, size=(k + 1, statistics)) if heavy else rng.normal(size=(k + 1, statistics))
    values = 0.5 * common + spread * (0.7 * level + 0.7 * own) + 0.1 * rng.normal(size=(k + 1, statistics))
    values[0] += copy
    stats = [Statistic(TEXT, f"s{j}", "t") for j in range(statistics)]
    return table(list(values[0]), [list(row) for row in values[1:]], stats)


def verdict_of(population: tuple[dict, list[str]], **kwargs):
    values, names = population
    return population_test(values, "s", names, **kwargs)


# -- the tests' properties ---------------------------------------------------------------------------

@given(k=st.integers(0, 1), x=st.floats(-5, 5), refs=st.lists(st.floats(-5, 5), min_size=1, max_size=1))
def test_fewer_than_two_references_are_undetermined_never_a_flag(k, x, refs):
    values, names = table([x, x], [[r, r] for r in refs[:k]])
    verdict = population_test(values, "s", names, method="auto")
    assert verdict.status == UNDETERMINED and verdict.flagged is None and verdict.p_value is None
    assert "needs at least two references" in verdict.reason
    # even a model that is the teacher's copy on every statistic
    assert population_test({"s": {A: 1e9, B: 1e9}, **{n: values[n] for n in names}}, "s", names).status == UNDETERMINED


@settings(deadline=None)
@given(suspect=st.floats(-3, 3), refs=st.lists(st.floats(-3, 3), min_size=2, max_size=25))
def test_exact_rank_test_p_is_one_plus_references_at_least_as_teacher_like_over_k_plus_one(suspect, refs):
    values, names = table([suspect], [[r] for r in refs], stats=(A,))
    verdict = population_test(values, "s", names, method=EXACT)
    if np.ptp(refs) == 0:
        assert verdict.status == UNDETERMINED
        return
    expected = (1 + sum(r >= suspect for r in refs)) / (len(refs) + 1)
    (test,) = verdict.tests
    assert test.p_value == pytest.approx(expected) and test.rank == 1 + sum(r >= suspect for r in refs)
    assert verdict.p_value == pytest.approx(expected)  # one statistic: max-T is the rank itself
    assert verdict.method == EXACT and verdict.p_value >= 1 / (len(refs) + 1)


@settings(deadline=None)
@given(data=st.data(), k=st.integers(2, 22), m=st.integers(1, 5))
def test_max_t_p_is_exchangeable_bounded_and_monotone(data, k, m):
    rows = data.draw(st.lists(st.lists(st.floats(-3, 3), min_size=m, max_size=m), min_size=k + 1, max_size=k + 1))
    stats = [Statistic(TEXT, f"s{j}") for j in range(m)]
    values, names = table(rows[0], rows[1:], stats)
    verdict = population_test(values, "s", names, method=EXACT)
    if verdict.p_value is None:
        return
    assert 1 / (k + 1) <= verdict.p_value <= 1
    assert verdict.p_value == pytest.approx(min(t.p_adjusted for t in verdict.tests))
    assert all(t.p_adjusted >= verdict.p_value for t in verdict.tests)
    shuffled = list(reversed(names))
    assert population_test(values, "s", shuffled, method=EXACT).p_value == pytest.approx(verdict.p_value)
    # more teacher-like on every statistic never raises p
    raised = {**values, "s": {s: v + 10.0 for s, v in values["s"].items()}}
    assert population_test(raised, "s", names, method=EXACT).p_value <= verdict.p_value + 1e-12


# values on a 1e-3 grid: hypothesis found refs [0, 5e-324], whose spread underflows to 0 in the
# hand computation as well (a statistic's values are never subnormal in practice)
_GRID = st.integers(-3000, 3000).map(lambda v: v / 1000)


@settings(deadline=None)
@given(suspect=_GRID, refs=st.lists(_GRID, min_size=2, max_size=18, unique=True))
def test_crawford_howell_t_and_p(suspect, refs):
    values, names = table([suspect], [[r] for r in refs], stats=(A,))
    verdict = population_test(values, "s", names)
    k = len(refs)
    t = (suspect - np.mean(refs)) / (np.std(refs, ddof=1) * math.sqrt((k + 1) / k))
    (test,) = verdict.tests
    assert verdict.method == PARAMETRIC
    assert test.score == pytest.approx(t)
    assert test.p_value == pytest.approx(float(sps.t.sf(t, k - 1)))
    assert verdict.status == (FLAGGED if test.p_value <= 0.05 else NOT_FLAGGED)


def test_crawford_howell_holms_across_statistics_and_says_its_assumption():
    values, names = table([5.0, 0.3, 0.0], [[0.0, 0.1, 0.2], [0.2, 0.3, 0.1], [0.1, 0.2, 0.4], [0.05, 0.25, 0.3]],
                          stats=(A, B, C))
    verdict = population_test(values, "s", names)
    by = {t.statistic: t for t in verdict.tests}
    singles = sorted(t.p_value for t in verdict.tests)
    assert by[A].p_adjusted == pytest.approx(3 * singles[0])
    assert verdict.flagged is True and verdict.evidence == (TEXT,)
    assert "Crawford-Howell" in verdict.reason and "normal distribution" in verdict.assumption
    assert "rank 1 of 5" in verdict.reason


def test_k_of_nineteen_switches_to_the_exact_test_and_a_copy_at_the_top_is_flagged():
    rng = np.random.default_rng(3)
    values, names = constructed(rng, 19, 4, spread=0.5, copy=50.0)
    verdict = population_test(values, "s", names)
    assert verdict.method == EXACT and verdict.flagged is True and verdict.p_value == pytest.approx(0.05)
    # 18 references cannot reach 5% with the exact test: it says so and never flags
    few = population_test(values, "s", names[:18], method=EXACT)
    assert few.flagged is False and "no outcome gives p <= 0.05" in few.reason


def test_statistics_not_defined_for_every_model_or_without_spread_are_left_out():
    values, names = table([1.0, 2.0], [[0.0, 2.0], [0.5, 2.0], [0.2, 2.0]])
    values["r01"][A] = math.nan
    verdict = population_test(values, "s", names)
    assert verdict.status == UNDETERMINED and {s for s, _ in verdict.skipped} == {A, B}
    reasons = dict(verdict.skipped)
    assert "r01" in reasons[A] and "do not vary" in reasons[B]


def test_strip_puts_the_suspect_beside_the_references():
    values, names = table([0.54], [[0.15], [0.24], [0.2]], stats=(C,))
    (test,) = population_test(values, "s", names).tests
    line = test.strip(width=21)
    assert line.count("*") == 1 and line.count("|") == 3 and "rank 1 of 4" in line
    assert line.index("*") > line.index("|")  # the highest value sits at the right end


# -- calibration over constructed populations ---------------------------------------------------------

# Tolerance: a false-flag rate over N tables is the nominal 5% plus three Monte Carlo standard
# errors (sqrt(0.05 * 0.95 / N)); the tests would fail for a test whose real rate is 8%.
N_TABLES = 2000
TOLERANCE = 3 * math.sqrt(0.05 * 0.95 / N_TABLES)


@pytest.mark.parametrize("k", [2, 4, 8])
@pytest.mark.parametrize("spread", [0.0, 3.0])
def test_independent_suspect_with_large_model_spread_is_flagged_at_most_at_the_nominal_rate(k, spread):
    rng = np.random.default_rng([k, int(spread)])
    flags = 0
    for _ in range(N_TABLES):
        flags += verdict_of(constructed(rng, k, 4, spread=spread)).flagged is True
    assert flags / N_TABLES <= 0.05 + TOLERANCE


@pytest.mark.parametrize("heavy", [False, True])
def test_exact_test_holds_its_level_for_any_spread_and_tails(heavy):
    rng = np.random.default_rng(11 + heavy)
    flags = sum(verdict_of(constructed(rng, 19, 6, spread=3.0, heavy=heavy)).flagged is True
                for _ in range(N_TABLES))
    assert flags / N_TABLES <= 0.05 + TOLERANCE


def test_a_copying_suspect_is_found_by_both_tests():
    rng = np.random.default_rng(5)
    for k in (4, 8, 19):
        flags = sum(verdict_of(constructed(rng, k, 4, spread=0.5, copy=4.0)).flagged is True
                    for _ in range(200))
        assert flags / 200 >= 0.8, k


def test_leave_one_out_passes_on_exchangeable_controls_and_catches_a_planted_copy():
    rng = np.random.default_rng(8)
    failed = 0
    for _ in range(300):
        values, names = constructed(rng, 8, 4, spread=1.0)
        calibration = leave_one_out(values, names)
        failed += calibration.passed is False
    assert failed / 300 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)
    values, names = constructed(rng, 8, 4, spread=0.3)
    values[names[3]] = {s: v + 20.0 for s, v in values[names[3]].items()}
    calibration = leave_one_out(values, names)
    assert calibration.passed is False and calibration.flagged == (names[3],)
    text = "\n".join(calibration.lines())
    assert "FAILED" in text and all(n in text for n in names)
    assert leave_one_out(values, names[:2]).passed is None  # one reference each: undetermined


# -- the statistics --------------------------------------------------------------------------------

def _probe(logits: np.ndarray, prompts: list[str], tokenizer: str = "tok") -> ProbeResult:
    rows = [summarise(row - np.logaddexp.reduce(row)) for row in logits]
    return ProbeResult(tokenizer, logits.shape[1], tuple(prompts), tuple(r[0] for r in rows),
                       tuple(r[1] for r in rows), tuple(r[2] for r in rows))


@settings(deadline=None)
@given(seed=st.integers(0, 2**31 - 1), temperature=st.floats(0.2, 5.0), shift=st.floats(-3, 3))
def test_dark_knowledge_does_not_move_with_temperature(seed, temperature, shift):
    rng = np.random.default_rng(seed)
    teacher = rng.normal(size=(6, 50)) * 3
    prompts = [f"p{i}" for i in range(6)]
    hot = _probe(teacher / temperature + shift, prompts)
    assert dark_knowledge(_probe(teacher, prompts), hot) == pytest.approx(1.0)
    other = _probe(rng.normal(size=(6, 50)), prompts)
    assert abs(dark_knowledge(_probe(teacher, prompts), other)) < 0.6
    assert math.isnan(dark_knowledge(_probe(teacher, prompts), _probe(teacher, prompts, "other-tok")))


def test_dark_knowledge_leaves_out_the_argmax_and_reads_only_the_top_twenty():
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(4, 100))
    model = teacher.copy()
    top = np.argsort(-teacher, axis=1)
    for row in range(4):
        model[row, top[row, 0]] = -50.0  # a different argmax changes nothing
        model[row, top[row, 30:]] = rng.normal(size=70)  # nor do tokens past the top 21
    prompts = [f"p{i}" for i in range(4)]
    assert dark_knowledge(_probe(teacher, prompts), _probe(model, prompts)) == pytest.approx(1.0)
    assert dark_knowledge(_probe(teacher, prompts), _probe(model, prompts), prompts=["p1"]) == pytest.approx(1.0)


def _record(i: int, ok: bool, answer: str, logprobs=None, gold=None) -> ItemRecord:
    return ItemRecord(doc_id=i, doc_hash=f"h{i:04d}", prompt=f"q{i}", target="gold", response=answer,
                      raw_response=answer, score=float(ok), prompt_tokens=1, output_tokens=1,
                      choice_logprobs=None if logprobs is None else tuple(logprobs), gold=gold)


@given(pairs=st.lists(st.tuples(st.lists(st.integers(-3, 3), min_size=2, max_size=6),
                                st.lists(st.integers(-3, 3), min_size=2, max_size=6)), min_size=1, max_size=30))
def test_choice_order_is_the_mean_tau_of_the_wrong_choices(pairs):
    teacher, model, taus = [], [], []
    for i, (a, b) in enumerate(pairs):
        n = min(len(a), len(b))
        a, b, gold = a[:n], b[:n], i % n
        teacher.append(_record(i, True, "x", a, gold))
        model.append(_record(i, True, "x", b, gold))
        if n >= 3:
            keep = [j for j in range(n) if j != gold]
            tau = kendall_tau_b([a[j] for j in keep], [b[j] for j in keep])
            taus.append(0.0 if math.isnan(tau) else tau)
    value = choice_order(teacher, model)
    assert (math.isnan(value) and not taus) or value == pytest.approx(np.mean(taus))


def test_wrong_answer_excess_counts_copying_not_favourite_answers():
    rng = np.random.default_rng(1)
    n = 300
    t_ok = rng.random(n) < 0.5
    t_ans = np.where(t_ok, "gold", rng.choice(list("abcde"), size=n))
    teacher = [_record(i, ok, a) for i, (ok, a) in enumerate(zip(t_ok, t_ans, strict=True))]
    copy = [_record(i, ok, a) for i, (ok, a) in enumerate(zip(t_ok, t_ans, strict=True))]
    order = rng.permutation(n)  # the teacher's outcomes moved to other items
    moved = [_record(i, t_ok[j], t_ans[j]) for i, j in enumerate(order)]
    favourite = [_record(i, False, "a") for i in range(n)]
    assert wrong_answer_excess(teacher, copy) > 0.6
    assert abs(wrong_answer_excess(teacher, moved)) < 0.15
    assert wrong_answer_excess(teacher, favourite) == pytest.approx(0.0)
    two = [_record(i, False, "x", [0.0, -1.0], 0) for i in range(10)]
    assert math.isnan(wrong_answer_excess(two, two))  # one wrong answer: every match is forced
    assert error_consistency(teacher, copy) == pytest.approx(1.0)
    assert math.isnan(error_consistency(favourite, favourite))


# -- end to end on simulated item records ------------------------------------------------------------

def test_population_statistics_are_computed_for_every_non_teacher_model_and_say_their_kind():
    runs = _bench().simulate_population(np.random.default_rng(0), k=3, spread=0.3, items=60, tasks=2)
    values = population_statistics("teacher", runs)
    assert set(values) == {"suspect", "ref-01", "ref-02", "ref-03"}
    kinds = {s.kind for s in values["suspect"]}
    assert kinds == {CHOICE, TEXT}
    text_only = population_statistics("teacher", runs, choices=False)  # a text-only API teacher
    assert {s.kind for s in text_only["suspect"]} == {TEXT}
    assert all(set(v) == set(values["suspect"]) for v in values.values())


def test_on_simulated_records_an_independent_suspect_is_not_flagged_beyond_the_nominal_rate():
    """Item records with a large model-to-model spread (0.6, see benchmarks/evidence.py): the
    population test flags an independent suspect in at most 5% plus three standard errors of
    150 tables; a suspect mixing in 60% of the teacher's logits is flagged in 8 of 10."""
    bench = _bench()
    rng = np.random.default_rng(2024)
    refs = [f"ref-{i:02d}" for i in range(1, 5)]
    flags = sum(bench.population_flag(bench.simulate_population(rng, k=4, spread=0.6, items=100, tasks=2), refs)
                for _ in range(150))
    assert flags / 150 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 150)
    copies = sum(bench.population_flag(bench.simulate_population(rng, k=8, spread=0.3, copy=0.6, items=100,
                                                                 tasks=2), [f"ref-{i:02d}" for i in range(1, 9)])
                 for _ in range(10))
    assert copies >= 8


# -- pooling the tasks and the tiers of evidence -------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(-1, 1), min_size=3, max_size=3), min_size=3, max_size=6),
       st.integers(0, 2), st.randoms(use_true_random=False))
def test_pool_tasks_is_the_mean_over_tasks_every_model_has(rows, missing_task, rnd) -> None:
    tasks = ["t0", "t1", "t2"]
    values = {f"m{i}": {Statistic(TEXT, "kappa", t): v for t, v in zip(tasks, row, strict=True)}
              for i, row in enumerate(rows)}
    values["m0"][Statistic(TEXT, "kappa", tasks[missing_task])] = math.nan  # undefined for one model
    values["m1"][C] = 0.5  # a pooled statistic passes through
    pooled = pool_tasks(values)
    kept = [t for t in tasks if t != tasks[missing_task]]
    for i, row in enumerate(rows):
        expected = np.mean([v for t, v in zip(tasks, row, strict=True) if t in kept])
        assert pooled[f"m{i}"][Statistic(TEXT, "kappa")] == pytest.approx(expected)
    assert pooled["m1"][C] == 0.5 and all(not s.task for row in pooled.values() for s in row)
    # the models' order does not matter
    names = list(values)
    rnd.shuffle(names)
    assert pool_tasks({n: values[n] for n in names}) == pooled


def test_evidence_test_decides_on_the_strongest_tier_and_shows_the_others() -> None:
    logit, text = Statistic(LOGIT, "dark_knowledge"), Statistic(TEXT, "kappa")
    refs = [[0.10, 0.30], [0.15, 0.25], [0.12, 0.28], [0.18, 0.31], [0.11, 0.27]]
    # far beyond the controls on kappa, ordinary on the logits: not flagged, kappa shown
    values, names = table([0.13, 0.90], refs, stats=(logit, text))
    verdict = evidence_test(values, "s", names)
    assert verdict.flagged is False and verdict.evidence == (LOGIT,)
    assert [t.statistic for t in verdict.supporting] == [text] and verdict.supporting[0].p_adjusted < 0.05
    # beyond them on the logits: flagged, whatever kappa says
    values, names = table([0.60, 0.20], refs, stats=(logit, text))
    assert evidence_test(values, "s", names).flagged is True
    # no logits for one model: the text tier decides
    values, names = table([0.13, 0.90], refs, stats=(logit, text))
    values["r00"][logit] = math.nan
    verdict = evidence_test(values, "s", names)
    assert verdict.flagged is True and verdict.evidence == (TEXT,) and not verdict.supporting
    # fewer than two references: undetermined on any tier
    assert evidence_test(values, "s", names[:1]).status == UNDETERMINED


def test_leave_one_out_uses_the_tiers() -> None:
    logit, text = Statistic(LOGIT, "dark_knowledge"), Statistic(TEXT, "kappa")
    refs = [[0.10, 0.30], [0.15, 0.25], [0.12, 0.28], [0.18, 0.31], [0.11, 0.27], [0.14, 0.95]]
    values, names = table([0.13, 0.29], refs, stats=(logit, text))
    assert leave_one_out(values, [*names, "s"]).passed is True  # r05 stands out on kappa alone
    assert leave_one_out(values, [*names, "s"], tiered=False).flagged == ("r05",)
