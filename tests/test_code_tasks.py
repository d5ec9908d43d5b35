"""Code-task glue: HumanEval loading, trimming, pass@k, the opt-in, and lm-eval's real call."""

from __future__ import annotations

import copy
import pickle
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import datasets
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_distillbench.engine.tasks.code import (
    ALLOW_ENV,
    FILTER,
    Executed,
    completions_of,
    load_humaneval,
    process_results,
    trim_completion,
)
from pytest_distillbench.engine.tasks.code_filter import ExecuteCompletions
from pytest_distillbench.errors import DistillbenchError
from pytest_distillbench.measures.stats import pass_at_k

ADD = {
    "task_id": "tiny/0",
    "prompt": 'def add(a, b):\n    """Return a + b."""\n',
    "canonical_solution": "    return a + b\n",
    "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-4, 4) == 0\n",
    "entry_point": "add",
}
RIGHT, WRONG = "    return a + b\n", "    return a * b\n"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def allowed(monkeypatch):
    monkeypatch.setenv(ALLOW_ENV, "1")


@pytest.fixture(scope="module")
def humaneval() -> list[dict]:
    return list(load_humaneval(version=1.0, anything="lm-eval passes metadata")["test"])


def score_all(docs: list[dict], completion_of) -> list[dict[str, float]]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda doc: process_results(doc, [completion_of(doc)]), docs))


def test_load_humaneval_reads_the_164_bundled_problems(humaneval):
    assert len(humaneval) == 164
    assert humaneval[0]["task_id"] == "HumanEval/0"
    assert set(humaneval[0]) == {"task_id", "prompt", "canonical_solution", "test", "entry_point"}
    assert len({doc["task_id"] for doc in humaneval}) == 164
    assert isinstance(load_humaneval(), datasets.DatasetDict)


def test_humaneval_canonical_solutions_all_pass(humaneval, allowed):
    start = time.monotonic()
    scores = score_all(humaneval, lambda doc: doc["canonical_solution"])
    failed = [doc["task_id"] for doc, score in zip(humaneval, scores, strict=True) if score["pass@1"] != 1.0]
    assert failed == []
    assert time.monotonic() - start < 300


def test_humaneval_empty_bodies_pass_none(humaneval, allowed):
    scores = score_all(humaneval, lambda doc: "    pass\n")
    assert sum(score["pass@1"] for score in scores) == 0


def test_without_the_opt_in_nothing_runs(monkeypatch):
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    with pytest.raises(DistillbenchError, match="allow_code_execution"):
        process_results(ADD, [RIGHT])
    monkeypatch.setenv(ALLOW_ENV, "true")  # only the exact value the plugin sets counts
    with pytest.raises(DistillbenchError):
        process_results(ADD, [RIGHT])


def test_one_completion_scores_pass_at_1_only(allowed):
    assert process_results(ADD, [RIGHT]) == {"pass@1": 1.0}
    assert process_results(ADD, [WRONG]) == {"pass@1": 0.0}


def test_repeats_give_unbiased_pass_at_k(allowed):
    samples = [RIGHT] * 3 + [WRONG] * 9  # n = 12, c = 3
    scores = process_results(ADD, [samples])
    assert set(scores) == {"pass@1", "pass@10"}
    assert scores["pass@1"] == pytest.approx(3 / 12)
    assert scores["pass@10"] == pytest.approx(pass_at_k(12, 3, 10))


def test_trailing_junk_after_the_body_is_ignored(allowed):
    junk = RIGHT + "\n\nprint(add(1, 2))\nimport sys\nsys.exit(1)\n"
    assert process_results(ADD, [junk]) == {"pass@1": 1.0}
    assert process_results(ADD, [RIGHT + "def other():\n    return 'not a body'\n"]) == {"pass@1": 1.0}


def test_documents_without_the_fields_are_reported(allowed):
    with pytest.raises(DistillbenchError, match="entry_point"):
        process_results({k: v for k, v in ADD.items() if k != "entry_point"}, [RIGHT])


def test_completions_of_accepts_what_lm_eval_passes():
    assert completions_of(["a"]) == ["a"]  # take-first filter: one string per request
    assert completions_of([["a", "b", "c"]]) == ["a", "b", "c"]  # all repeats kept
    assert completions_of("a") == ["a"]
    with pytest.raises(DistillbenchError, match="generate_until"):
        completions_of([(-1.5, True)])  # a log-likelihood result


indented_line = st.builds(lambda pad, text: pad + text, st.sampled_from([" ", "    ", "\t"]),
                          st.text(alphabet=st.characters(blacklist_categories=["Cs", "Zl", "Zp", "Cc"]),
                                  max_size=20))
