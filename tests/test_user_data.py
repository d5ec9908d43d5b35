"""Users' own data read as its format defines it: BIG-bench task.json semantics, field by field,
and the JSONL ``data:`` shortcut with its answer pattern and filters.

The expected prompts and scores below are written out by hand from BIG-bench's definitions
(bigbench/api/json_task.py: default_format_fn, postprocess_output, exact_str_match_fn). Scores
go through the task lm-eval builds from the suite (its filters and its exact_match metric), fed
with hand-written responses, so no model is needed except in the last, end-to-end test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_distillbench.engine.evaluation import records_from_samples
from pytest_distillbench.errors import DistillbenchError
from pytest_distillbench.spec.suites import TaskSpec, load_suite

from conftest import write_jsonl

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def bigbench_task(tmp_path: Path, task: dict, metric: str = "exact_match", extra: str = "") -> TaskSpec:
    (tmp_path / "task.json").write_text(json.dumps(task))
    (tmp_path / "s.yaml").write_text(f"suite: bb\ntasks:\n  - name: t\n    metric: {metric}\n"
                                     f"    data: {{bigbench: task.json{extra}}}\n")
    return load_suite(tmp_path / "s.yaml").tasks[0]


def lm_task(task: TaskSpec):
    from lm_eval.tasks import TaskManager

    from pytest_distillbench.engine.evaluation import _register_filters

    _register_filters()
    return next(iter(TaskManager(include_defaults=False).load([task.lm_eval_config()])["tasks"].values()))


def prompts(task: TaskSpec) -> list[str]:
    lt = lm_task(task)
    return [lt.fewshot_context(doc, 0) for doc in lt.test_docs()]


def scores(task: TaskSpec, responses: list[str], doc: int = 0) -> list[float]:
    """exact_match of each hand-written response to document ``doc``, through the task's filters."""
    from lm_eval.api.instance import Instance

    lt = lm_task(task)
    d = list(lt.test_docs())[doc]
    out = []
    for text in responses:
        inst = Instance("generate_until", d, ("", {}), 0)
        inst.resps = [text]
        for f in lt._filters:
            f.apply([inst])
        filtered = inst.filtered_resps[task.filter]
        out.append(lt.process_results(d, [filtered])["exact_match"])
    return out


NAVIGATE = {
    "task_prefix": "If you follow these instructions, do you return to the starting point?",
    "append_choices_to_input": False,
    "examples": [{"input": "Take 1 step. Turn around. Take 1 step.", "target_scores": {"True": 1, "False": 0}}],
}


def test_task_prefix_is_prepended_to_every_prompt(tmp_path: Path) -> None:
    task = bigbench_task(tmp_path, NAVIGATE, metric="acc")
    assert prompts(task) == ["If you follow these instructions, do you return to the starting point?"
                             "\nQ: Take 1 step. Turn around. Take 1 step.\nA: "]


def test_default_input_and_output_prefixes(tmp_path: Path) -> None:
    task = bigbench_task(tmp_path, {"examples": [{"input": "2 + 3 =", "target": "5"}]})
    assert prompts(task) == ["\nQ: 2 + 3 =\nA: "]


def test_custom_input_and_output_prefixes(tmp_path: Path) -> None:
    task = bigbench_task(tmp_path, {"example_input_prefix": "Question: ", "example_output_prefix": " Answer: ",
                                    "examples": [{"input": "2 + 3 =", "target": "5"}]})
    assert prompts(task) == ["Question: 2 + 3 = Answer: "]


