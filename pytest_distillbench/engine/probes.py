"""Next-token probes, the running half: while a model is loaded, :func:`probe_distributions`
records its distribution over the next token after each prompt of a fixed probe set
(:func:`probe_prompts`, the first test prompts of every task). Comparing two models' results
is a measure (``measures/probes.py``, which also says how distributions are stored).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import logsumexp

from ..measures.probes import FULL_VOCAB_MAX, ProbeResult

if TYPE_CHECKING:
    from ..spec.suites import TaskSpec


def tokenizer_hash(tokenizer: Any) -> str:
    """sha256 of the token-to-id mapping: the ids of two models mean the same only if it matches."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()


def summarise(logprobs: np.ndarray, *, top_k: int = 64) -> tuple[tuple[int, ...], tuple[float, ...], float]:
    """One next-token log-distribution -> (ids by decreasing probability, their log-probs, tail)."""
    v = logprobs.size
    if v <= FULL_VOCAB_MAX or top_k >= v:
        order = np.argsort(-logprobs, kind="stable")
        return tuple(int(i) for i in order), tuple(float(x) for x in logprobs[order]), -math.inf
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    part = np.argpartition(-logprobs, top_k - 1)[:top_k]
    order = part[np.argsort(-logprobs[part], kind="stable")]
    rest = np.delete(logprobs, order)
    return tuple(int(i) for i in order), tuple(float(x) for x in logprobs[order]), float(logsumexp(rest))


def probe_distributions(lm: Any, prompts: Sequence[str], *, top_k: int = 64,
                        batch_size: int = 16) -> ProbeResult:
    """Next-token distributions of lm-eval's ``HFLM`` after each prompt.

    Prompts are encoded with ``lm.tok_encode`` (as lm-eval encodes contexts), truncated from the
    left to the model's context length and run in right-padded batches; the last real position
    of each row gives the distribution, so padding never changes it under causal attention.
    """
    import torch

    if not prompts:
        raise ValueError("probe_distributions needs at least one prompt")
    tokenizer = lm.tokenizer
    vocab = len(tokenizer)
    max_length = int(getattr(lm, "max_length", 2048))
    encoded = []
    for p in prompts:
        ids = list(lm.tok_encode(p))[-max_length:]
        if not ids:
            raise ValueError(f"probe prompt {p!r} encodes to no tokens")
        encoded.append(ids)
    ids_out: list[tuple[int, ...]] = []
    lps_out: list[tuple[float, ...]] = []
    tails: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start:start + batch_size]
            width = max(len(x) for x in chunk)
            input_ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, ids in enumerate(chunk):
                input_ids[row, :len(ids)] = torch.tensor(ids)
                mask[row, :len(ids)] = 1
            logits = lm.model(input_ids=input_ids.to(lm.device), attention_mask=mask.to(lm.device)).logits
            last = torch.tensor([len(x) - 1 for x in chunk], device=logits.device)
            # Embedding matrices are often padded beyond the tokenizer: those ids are never text.
            vocab = min(vocab, logits.shape[-1])
            picked = logits[torch.arange(len(chunk), device=logits.device), last, :vocab].float()
            logprobs = torch.log_softmax(picked, dim=-1).cpu().numpy().astype(float)
            for row in logprobs:
                ids, lps, tail = summarise(row, top_k=top_k)
                ids_out.append(ids)
                lps_out.append(lps)
                tails.append(tail)
    return ProbeResult(tokenizer_hash=tokenizer_hash(tokenizer), vocab_size=vocab,
                       prompts=tuple(prompts), token_ids=tuple(ids_out), logprobs=tuple(lps_out),
                       tail=tuple(tails))


def probe_prompts(tasks: Iterable[TaskSpec], per_task: int = 8, *, seed: int = 1234,
                  task_manager: Callable[[bool], Any] | None = None) -> list[str]:
    """The contexts lm-eval builds for the first ``per_task`` test documents of each task.

    Deterministic: same tasks, same prompts (few-shot examples drawn with ``seed``, as the
    evaluator does). A task whose data cannot be loaded here contributes no prompts.
    ``task_manager(builtin)`` returns lm-eval's ``TaskManager`` for built-in tasks (True) or
    suite tasks (False); pass the evaluator's to reuse its index of tasks.
    """
    if per_task < 1:
        raise ValueError(f"per_task must be at least 1, got {per_task}")
    managers: dict[bool, Any] = {}

    def manager(builtin: bool) -> Any:
        if task_manager is not None:
            return task_manager(builtin)
        if builtin not in managers:
            from lm_eval.tasks import TaskManager

            from .tasks import code_filter

            code_filter.register()  # code suites name the sandbox filter
            managers[builtin] = TaskManager(include_defaults=builtin)
        return managers[builtin]

    prompts: list[str] = []
    seen: set[str] = set()
    for spec in tasks:
        try:
            loaded = manager(spec.builtin is not None).load([spec.lm_eval_config()])
            (task,) = loaded["tasks"].values()
            task.set_fewshot_seed(seed=seed)
            task.build_all_requests(limit=per_task, rank=0, world_size=1)
        except Exception:  # lm-eval raises many types for data it cannot reach offline
            continue
        for instance in task.instances:
            context = instance.arguments[0] if instance.arguments else None
            if isinstance(context, str) and context and context not in seen:
                seen.add(context)
                prompts.append(context)
    return prompts
