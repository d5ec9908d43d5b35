"""The bundled suites' generators, their committed data and the suite YAML files."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_distillbench.data import (
    SPLITS,
    TASKS,
    SplitSizes,
    arithmetic,
    build_all,
    build_task,
    codegen,
    get_task,
    make_splits,
    reasoning,
    record_kind,
    split_path,
    training_pair,
)
from pytest_distillbench.errors import DistillbenchError
from pytest_distillbench.zoo.tokenizer import CHARACTERS

SUITES = Path(__file__).resolve().parent.parent / "suites"
seeds = st.integers(min_value=0, max_value=2**63)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]


def committed(task, split: str) -> list[dict[str, Any]]:
    return read_jsonl(split_path(SUITES, task, split))


def small(task, test: int = 15, validation: int = 15, train: int = 40):
    return dataclasses.replace(task, sizes=SplitSizes(test, validation, train))


@pytest.fixture(scope="module")
def fresh_build(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("suites")
    build_all(root)
    return root


# --- determinism and the committed files -------------------------------------------------


def test_committed_data_equals_a_fresh_build(fresh_build):
    fresh = sorted(p.relative_to(fresh_build) for p in (fresh_build / "data").rglob("*.jsonl"))
    stored = sorted(p.relative_to(SUITES) for p in (SUITES / "data").rglob("*.jsonl"))
    assert fresh == stored
    assert len(fresh) == 3 * len(TASKS)
    for rel in fresh:
        assert (fresh_build / rel).read_bytes() == (SUITES / rel).read_bytes(), rel


def test_building_twice_gives_identical_bytes(tmp_path):
    task = small(get_task("reasoning/tracking"))
    first = [p.read_bytes() for p in build_task(tmp_path / "a", task)]
    second = [p.read_bytes() for p in build_task(tmp_path / "b", task)]
    assert first == second
    assert all(data.endswith(b"\n") and b"\r" not in data for data in first)


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.qualified_name)
def test_same_seed_same_records_other_seed_other_records(task):
    task = small(task)
    assert make_splits(task, seed=7) == make_splits(task, seed=7)
    assert make_splits(task, seed=7)["test"] != make_splits(task, seed=8)["test"]


def test_task_seed_comes_from_the_task_name_not_its_position():
    task = small(get_task("math/add_sub_2d"))
    alone = make_splits(task)
    assert make_splits(dataclasses.replace(task, name="renamed"))["test"] != alone["test"]
    assert make_splits(task) == alone


def test_lines_are_sorted_key_json():
    line = split_path(SUITES, get_task("code/code_lists"), "test").read_text().splitlines()[0]
    assert line == json.dumps(json.loads(line), sort_keys=True)


# --- splits --------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.qualified_name)
def test_committed_splits_are_disjoint_and_sized(task):
    splits = {split: committed(task, split) for split in SPLITS}
    keys = {split: [task.key(r) for r in records] for split, records in splits.items()}
    prompts = {split: {r["prompt"] for r in records} for split, records in splits.items()}
    for split in SPLITS:
        assert len(set(keys[split])) == len(keys[split]), f"duplicate problem in {split}"
    assert not set(keys["test"]) & (set(keys["train"]) | set(keys["validation"]))
    assert not set(keys["validation"]) & set(keys["train"])
    assert not prompts["test"] & (prompts["train"] | prompts["validation"])
    minimum_test = 100 if task.kind == "code" else 200
    assert len(splits["test"]) == task.sizes.test >= minimum_test
    assert len(splits["validation"]) == task.sizes.validation >= 100
    assert 1000 <= len(splits["train"]) <= task.sizes.train
    id_key = "task_id" if task.kind == "code" else "id"
    ids = [r[id_key] for split in SPLITS for r in splits[split]]
    assert len(set(ids)) == len(ids)
    assert all(record_kind(r) == task.kind for r in splits["test"])


def test_small_problem_spaces_are_used_up_for_training():
    # 90 two-digit x 9 one-digit numbers x 3 forms, minus test and validation
    task = get_task("math/add_sub_1d2d")
    assert 90 * 9 * 3 - 400 - 10 <= len(committed(task, "train")) <= 90 * 9 * 3 - 400


def test_too_small_a_problem_space_is_reported():
    task = dataclasses.replace(get_task("math/add_sub_1d2d"), sizes=SplitSizes(3000, 10, 10))
    with pytest.raises(DistillbenchError, match="distinct problems for the test split"):
        make_splits(task, patience=200)


def test_committed_data_stays_small():
    total = sum(p.stat().st_size for p in (SUITES / "data").rglob("*.jsonl"))
    assert total < 10 * 2**20


def test_get_task_names_the_choices():
    with pytest.raises(DistillbenchError, match="math/add_sub_2d"):
        get_task("math/nope")


# --- formats -------------------------------------------------------------------------------


def test_training_pairs_for_each_kind():
    assert training_pair({"id": "a", "prompt": "Q: 1+2=", "answer": "3"}) == ("Q: 1+2=", "3\n")
    mc = {"id": "b", "prompt": "Q: x? A:", "choices": ["no", "yes"], "label": 1}
    assert training_pair(mc) == ("Q: x? A:", " yes\n")
    code = {"task_id": "c", "prompt": "def f(x):\n", "canonical_solution": "    return x\n",
            "test": "", "entry_point": "f"}
    assert training_pair(code) == ("def f(x):\n", "    return x\n\n")
    assert [record_kind(r) for r in ({"id": "a", "prompt": "", "answer": ""}, mc, code)] == [
        "generation", "multiple_choice", "code"]


def test_unknown_record_and_bad_label_are_user_errors():
    with pytest.raises(DistillbenchError, match="matches no known format"):
        record_kind({"id": "x", "question": "?"})
    with pytest.raises(DistillbenchError, match="outside the 2 choices"):
        training_pair({"id": "x", "prompt": "?", "choices": ["a", "b"], "label": 2})


@given(seed=seeds, task=st.sampled_from(TASKS))
@settings(max_examples=200, deadline=None)
def test_every_record_is_tokenizable_short_and_trainable(seed, task):
    record = task.generate(random.Random(seed))
    context, target = training_pair({"id": "x", "task_id": "x", **record})
    assert set(context + target) <= set(CHARACTERS)
    assert target.endswith("\n")
    assert len(context) <= (120 if task.kind == "code" else 100)
    if task.kind == "code":
        assert target.endswith("\n\n") and "\n\n" not in target[:-1]
    else:
        assert "\n" not in context and "\n" not in target[:-1]
    assert record_kind({"id": "x", "task_id": "x", **record}) == task.kind


# --- answers are right: recomputed from the prompt -------------------------------------------

EQUATION = re.compile(r"^Q: (\d+)([-+*])(\d+)=$")


def solve_equation(prompt: str) -> tuple[int, str, int, int]:
    match = EQUATION.match(prompt)
    assert match, prompt
    a, op, b = int(match[1]), match[2], int(match[3])
    return a, op, b, {"+": a + b, "-": a - b, "*": a * b}[op]


@given(seed=seeds)
def test_add_sub_1d2d_answers(seed):
    a, op, b, value = solve_equation((r := arithmetic.add_sub_1d2d(random.Random(seed)))["prompt"])
    assert r["answer"] == str(value) and value >= 0 and op in "+-"
    assert sorted([len(str(a)), len(str(b))]) == [1, 2]


@given(seed=seeds)
def test_add_sub_2d_answers(seed):
    a, op, b, value = solve_equation((r := arithmetic.add_sub_2d(random.Random(seed)))["prompt"])
    assert r["answer"] == str(value) and value >= 0 and op in "+-"
    assert 10 <= a <= 99 and 10 <= b <= 99


@given(seed=seeds)
def test_add_3d_answers(seed):
    a, op, b, value = solve_equation((r := arithmetic.add_3d(random.Random(seed)))["prompt"])
    assert r["answer"] == str(value) and op == "+" and 100 <= min(a, b) and max(a, b) <= 999


@given(seed=seeds)
def test_mul_1d2d_answers(seed):
    a, op, b, value = solve_equation((r := arithmetic.mul_1d2d(random.Random(seed)))["prompt"])
    assert r["answer"] == str(value) and op == "*" and 2 <= min(a, b) <= 9 and 10 <= max(a, b) <= 99


STEP = re.compile(r"^(\d+(?:[-+*]\d+)+)=(\d+)$")


def assert_worked(record: dict) -> None:
    """Every step of the solution is a true equation and its last number is the answer."""
    steps, final = record["solution"].strip().split(arithmetic.ANSWER_MARK.strip())
    assert final.strip() == record["answer"]
    for step in steps.split(", "):
        match = STEP.match(step.strip())
        assert match, step
        assert eval(match[1]) == int(match[2]), step  # digits and + - * only (checked by STEP)


@given(seed=seeds, task=st.sampled_from(arithmetic.TASKS))
def test_every_math_record_has_a_worked_solution(seed, task):
    assert_worked(task.generate(random.Random(seed)))


@given(a=st.integers(0, 10**6), b=st.integers(0, 10**6))
def test_column_addition_and_subtraction_steps_are_single_digit(a, b):
    for op, solution in (("+", arithmetic.column_addition(a, b)),
                         ("-", arithmetic.column_subtraction(max(a, b), min(a, b)))):
        value = a + b if op == "+" else max(a, b) - min(a, b)
        assert_worked({"solution": solution, "answer": str(value)})
        # one step per column of the longer number, each on digits (a borrowed ten reads 1x)
        assert solution.count(", ") == len(str(max(a, b))) - 1
        for step in solution.split(arithmetic.ANSWER_MARK)[0].split(", "):
            operands = re.split(r"[-+]", step.split("=")[0])
            assert all(len(x) == 1 or (op == "-" and x.startswith("1") and len(x) == 2) for x in operands)


@given(number=st.integers(0, 10**6), digit=st.integers(0, 9))
def test_column_multiplication_steps(number, digit):
    assert_worked({"solution": arithmetic.column_multiplication(number, digit),
                   "answer": str(number * digit)})


STORY = re.compile(r"^([A-Z][a-z]+) has (\d) ([a-z]+)\. (She|He) (.+)\. How many \3 now\? A:$")
ACTION = re.compile(r"^(buys|finds|gets|wins|makes|gives away|loses|sells|uses) (\d)$")


@given(seed=seeds)
def test_word_problem_answers_replay_the_story(seed):
    record = arithmetic.word_problems(random.Random(seed))
    match = STORY.match(record["prompt"])
    assert match, record["prompt"]
    assert arithmetic.PEOPLE[match[1]] == match[4]
    count = int(match[2])
    actions = re.split(r", | and ", match[5])
    assert 1 <= len(actions) <= 3
    for action in actions:
        verb, amount = ACTION.match(action).groups()
        count += int(amount) if verb in arithmetic.GAIN_VERBS else -int(amount)
        assert count >= 0
    assert record["answer"] == str(count)


@given(seed=seeds)
def test_compare_labels_the_larger_or_smaller(seed):
    record = reasoning.compare(random.Random(seed))
    word, a, b = re.match(r"^Q: Which is (larger|smaller), (\d+) or (\d+)\? A:$", record["prompt"]).groups()
    assert record["choices"] == [a, b] and a != b
    pick = max if word == "larger" else min
    assert record["choices"][record["label"]] == str(pick(int(a), int(b)))


@given(seed=seeds)
def test_ordering_answer_is_the_end_of_the_stated_chain(seed):
    record = reasoning.ordering(random.Random(seed))
    *facts, question = record["prompt"].split(". ")
    more_than: set[tuple[str, str]] = set()  # (x, y): x has more of the quality than y
    scale = None
    for fact in facts:
        x, relation, y = re.match(r"^(\w+) is (\w+) than (\w+)\.?$", fact).groups()
        scale = next(s for s in reasoning.SCALES if relation in s[:2])
        more_than.add((x, y) if relation == scale[0] else (y, x))
    people = sorted({p for pair in more_than for p in pair})
    assert people == record["choices"] and len(facts) == len(people) - 1
    superlative = re.match(r"^Who is (\w+)\? A:$", question)[1]
    assert superlative in scale[2:]
    wanted_side = 1 if superlative == scale[2] else 0  # the most never appears on the right
    ends = [p for p in people if all(pair[wanted_side] != p for pair in more_than)]
    assert len(ends) == 1  # the facts form one chain, so the answer is determined
    assert record["choices"][record["label"]] == ends[0]


@given(seed=seeds)
def test_tracking_answer_replays_the_swaps(seed):
    record = reasoning.tracking(random.Random(seed))
    match = re.match(r"^A (\w+) is in cup (\d)\. ((?:Swap \d \d\. )+)Where is the \1\? Cup$", record["prompt"])
    assert match, record["prompt"]
    cups = {c: c == int(match[2]) for c in range(1, reasoning.CUPS + 1)}
    swaps = re.findall(r"Swap (\d) (\d)\.", match[3])
    assert 1 <= len(swaps) <= 3
    for a, b in swaps:
        cups[int(a)], cups[int(b)] = cups[int(b)], cups[int(a)]
    assert record["choices"] == ["1", "2", "3", "4"]
    assert cups[int(record["choices"][record["label"]])]


@given(seed=seeds)
def test_sort_letters_answer_is_the_sorted_letters(seed):
    record = reasoning.sort_letters(random.Random(seed))
    letters = re.match(r"^Sort: ([a-z]{3,5}) ->$", record["prompt"])[1]
    assert len(set(letters)) == len(letters)
    assert record["answer"] == "".join(sorted(letters))


# --- code: canonical solutions pass their own tests; wrong ones do not -------------------------


def passes(record: dict[str, Any], body: str) -> bool:
    namespace: dict[str, Any] = {}
    exec(record["prompt"] + body + "\n" + record["test"], namespace)  # our own generated code
    try:
        namespace["check"](namespace[record["entry_point"]])
    except AssertionError:
        return False
    return True


@given(seed=seeds, generate=st.sampled_from([codegen.code_arith, codegen.code_compose, codegen.code_lists]))
@settings(max_examples=300, deadline=None)
def test_canonical_code_passes_and_trivial_answers_fail(seed, generate):
    record = generate(random.Random(seed))
    assert record["prompt"].startswith(f"def {record['entry_point']}(")
    assert record["prompt"].endswith('"""\n') and record["prompt"].count("\n") == 2
    assert all(line.startswith("    ") for line in record["canonical_solution"].splitlines())
    assert record["test"].startswith("def check(candidate):\n")
    assert 3 <= record["test"].count("    assert candidate(") <= 5
    assert passes(record, record["canonical_solution"])
    assert not passes(record, "    return 0\n")
    argument = re.match(r"^def \w+\((\w+)\):", record["prompt"])[1]
    assert not passes(record, f"    return {argument}\n")