def test_choices_are_appended_by_default_in_bigbench_order(tmp_path: Path) -> None:
    # default_format_fn: input + choice_prefix + choice_prefix.join(rng.permutation(sorted(choices)))
    # with rng = numpy RandomState(42), drawn once per example in order: the first permutation of
    # two items is [1, 0], the second [0, 1] (numpy's documented Mersenne Twister stream).
    task = bigbench_task(tmp_path, {"examples": [
        {"input": "Is 2 > 1?", "target_scores": {"no": 0, "yes": 1}},
        {"input": "Is 1 > 2?", "target_scores": {"no": 1, "yes": 0}}]}, metric="acc")
    assert prompts(task) == ["\nQ: Is 2 > 1?\n  choice: yes\n  choice: no\nA: ",
                             "\nQ: Is 1 > 2?\n  choice: no\n  choice: yes\nA: "]
    lt = lm_task(task)
    docs = list(lt.test_docs())
    # the scored choices keep the file's order; the gold one is the highest-scoring
    assert [lt.doc_to_choice(d) for d in docs] == [["no", "yes"], ["no", "yes"]]
    assert [lt.doc_to_target(d) for d in docs] == [1, 0]
    assert lt.config.target_delimiter == ""  # the choice follows "A: " directly


def test_custom_choice_prefix_and_append_false(tmp_path: Path) -> None:
    ex = [{"input": "Pick", "target_scores": {"a": 1, "b": 0}}]
    task = bigbench_task(tmp_path, {"choice_prefix": " | ", "examples": ex}, metric="acc")
    assert prompts(task) == ["\nQ: Pick | b | a\nA: "]  # the first draw of RandomState(42): [1, 0]
    task = bigbench_task(tmp_path, {"append_choices_to_input": False, "examples": ex}, metric="acc")
    assert prompts(task) == ["\nQ: Pick\nA: "]


def test_exact_str_match_keeps_case_and_punctuation(tmp_path: Path) -> None:
    task = bigbench_task(tmp_path, {"examples": [{"input": "Capital of France?", "target": "Paris"}]})
    assert task.metric == "exact_match" and task.filter == "bigbench"
    # default output_regex [^\.\?\!\;\n]+ keeps "Paris" of "Paris. It is"; case and a leading
    # space count, as BIG-bench compares strings exactly
    assert scores(task, ["Paris", "Paris. It is", "paris", " Paris", "Paris!", "PARIS"]) == [1, 1, 0, 0, 1, 0]


def test_output_regex_of_the_task(tmp_path: Path) -> None:
    task = bigbench_task(tmp_path, {"output_regex": r"\d+", "examples": [{"input": "6 * 7", "target": "42"}]})
    assert scores(task, ["The answer is 42.", "4 2", "none"]) == [1, 0, 0]


def test_stop_string_is_kept_and_disables_the_default_regex(tmp_path: Path) -> None:
    task = bigbench_task(tmp_path, {"stop_string": ".", "examples": [{"input": "x", "target": "yes."}]})
    # postprocess_output: text[: index + len(stop_string)], no regex when a stop string is given
    assert scores(task, ["yes. and more", "yes", "yes.\n"]) == [1, 0, 1]


def test_every_target_counts(tmp_path: Path) -> None:
    task = bigbench_task(tmp_path, {"examples": [{"input": "1 + 1", "target": ["2", "two"]}]})
    assert scores(task, ["2", "two", "Two", "3"]) == [1, 1, 0, 0]


def test_target_and_target_scores_scored_either_way(tmp_path: Path) -> None:
    arithmetic = {"preferred_score": "exact_str_match", "examples": [
        {"input": "3 + 4 =", "target": "7", "target_scores": {"6": 0, "7": 1, "8": 0}}]}
    gen = bigbench_task(tmp_path, arithmetic, metric="exact_match")
    assert gen.output_type == "generate_until"
    assert scores(gen, ["7", "7.", "8"]) == [1, 1, 0]
    mc = bigbench_task(tmp_path, arithmetic, metric="acc")
    assert mc.output_type == "multiple_choice"
    assert lm_task(mc).doc_to_target(next(iter(lm_task(mc).test_docs()))) == 1


def test_target_scores_only_generates_against_the_best_choice(tmp_path: Path) -> None:
    # default_format_fn: without a target, the first choice with the highest score is the target
    task = bigbench_task(tmp_path, {"append_choices_to_input": False, "examples": [
        {"input": "q", "target_scores": {"maybe": 0.5, "yes": 1, "also yes": 1}}]})
    assert scores(task, ["yes", "also yes", "maybe"]) == [1, 0, 0]


