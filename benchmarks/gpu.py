"""Throughput of the plugin's ``hf`` backend beside raw lm-eval and a plain PyTorch loop (issue #10).

    python benchmarks/gpu.py --size small --device cpu            # runs anywhere, in minutes
    python benchmarks/gpu.py --size 1b --device cuda --repeats 2  # the real measurement (H200)
    python benchmarks/gpu.py --cross-device [--limit 50]          # zoo models, CPU vs CUDA, fp32

A random-initialised Llama-shaped model is built from a config alone (no download), with a
word-level tokenizer over a synthetic vocabulary of the model's size, so the LM head costs what
a real one does. Synthetic documents are random token ids written out as text, so every token
count is known before anything runs. Two tasks go through three paths, side by side in one run:

  prefill   multiple choice, 2 choices, long contexts: one forward per choice (prefill-bound)
  decode    greedy generation of exactly ``--gen-tokens`` tokens (decode-bound); the model's
            output rows of special tokens are zero, so it never emits an end token and no stop
            sequence can match: every item generates the full length

  plugin    the plugin's ``Evaluator`` in this process (``backends/hf.py`` builds the model)
  raw       ``lm_eval.simple_evaluate`` on an ``HFLM`` built with the same arguments
  plain     the same forward passes in plain PyTorch: length-sorted batches, right padding
            (prefill) or left padding with a KV cache (decode), ``torch.inference_mode``, SDPA

Why the plugin runs in-process rather than as ``pytest --distillbench`` in a subprocess: the
issue is about throughput, and in one process all three paths share the CUDA context, cuBLAS
handles and the allocator, so the only difference left is the evaluation code itself. pytest's
own start-up, collection and reporting are fixed seconds measured by ``benchmarks/overhead.py``.

FLOPs for every path come from ``pytest_distillbench.measures.flops`` applied to the known token counts,
so TFLOP/s and MFU compare like with like; MFU divides by ``hardware.device_peak`` (measured on
a CPU, the datasheet's dense figure on a GPU). Throughput uses each path's evaluation seconds
(model loading excluded: the plugin's ``Cost.seconds``, the ``simple_evaluate`` call, the loop);
``end-to-end s`` adds loading and, for the plugin, its own work around lm-eval. On a shared CPU,
``--threads 1 --clock process`` counts this process's CPU seconds instead of wall seconds, which
other people's jobs disturb far less. The plugin's steps outside lm-eval (fingerprint, token
recount, garbage collection) and lm-eval's own tokenization are also timed alone and listed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from pytest_distillbench.measures.flops import (  # noqa: E402
    Architecture,
    generation_flops,
    loglikelihood_flops,
)
from pytest_distillbench.measures.hardware import device_peak  # noqa: E402
from pytest_distillbench.spec.models import ModelSpec  # noqa: E402

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(len(SPECIALS))
CHOICES = 2  # answer options per prefill item
CHOICE_TOKENS = 4  # tokens per answer option
SEED = 1234
PATHS = ("plugin", "raw", "plain")
TASKS = ("prefill", "decode")


# --------------------------------------------------------------------------- model sizes


@dataclass(frozen=True)
class Size:
    """A Llama-shaped model and the workload that suits it."""

    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    vocab: int
    dtype: str
    device: str
    items: int
    context: int  # prefill contexts are drawn from [3/4 of this, this] tokens
    prompt: int  # decode prompts likewise
    gen_tokens: int
    batch_size: int


SIZES = {
    # CPU sizes: fp32, because bf16 matmuls on a CPU are emulated and slow
    "tiny": Size(64, 2, 4, 2, 176, 2048, "float32", "cpu", 16, 64, 16, 8, 8),
    "small": Size(256, 4, 8, 4, 704, 8192, "float32", "cpu", 32, 256, 32, 16, 8),
    # GPU sizes: 12 x 768 with a 32k vocabulary is ~134M parameters; the TinyLlama shape ~1.1B
    "125m": Size(768, 12, 12, 12, 2048, 32000, "bfloat16", "cuda", 512, 1024, 128, 128, 64),
    "1b": Size(2048, 22, 32, 4, 5632, 32000, "bfloat16", "cuda", 512, 2048, 128, 128, 32),
}


@dataclass(frozen=True)
class Config:
    size: str
    device: str
    dtype: str
    items: int
    context: int
    prompt: int
    gen_tokens: int
    batch_size: int
    repeats: int = 1
    seed: int = SEED
    clock: str = "wall"  # "process": CPU seconds of this process, steadier on a shared CPU
    threads: int | None = None  # torch threads on a CPU (None: torch's default)
    tasks: tuple[str, ...] = TASKS

    @property
    def shape(self) -> Size:
        return SIZES[self.size]


def llama_config(size: Size, max_positions: int) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=size.vocab, hidden_size=size.d_model, intermediate_size=size.d_ff,
        num_hidden_layers=size.n_layers, num_attention_heads=size.n_heads,
        num_key_value_heads=size.n_kv_heads, max_position_embeddings=max_positions,
        tie_word_embeddings=False, pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
    )


# --------------------------------------------------------------------------- tokenizer and data


def word(token_id: int) -> str:
    return SPECIALS[token_id] if token_id < len(SPECIALS) else f"w{token_id}"


def build_tokenizer(vocab_size: int) -> Any:
    """Word-level tokenizer over ``vocab_size`` synthetic words: text is ids joined by spaces."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(vocab={word(i): i for i in range(vocab_size)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>",
                                   clean_up_tokenization_spaces=False, model_max_length=1 << 20)