@given(seed=seeds)
def test_code_problem_key_ignores_the_function_name(seed):
    record = codegen.code_arith(random.Random(seed))
    renamed = dict(record, prompt=record["prompt"].replace(f"def {record['entry_point']}(", "def other(", 1))
    assert codegen.problem_key(renamed) == codegen.problem_key(record)


def test_committed_code_solutions_pass_their_tests():
    for task in (t for t in TASKS if t.kind == "code"):
        for record in committed(task, "test"):
            assert passes(record, record["canonical_solution"]), record["task_id"]


# --- the suite YAML files -------------------------------------------------------------------


class _FunctionLoader(yaml.SafeLoader):
    """Resolves ``!function module.attr`` by importing it, as the plugin's loader does."""


def _import_function(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    module, _, attr = loader.construct_scalar(node).rpartition(".")
    return getattr(importlib.import_module(module), attr)


_FunctionLoader.add_constructor("!function", _import_function)


def load_suite_yaml(name: str) -> dict[str, Any]:
    return yaml.load((SUITES / f"{name}.yaml").read_text(), Loader=_FunctionLoader)  # noqa: S506


def code_module_or_skip():
    try:
        importlib.import_module("pytest_distillbench.tasks.code")
    except ModuleNotFoundError:
        pytest.skip("pytest_distillbench.tasks.code (process_results, load_humaneval) is not written yet")


@pytest.mark.parametrize("suite", ["math", "reasoning", "code"])
def test_suite_yaml_lists_every_generated_task(suite):
    if suite == "code":
        code_module_or_skip()
    raw = load_suite_yaml(suite)
    assert raw["suite"] == suite
    assert raw["allow_code_execution"] is (suite == "code")
    generated = [t for t in TASKS if t.suite == suite]
    listed = {t["name"]: t for t in raw["tasks"]}
    assert [t.name for t in generated] == [n for n in listed if n != "humaneval"]
    for task in generated:
        entry = listed[task.name]
        assert entry["difficulty"] == task.difficulty
        files = entry["lm_eval"]["dataset_kwargs"]["data_files"]
        assert {s: SUITES / p for s, p in files.items()} == {s: split_path(SUITES, task, s) for s in SPLITS}
        # thresholds are calibrated to the embedded models; tasks beyond them carry none
        for limits in entry.get("thresholds", {}).values():
            assert limits and all(0 < value <= 1 for value in limits.values()), limits


@pytest.fixture(scope="module")
def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=False)


