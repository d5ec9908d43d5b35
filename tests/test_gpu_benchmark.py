"""benchmarks/gpu.py at a tiny size on CPU: its three paths agree item by item and its figures add up."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_distillbench.measures.flops import Architecture, generation_flops, loglikelihood_flops
from pytest_distillbench.records import ItemRecord, TaskRun

ROOT = Path(__file__).resolve().parents[1]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


gpu = _load_benchmark()
TOKENIZER = gpu.build_tokenizer(512)
CONFIG = gpu.Config(size="tiny", device="cpu", dtype="float32", items=6, context=24, prompt=8,
                    gen_tokens=5, batch_size=4)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(len(gpu.SPECIALS), 511), min_size=1, max_size=40))
def test_text_of_tokenizes_back_to_the_same_ids(ids):
    text = gpu.text_of(ids)
    assert TOKENIZER.encode(text) == ids
    assert TOKENIZER.decode(ids) == text


@settings(max_examples=30, deadline=None)
@given(items=st.integers(1, 6), context=st.integers(1, 40), prompt=st.integers(1, 20),
       gen=st.integers(1, 9), seed=st.integers(0, 10))
def test_workload_lengths_and_token_counts(items, context, prompt, gen, seed):
    work = gpu.make_workload(300, items, context, prompt, gen, seed)
    assert len(work.prefill) == len(work.decode) == items
    for item in work.prefill:
        assert max(1, 3 * context // 4) <= len(item.context) <= context
        assert len(item.choices) == gpu.CHOICES and 0 <= item.label < gpu.CHOICES
        assert all(len(c) == gpu.CHOICE_TOKENS for c in item.choices)
        assert min(item.context + sum(item.choices, ())) >= len(gpu.SPECIALS)  # no special tokens
    assert all(max(1, 3 * prompt // 4) <= len(p) <= prompt for p in work.decode)
    tokens = gpu.workload_tokens(work)
    assert tokens["prefill"] == sum(len(i.context) + gpu.CHOICE_TOKENS - 1 for i in work.prefill) * gpu.CHOICES
    assert tokens["decode"] == items * gen
    assert gpu.make_workload(300, items, context, prompt, gen, seed) == work  # seeded


def test_workload_flops_sum_the_requests():
    arch = Architecture.build(n_layers=2, d_model=32, n_heads=4, d_ff=64, vocab_size=300)
    work = gpu.make_workload(300, 3, 16, 6, 4, seed=1)
    flops = gpu.workload_flops(arch, work)
    assert flops["prefill"] == sum(loglikelihood_flops(arch, len(i.context), gpu.CHOICE_TOKENS)
                                   for i in work.prefill for _ in i.choices)
    assert flops["decode"] == sum(sum(generation_flops(arch, len(p), 4)) for p in work.decode)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gpubench")
    return gpu.run_benchmark(CONFIG, workdir), workdir


def test_plugin_and_raw_lm_eval_score_every_item_identically(report):
    rep, _ = report
    for task in gpu.TASKS:
        same = rep.agreements[task]["plugin vs raw"]
        assert same.items == CONFIG.items and same.same_score == CONFIG.items
    assert rep.agreements["prefill"]["plugin vs raw"].max_logprob_gap == 0.0
    assert rep.agreements["decode"]["plugin vs raw"].same_text == CONFIG.items


def test_plugin_seconds_are_its_simple_evaluate_call(report):
    import lm_eval
    import lm_eval.evaluator

    rep, _ = report
    for task in gpu.TASKS:
        detail = dict(rep.runs[(task, "plugin")].detail)
        # the wrapper around lm_eval.simple_evaluate times the region the plugin records (which
        # also enters and leaves its logging and environment context managers)
        assert detail["recorded wall s"] == pytest.approx(detail["timed s"], rel=0.05, abs=0.05)
    assert vars(lm_eval).get("simple_evaluate", lm_eval.evaluator.simple_evaluate) is \
        lm_eval.evaluator.simple_evaluate  # put back


def test_plain_loop_does_the_same_forward_passes(report):
    rep, _ = report
    assert rep.agreements["prefill"]["plain vs raw"].max_logprob_gap < 1e-4
    assert rep.agreements["decode"]["plain vs raw"].same_text == CONFIG.items
    # every generation ran its full length: nothing stopped early, so the FLOPs are the workload's
    for path in gpu.PATHS:
        texts = [o.text for o in rep.runs[("decode", path)].outcomes]
        assert all(len(t.split()) == CONFIG.gen_tokens for t in texts), path


def test_flops_agree_and_figures_add_up(report):
    rep, workdir = report
    arch = Architecture.from_path(workdir / "model")
    assert arch.vocab_size == gpu.SIZES["tiny"].vocab and arch.n_layers == gpu.SIZES["tiny"].n_layers
    for task in gpu.TASKS:
        assert rep.runs[(task, "plugin")].recorded_flops == pytest.approx(rep.flops[task], rel=1e-12)
    rows = {(r.task, r.path): r for r in rep.rows}
    assert set(rows) == {(t, p) for t in gpu.TASKS for p in gpu.PATHS}
    for (task, _), r in rows.items():
        assert r.tflops_per_s * 1e12 * r.eval_seconds == pytest.approx(rep.flops[task])
        assert r.tokens_per_s * r.eval_seconds == pytest.approx(rep.tokens[task])
        assert r.mfu == pytest.approx(r.tflops_per_s * 1e12 / rep.peak)
        assert r.vs_raw == pytest.approx(rows[(task, "raw")].eval_seconds / r.eval_seconds)
        assert r.vs_plain == pytest.approx(rows[(task, "plain")].eval_seconds / r.eval_seconds)
        assert r.total_seconds >= r.eval_seconds > 0
    assert rows[("prefill", "raw")].vs_raw == 1.0
    table = gpu.render(list(rep.rows))
    assert table.count("\n") == len(rep.rows) + 1 and "MFU %" in table
    json.dumps(rep.to_dict())  # the --json output is plain JSON
    printed = "\n".join(gpu.notes(rep) + gpu.target_lines(rep))
    assert printed.count("plugin's recorded FLOPs / workload = 1.000000") == 2
    assert set(rep.plugin_extras) == {f"{t}: {k}" for t in gpu.TASKS for k in
                                      ("fingerprint", "recount_tokens", "gc_collect", "lm_eval_encodes")}


def _record(doc_id, score, response, raw="", logprobs=None):
    return ItemRecord(doc_id=doc_id, doc_hash=f"h{doc_id}", prompt="w10 w11", target="", response=response,
                      raw_response=raw, score=score, prompt_tokens=2, output_tokens=1,
                      choice_logprobs=logprobs)


def _run(records):
    return TaskRun(task="s/t", model="m", metric="acc,none", records=tuple(records), wall_seconds=1.0,
                   model_fingerprint="f", task_fingerprint="t")


def test_compare_runs_lists_flips_with_their_margins():
    a = _run([_record(0, 1.0, "w5", logprobs=(-1.0, -1.0000002)), _record(1, 1.0, "w6", logprobs=(-1.0, -3.0)),
              _record(2, 0.0, "w7", logprobs=(-2.0, -1.0))])
    b = _run([_record(0, 0.0, "w8", logprobs=(-1.0000003, -1.0)), _record(1, 0.0, "w9", logprobs=(-3.0, -1.0)),
              _record(2, 0.0, "w7", logprobs=(-2.0, -1.0))])
    diffs = gpu.compare_runs("m", "s/t", a, b)
    assert [d.doc_id for d in diffs] == [0, 1]
    assert gpu.explained(diffs[0]) and diffs[0].margin_a == pytest.approx(2e-7, abs=1e-9)
    assert not gpu.explained(diffs[1]) and diffs[1].margin_a == pytest.approx(2.0)
    with pytest.raises(ValueError, match="different items"):
        gpu.compare_runs("m", "s/t", a, _run(b.records[:2]))


def test_divergence_margins_read_the_logits_where_generations_part(report):
    _, workdir = report
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(workdir / "model", dtype=torch.float32).eval()
    tok = gpu.build_tokenizer(gpu.SIZES["tiny"].vocab)
    d = gpu.Difference("m", "t", 0, 0.0, 0.0, "w20 w21 w22", "w20 w23", prompt="w10 w11 w12")
    filled = gpu.divergence_margins(d, (model, model), ("cpu", "cpu"), tok)
    with torch.inference_mode():
        logits = model(torch.tensor([tok.encode("w10 w11 w12 w20")])).logits[0, -1]
    assert filled.margin_a == pytest.approx(float(logits[21] - logits[23]), abs=1e-6)
    assert filled.margin_b == pytest.approx(-filled.margin_a, abs=1e-6)  # same model on both sides
    assert gpu.explained(filled) == (abs(filled.margin_a) < gpu.NEAR_TIE)
    prefix = gpu.Difference("m", "t", 0, 0.0, 0.0, "w20 w21", "w20", prompt="w10")
    assert gpu.divergence_margins(prefix, (model, model), ("cpu", "cpu"), tok) == prefix


def test_compare_devices_finds_no_difference_between_identical_runs(report):
    _, workdir = report
    from pytest_distillbench.spec.suites import load_suite

    tasks = {t.id: t for t in load_suite(workdir / "gpubench.yaml").tasks}
    compared, diffs, skipped = gpu.compare_devices({"teacher": workdir / "model"}, tasks, ("cpu", "cpu"),
                                                   4, 3, workdir / "cross")
    assert (compared, diffs, skipped) == (3 * len(tasks), [], [])


def _offline(monkeypatch):
    """main() sets the offline variables as the plugin does; monkeypatch restores them after."""
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(key, "1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cross_device_without_cuda_says_so_and_exits_zero(capsys, monkeypatch):
    _offline(monkeypatch)
    assert gpu.main(["--cross-device"]) == 0
    assert "CUDA is not available" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the usage error shown without CUDA")
def test_gpu_size_without_cuda_is_a_usage_error(capsys, monkeypatch):
    _offline(monkeypatch)
    with pytest.raises(SystemExit) as exc:
        gpu.main(["--size", "1b"])
    assert exc.value.code == 2
    assert "use a CPU size" in capsys.readouterr().err