def text_of(ids: Sequence[int]) -> str:
    return " ".join(word(i) for i in ids)


@dataclass(frozen=True)
class ChoiceItem:
    context: tuple[int, ...]
    choices: tuple[tuple[int, ...], ...]
    label: int


@dataclass(frozen=True)
class Workload:
    prefill: tuple[ChoiceItem, ...]
    decode: tuple[tuple[int, ...], ...]  # prompts
    gen_tokens: int


def make_workload(vocab: int, items: int, context: int, prompt: int, gen_tokens: int,
                  seed: int = SEED) -> Workload:
    """Random documents over the ordinary (non-special) words, lengths in [3/4 n, n]."""
    rng = random.Random(seed)

    def ids(n: int) -> tuple[int, ...]:
        return tuple(rng.randrange(len(SPECIALS), vocab) for _ in range(n))

    def length(n: int) -> int:
        return rng.randint(max(1, 3 * n // 4), n)

    prefill = tuple(ChoiceItem(ids(length(context)), tuple(ids(CHOICE_TOKENS) for _ in range(CHOICES)),
                               rng.randrange(CHOICES)) for _ in range(items))
    decode = tuple(ids(length(prompt)) for _ in range(items))
    return Workload(prefill, decode, gen_tokens)


def write_suite(work: Workload, directory: Path) -> Path:
    """The workload as a suite of two tasks over JSONL files (the plugin's ``data:`` route)."""
    import yaml

    with (directory / "prefill.jsonl").open("w", encoding="utf-8") as fh:
        for item in work.prefill:
            fh.write(json.dumps({"input": text_of(item.context), "label": item.label,
                                 "choices": [text_of(c) for c in item.choices]}) + "\n")
    with (directory / "decode.jsonl").open("w", encoding="utf-8") as fh:
        for prompt in work.decode:
            fh.write(json.dumps({"input": text_of(prompt), "target": "unreachable"}) + "\n")
    suite = {
        "suite": "gpubench",
        "description": "synthetic throughput workload (benchmarks/gpu.py)",
        "tasks": [
            {"name": "prefill", "metric": "acc",
             "data": {"jsonl": "prefill.jsonl", "input": "input", "choices": "choices", "label": "label"}},
            {"name": "decode", "metric": "exact_match",
             "data": {"jsonl": "decode.jsonl", "input": "input", "target": "target"},
             "generation": {"until": ["\n\n"], "max_gen_toks": work.gen_tokens, "do_sample": False}},
        ],
    }
    path = directory / "gpubench.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    return path


def max_positions(work: Workload) -> int:
    longest = max([len(i.context) + CHOICE_TOKENS for i in work.prefill]
                  + [len(p) + work.gen_tokens for p in work.decode])
    return longest + 16


def build_checkpoint(size: Size, work: Workload, directory: Path, device: str, dtype: str,
                     seed: int = SEED) -> Path:
    """Save a random-initialised model and its tokenizer as a Hugging Face checkpoint."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    init_device = device if device.startswith("cuda") else "cpu"  # initialise big models on the GPU
    with torch.device(init_device):
        model = LlamaForCausalLM(llama_config(size, max_positions(work))).to(getattr(torch, dtype))
    with torch.no_grad():
        # zero logits for special tokens: a random model then never ends a generation early
        model.lm_head.weight[: len(SPECIALS)] = 0
    model.save_pretrained(directory)
    build_tokenizer(size.vocab).save_pretrained(directory)
    del model
    release_memory()
    return directory


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- FLOPs and tokens


def prefill_requests(work: Workload) -> list[tuple[int, int]]:
    """(context tokens, continuation tokens) of every log-likelihood request."""
    return [(len(item.context), len(c)) for item in work.prefill for c in item.choices]


def workload_flops(arch: Architecture, work: Workload) -> dict[str, float]:
    prefill = sum(loglikelihood_flops(arch, c, k) for c, k in prefill_requests(work))
    decode = sum(sum(generation_flops(arch, len(p), work.gen_tokens)) for p in work.decode)
    return {"prefill": float(prefill), "decode": float(decode)}


def workload_tokens(work: Workload) -> dict[str, int]:
    """Tokens that count for throughput: positions fed forward (prefill), tokens generated (decode)."""
    return {"prefill": sum(c + k - 1 for c, k in prefill_requests(work)),
            "decode": len(work.decode) * work.gen_tokens}


# --------------------------------------------------------------------------- the three paths


@dataclass(frozen=True)
class Outcome:
    """One item as a path saw it: lm-eval's score, choice log-likelihoods or generated text."""

    doc_id: int
    score: float | None
    logprobs: tuple[float, ...] | None = None
    text: str | None = None


@dataclass(frozen=True)
class PathRun:
    path: str
    task: str
    eval_seconds: float
    total_seconds: float
    outcomes: tuple[Outcome, ...]
    recorded_flops: float | None = None  # what the path itself recorded (the plugin's Cost)
    recorded_mfu: float | None = None
    detail: tuple[tuple[str, float], ...] = ()  # named sub-timings


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "process": time.process_time}


@contextlib.contextmanager
def timed_simple_evaluate(clock: Callable[[], float]) -> Iterator[list[float]]:
    """Time every ``lm_eval.simple_evaluate`` call with ``clock``: the region the plugin times.

    The plugin imports ``simple_evaluate`` from ``lm_eval`` when it runs a task, so replacing the
    module attribute for the duration times exactly its call, with any clock.
    """
    import lm_eval

    had = "simple_evaluate" in vars(lm_eval)
    original = lm_eval.simple_evaluate
    spent: list[float] = []

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(clock() - start)

    lm_eval.simple_evaluate = timed
    try:
        yield spent
    finally:
        if had:
            lm_eval.simple_evaluate = original
        else:
            del lm_eval.simple_evaluate  # back to lm-eval's lazy import


def model_spec(checkpoint: Path, config: Config) -> ModelSpec:
    return ModelSpec(name="bench", role="teacher", path=str(checkpoint), dtype=config.dtype,
                     device=config.device, batch_size=config.batch_size)


def run_plugin(spec: ModelSpec, task: Any, workdir: Path, seed: int, clock: str = "wall") -> PathRun:
    from pytest_distillbench.engine.evaluation import Evaluator, Unavailable
    from pytest_distillbench.spec.settings import Settings

    settings = Settings(rootdir=workdir, models=(spec,), cache_dir=workdir / "plugin-cache",
                        baselines_dir=workdir / "baselines", use_cache=False, seed=seed)
    evaluator = Evaluator(settings, {task.id: task}, progress=lambda line: None)
    evaluator.plan([(spec.name, task.id)])
    tick = CLOCKS[clock]
    with timed_simple_evaluate(tick) as spent:
        start = tick()
        run = evaluator.result(spec.name, task.id)
        total = tick() - start
    if isinstance(run, Unavailable):
        raise SystemExit(f"the plugin did not evaluate {task.id}: {run.reason}")
    outcomes = tuple(Outcome(r.doc_id, r.score, r.choice_logprobs, r.raw_response if r.choice_logprobs is None else None)
                     for r in run.records)
    del evaluator
    release_memory()
    cost = run.cost
    # wall clock: the seconds the plugin itself records (Cost.seconds); else the same region
    eval_seconds = run.wall_seconds if clock == "wall" else spent[0]
    return PathRun("plugin", task.name, eval_seconds, total, outcomes,
                   None if cost is None else cost.flops, None if cost is None else cost.mfu,
                   (("recorded wall s", run.wall_seconds), ("timed s", spent[0])))


def outcomes_from_samples(samples: list[dict[str, Any]], metric: str) -> tuple[Outcome, ...]:
    out = []
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        if s["arguments"] and isinstance(s["arguments"][0][1], str):  # log-likelihood requests
            lls = tuple(float(r[0]) if isinstance(r, (list, tuple)) else float(r) for r in s["filtered_resps"])
            out.append(Outcome(int(s["doc_id"]), float(s[metric]), lls))
        else:
            out.append(Outcome(int(s["doc_id"]), float(s[metric]), text=s["resps"][0][0]))
    return tuple(out)


def run_raw(spec: ModelSpec, task: Any, seed: int, clock: str = "wall") -> PathRun:
    """lm-eval alone: ``HFLM`` with the arguments ``backends/hf.py`` passes, then ``simple_evaluate``."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tick = CLOCKS[clock]
    start = tick()
    lm = HFLM(pretrained=spec.path, dtype=spec.dtype, device=spec.device, batch_size=spec.batch_size,
              logits_cache=False)
    manager = TaskManager(include_defaults=False)
    lm_task = next(iter(manager.load([task.lm_eval_config()])["tasks"].values()))
    began = tick()
    out = simple_evaluate(model=lm, tasks=[lm_task], log_samples=True, bootstrap_iters=0,
                          random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                          fewshot_random_seed=seed, task_manager=manager)
    eval_seconds = tick() - began
    outcomes = outcomes_from_samples(out["samples"][lm_task.task_name], task.metric)
    total = tick() - start
    del lm, out
    release_memory()
    return PathRun("raw", task.name, eval_seconds, total, outcomes)


def batches(order: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(order), size):
        yield order[i:i + size]


def plain_prefill(model: Any, work: Workload, batch_size: int, device: str) -> list[tuple[float, ...]]:
    """Choice log-likelihoods, one forward over (context + choice)[:-1] per request, like lm-eval."""
    requests = [(item.context, c) for item in work.prefill for c in item.choices]
    order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][0]) + len(requests[i][1])))
    scores = [0.0] * len(requests)
    for batch in batches(order, batch_size):
        seqs = [(requests[i][0] + requests[i][1])[:-1] for i in batch]
        inputs = torch.full((len(batch), max(map(len, seqs))), PAD_ID, dtype=torch.long)
        for row, seq in enumerate(seqs):
            inputs[row, :len(seq)] = torch.tensor(seq)
        logits = model(inputs.to(device)).logits  # logits at every position, as lm-eval computes
        # the continuation's k tokens are predicted from positions len(context)-1 .. len(context)+k-2
        k = max(len(requests[i][1]) for i in batch)
        starts = torch.tensor([len(requests[i][0]) - 1 for i in batch])
        positions = (starts[:, None] + torch.arange(k)).clamp(max=inputs.shape[1] - 1).to(device)
        targets = torch.tensor([list(requests[i][1]) + [PAD_ID] * (k - len(requests[i][1])) for i in batch])
        valid = torch.tensor([[j < len(requests[i][1]) for j in range(k)] for i in batch])
        picked = logits.gather(1, positions[:, :, None].expand(-1, -1, logits.shape[-1]))
        logprobs = torch.log_softmax(picked.float(), dim=-1).gather(2, targets.to(device)[:, :, None])[..., 0]
        sums = (logprobs * valid.to(device)).sum(-1).tolist()
        for i, value in zip(batch, sums, strict=True):
            scores[i] = value
    it = iter(scores)
    return [tuple(next(it) for _ in item.choices) for item in work.prefill]


def _cache_name(model: Any) -> str:
    import inspect

    # transformers 5 renamed the cache argument and output from ``past_key_values`` to ``cache``
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def plain_decode(model: Any, work: Workload, batch_size: int, device: str) -> list[tuple[int, ...]]:
    """Greedy generation of exactly ``gen_tokens``: prefill (last logits only), then cached steps."""
    cache = _cache_name(model)
    prompts = work.decode
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    generated: list[tuple[int, ...]] = [()] * len(prompts)
    for batch in batches(order, batch_size):
        width = max(len(prompts[i]) for i in batch)
        ids = torch.full((len(batch), width), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):  # left padding, as lm-eval and generate() use
            ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]):] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    logits_to_keep=1)
        token = out.logits[:, -1].argmax(-1)
        steps = [token]
        for _ in range(work.gen_tokens - 1):
            mask = torch.cat([mask, mask.new_ones((len(batch), 1))], dim=1)
            positions = positions[:, -1:] + 1
            out = model(input_ids=token[:, None], attention_mask=mask, position_ids=positions,
                        use_cache=True, **{cache: getattr(out, cache)})
            token = out.logits[:, -1].argmax(-1)
            steps.append(token)
        rows = torch.stack(steps, dim=1).tolist()
        for i, row in zip(batch, rows, strict=True):
            generated[i] = tuple(row)
    return generated


def load_plain_model(checkpoint: Path, config: Config) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=getattr(torch, config.dtype),
                                                 attn_implementation="sdpa")
    return model.to(config.device).eval()


def run_plain(checkpoint: Path, work: Workload, task: str, config: Config) -> PathRun:
    tick = CLOCKS[config.clock]
    start = tick()
    model = load_plain_model(checkpoint, config)
    with torch.inference_mode():
        synchronize(config.device)
        began = tick()
        if task == "prefill":
            lls = plain_prefill(model, work, config.batch_size, config.device)
            synchronize(config.device)
            eval_seconds = tick() - began
            outcomes = tuple(Outcome(i, float(max(range(CHOICES), key=ll.__getitem__) == item.label), ll)
                             for i, (item, ll) in enumerate(zip(work.prefill, lls, strict=True)))
        else:
            texts = plain_decode(model, work, config.batch_size, config.device)
            synchronize(config.device)
            eval_seconds = tick() - began
            outcomes = tuple(Outcome(i, None, text=text_of(t)) for i, t in enumerate(texts))
    total = tick() - start
    del model
    release_memory()
    return PathRun("plain", task, eval_seconds, total, outcomes)


def warm_up(checkpoint: Path, work: Workload, config: Config) -> None:
    """Untimed: imports, kernels, allocator and thread pools, so no path pays for them.

    lm-eval and the plugin's evaluation module are imported here, and one batch of each task
    goes through the plain loop and through ``generate`` (which imports its helpers lazily).
    """
    import lm_eval.evaluator  # noqa: F401
    import lm_eval.models.huggingface  # noqa: F401
    import lm_eval.tasks  # noqa: F401

    import pytest_distillbench.engine.evaluation  # noqa: F401
    import pytest_distillbench.measures.costing  # noqa: F401

    small = Workload(work.prefill[:config.batch_size], work.decode[:config.batch_size], min(work.gen_tokens, 4))
    model = load_plain_model(checkpoint, config)
    with torch.inference_mode():
        plain_prefill(model, small, config.batch_size, config.device)
        plain_decode(model, small, config.batch_size, config.device)
        prompt = torch.tensor([small.decode[0]], device=config.device)
        model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=2,
                       do_sample=False, pad_token_id=PAD_ID)
        synchronize(config.device)
    del model
    release_memory()


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Figures:
    task: str
    path: str
    items: int
    eval_seconds: float
    total_seconds: float
    items_per_s: float
    tokens_per_s: float
    tflops_per_s: float
    mfu: float | None
    vs_raw: float | None
    vs_plain: float | None


def figures(runs: dict[tuple[str, str], PathRun], flops: dict[str, float], tokens: dict[str, int],
            items: int, peak: float | None) -> list[Figures]:
    out = []
    for task in TASKS:
        for path in PATHS:
            run = runs.get((task, path))
            if run is None:
                continue
            rate = items / run.eval_seconds

            def ratio(other: str, rate: float = rate, task: str = task) -> float | None:
                base = runs.get((task, other))
                return None if base is None else rate / (items / base.eval_seconds)

            achieved = flops[task] / run.eval_seconds
            out.append(Figures(task, path, items, run.eval_seconds, run.total_seconds, rate,
                               tokens[task] / run.eval_seconds, achieved / 1e12,
                               None if not peak else achieved / peak, ratio("raw"), ratio("plain")))
    return out


@dataclass(frozen=True)
class Agreement:
    """How two paths' per-item outcomes compare."""

    items: int
    same_score: int
    max_logprob_gap: float | None  # largest |difference| between matching log-likelihoods
    same_text: int | None  # generations that match exactly


def agreement(a: Sequence[Outcome], b: Sequence[Outcome]) -> Agreement:
    by_id = {o.doc_id: o for o in b}
    if set(by_id) != {o.doc_id for o in a}:
        raise ValueError("the two runs did not score the same items")
    gaps = [abs(x - y) for o in a if o.logprobs is not None and by_id[o.doc_id].logprobs is not None
            for x, y in zip(o.logprobs, by_id[o.doc_id].logprobs, strict=True)]
    texts = [o.text == by_id[o.doc_id].text for o in a if o.text is not None]
    scored = [o for o in a if o.score is not None and by_id[o.doc_id].score is not None]
    return Agreement(len(a), sum(o.score == by_id[o.doc_id].score for o in scored),
                     max(gaps) if gaps else None, sum(texts) if texts else None)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(rows: list[Figures]) -> str:
    from tabulate import tabulate

    table = [[r.task, r.path, f"{r.items_per_s:.2f}", f"{r.tokens_per_s:,.0f}", f"{r.tflops_per_s:.4g}",
              _fmt(None if r.mfu is None else 100 * r.mfu, ".1f"), _fmt(r.vs_raw, ".3f"),
              _fmt(r.vs_plain, ".3f"), f"{r.eval_seconds:.2f}", f"{r.total_seconds:.2f}"] for r in rows]
    headers = ["task", "path", "items/s", "tokens/s", "TFLOP/s", "MFU %", "x raw", "x plain",
               "eval s", "end-to-end s"]
    return tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)