def lm_eval_task(task_manager, suite: str, entry: dict[str, Any], cache: Path):
    config = dict(entry["lm_eval"])
    files = config["dataset_kwargs"]["data_files"]
    config["dataset_kwargs"] = {"data_files": {s: str(SUITES / p) for s, p in files.items()},
                                "cache_dir": str(cache)}
    loaded = task_manager.load([{"task": f"distillbench_{suite}_{entry['name']}", **config}])
    (task,) = loaded["tasks"].values()
    return task


def score(task, entry: dict[str, Any], respond) -> list[float]:
    """Score canned responses through the task's own filters and metric, as lm-eval would."""
    for instance in task.instances:
        instance.resps = [respond(instance)]
    task.apply_filters()
    metric_name, _, filter_name = entry["metric"].partition(",")
    scores = []
    for _, group in itertools.groupby(task.instances, key=lambda i: i.doc_id):
        group = list(group)
        results = [i.filtered_resps[filter_name or "none"] for i in group]
        scores.append(float(task.process_results(group[0].doc, results)[metric_name]))
    return scores


GOLD_AND_WRONG = {
    # (gold response, a wrong response) for each generation task's record
    "answer": (lambda d: d["answer"], lambda d: d["answer"] + "1"),
    "canonical_solution": (lambda d: d["canonical_solution"], lambda d: "    return None\n"),
}