blank_line = st.sampled_from(["", "   ", "\t"])
body_lines = st.lists(st.one_of(indented_line, blank_line), max_size=8)
junk_start = st.from_regex(r"[A-Za-z#_(\[][^\n\r]{0,20}", fullmatch=True)


def lines(items: list[str]) -> str:
    return "".join(item + "\n" for item in items)


@given(body_lines, junk_start, st.lists(st.text(max_size=20).map(lambda s: s.replace("\r", "")), max_size=4))
def test_trim_keeps_exactly_the_indented_body(body, first_junk, more_junk):
    body_text = lines(body)
    assert trim_completion(body_text + lines([first_junk, *more_junk])) == body_text
    assert trim_completion(body_text) == body_text


@given(st.text(max_size=200))
def test_trim_is_a_prefix_and_idempotent(text):
    trimmed = trim_completion(text)
    assert text.startswith(trimmed)
    assert trim_completion(trimmed) == trimmed
    assert all(not line.strip() or line[0].isspace() for line in trimmed.splitlines())


# ---------------------------------------------------------------------------------------------
# What lm-eval 0.4 really passes: repeats are cloned requests, filters decide the shape.

CANNED = [RIGHT, WRONG, "    return b + a\n\nprint('trailing junk')", "    return 0\n"]


@pytest.fixture
def canned_lm():
    from lm_eval.api.model import LM

    class CannedLM(LM):
        """Answers the i-th copy of a repeated request with the i-th canned completion."""

        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def generate_until(self, requests, disable_tqdm: bool = False):
            answers = [CANNED[(self.calls + i) % len(CANNED)] for i in range(len(requests))]
            self.calls += len(requests)
            return answers

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError

    return CannedLM()


@pytest.fixture(scope="module")
def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=False)  # indexing lm-eval's own tasks takes a minute


def evaluate(lm, task_manager, **overrides):
    from lm_eval import simple_evaluate
    from lm_eval.api.task import ConfigurableTask

    config = {
        "task": "tiny_code",
        "custom_dataset": lambda **_: datasets.DatasetDict({"test": datasets.Dataset.from_list([ADD])}),
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{prompt}}",
        "doc_to_target": "{{canonical_solution}}",
        "target_delimiter": "",
        "unsafe_code": True,
        "process_results": process_results,
        "repeats": len(CANNED),
        "generation_kwargs": {"until": ["\n\n"], "do_sample": False},
        "metric_list": [{"metric": "pass@1", "aggregation": "mean", "higher_is_better": True}],
        **overrides,
    }
    out = simple_evaluate(model=lm, tasks=[ConfigurableTask(config=config)], log_samples=True,
                          confirm_run_unsafe_code=True, bootstrap_iters=0, task_manager=task_manager,
                          torch_random_seed=None)
    return out["results"]["tiny_code"], out["samples"]["tiny_code"][0]


def test_lm_eval_with_repeats_and_all_samples_kept(canned_lm, task_manager, allowed):
    keep_all = [{"name": "all", "filter": [{"function": "take_first_k", "k": len(CANNED)}]}]
    results, sample = evaluate(canned_lm, task_manager, filter_list=keep_all)
    assert sample["filtered_resps"] == [CANNED]
    assert results["pass@1,all"] == pytest.approx(2 / 4)  # a + b, and b + a with junk trimmed


def test_lm_eval_with_repeats_and_the_default_take_first(canned_lm, task_manager, allowed):
    results, sample = evaluate(canned_lm, task_manager)
    assert sample["filtered_resps"] == [RIGHT]
    assert results["pass@1,none"] == 1.0


# ---------------------------------------------------------------------------------------------
# The distillbench_execute filter: a task's programs in one parallel batch, each distinct once.

MUL = {**ADD, "task_id": "tiny/1", "prompt": 'def mul(a, b):\n    """Return a * b."""\n',
       "canonical_solution": "    return a * b\n", "entry_point": "mul",
       "test": "def check(candidate):\n    assert candidate(2, 3) == 6\n"}


@pytest.fixture
def sandbox_calls(monkeypatch):
    """Every program the sandbox is asked to run, as (prompt, body)."""
    import pytest_distillbench.engine.tasks.code as code

    calls: list[tuple[str, str]] = []
    real = code.check_completion

    def recording(prompt, completion, test, entry_point, **kwargs):
        calls.append((prompt, completion))
        return real(prompt, completion, test, entry_point, **kwargs)

    monkeypatch.setattr(code, "check_completion", recording)
    return calls


