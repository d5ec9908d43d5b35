"""Chat templates, chat-only API models, repeated sampling and value-compared math answers:
the models people distil, evaluated as they are used."""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# lm-eval registers its API model classes at import; pytester's in-process runs drop modules first
# imported inside them, and a second import would register the names twice: import them once here.
import lm_eval.models.openai_completions  # noqa: F401
import pytest

from pytest_distillbench.engine.backends import api_chat
from pytest_distillbench.engine.serve import CompletionServer, serve
from pytest_distillbench.errors import DistillbenchError
from pytest_distillbench.spec.models import ModelSpec

from conftest import ZOO, gen_task, mc_task, needs_zoo, write_project

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

MARKED = ("{%- for m in messages -%}<|{{ m['role'] }}|>{{ m['content'] }}{%- endfor -%}"
          "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}")
ZOO_TEMPLATE = ZOO / "chat_template.jinja"
KEY_ENV = "DISTILLBENCH_TEST_CHAT_KEY"
FAKE_KEY = "sk-distillbench-CHAT-FAKE-77d2"
SERVED = "served-teacher"


def run_json(pytester: pytest.Pytester, name: str, *args: str) -> dict[str, Any]:
    result = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites", "-q",
                                "--distillbench-json", name, *args)
    assert result.ret in (0, 1), result.stdout.str()
    doc = json.loads((pytester.path / name).read_text(encoding="utf-8"))
    doc["_stdout"] = result.stdout.str()
    doc["_ret"] = result.ret
    return doc


def runs(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["model"], r["task"]): r for r in doc["runs"]}


def set_models(root: Path, toml: str) -> None:
    (root / "pyproject.toml").write_text(textwrap.dedent(toml), encoding="utf-8")


# -- chat templates on local models ------------------------------------------------------------

def test_chat_template_changes_the_prompt_lm_eval_sends_and_the_cache_key(
        pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {}, [gen_task()])
    (pytester.path / "chat.jinja").write_text(MARKED, encoding="utf-8")
    set_models(pytester.path, f"""
        [tool.distillbench.models.m]
        role = "teacher"
        path = "{tiny_model}"
        """)
    plain = run_json(pytester, "plain.json", "--distillbench-limit", "4")
    cache = pytester.path / ".distillbench" / "cache"
    keys_plain = {p.name for p in cache.glob("*.json")}
    set_models(pytester.path, f"""
        [tool.distillbench.models.m]
        role = "teacher"
        path = "{tiny_model}"
        chat_template = "chat.jinja"
        system_prompt = "Add the numbers."
        """)
    chat = run_json(pytester, "chat.json", "--distillbench-limit", "4")
    keys_chat = {p.name for p in cache.glob("*.json")}
    before = runs(plain)[("m", "demo/add")]
    after = runs(chat)[("m", "demo/add")]
    assert [r["prompt"] for r in before["records"]][0] == "Q: 1+2="
    # lm-eval rendered the messages through the template: system turn, user turn, generation prompt
    assert after["records"][0]["prompt"] == "<|system|>Add the numbers.<|user|>Q: 1+2=<|assistant|>"
    assert after["meta"]["chat_template_sha256"] == hashlib.sha256(MARKED.encode()).hexdigest()
    assert after["meta"]["system_prompt"] == "Add the numbers."
    assert "chat_template_sha256" not in before["meta"]
    assert len(keys_chat - keys_plain) == 1  # a new cache entry: the template is in the key
    # the template in force is part of the baseline's comparability fields
    pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites", "-q",
                       "--distillbench-limit", "4", "--distillbench-update-baselines")
    baseline = json.loads((pytester.path / "baselines" / "demo" / "add" / "m.hf.json").read_text())
    assert baseline["fingerprint"]["chat_template"] == after["meta"]["chat_template_sha256"]
    set_models(pytester.path, f"""
        [tool.distillbench.models.m]
        role = "teacher"
        path = "{tiny_model}"
        """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites", "-q",
                                "--distillbench-limit", "4", "-k", "baseline")
    result.assert_outcomes(failed=1)
    assert "cannot be compared with its baseline" in result.stdout.str()
    assert "chat_template: " in result.stdout.str()