@pytest.mark.parametrize("suite", ["math", "reasoning", "code"])
def test_suite_yaml_builds_lm_eval_tasks_that_score_gold_right_and_wrong_wrong(suite, task_manager, tmp_path,
                                                                             monkeypatch):
    if suite == "code":
        code_module_or_skip()
        monkeypatch.setenv("DISTILLBENCH_ALLOW_CODE_EXECUTION", "1")  # what the plugin sets when opted in
    raw = load_suite_yaml(suite)
    for entry in raw["tasks"]:
        if entry["name"] == "humaneval":
            continue
        task = lm_eval_task(task_manager, suite, entry, tmp_path)
        generated = get_task(f"{suite}/{entry['name']}")
        docs = list(task.test_docs())
        assert docs == committed(generated, "test")
        task.build_all_requests(limit=8, rank=0, world_size=1)
        assert len(task.instances) >= 8
        if entry["lm_eval"]["output_type"] == "multiple_choice":
            for instance in task.instances:
                context, continuation = instance.args
                assert context == instance.doc["prompt"]
                assert continuation == " " + instance.doc["choices"][instance.idx]

            def right(i):
                return (0.0 if i.idx == i.doc["label"] else -9.0, False)

            def wrong(i):
                return (-9.0 if i.idx == i.doc["label"] else 0.0, False)
        else:
            for instance in task.instances:
                assert instance.args[0] == instance.doc["prompt"]
            field = "answer" if generated.kind == "generation" else "canonical_solution"
            gold, bad = GOLD_AND_WRONG[field]

            def right(i, gold=gold):
                return gold(i.doc)

            def wrong(i, bad=bad):
                return bad(i.doc)
        assert score(task, entry, right) == [1.0] * 8, entry["name"]
        assert score(task, entry, wrong) == [0.0] * 8, entry["name"]


def test_math_filter_takes_the_last_number(task_manager, tmp_path):
    entry = next(t for t in load_suite_yaml("math")["tasks"] if t["name"] == "add_sub_2d")
    task = lm_eval_task(task_manager, "math", entry, tmp_path)
    task.build_all_requests(limit=1, rank=0, world_size=1)
    answer = task.instances[0].doc["answer"]
    assert score(task, entry, lambda i: f"= 12 so {answer}") == [1.0]
    assert score(task, entry, lambda i: f"{answer} or 12") == [0.0]
    assert score(task, entry, lambda i: "no number") == [0.0]


def test_humaneval_task_is_reported_not_asserted():
    code_module_or_skip()
    entry = next(t for t in load_suite_yaml("code")["tasks"] if t["name"] == "humaneval")
    assert "thresholds" not in entry
    assert entry["lm_eval"]["generation_kwargs"]["max_gen_toks"] == 128
    assert callable(entry["lm_eval"]["custom_dataset"])
