"""Suite files beyond the bundled ones: users' own data, built-in lm-eval tasks, reasoning models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_distillbench.errors import DistillbenchError
from pytest_distillbench.spec.suites import load_suite

from conftest import write_jsonl, write_project

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_user_jsonl_with_field_mapping(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [])
    write_jsonl(pytester.path / "mine" / "qa.jsonl",
                [{"question": f"Q: {i}+1=", "answer": str(i + 1)} for i in range(6)])
    write_jsonl(pytester.path / "mine" / "mc.jsonl",
                [{"q": f"{i} or {i + 5}?", "opts": [str(i), str(i + 5)], "gold": 1} for i in range(5)])
    (pytester.path / "suites" / "demo.yaml").write_text(
        "suite: mine\ntasks:\n"
        "  - name: qa\n    metric: exact_match\n"
        "    data: {jsonl: ../mine/qa.jsonl, input: question, target: answer}\n"
        "    generation: {max_gen_toks: 3}\n"
        "  - name: mc\n    metric: acc\n"
        "    data: {jsonl: ../mine/mc.jsonl, input: q, choices: opts, label: gold}\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites", "-k", "not baseline",
                                "--distillbench-json", "run.json")
    result.assert_outcomes(passed=2)
    runs = {r["task"]: r for r in json.loads((pytester.path / "run.json").read_text())["runs"]}
    assert len(runs["mine/qa"]["records"]) == 6 and len(runs["mine/mc"]["records"]) == 5
    assert runs["mine/mc"]["records"][0]["choice_logprobs"] is not None
    assert runs["mine/qa"]["records"][0]["prompt"] == "Q: 0+1="


def test_bigbench_task_json(tmp_path: Path) -> None:
    (tmp_path / "task.json").write_text(json.dumps({
        "name": "toy", "examples": [
            {"input": "2 > 1?", "target_scores": {"yes": 1, "no": 0}},
            {"input": "1 > 2?", "target_scores": {"yes": 0, "no": 1}},
        ]}))
    (tmp_path / "s.yaml").write_text("suite: bb\ntasks:\n  - name: toy\n    metric: acc\n"
                                     "    data: {bigbench: task.json}\n")
    task = load_suite(tmp_path / "s.yaml").tasks[0]
    assert task.output_type == "multiple_choice"
    dataset = task.config["custom_dataset"](**task.config["dataset_kwargs"])
    assert dataset["test"][1] == {"input": "1 > 2?", "choices": ["yes", "no"], "label": 1}


def test_bigbench_generation_and_errors(tmp_path: Path) -> None:
    (tmp_path / "gen.json").write_text(json.dumps({"examples": [{"input": "a", "target": ["b", "c"]}]}))
    (tmp_path / "s.yaml").write_text("suite: bb\ntasks:\n  - name: g\n    metric: exact_match\n"
                                     "    data: {bigbench: gen.json}\n")
    task = load_suite(tmp_path / "s.yaml").tasks[0]
    assert task.output_type == "generate_until"
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "s2.yaml").write_text("suite: bb\ntasks:\n  - name: g\n    metric: exact_match\n"
                                      "    data: {bigbench: bad.json}\n")
    with pytest.raises(DistillbenchError, match="bad.json: not valid JSON"):
        load_suite(tmp_path / "s2.yaml")


def test_unsafe_code_needs_opt_in(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("suite: c\ntasks:\n  - name: t\n    metric: exact_match\n"
                                     "    lm_eval: {output_type: generate_until, unsafe_code: true}\n")
    with pytest.raises(DistillbenchError, match="allow_code_execution: true"):
        load_suite(tmp_path / "s.yaml")


def test_builtin_task_offline_is_skipped_with_reason(pytester: pytest.Pytester, tiny_model: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(pytester.path / "empty-cache"))
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [])
    (pytester.path / "suites" / "demo.yaml").write_text(
        "suite: public\ntasks:\n  - name: arc\n    lm_eval_task: arc_easy\n    metric: acc\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites", "-rs",
                                "-k", "teacher and not baseline")
    result.assert_outcomes(skipped=1)
    assert "not available offline" in result.stdout.str()


def test_unknown_builtin_task_is_an_error(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [])
    (pytester.path / "suites" / "demo.yaml").write_text(
        "suite: public\ntasks:\n  - name: nope\n    lm_eval_task: no_such_task_xyz\n    metric: acc\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites",
                                "-k", "teacher and not baseline")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "'no_such_task_xyz' is not an lm-eval task" in out and "Traceback" not in out


def test_think_delimiter_scores_the_answer_after_the_block() -> None:
    from lm_eval import simple_evaluate
    from lm_eval.api.model import LM

    from pytest_distillbench.engine.evaluation import _register_filters, with_think_filter

    class Thinker(LM):
        def generate_until(self, requests):
            out = []
            for r in requests:
                a, b = r.args[0].removeprefix("Q: ").rstrip("=").split("+")
                if a == "7":  # this one never stops thinking
                    out.append("<think>hmm, 7 plus 1 is 8, let me check again")
                else:
                    out.append(f"<think>{a} plus {b} is 99? no, {int(a) + int(b)}</think> {int(a) + int(b)}")
            return out

        def loglikelihood(self, requests):  # pragma: no cover - not used
            raise NotImplementedError

        def loglikelihood_rolling(self, requests):  # pragma: no cover - not used
            raise NotImplementedError

    import datasets

    rows = [{"prompt": f"Q: {a}+{b}=", "answer": str(a + b)} for a, b in [(1, 2), (3, 4), (7, 1)]]
    config = {
        "task": "think_demo", "custom_dataset": lambda **_: datasets.DatasetDict(
            {"test": datasets.Dataset.from_list(rows)}),
        "test_split": "test", "output_type": "generate_until", "doc_to_text": "{{prompt}}",
        "doc_to_target": "{{answer}}", "target_delimiter": "",
        "generation_kwargs": {"until": ["\n"], "max_gen_toks": 64},
        "filter_list": [{"name": "num", "filter": [
            {"function": "regex", "regex_pattern": r"(-?\d+)(?!.*\d)", "group_select": 0},
            {"function": "take_first"}]}],
        "metric_list": [{"metric": "exact_match"}],
    }
    _register_filters()
    from lm_eval.tasks import TaskManager

    plain = simple_evaluate(model=Thinker(), tasks=[dict(config)], bootstrap_iters=0,
                            task_manager=TaskManager(include_defaults=False))
    thought = simple_evaluate(model=Thinker(), tasks=[with_think_filter(dict(config), "</think>")],
                              bootstrap_iters=0, task_manager=TaskManager(include_defaults=False))
    score = lambda out: [s["exact_match"] for s in out["samples"]["think_demo"]]  # noqa: E731
    # Without the delimiter a number inside unfinished thinking is taken as the answer; with it,
    # the block that never ends scores as wrong (not a crash), and finished ones are still right.
    assert score(plain) == [1.0, 1.0, 1.0]
    assert score(thought) == [1.0, 1.0, 0.0]
    responses = [s["filtered_resps"][0] for s in thought["samples"]["think_demo"]]
    assert responses[2] == "[invalid]"  # nothing after a block that never ended
    assert responses[0] == "3"