def test_choice_scoring_needs_target_scores_everywhere(tmp_path: Path) -> None:
    with pytest.raises(DistillbenchError, match=r"examples\[1\] has no 'target_scores'"):
        bigbench_task(tmp_path, {"examples": [{"input": "a", "target_scores": {"x": 1}},
                                              {"input": "b", "target": "y"}]}, metric="acc")


def test_answer_pattern_overrides_output_regex(tmp_path: Path) -> None:
    task = bigbench_task(tmp_path, {"examples": [{"input": "q", "target": "12"}]},
                         extra=", answer_pattern: '\\d+'")
    assert scores(task, ["I think. It is 12"]) == [1]


def test_duplicate_examples_are_dropped_as_bigbench_does(tmp_path: Path) -> None:
    ex = {"input": "a", "target": "b"}
    task = bigbench_task(tmp_path, {"examples": [ex, ex, {"input": "c", "target": "d"}]})
    assert prompts(task) == ["\nQ: a\nA: ", "\nQ: c\nA: "]


def test_bad_task_json_fields_are_named(tmp_path: Path) -> None:
    with pytest.raises(DistillbenchError, match="output_regex is not a valid regular expression"):
        bigbench_task(tmp_path, {"output_regex": "((", "examples": [{"input": "a", "target": "b"}]})
    with pytest.raises(DistillbenchError, match="task_prefix must be a string"):
        bigbench_task(tmp_path, {"task_prefix": 3, "examples": [{"input": "a", "target": "b"}]})


# -- JSONL --------------------------------------------------------------------------------------

def jsonl_task(tmp_path: Path, rows: list[dict], data: str) -> TaskSpec:
    write_jsonl(tmp_path / "d.jsonl", rows)
    (tmp_path / "s.yaml").write_text(f"suite: u\ntasks:\n  - name: t\n    metric: exact_match\n"
                                     f"    data: {{jsonl: d.jsonl, {data}}}\n")
    return load_suite(tmp_path / "s.yaml").tasks[0]


def test_jsonl_answer_pattern_extracts_the_last_match(tmp_path: Path) -> None:
    task = jsonl_task(tmp_path, [{"q": "37+58=", "a": "95"}], "input: q, target: a, answer_pattern: '-?\\d+'")
    assert task.filter == "answer"
    # a worked solution ends with its answer: the last match is taken
    assert scores(task, ["7+8=15, 3+5+1=9 -> 95", "95 or 96", "no idea"]) == [1, 0, 0]


def test_jsonl_filter_steps_and_default_loose_matching(tmp_path: Path) -> None:
    steps = "filter: [{function: regex, regex_pattern: 'answer: (\\w+)'}]"
    task = jsonl_task(tmp_path, [{"q": "?", "a": "Yes"}], f"input: q, target: a, {steps}")
    # the JSONL default ignores case and punctuation (documented), unlike BIG-bench
    assert scores(task, ["so the answer: yes", "answer: no", "yes"]) == [1, 0, 0]
    strict = jsonl_task(tmp_path, [{"q": "?", "a": "Yes"}], "input: q, target: a, ignore_case: false")
    assert scores(strict, ["Yes", "yes", "Yes!"]) == [1, 0, 1]


def test_jsonl_every_target_counts(tmp_path: Path) -> None:
    task = jsonl_task(tmp_path, [{"q": "?", "a": ["color", "colour"]}], "input: q, target: a")
    assert scores(task, ["colour", "color", "hue"]) == [1, 1, 0]


def test_jsonl_label_out_of_range_is_named(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"q": "?", "o": ["a", "b"], "g": 2}])
    (tmp_path / "s.yaml").write_text("suite: u\ntasks:\n  - name: t\n    metric: acc\n"
                                     "    data: {jsonl: d.jsonl, input: q, choices: o, label: g}\n")
    with pytest.raises(DistillbenchError, match="row 1: label 2 is not the index of one of its 2 choices"):
        load_suite(tmp_path / "s.yaml")