def test_a_task_can_turn_the_models_chat_template_off(pytester: pytest.Pytester, tiny_model: Path) -> None:
    task = gen_task().replace("- name: add\n", "- name: add\n  chat_template: false\n")
    assert "chat_template: false" in task
    write_project(pytester.path, {}, [task])
    (pytester.path / "chat.jinja").write_text(MARKED, encoding="utf-8")
    set_models(pytester.path, f"""
        [tool.distillbench.models.m]
        role = "teacher"
        path = "{tiny_model}"
        chat_template = "chat.jinja"
        """)
    doc = run_json(pytester, "off.json", "--distillbench-limit", "2")
    assert runs(doc)[("m", "demo/add")]["records"][0]["prompt"] == "Q: 1+2="


def test_a_model_without_a_template_asked_for_one_is_a_clear_error(
        pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {}, [gen_task()])
    set_models(pytester.path, f"""
        [tool.distillbench.models.m]
        role = "teacher"
        path = "{tiny_model}"
        chat_template = true
        """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites", "-q",
                                "--distillbench-limit", "2")
    out = result.stdout.str()
    assert result.ret != 0
    assert "has no chat template" in out and "chat_template = false" in out
    assert "Traceback" not in out


def test_models_without_chat_or_repeats_keep_todays_cache_key(tiny_model: Path, tmp_path: Path) -> None:
    """The key of a pair that uses none of the new settings is the sha256 of exactly the material
    it had before they existed, so existing caches stay valid."""
    from pytest_distillbench import __version__
    from pytest_distillbench.engine.evaluation import RECORD_SCHEMA, _cache_key
    from pytest_distillbench.spec.settings import Settings
    from pytest_distillbench.spec.suites import load_suite
    from pytest_distillbench.store.runfiles import package_versions

    suite = write_project(tmp_path, {}, [gen_task()])
    task = load_suite(suite).tasks[0]
    spec = ModelSpec(name="m", role="teacher", path=str(tiny_model))
    settings = Settings(rootdir=tmp_path, models=(spec,), cache_dir=tmp_path / "c", baselines_dir=tmp_path / "b")
    v = package_versions()
    material = {"schema": RECORD_SCHEMA, "plugin": __version__, "model": "fp", "task": task.fingerprint,
                "metric": task.metric_key, "backend": "hf", "dtype": "float32", "batch_size": 32,
                "device": "cpu", "think": None, "options": [], "limit": None, "seed": 1234,
                "versions": [v["lm-eval"], v["transformers"], v["torch"]]}
    expected = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    assert _cache_key("fp", spec, task, settings, "cpu") == expected
    chat = ModelSpec(name="m", role="teacher", path=str(tiny_model), chat_template=str(ZOO_TEMPLATE))
    assert _cache_key("fp", chat, task, settings, "cpu") != expected


# -- repeated sampling -----------------------------------------------------------------------

def repeated_task(k: int = 4, seed: int = 7, temperature: float = 1.0) -> str:
    data = (Path(__file__).resolve().parents[1] / "suites" / "data" / "math" / "mul_1d2d" / "test.jsonl")
    return textwrap.dedent(f"""\
      - name: sums
        metric: exact_match,last_number
        repeats: {k}
        temperature: {temperature}
        top_p: 0.95
        seed: {seed}
        lm_eval:
          dataset_path: json
          dataset_kwargs: {{data_files: {{test: {data}}}}}
          test_split: test
          output_type: generate_until
          doc_to_text: "{{{{prompt}}}}"
          doc_to_target: "{{{{answer}}}}"
          target_delimiter: ""
          generation_kwargs: {{until: ["\\n"], max_gen_toks: 48}}
          filter_list:
            - name: last_number
              filter: [{{function: regex, regex_pattern: "(-?\\\\d+)(?!.*\\\\d)"}}, {{function: take_first}}]
          metric_list: [{{metric: exact_match}}]
    """)