def test_the_filter_runs_each_distinct_program_once_and_process_results_only_reads(allowed, sandbox_calls):
    resps = [[RIGHT, WRONG, RIGHT + "print('junk')\n", RIGHT], [RIGHT, RIGHT]]  # ADD, then MUL
    filtered = ExecuteCompletions(workers=2).apply(resps, [ADD, MUL])
    assert [[str(e) for e in group] for group in filtered] == [[RIGHT, WRONG, RIGHT, RIGHT], [RIGHT, RIGHT]]
    assert all(isinstance(e, Executed) for group in filtered for e in group)
    assert [[e.result.passed for e in group] for group in filtered] == [[True, False, True, True], [False, False]]
    assert sorted(sandbox_calls) == sorted([(ADD["prompt"], RIGHT), (ADD["prompt"], WRONG), (MUL["prompt"], RIGHT)])
    sandbox_calls.clear()
    assert process_results(ADD, [filtered[0]]) == {"pass@1": 0.75}
    assert process_results(MUL, [filtered[1]]) == {"pass@1": 0.0}
    assert sandbox_calls == []  # nothing run again


def test_the_filter_keeps_the_shape_lm_eval_gave_it(allowed):
    (single,), (listed,) = (ExecuteCompletions().apply([RIGHT], [ADD]),
                            ExecuteCompletions().apply([[RIGHT]], [ADD]))
    assert isinstance(single, Executed) and single.result.passed
    assert isinstance(listed, list) and listed[0].result.passed
    assert ExecuteCompletions().apply([], []) == []


def test_the_filter_refuses_without_the_opt_in(monkeypatch, sandbox_calls):
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    with pytest.raises(DistillbenchError, match="allow_code_execution"):
        ExecuteCompletions().apply([[RIGHT]], [ADD])
    assert sandbox_calls == []


def test_the_filter_runs_programs_in_parallel(allowed):
    sleepy = {**ADD, "test": "import time\ndef check(candidate):\n    time.sleep(1.0)\n"}
    bodies = [f"    return a + b + {i} * 0\n" for i in range(6)]  # six distinct programs
    start = time.monotonic()
    (group,) = ExecuteCompletions(workers=6).apply([bodies], [sleepy])
    assert all(e.result.passed for e in group)
    assert time.monotonic() - start < 4.5  # one after another would take over 6 s


def test_results_meant_for_another_problem_are_refused(allowed):
    (group,) = ExecuteCompletions().apply([[RIGHT]], [ADD])
    with pytest.raises(DistillbenchError, match="another problem"):
        process_results(MUL, [group])


def test_an_executed_completion_survives_copy_and_pickle(allowed):
    (executed,) = ExecuteCompletions().apply([RIGHT], [ADD])
    for clone in (copy.deepcopy(executed), pickle.loads(pickle.dumps(executed))):
        assert clone == RIGHT and clone.result == executed.result and clone.problem == executed.problem


def test_the_filter_is_registered_with_lm_eval():
    from lm_eval.api.registry import get_filter

    assert get_filter(FILTER) is ExecuteCompletions


def test_humaneval_canonical_solutions_all_pass_through_the_filter(humaneval, allowed):
    filtered = ExecuteCompletions().apply([[doc["canonical_solution"]] for doc in humaneval], humaneval)
    failed = [doc["task_id"] for doc, (e,) in zip(humaneval, filtered, strict=True) if not e.result.passed]
    assert failed == []


def test_lm_eval_with_the_execute_filter(canned_lm, task_manager, allowed, sandbox_calls):
    executed = [{"name": "executed", "filter": [{"function": FILTER}]}]
    results, sample = evaluate(canned_lm, task_manager, filter_list=executed)
    assert sample["filtered_resps"] == [[trim_completion(c) for c in CANNED]]
    assert results["pass@1,executed"] == pytest.approx(2 / 4)
    assert len(sandbox_calls) == 4  # in the filter; process_results ran nothing


def test_lm_eval_with_take_first_then_the_execute_filter(canned_lm, task_manager, allowed):
    first = [{"name": "executed", "filter": [{"function": "take_first"}, {"function": FILTER}]}]
    results, sample = evaluate(canned_lm, task_manager, filter_list=first)
    assert sample["filtered_resps"] == [RIGHT]
    assert results["pass@1,executed"] == 1.0


# ---------------------------------------------------------------------------------------------
# Isolation: said once, and a suite may require a minimum level


def test_the_isolation_level_is_said_once(allowed, monkeypatch, capsys):
    import threading

    import pytest_distillbench.engine.tasks.code as code
    from pytest_distillbench.engine import sandbox

    monkeypatch.setattr(code, "_announced", threading.Event())
    process_results(ADD, [RIGHT])
    process_results(ADD, [WRONG])
    said = [line for line in capsys.readouterr().err.splitlines() if "sandbox isolation" in line]
    assert len(said) == 1
    assert sandbox.isolation().level in said[0]
    heard: list[str] = []
    monkeypatch.setattr(code, "_announced", threading.Event())
    monkeypatch.setattr(code, "_announcer", None)
    code.set_announcer(heard.append)
    process_results(ADD, [RIGHT])
    assert len(heard) == 1 and sandbox.isolation().describe() in heard[0]
    assert "sandbox isolation" not in capsys.readouterr().err