# --------------------------------------------------------------------------- the benchmark


@dataclass(frozen=True)
class Report:
    config: Config
    params: float
    flops: dict[str, float]
    tokens: dict[str, int]
    peak: float | None
    peak_source: str
    rows: tuple[Figures, ...]
    runs: dict[tuple[str, str], PathRun]
    agreements: dict[str, dict[str, Agreement]]
    plugin_extras: dict[str, float]
    seconds: dict[str, list[float]]  # "task/path" -> eval seconds of every repeat

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config), "params": self.params, "flops": self.flops,
            "tokens": self.tokens, "peak_flops_per_s": self.peak, "peak_source": self.peak_source,
            "rows": [asdict(r) for r in self.rows],
            "recorded_flops": {t: self.runs[(t, "plugin")].recorded_flops for t in self.config.tasks},
            "agreements": {t: {k: asdict(v) for k, v in a.items()} for t, a in self.agreements.items()},
            "plugin_extras_s": self.plugin_extras, "eval_seconds_per_repeat": self.seconds,
            "environment": environment(self.config.device),
        }


def environment(device: str) -> dict[str, str]:
    from importlib.metadata import version

    env = {p: version(p) for p in ("torch", "transformers", "lm-eval")}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
    return env


def plugin_extras(checkpoint: Path, work: Workload, task: str, generations: Sequence[Outcome],
                  config: Config) -> dict[str, float]:
    """Seconds of steps that cost the plugin or lm-eval time, each timed alone on the same data.

    fingerprint      the plugin hashes every weight file (once per model and session)
    recount_tokens   the plugin tokenizes each request's text again after lm-eval, to count
                     tokens for the FLOPs (lm-eval keeps no counts); outside the eval seconds
    gc_collect       the full collection the plugin runs after each model (evaluation.py)
    lm_eval_encodes  the one-at-a-time encodes lm-eval itself runs before any forward pass
                     (context+continuation and context per request; each prompt twice for
                     generation): inside the eval seconds of both lm-eval paths, not the loop's
    """
    from pytest_distillbench.engine.evaluation import model_fingerprint

    tick = CLOCKS[config.clock]
    start = tick()
    model_fingerprint(model_spec(checkpoint, config))
    hashed = tick() - start
    tokenizer = build_tokenizer(config.shape.vocab)
    if task == "prefill":
        pairs = [(text_of(item.context), " " + text_of(c)) for item in work.prefill for c in item.choices]
        recount = [t for ctx, cont in pairs for t in (ctx, ctx + cont)]
        lm_eval_texts = recount
    else:
        prompts = [text_of(p) for p in work.decode]
        recount = [t for p, g in zip(prompts, generations, strict=True) for t in (p, g.text or "")]
        lm_eval_texts = prompts + prompts

    def encode_all(texts: list[str]) -> float:
        start = tick()
        for text in texts:
            tokenizer.encode(text)
        return tick() - start

    start = tick()
    gc.collect()
    collected = tick() - start
    return {"fingerprint": hashed, "recount_tokens": encode_all(recount), "gc_collect": collected,
            "lm_eval_encodes": encode_all(lm_eval_texts)}