def _pass_at_k(n: int, c: int, k: int) -> float:
    from math import comb

    return 1.0 - comb(n - c, k) / comb(n, k)


@needs_zoo
def test_repeats_keep_every_sample_and_score_pass_at_1_pass_at_k_and_maj_at_k(
        pytester: pytest.Pytester) -> None:
    write_project(pytester.path, {}, [repeated_task(k=4)])
    set_models(pytester.path, f"""
        [tool.distillbench.models.student]
        role = "teacher"
        path = "{ZOO / 'student'}"
        """)
    first = run_json(pytester, "a.json", "--distillbench-limit", "12", "--distillbench-no-cache")
    run = runs(first)[("student", "demo/sums")]
    recs = run["records"]
    assert len(recs) == 12 and all(len(r["samples"]) == 4 for r in recs)
    # every sample scored by the task's own filter and metric: last number == answer
    for r in recs:
        assert r["sample_scores"] == [float(a == r["target"]) for a in r["sample_responses"]]
        assert r["score"] == pytest.approx(sum(r["sample_scores"]) / 4)
    assert len({s for r in recs for s in r["samples"]}) > 12  # the samples differ: sampled, not greedy
    # by hand: pass@1 = mean share of right samples, pass@4 = mean of 1 - C(4-c,4)/C(4,4)
    correct = [sum(r["sample_scores"]) for r in recs]
    pass1 = sum(c / 4 for c in correct) / 12
    pass4 = sum(_pass_at_k(4, int(c), 4) for c in correct) / 12
    assert 0 < pass1 < 1 and pass1 < pass4  # some items right only on some samples
    [item] = [i for i in first["items"].values() if i["kind"] == "score"]
    assert item["figures"]["pass@1"] == pytest.approx(pass1) and item["figures"]["score"] == pytest.approx(pass1)
    assert item["figures"]["pass@4"] == pytest.approx(pass4)
    assert item["figures"]["repeats"] == 4
    from collections import Counter

    maj = sum(float(Counter(r["sample_responses"]).most_common(1)[0][0] == r["target"]) for r in recs) / 12
    assert item["figures"]["maj@4"] == pytest.approx(maj)
    # the interval is over items (a t interval on the 12 item means), not over 48 samples
    from statistics import mean, stdev

    from scipy.stats import t

    half = t.ppf(0.975, 11) * stdev([r["score"] for r in recs]) / 12 ** 0.5
    assert item["figures"]["ci_low"] == pytest.approx(max(mean([r["score"] for r in recs]) - half, 0))
    assert run["meta"]["repeats"] == 4 and run["meta"]["sampling_seed"] == 7
    assert run["meta"]["generation_kwargs"]["temperature"] == 1.0

    # reproducible: the same seed gives identical per-item records ...
    second = run_json(pytester, "b.json", "--distillbench-limit", "12", "--distillbench-no-cache")
    again = runs(second)[("student", "demo/sums")]["records"]
    strip = ("flops",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in again] == \
        [{k: v for k, v in r.items() if k not in strip} for r in recs]
    # ... and another seed draws other samples
    (pytester.path / "suites" / "demo.yaml").write_text(
        (pytester.path / "suites" / "demo.yaml").read_text().replace("seed: 7", "seed: 8"))
    other = run_json(pytester, "c.json", "--distillbench-limit", "12", "--distillbench-no-cache")
    assert [r["samples"] for r in runs(other)[("student", "demo/sums")]["records"]] != [r["samples"] for r in recs]


def test_repeats_need_sampling_and_a_generation_task(tmp_path: Path) -> None:
    from pytest_distillbench.spec.suites import load_suite

    greedy = repeated_task().replace("  temperature: 1.0\n", "")
    suite = write_project(tmp_path, {}, [greedy])
    with pytest.raises(DistillbenchError, match="k identical samples"):
        load_suite(suite)
    mc = mc_task().replace("- name: compare\n", "- name: compare\n  repeats: 2\n  temperature: 0.5\n")
    suite = write_project(tmp_path, {}, [mc])
    with pytest.raises(DistillbenchError, match="generation tasks only"):
        load_suite(suite)