def test_filter_on_a_multiple_choice_task_is_refused(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"q": "?", "o": ["a", "b"], "g": 1}])
    (tmp_path / "s.yaml").write_text("suite: u\ntasks:\n  - name: t\n    metric: acc\n"
                                     "    data: {jsonl: d.jsonl, input: q, choices: o, label: g, answer_pattern: a}\n")
    with pytest.raises(DistillbenchError, match="no generated answer to filter"):
        load_suite(tmp_path / "s.yaml")


def test_multiple_choice_record_stores_the_gold_text(tmp_path: Path) -> None:
    task = bigbench_task(tmp_path, {"examples": [{"input": "q", "target_scores": {"no": 0, "yes": 1}}]},
                         metric="acc")
    sample = {"doc_id": 0, "doc_hash": "h", "filter": "none", "acc": 0.0, "target": 1,
              "arguments": [["ctx", "no"], ["ctx", "yes"]], "filtered_resps": [[-1.0, False], [-2.0, False]]}
    (record,) = records_from_samples([sample], task, None, 8)
    assert record.target == "yes" and record.response == "no" and record.gold == 1


def test_end_to_end_records_and_over_long_prompts(pytester: pytest.Pytester, tiny_model: Path) -> None:
    """A tiny model on a BIG-bench task scored both ways and a JSONL task with an answer
    pattern: the prompts lm-eval ran are BIG-bench's, multiple-choice records hold the gold text,
    and prompts longer than the model's context (128 positions) are counted and reported."""
    from conftest import write_project

    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [])
    (pytester.path / "suites" / "task.json").write_text(json.dumps({
        "task_prefix": "Add.", "examples": [
            {"input": f"{a} + {b} =", "target": str(a + b),
             "target_scores": {str(a + b): 1, str(a + b + 1): 0}} for a, b in [(1, 2), (3, 4), (2, 2)]]
        + [{"input": "9 " * 200 + "=", "target": "0", "target_scores": {"0": 1, "1": 0}}]}))
    write_jsonl(pytester.path / "suites" / "qa.jsonl", [{"q": f"Q: {i}+1=", "a": str(i + 1)} for i in range(3)])
    (pytester.path / "suites" / "demo.yaml").write_text(
        "suite: mine\ntasks:\n"
        "  - name: bb_gen\n    metric: exact_match\n    data: {bigbench: task.json}\n"
        "    generation: {max_gen_toks: 4}\n"
        "  - name: bb_mc\n    metric: acc\n    data: {bigbench: task.json}\n"
        "  - name: qa\n    metric: exact_match\n"
        "    data: {jsonl: qa.jsonl, input: q, target: a, answer_pattern: '\\d+'}\n"
        "    generation: {max_gen_toks: 4}\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites", "-k", "not baseline",
                                "--distillbench-json", "run.json")
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    assert "Traceback" not in out
    runs = {r["task"]: r for r in json.loads((pytester.path / "run.json").read_text())["runs"]}
    gen, mc, qa = runs["mine/bb_gen"], runs["mine/bb_mc"], runs["mine/qa"]
    assert gen["records"][0]["prompt"] == "Add.\nQ: 1 + 2 =\n  choice: 4\n  choice: 3\nA: "
    assert [r["target"] for r in gen["records"]] == ["3", "7", "4", "0"]
    assert [r["target"] for r in mc["records"]] == ["3", "7", "4", "0"]  # the gold text, not its index
    assert all(r["response"] in (r["target"], str(int(r["target"]) + 1)) for r in mc["records"])
    assert qa["metric"] == "exact_match,answer"
    # the 200-number prompt does not fit 128 positions, in both scorings
    assert gen["meta"]["prompts_over_context"] == 1 and mc["meta"]["prompts_over_context"] == 1
    assert "mine/bb_gen [teacher]: 1 of 4 prompts are longer than the model's context (128 tokens)" in out