def run_benchmark(config: Config, workdir: Path, log: Callable[[str], None] = lambda s: None) -> Report:
    from pytest_distillbench.spec.suites import load_suite

    for name in ("lm-eval", "lm_eval", "datasets", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if config.clock == "process" and not config.device == "cpu":
        raise ValueError("the process clock counts CPU seconds: use it only with --device cpu")
    if config.threads:
        torch.set_num_threads(config.threads)  # before the peak, which is measured per thread count
    work = make_workload(config.shape.vocab, config.items, config.context, config.prompt,
                         config.gen_tokens, config.seed)
    tasks = {t.name: t for t in load_suite(write_suite(work, workdir)).tasks}
    log(f"building a random {config.size} model ({config.dtype}) in {workdir}")
    checkpoint = build_checkpoint(config.shape, work, workdir / "model", config.device, config.dtype,
                                  config.seed)
    arch = Architecture.from_path(checkpoint)
    flops, tokens = workload_flops(arch, work), workload_tokens(work)
    peak = device_peak(config.device, config.dtype)
    spec = model_spec(checkpoint, config)
    warm_up(checkpoint, work, config)

    runs: dict[tuple[str, str], PathRun] = {}
    seconds: dict[str, list[float]] = {}
    for repeat in range(config.repeats):
        for task in config.tasks:
            # rotate the order each repeat, so no path always runs first on a fresh model
            for path in PATHS[repeat % 3:] + PATHS[:repeat % 3]:
                log(f"repeat {repeat + 1}/{config.repeats}: {task} through {path}")
                if path == "plugin":
                    run = run_plugin(spec, tasks[task], workdir / f"plugin-{repeat}", config.seed, config.clock)
                elif path == "raw":
                    run = run_raw(spec, tasks[task], config.seed, config.clock)
                else:
                    run = run_plain(checkpoint, work, task, config)
                seconds.setdefault(f"{task}/{path}", []).append(run.eval_seconds)
                best = runs.get((task, path))
                if best is None or run.eval_seconds < best.eval_seconds:
                    runs[(task, path)] = run
    agreements = {t: {"plugin vs raw": agreement(runs[(t, "plugin")].outcomes, runs[(t, "raw")].outcomes),
                      "plain vs raw": agreement(runs[(t, "plain")].outcomes, runs[(t, "raw")].outcomes)}
                  for t in config.tasks}
    extras: dict[str, float] = {}
    for t in config.tasks:
        for k, v in plugin_extras(checkpoint, work, t, runs[(t, "raw")].outcomes, config).items():
            extras[f"{t}: {k}"] = v
    rows = tuple(figures(runs, flops, tokens, config.items, peak.flops_per_s))
    return Report(config, arch.n_params + arch.lm_head_params + arch.d_model * arch.vocab_size,
                  flops, tokens, peak.flops_per_s, peak.source, rows, runs, agreements, extras, seconds)


# --------------------------------------------------------------------------- targets and notes

def target_lines(report: Report) -> list[str]:
    rows = {(r.task, r.path): r for r in report.rows}
    checks = []
    pre = rows.get(("prefill", "plugin"))
    if pre is not None and report.config.size == "1b":
        checks.append(("prefill plugin MFU >= 40%", pre.mfu is not None and pre.mfu >= 0.40,
                       _fmt(None if pre.mfu is None else 100 * pre.mfu, ".1f") + "%"))
    if pre is not None:
        checks.append(("prefill plugin >= 0.95x raw", (pre.vs_raw or 0) >= 0.95, _fmt(pre.vs_raw, ".3f")))
    for task in report.config.tasks:
        r = rows[(task, "plugin")]
        checks.append((f"{task} plugin >= 0.8x plain", (r.vs_plain or 0) >= 0.8, _fmt(r.vs_plain, ".3f")))
    gpu = report.config.device.startswith("cuda")
    scope = "" if gpu else " (CPU run: indicative only; the targets are set for an H200)"
    return [f"targets{scope}:"] + [f"  [{'ok' if ok else 'MISS'}] {name}: {value}" for name, ok, value in checks]


def notes(report: Report) -> list[str]:
    lines = [f"peak: {_fmt(None if report.peak is None else report.peak / 1e12, '.4g')} TFLOP/s "
             f"({report.peak_source})"]
    for task in report.config.tasks:
        recorded = report.runs[(task, "plugin")].recorded_flops
        share = "-" if recorded is None else f"{recorded / report.flops[task]:.6f}"
        lines.append(f"{task}: workload {report.flops[task]:.4g} FLOPs, {report.tokens[task]:,} tokens; "
                     f"plugin's recorded FLOPs / workload = {share}")
        for name, a in report.agreements[task].items():
            parts = [f"{a.same_score}/{a.items} same score" if name == "plugin vs raw" else ""]
            if a.max_logprob_gap is not None:
                parts.append(f"max |d logprob| {a.max_logprob_gap:.3g}")
            if a.same_text is not None:
                parts.append(f"{a.same_text}/{a.items} identical generations")
            lines.append(f"  {name}: " + ", ".join(p for p in parts if p))
        p, r = report.runs[(task, "plugin")], report.runs[(task, "raw")]
        extra = {k.split(": ")[1]: v for k, v in report.plugin_extras.items() if k.startswith(task)}
        lines.append(f"  end-to-end minus eval: plugin {p.total_seconds - p.eval_seconds:.2f}s, "
                     f"raw {r.total_seconds - r.eval_seconds:.2f}s; the plugin's own steps, timed "
                     f"alone: fingerprint {extra['fingerprint']:.2f}s, recount tokens "
                     f"{extra['recount_tokens']:.2f}s, gc.collect {extra['gc_collect']:.2f}s")
        lines.append(f"  lm-eval's own serial encodes, timed alone: {extra['lm_eval_encodes']:.2f}s "
                     f"= {100 * extra['lm_eval_encodes'] / r.eval_seconds:.0f}% of raw eval s "
                     "(the plain loop starts from token ids)")
        lines.append("  eval s of each repeat: " + "; ".join(
            f"{path} " + " ".join(f"{v:.2f}" for v in report.seconds[f"{task}/{path}"]) for path in PATHS))
    over = [f"{r.task}/{r.path}" for r in report.rows if r.mfu is not None and r.mfu > 1]
    if over:
        lines.append(f"MFU above 100% ({', '.join(over)}): the peak is too low; a CPU peak is "
                     "measured once and cached, and a measurement taken on a busy machine stays")
    return lines


# --------------------------------------------------------------------------- cross-device check


@dataclass(frozen=True)
class Difference:
    """One item whose outcome differs between two devices, and how close the call was on each.

    The margin is the log-likelihood gap between the two best choices (multiple choice) or, for
    a generation, between the two devices' tokens at the first place they diverge, each taken
    on that device: a margin within rounding means the devices' kernels broke a near-tie.
    """

    model: str
    task: str
    doc_id: int
    score_a: float
    score_b: float
    response_a: str
    response_b: str
    prompt: str = ""
    margin_a: float | None = None
    margin_b: float | None = None


NEAR_TIE = 1e-3  # nats: fp32 results of different kernels differ by ~1e-5 on these models


def top_margin(logprobs: Sequence[float] | None) -> float | None:
    if logprobs is None or len(logprobs) < 2:
        return None
    best, second = sorted(logprobs, reverse=True)[:2]
    return best - second


def compare_runs(model: str, task: str, a: Any, b: Any) -> list[Difference]:
    """Items whose score or response (filtered or raw) differs between two ``TaskRun``s."""
    theirs = {r.doc_hash: r for r in b.records}
    if set(theirs) != {r.doc_hash for r in a.records}:
        raise ValueError(f"{model} on {task}: the two runs scored different items")
    out = []
    for r in a.records:
        o = theirs[r.doc_hash]
        if (r.score, r.response, r.raw_response) != (o.score, o.response, o.raw_response):
            generated = r.choice_logprobs is None
            out.append(Difference(model, task, r.doc_id, r.score, o.score,
                                  r.raw_response if generated else r.response,
                                  o.raw_response if generated else o.response, r.prompt,
                                  top_margin(r.choice_logprobs), top_margin(o.choice_logprobs)))
    return out


def divergence_margins(d: Difference, models: tuple[Any, Any], devices: tuple[str, str],
                       tokenizer: Any) -> Difference:
    """Fill a generation's margins: at the first token where the two outputs part, the logit gap
    between the token each device chose, computed on that device from the shared prefix."""
    prompt = tokenizer.encode(d.prompt)
    a = tokenizer.encode(d.response_a, add_special_tokens=False)
    b = tokenizer.encode(d.response_b, add_special_tokens=False)
    k = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    if k >= len(a) or k >= len(b):
        return d  # one output ended where the other went on: a stop decision, not a token choice
    gaps = []
    for model, device, mine, other in ((models[0], devices[0], a[k], b[k]), (models[1], devices[1], b[k], a[k])):
        with torch.inference_mode():
            logits = model(torch.tensor([prompt + a[:k]], device=device)).logits[0, -1].float()
        gaps.append(float(logits[mine] - logits[other]))
    return Difference(**{**asdict(d), "margin_a": gaps[0], "margin_b": gaps[1]})


def explained(d: Difference) -> bool:
    return any(m is not None and abs(m) < NEAR_TIE for m in (d.margin_a, d.margin_b))


def compare_devices(checkpoints: dict[str, Path], tasks: dict[str, Any], devices: tuple[str, str],
                    batch_size: int, limit: int | None, workdir: Path,
                    progress: Callable[[str], None] = lambda s: None) -> tuple[int, list[Difference], list[str]]:
    """Evaluate every model on every task through the plugin on each device (fp32); return the
    number of item outcomes compared, the differences (with margins), and pairs not compared."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pytest_distillbench.engine.evaluation import Evaluator, Unavailable
    from pytest_distillbench.spec.models import ROLES
    from pytest_distillbench.spec.settings import Settings

    runs = []
    for i, device in enumerate(devices):
        specs = tuple(ModelSpec(name=n, role=n if n in ROLES else "student", path=str(p), dtype="float32",
                                device=device, batch_size=batch_size) for n, p in checkpoints.items())
        settings = Settings(rootdir=workdir, models=specs, cache_dir=workdir / f"cache-{i}",
                            baselines_dir=workdir / "baselines", use_cache=False, limit=limit)
        evaluator = Evaluator(settings, tasks, progress=progress)
        evaluator.plan((n, t) for n in checkpoints for t in tasks)
        runs.append({(n, t): evaluator.result(n, t) for n in checkpoints for t in tasks})
        del evaluator
        release_memory()
    compared, diffs, skipped = 0, [], []
    for (name, task), a in runs[0].items():
        b = runs[1][(name, task)]
        if isinstance(a, Unavailable) or isinstance(b, Unavailable):
            skipped.append(f"{name} on {task}: " + "; ".join(x.reason for x in (a, b) if isinstance(x, Unavailable)))
            continue
        compared += a.n
        diffs += compare_runs(name, task, a, b)
    explained_diffs = []
    for name in checkpoints:
        mine = [d for d in diffs if d.model == name]
        if any(d.margin_a is None for d in mine):  # generations: trace to the diverging token
            tokenizer = AutoTokenizer.from_pretrained(checkpoints[name])
            models = tuple(AutoModelForCausalLM.from_pretrained(checkpoints[name], dtype=torch.float32)
                           .to(device).eval() for device in devices)
            mine = [divergence_margins(d, models, devices, tokenizer) if d.margin_a is None else d
                    for d in mine]
            del models
            release_memory()
        explained_diffs += mine
    return compared, explained_diffs, skipped


def cross_device(args: argparse.Namespace) -> int:
    if not torch.cuda.is_available():
        print("cross-device check: CUDA is not available on this machine; it needs a GPU "
              "(run it there with --cross-device). Nothing to compare: skipped.")
        return 0
    from tabulate import tabulate

    from pytest_distillbench.spec.suites import collect_suite_paths, load_suite
    from pytest_distillbench.zoo import checkpoint

    checkpoints = {n: checkpoint(n) for n in ("teacher", "student", "control-01")
                   if (checkpoint(n) / "config.json").is_file()}
    if not checkpoints:
        print("cross-device check: no embedded zoo checkpoints are built "
              "('distillbench zoo build'): skipped.")
        return 0
    tasks = {t.id: t for p in collect_suite_paths([args.suites]) for t in load_suite(p).tasks}
    os.environ["DISTILLBENCH_ALLOW_CODE_EXECUTION"] = "1"  # the code suite runs in the sandbox
    batch = args.batch_size or 32
    with tempfile.TemporaryDirectory() as tmp:
        compared, diffs, skipped = compare_devices(
            checkpoints, tasks, ("cpu", "cuda"), batch, args.limit, Path(tmp),
            progress=lambda line: print(line, file=sys.stderr))
    print(f"cross-device (fp32, batch {batch}, {', '.join(checkpoints)}): {compared} item outcomes "
          f"compared, {len(diffs)} differ")
    for line in skipped:
        print(f"  not compared: {line}")
    if diffs:
        print(tabulate([[d.model, d.task, d.doc_id, d.score_a, d.score_b, d.response_a[:40],
                         d.response_b[:40], _fmt(d.margin_a, ".2e"), _fmt(d.margin_b, ".2e"),
                         "near-tie" if explained(d) else "UNEXPLAINED"] for d in diffs],
                       headers=["model", "task", "doc", "cpu score", "cuda score", "cpu output",
                                "cuda output", "cpu margin", "cuda margin", "why"], tablefmt="github"))
        print(f"margin: log-likelihood gap between the two best choices, or the logit gap between the "
              f"two devices' tokens where a generation first diverges; below {NEAR_TIE} nats the "
              "order of fp32 sums (different kernels on each device) decides: 'near-tie'.")
    return 0 if all(explained(d) for d in diffs) else 1


# --------------------------------------------------------------------------- command line


def config_from_args(args: argparse.Namespace) -> Config:
    size = SIZES[args.size]
    device = args.device or size.device
    return Config(size=args.size, device=device, dtype=args.dtype or size.dtype,
                  items=args.items or size.items, context=args.context or size.context,
                  prompt=args.prompt_tokens or size.prompt, gen_tokens=args.gen_tokens or size.gen_tokens,
                  batch_size=args.batch_size or size.batch_size, repeats=args.repeats,
                  clock=args.clock, threads=args.threads, tasks=tuple(args.tasks))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: the size's)")
    parser.add_argument("--dtype", default=None, help="float32 / bfloat16 (default: the size's)")
    parser.add_argument("--items", type=int, default=None, help="items per task")
    parser.add_argument("--context", type=int, default=None, help="longest prefill context (tokens)")
    parser.add_argument("--prompt-tokens", type=int, default=None, help="longest decode prompt")
    parser.add_argument("--gen-tokens", type=int, default=None, help="tokens generated per item")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--repeats", type=int, default=1, help="best of N runs per path")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="process: this process's CPU seconds (CPU runs on a shared machine)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on a CPU")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--cross-device", action="store_true",
                        help="compare the zoo models' per-item outcomes on CPU and CUDA (fp32)")
    parser.add_argument("--suites", type=Path, default=ROOT / "suites", help="for --cross-device")
    parser.add_argument("--limit", type=int, default=None, help="items per task, for --cross-device")
    args = parser.parse_args(argv)
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # what the plugin sets: nothing downloads
        os.environ.setdefault(key, "1")
    if args.cross_device:
        return cross_device(args)
    config = config_from_args(args)
    if config.clock == "process" and config.device != "cpu":
        parser.error("--clock process counts CPU seconds; use it only with --device cpu")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--size {args.size} runs on CUDA, which is not available here; "
                     "use a CPU size (--size tiny or small) or pass --device cpu")
    with tempfile.TemporaryDirectory() as tmp:
        report = run_benchmark(config, Path(tmp), log=lambda line: print(line, file=sys.stderr))
    print(f"model: random Llama-shaped {config.size}, {report.params / 1e6:.1f}M parameters, "
          f"{config.dtype} on {config.device}; {config.items} items per task, batch {config.batch_size}; "
          f"prefill contexts <= {config.context} tokens x {CHOICES} choices of {CHOICE_TOKENS}; "
          f"decode prompts <= {config.prompt} tokens, {config.gen_tokens} generated; "
          f"best of {config.repeats}; {config.clock} clock"
          + (f", {torch.get_num_threads()} torch threads" if config.device == "cpu" else ""))
    print(render(list(report.rows)))
    print("tokens/s: prefill = positions fed forward, decode = tokens generated. "
          "x raw / x plain: items/s relative to that path on the same task.")
    for line in notes(report) + target_lines(report):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