# -- math answers compared as values -----------------------------------------------------------

@pytest.mark.parametrize("answer", ["1/2", "0.5", "\\frac{1}{2}", "\\boxed{0.5}", "$\\frac{2}{4}$",
                                    "so the answer is 1/2"])
def test_math_verify_scores_equal_values_as_equal(answer: str) -> None:
    from lm_eval.api.registry import get_metric

    from pytest_distillbench.engine.evaluation import _register_filters

    _register_filters()
    metric = get_metric("math_verify")
    assert metric(references=["\\frac{1}{2}"], predictions=[answer]) == 1.0
    assert metric(references=["0.5"], predictions=[answer]) == 1.0
    assert metric(references=["0.6"], predictions=[answer]) == 0.0


def test_math_verify_is_an_lm_eval_metric_a_suite_opts_into(tmp_path: Path) -> None:
    from lm_eval.tasks import TaskManager

    from pytest_distillbench.engine.evaluation import _register_filters
    from pytest_distillbench.spec.suites import load_suite

    rows = [{"prompt": "Half of one?", "answer": "\\frac{1}{2}"}, {"prompt": "Two thirds?", "answer": "2/3"}]
    (tmp_path / "suites" / "data").mkdir(parents=True)
    (tmp_path / "suites" / "data" / "half.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = gen_task(name="half", data="data/half.jsonl").replace(
        "metric: exact_match\n", "metric: math_verify\n").replace(
        "metric_list: [{metric: exact_match}]", "metric_list: [{metric: math_verify}]")
    suite_path = tmp_path / "suites" / "demo.yaml"
    suite_path.write_text("suite: demo\ntasks:\n" + task)
    spec = load_suite(suite_path).tasks[0]
    _register_filters()
    lm_task = next(iter(TaskManager(include_defaults=False).load([spec.lm_eval_config()])["tasks"].values()))
    docs = list(lm_task.test_docs())
    assert lm_task.process_results(docs[0], ["0.5"]) == {"math_verify": 1.0}
    assert lm_task.process_results(docs[0], ["\\boxed{0.5}"]) == {"math_verify": 1.0}
    assert lm_task.process_results(docs[1], ["0.5"]) == {"math_verify": 0.0}
    assert lm_task.process_results(docs[1], ["\\frac{4}{6}"]) == {"math_verify": 1.0}


# -- chat-only API models ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def chat_server() -> Iterator[CompletionServer]:
    if not (ZOO / "teacher" / "model.safetensors").is_file():
        pytest.skip("embedded zoo checkpoints are not built")
    with serve(str(ZOO / "teacher"), model_name=SERVED, api_key=FAKE_KEY,
               chat_template=ZOO_TEMPLATE.read_text(encoding="utf-8")) as running:
        yield running


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {FAKE_KEY}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_server_chat_endpoint_applies_the_template_and_samples_reproducibly(
        chat_server: CompletionServer) -> None:
    url = chat_server.base_url + "/chat/completions"
    body = {"model": SERVED, "messages": [{"role": "user", "content": "Q: 12+7="}], "max_tokens": 24,
            "temperature": 0, "stop": ["\n"], "logprobs": True, "top_logprobs": 3}
    status, reply = post(url, body)
    assert status == 200, reply
    text = reply["choices"][0]["message"]["content"]
    # the same text as the completions endpoint gives for the rendered prompt (the zoo template
    # renders one user turn as its text)
    status, plain = post(chat_server.base_url + "/completions",
                         {"model": SERVED, "prompt": "Q: 12+7=", "max_tokens": 24, "temperature": 0, "stop": ["\n"]})
    assert status == 200 and plain["choices"][0]["text"] == text and text.strip().endswith("19")
    content = reply["choices"][0]["logprobs"]["content"]
    assert "".join(t["token"] for t in content) == text
    assert all(len(t["top_logprobs"]) == 3 and t["top_logprobs"][0]["logprob"] >= t["logprob"] - 1e-6
               for t in content)  # greedy: the chosen token is the most likely one
    assert reply["usage"]["prompt_tokens"] == 8
    # a prompt the teacher is unsure of (its greedy answer is wrong), so samples can differ
    unsure = [{"role": "user", "content": "Cal has 9 books. He gives away 4, gets 9 and gives away 8. "
                                          "How many books now? A:"}]
    sampled = {**body, "messages": unsure, "temperature": 1.0, "top_p": 0.95, "seed": 3}
    a, b = post(url, sampled)[1], post(url, sampled)[1]
    assert a["choices"][0]["message"] == b["choices"][0]["message"]  # seeded: reproducible
    draws = {post(url, {**sampled, "seed": s})[1]["choices"][0]["message"]["content"] for s in range(6)}
    assert len(draws) > 1  # ... and seeds differ
    status, refused = post(url, {**body, "n": 2})
    assert status == 400 and "n=2" in refused["error"]["message"]


