"""What does counting FLOPs cost next to the evaluation it accounts for? (issue #5; target < 1%)

    python benchmarks/flops.py [--items 2000] [--sample 16] [--seed 0]

Builds ``--items`` seeded, realistic item records (multiple choice with four choices,
single log-likelihoods, and generations), then, in one run and on the same requests:

  estimator   best-of-5 wall time of ``records_flops`` over every record, per request
  evaluation  wall time of running a random ``--sample`` of those requests through a tiny
              random-initialised GPT-2 the way lm-eval's HF backend does (a forward over
              context + continuation[:-1], or greedy ``generate`` of the recorded length),
              per request

and prints the estimator's time as a share of the evaluation's. The tiny model (4 layers,
width 192, the size of the embedded teacher) is the least favourable case: any larger model
makes evaluation slower and the share smaller. Requests run one at a time; lm-eval batches
them, which divides the evaluation's time per request by up to the batch size and multiplies
the share by as much: the printed share has room for that.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from tabulate import tabulate  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from pytest_distillbench.measures.flops import Architecture, records_flops, request_flops  # noqa: E402
from pytest_distillbench.records import ItemRecord, Request  # noqa: E402

VOCAB = 100


def make_records(n_items: int, rng: random.Random) -> list[ItemRecord]:
    """A mix like the bundled suites: MC reasoning, log-likelihood scoring, math/code generation."""
    records = []
    for doc_id in range(n_items):
        roll = rng.random()
        if roll < 0.4:
            context = rng.randint(60, 400)
            requests = tuple(Request("multiple_choice", context, rng.randint(1, 8)) for _ in range(4))
        elif roll < 0.7:
            requests = (Request("loglikelihood", rng.randint(20, 300), rng.randint(1, 20)),)
        else:
            requests = (Request("generate_until", rng.randint(30, 300), rng.randint(4, 120)),)
        records.append(ItemRecord(
            doc_id=doc_id, doc_hash=f"{doc_id:08x}", prompt="", target="", response="", raw_response="",
            score=1.0, prompt_tokens=sum(r.context_tokens for r in requests),
            output_tokens=sum(r.output_tokens for r in requests), requests=requests))
    return records


def time_estimator(arch: Architecture, records: list[ItemRecord], repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        records_flops(arch, records)
        best = min(best, time.perf_counter() - start)
    return best


def evaluate(model: GPT2LMHeadModel, request: Request, rng: random.Random) -> None:
    """Run one request the way lm-eval's HF backend would (batch of one)."""
    if request.kind == "generate_until":
        ids = torch.tensor([[rng.randrange(1, VOCAB) for _ in range(request.context_tokens)]])
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=request.output_tokens,
                       min_new_tokens=request.output_tokens, do_sample=False, pad_token_id=0)
    else:
        length = request.context_tokens + request.output_tokens - 1
        model(torch.tensor([[rng.randrange(1, VOCAB) for _ in range(length)]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--sample", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    records = make_records(args.items, rng)
    requests = [r for record in records for r in record.requests]
    config = GPT2Config(n_layer=4, n_embd=192, n_head=6, vocab_size=VOCAB, n_positions=512)
    arch = Architecture.from_config(config)

    estimator_s = time_estimator(arch, records)

    torch.manual_seed(args.seed)
    model = GPT2LMHeadModel(config).eval()
    sample = rng.sample(requests, min(args.sample, len(requests)))
    with torch.inference_mode():
        evaluate(model, sample[0], rng)  # warm-up
        start = time.perf_counter()
        for request in sample:
            evaluate(model, request, rng)
        evaluation_s = time.perf_counter() - start
    sample_flops = sum(sum(request_flops(arch, r)) for r in sample)

    per_estimate = estimator_s / len(requests)
    per_evaluation = evaluation_s / len(sample)
    print(tabulate([
        ["requests timed", len(requests), len(sample)],
        ["seconds", f"{estimator_s:.4f}", f"{evaluation_s:.2f}"],
        ["per request", f"{per_estimate * 1e6:.2f} µs", f"{per_evaluation * 1e3:.2f} ms"],
        ["analytic FLOP/s of the evaluation", "", f"{sample_flops / evaluation_s:.3g}"],
    ], headers=["", "estimator (records_flops)", f"evaluation (GPT-2 4x192, {torch.get_num_threads()} threads)"]))
    share = per_estimate / per_evaluation
    print(f"\nestimator time / evaluation time per request: {share:.4%} (target < 1%: "
          f"{'met' if share < 0.01 else 'NOT met'})")


if __name__ == "__main__":
    main()