def test_a_required_level_above_the_available_one_refuses_to_run(allowed, monkeypatch):
    import pytest_distillbench.engine.tasks.code as code
    from pytest_distillbench.engine.sandbox import Isolation

    monkeypatch.setattr(code, "isolation", lambda: Isolation(seccomp=True))  # no namespaces here
    with pytest.raises(DistillbenchError, match="requires sandbox isolation 'namespaces'.*only seccomp"):
        code.execute_all([(code.Problem.of(ADD), RIGHT)], required_isolation="namespaces")
    assert code.execute_all([(code.Problem.of(ADD), RIGHT)], required_isolation="seccomp")[0].result.passed
    with pytest.raises(DistillbenchError, match="unknown isolation level"):
        code.execute_all([(code.Problem.of(ADD), RIGHT)], required_isolation="chroot")


def test_the_filter_enforces_the_suites_required_level(allowed, monkeypatch, tmp_path):
    import pytest_distillbench.engine.tasks.code as code
    from pytest_distillbench.engine import sandbox
    from pytest_distillbench.engine.sandbox import Isolation
    from pytest_distillbench.spec.suites import ISOLATION_LEVELS, load_suite

    assert ISOLATION_LEVELS == sandbox.LEVELS
    source = (REPO / "suites" / "code.yaml").read_text()
    suite_file = tmp_path / "code.yaml"
    suite_file.write_text(source.replace("allow_code_execution: true",
                                         "allow_code_execution: true\nrequire_isolation: namespaces")
                          .replace("data/code/", str(REPO / "suites" / "data" / "code") + "/"))
    suite = load_suite(suite_file)
    steps = [step for task in suite.tasks for pipeline in task.config["filter_list"]
             for step in pipeline["filter"]]
    assert steps and all(step["require_isolation"] == "namespaces" for step in steps)
    kwargs = {k: v for k, v in steps[0].items() if k != "function"}
    monkeypatch.setattr(code, "isolation", lambda: Isolation(seccomp=True))
    with pytest.raises(DistillbenchError, match="require_isolation|requires sandbox isolation"):
        ExecuteCompletions(**kwargs).apply([[RIGHT]], [ADD])
    suite_file.write_text(suite_file.read_text().replace("require_isolation: namespaces",
                                                         "require_isolation: chroot"))
    with pytest.raises(DistillbenchError, match="require_isolation"):
        load_suite(suite_file)


# One generic body per attack, over all of HumanEval (issue #22 measured 153, 155 and 164 of
# 164 passing the single-process harness; tests/test_sandbox_attacks.py has the variations).
GENERIC_ATTACKS = {
    "frame oracle": (
        "    import sys, dis\n    frame = sys._getframe(1)\n"
        "    while frame is not None and frame.f_code.co_name != 'check':\n        frame = frame.f_back\n"
        "    if frame is not None:\n        for ins in dis.get_instructions(frame.f_code):\n"
        "            if ins.offset > frame.f_lasti and ins.opname == 'LOAD_CONST':\n"
        "                return ins.argval\n"),
    "guard patch": (
        "    import sys\n    sys.modules['__main__']._require_plain = lambda *a, **k: None\n"
        "    class Equal:\n        def __eq__(self, other):\n            return True\n"
        "        def __ne__(self, other):\n            return False\n        __hash__ = object.__hash__\n"
        "    return Equal()\n"),
    "frame walk": (
        "    import os, sys\n    frame = sys._getframe()\n    while frame is not None:\n"
        "        names = frame.f_locals\n        if 'token' in names and 'report_fd' in names:\n"
        "            os.write(names['report_fd'], names['token'])\n            os._exit(0)\n"
        "        frame = frame.f_back\n"),
}


@pytest.mark.slow
def test_generic_attack_bodies_pass_no_humaneval_problem(humaneval, allowed):
    from pytest_distillbench.engine.tasks.code import Problem, execute_all

    pairs = [(Problem.of(doc), body) for doc in humaneval for body in GENERIC_ATTACKS.values()]
    executed = execute_all(pairs)
    passed = {name: sum(e.result.passed for e in executed[i::len(GENERIC_ATTACKS)])
              for i, name in enumerate(GENERIC_ATTACKS)}
    assert passed == {name: 0 for name in GENERIC_ATTACKS}