def test_chat_endpoint_without_a_template_refuses(tiny_model: Path) -> None:
    with serve(str(tiny_model), model_name="t", api_key=FAKE_KEY) as running:
        status, reply = post(running.base_url + "/chat/completions",
                             {"model": "t", "messages": [{"role": "user", "content": "hi"}], "temperature": 0})
    assert status == 400 and "--chat-template" in reply["error"]["message"]


@needs_zoo
def test_chat_only_api_model_runs_generation_over_http_and_skips_loglikelihood(
        pytester: pytest.Pytester, chat_server: CompletionServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    write_project(pytester.path, {}, [mc_task(), gen_task().replace("max_gen_toks: 4", "max_gen_toks: 24")
                                      .replace('until: ["\\n"]', 'until: ["\\n"]')])
    set_models(pytester.path, f"""
        [tool.distillbench.models.teacher]
        role = "teacher"
        backend = "api-chat"
        path = "{SERVED}"
        params = 860000
        options = {{base_url = "{chat_server.base_url}", api_key_env = "{KEY_ENV}", top_logprobs = 2}}

        [tool.distillbench.models.local]
        role = "control"
        path = "{ZOO / 'teacher'}"
        chat_template = "{ZOO_TEMPLATE}"
        """)
    served_before = chat_server.requests_served
    doc = run_json(pytester, "chat.json", "-rs", "--distillbench-update-baselines")
    out = doc["_stdout"]
    assert doc["_ret"] == 0, out
    assert chat_server.requests_served - served_before == 8  # one chat request per item, over HTTP
    api_run, hf_run = runs(doc)[("teacher", "demo/add")], runs(doc)[("local", "demo/add")]
    assert api_run["backend"] == "api-chat"
    assert json.loads(api_run["records"][0]["prompt"]) == [{"role": "user", "content": "Q: 1+2="}]
    # the server applied the same template lm-eval applies locally: the same greedy answers
    assert [r["response"] for r in api_run["records"]] == [r["response"] for r in hf_run["records"]]
    assert [r["prompt_tokens"] for r in api_run["records"]] == [r["prompt_tokens"] for r in hf_run["records"]]
    # per generated token, the server's top log-probabilities are kept
    first = api_run["records"][0]["token_logprobs"][0]
    assert "".join(tok for tok, _, _ in first) == api_run["records"][0]["raw_response"]
    assert all(len(top) == 2 for _, _, top in first)
    assert api_run["cost"]["flops_source"] == "declared" and api_run["cost"]["flops"] > 0
    assert ("teacher", "demo/compare") not in runs(doc)
    assert "chat-only API model" in out and "log-likelihood" in out  # the skip reason
    for path in [pytester.path / "chat.json", *(pytester.path / ".distillbench").rglob("*.json")]:
        assert FAKE_KEY not in path.read_text(encoding="utf-8", errors="replace")


def test_api_chat_options() -> None:
    spec = ModelSpec(name="t", role="teacher", path="served", backend="api-chat",
                     options=(("base_url", "http://h/v1"), ("top_logprobs", "5")))
    args = api_chat.model_args(spec)
    assert args["base_url"] == "http://h/v1/chat/completions" and args["batch_size"] == 1
    assert api_chat.top_logprobs(spec) == 5
    with pytest.raises(DistillbenchError, match="unknown option 'tokenizer'"):
        api_chat.model_args(ModelSpec(name="t", role="teacher", path="s", backend="api-chat",
                                      options=(("base_url", "http://h/v1"), ("tokenizer", "x"))))
    with pytest.raises(DistillbenchError, match="at most 20"):
        api_chat.top_logprobs(ModelSpec(name="t", role="teacher", path="s", backend="api-chat",
                                        options=(("top_logprobs", "50"),)))


# -- the two scenarios of the distillation story, as the README writes them ---------------------

WORD_PROBLEMS = """\
  - name: word_problems
    metric: exact_match,final_number
    thresholds:
      student: {min_retention: 0.3, max_compute_ratio: 1.0}
    lm_eval:
      dataset_path: json
      dataset_kwargs: {data_files: {test: data/math/word_problems/test.jsonl}}
      test_split: test
      output_type: generate_until
      doc_to_text: "{{prompt}}"
      doc_to_target: "{{answer}}"
      target_delimiter: ""
      generation_kwargs: {until: ["\\n"], max_gen_toks: 48, do_sample: false}
      filter_list:
        - name: final_number
          filter:
            - {function: regex, regex_pattern: "(-?\\\\d+)(?!.*\\\\d)", group_select: 0}
            - {function: take_first}
      metric_list: [{metric: exact_match}]
"""

# scenario (a): the teacher behind a chat-completions server, a local student and control
CHAT_TEACHER_TOML = """\
[tool.distillbench.models.teacher]
role = "teacher"
backend = "api-chat"            # lm-eval's local-chat-completions, at /v1/chat/completions
path = "zoo-teacher"            # the name the server knows it by
params = 860000                 # declared: its weights cannot be read (or price_in_per_1k/price_out_per_1k)
options = {base_url = "BASE_URL", top_logprobs = 5}

[tool.distillbench.models.student]
role = "student"
path = "zoo:student"
teacher = "teacher"
chat_template = "zoo:chat_template.jinja"
expect_distilled = true

[tool.distillbench.models.control]
role = "control"
path = "zoo:control-01"
teacher = "teacher"
chat_template = "zoo:chat_template.jinja"
"""

# scenario (b): a reasoning student, sampled k times, scored on the answer after its thinking
REASONING_TOML = """\
[tool.distillbench.models.teacher]
role = "teacher"
path = "zoo:teacher"

[tool.distillbench.models.reasoner]
role = "student"
path = "zoo:student"
teacher = "teacher"
chat_template = "zoo:chat_template.jinja"
think_delimiter = "->"          # the zoo's worked steps end with "->"; R1-style models: "</think>"
"""
SAMPLED = """\
    repeats: 4                  # DeepSeek-R1's protocol: 64 samples, temperature 0.6, top-p 0.95
    temperature: 0.6
    top_p: 0.95
    seed: 0
"""


def scenario_project(root: Path, toml: str, task: str) -> None:
    data = Path(__file__).resolve().parents[1] / "suites" / "data" / "math" / "word_problems"
    target = root / "suites" / "data" / "math" / "word_problems"
    target.mkdir(parents=True)
    (target / "test.jsonl").write_bytes((data / "test.jsonl").read_bytes())
    (root / "suites" / "story.yaml").write_text("suite: story\ntasks:\n" + task, encoding="utf-8")
    (root / "pyproject.toml").write_text("[tool.distillbench]\n" + toml, encoding="utf-8")


@needs_zoo
def test_scenario_chat_api_teacher_and_local_student(pytester: pytest.Pytester,
                                                     chat_server: CompletionServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)  # the default variable: read, never written
    toml = CHAT_TEACHER_TOML.replace("BASE_URL", chat_server.base_url).replace("zoo-teacher", SERVED)
    scenario_project(pytester.path, toml, WORD_PROBLEMS)
    served = chat_server.requests_served
    doc = run_json(pytester, "a.json", "--distillbench-limit", "24", "-rs",
                   "--distillbench-update-baselines")
    out = doc["_stdout"]
    assert chat_server.requests_served - served == 24  # the teacher answered over HTTP
    by = runs(doc)
    teacher, student = by[("teacher", "story/word_problems")], by[("student", "story/word_problems")]
    assert teacher["backend"] == "api-chat" and teacher["meta"]["chat_template_sha256"] == "server"
    assert student["meta"]["chat_template_sha256"] == hashlib.sha256(ZOO_TEMPLATE.read_bytes()).hexdigest()
    items = {k.split("::")[-1]: v for k, v in doc["items"].items()}
    retention = items["word_problems[student-retention]"]
    assert retention["outcome"] == "passed"
    assert retention["figures"]["retention"] == pytest.approx(
        (sum(r["score"] for r in student["records"]) / 24) / (sum(r["score"] for r in teacher["records"]) / 24))
    compute = items["word_problems[student-compute]"]
    assert compute["outcome"] == "passed" and teacher["cost"]["flops_source"] == "declared"
    assert 0 < compute["figures"]["compute_ratio"] < 1
    evidence = items["word_problems[student-evidence]"]
    assert evidence["outcome"] in ("passed", "failed", "skipped") and evidence["message"] is not None
    assert "agreement" in json.dumps(evidence["figures"]) or evidence["outcome"] == "skipped"
    assert any(r["token_logprobs"] for r in teacher["records"])  # the black-box teacher's distribution
    assert doc["_ret"] in (0, 1), out
    return None


@needs_zoo
def test_scenario_reasoning_student_with_think_delimiter_chat_template_and_repeats(
        pytester: pytest.Pytester) -> None:
    task = WORD_PROBLEMS.replace("    thresholds:\n      student: {min_retention: 0.3, max_compute_ratio: 1.0}\n",
                                 SAMPLED)
    assert "repeats: 4" in task
    scenario_project(pytester.path, REASONING_TOML, task)
    doc = run_json(pytester, "b.json", "--distillbench-limit", "16", "-k", "not baseline")
    assert doc["_ret"] == 0, doc["_stdout"]
    student = runs(doc)[("reasoner", "story/word_problems")]
    assert student["meta"]["repeats"] == 4
    for r in student["records"]:
        assert len(r["samples"]) == 4
        for raw, answer, score in zip(r["samples"], r["sample_responses"], r["sample_scores"], strict=True):
            # scored on the answer after the thinking block: the last number after "->"; a block
            # that never ends scores as wrong
            if "->" not in raw:
                assert score == 0.0
                continue
            numbers = re.findall(r"-?\d+", raw.partition("->")[2])
            if numbers:
                assert answer == numbers[-1]
            assert score == float(bool(numbers) and numbers[-1] == r["target"])
    items = {k.split("::")[-1]: v for k, v in doc["items"].items()}
    figures = items["word_problems[reasoner]"]["figures"]
    assert figures["pass@1"] == pytest.approx(sum(r["score"] for r in student["records"]) / 16)
    assert figures["pass@4"] >= figures["pass@1"]


def test_regression_gate_and_interval_take_the_item_as_the_unit_under_repeats() -> None:
    """Items scored as the mean of k samples are compared item by item (a sign-flip test on the
    per-item differences, not McNemar on 0/1), and the score interval is over items: k more
    samples of the same items do not narrow it as k times more items would."""
    from pytest_distillbench.measures import stats
    from pytest_distillbench.measures.verdicts import compare_paired

    base = {f"d{i}": s for i, s in enumerate([1.0, 0.75, 0.5, 1.0, 0.25, 1.0, 0.75, 0.5] * 5)}
    worse = {k: max(v - 0.25, 0.0) for k, v in base.items()}
    c = compare_paired(base, worse, method="mcnemar")
    assert c.method == "sign-flip" and c.p_value < 0.01
    same = compare_paired(base, dict(base), method="mcnemar")
    assert same.p_value == 1.0
    lo, hi = stats.score_interval(list(base.values()))
    wilson = stats.wilson_interval(round(sum(base.values()) * 4), len(base) * 4)  # 4 samples as items
    assert hi - lo > wilson[1] - wilson[0]
    assert stats.score_interval([1.0, 0.0, 1.0]) == stats.wilson_interval(2, 3)  # right/wrong: Wilson


@needs_zoo
def test_chat_api_repeats_are_seeded_per_sample_and_reproducible(
        pytester: pytest.Pytester, chat_server: CompletionServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    task = WORD_PROBLEMS.replace("    thresholds:\n      student: {min_retention: 0.3, max_compute_ratio: 1.0}\n",
                                 "    repeats: 3\n    temperature: 1.0\n    seed: 5\n")
    toml = (f'[tool.distillbench.models.teacher]\nrole = "teacher"\nbackend = "api-chat"\npath = "{SERVED}"\n'
            f'options = {{base_url = "{chat_server.base_url}", api_key_env = "{KEY_ENV}"}}\n')
    scenario_project(pytester.path, toml, task)
    served = chat_server.requests_served
    first = runs(run_json(pytester, "a.json", "--distillbench-limit", "6", "--distillbench-no-cache",
                          "-k", "not baseline"))[("teacher", "story/word_problems")]
    assert chat_server.requests_served - served == 18  # 6 items x 3 samples, one request each
    samples = [r["samples"] for r in first["records"]]
    assert all(len(s) == 3 for s in samples)
    assert any(len(set(s)) > 1 for s in samples)  # seeds 5, 6, 7 per prompt: the samples differ
    second = runs(run_json(pytester, "b.json", "--distillbench-limit", "6", "--distillbench-no-cache",
                           "-k", "not baseline"))[("teacher", "story/word_problems")]
    assert [r["samples"] for r in second["records"]] == samples  # and a re-run draws the same
    assert [r["sample_scores"] for r in second["records"]] == [r["sample_scores"] for r in first["records"]]


def test_chat_settings_precedence_and_errors(tmp_path: Path, tiny_model: Path) -> None:
    from dataclasses import replace

    from pytest_distillbench.engine.evaluation import chat_settings
    from pytest_distillbench.spec.suites import load_suite

    task = load_suite(write_project(tmp_path, {}, [gen_task()])).tasks[0]
    (tmp_path / "chat.jinja").write_text(MARKED, encoding="utf-8")
    model = ModelSpec(name="m", role="teacher", path=str(tiny_model), chat_template="chat.jinja",
                      system_prompt="model's", fewshot_as_multiturn=False)
    chat = chat_settings(model, task, tmp_path)
    assert chat is not None and chat.apply and chat.template == MARKED
    assert (chat.system_prompt, chat.fewshot_as_multiturn) == ("model's", False)
    overridden = replace(task, chat=(("system_prompt", "task's"), ("fewshot_as_multiturn", True)))
    chat = chat_settings(model, overridden, tmp_path)
    assert (chat.system_prompt, chat.fewshot_as_multiturn) == ("task's", True)
    assert chat_settings(model, replace(task, chat=(("chat_template", False),)), tmp_path).apply is False
    assert chat_settings(ModelSpec(name="m", role="teacher", path=str(tiny_model)), task, tmp_path) is None
    served = ModelSpec(name="t", role="teacher", path="s", backend="api-chat")
    assert chat_settings(served, task).template_sha256 == "server"
    with pytest.raises(DistillbenchError, match="chat-only API model"):
        chat_settings(served, replace(task, chat=(("chat_template", False),)))
    with pytest.raises(DistillbenchError, match="does not exist"):
        chat_settings(replace(model, chat_template="missing.jinja"), task, tmp_path)
