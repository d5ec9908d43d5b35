"""Next-token probes: how closely a model's next-token distribution follows the teacher's.

While a model is loaded, :func:`probe_distributions` records its distribution over the next
token after each prompt of a fixed probe set (:func:`probe_prompts`, the first test prompts of
every task). :func:`probe_agreement` then compares two models that share a tokenizer: top-1
agreement and the mean KL(teacher || other), in nats.

Distributions are stored as log-probabilities. Up to ``FULL_VOCAB_MAX`` tokens the whole
distribution is kept and the KL is exact; for larger vocabularies only the ``top_k`` most likely
tokens are kept plus the mass of the rest (the tail), and the KL treats the tail as spread
evenly over the tokens not kept, an approximation the result marks with ``exact = False``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import logsumexp

if TYPE_CHECKING:
    from .suites import TaskSpec

FULL_VOCAB_MAX = 1024


@dataclass(frozen=True)
class ProbeResult:
    """One model's next-token distributions after each probe prompt."""

    tokenizer_hash: str  # equal hashes: same token ids mean the same strings
    vocab_size: int
    prompts: tuple[str, ...]
    # Per prompt: token ids by decreasing probability and their log-probabilities. With the
    # full distribution every id appears; otherwise the top k, and ``tail`` holds the
    # log-probability of all other tokens together (-inf when nothing is left out).
    token_ids: tuple[tuple[int, ...], ...]
    logprobs: tuple[tuple[float, ...], ...]
    tail: tuple[float, ...]

    @property
    def full(self) -> bool:
        return all(len(ids) == self.vocab_size for ids in self.token_ids)

    def top1(self, index: int) -> int:
        return self.token_ids[index][0]

    def dense_logprobs(self, index: int) -> np.ndarray:
        """The distribution after one prompt over the whole vocabulary (tail spread evenly)."""
        ids = np.asarray(self.token_ids[index], dtype=np.int64)
        kept = np.asarray(self.logprobs[index], dtype=float)
        missing = self.vocab_size - ids.size
        filler = self.tail[index] - math.log(missing) if missing > 0 else -math.inf
        dense = np.full(self.vocab_size, filler)
        dense[ids] = kept
        return dense

    def subset(self, prompts: Iterable[str]) -> ProbeResult:
        """The same result restricted to the given prompts (e.g. those of one task)."""
        keep = set(prompts)
        rows = [i for i, p in enumerate(self.prompts) if p in keep]
        return ProbeResult(self.tokenizer_hash, self.vocab_size,
                           tuple(self.prompts[i] for i in rows),
                           tuple(self.token_ids[i] for i in rows),
                           tuple(self.logprobs[i] for i in rows), tuple(self.tail[i] for i in rows))

    def to_dict(self) -> dict[str, Any]:
        return {"tokenizer_hash": self.tokenizer_hash, "vocab_size": self.vocab_size,
                "prompts": list(self.prompts), "token_ids": [list(x) for x in self.token_ids],
                "logprobs": [list(x) for x in self.logprobs],
                "tail": [None if math.isinf(t) else t for t in self.tail]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeResult:
        return cls(tokenizer_hash=data["tokenizer_hash"], vocab_size=int(data["vocab_size"]),
                   prompts=tuple(data["prompts"]),
                   token_ids=tuple(tuple(int(i) for i in x) for x in data["token_ids"]),
                   logprobs=tuple(tuple(float(v) for v in x) for x in data["logprobs"]),
                   tail=tuple(-math.inf if t is None else float(t) for t in data["tail"]))


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


def kl_divergence(p_log: np.ndarray, q_log: np.ndarray) -> float:
    """KL(p || q) in nats from log-probabilities; tokens p never produces contribute nothing."""
    p = np.exp(p_log)
    with np.errstate(invalid="ignore"):  # 0 * -inf where p has no mass; masked just below
        terms = np.where(p > 0, p * (p_log - q_log), 0.0)
    return float(max(terms.sum(), 0.0))


def probe_agreement(teacher: ProbeResult, other: ProbeResult) -> dict[str, Any]:
    """Top-1 agreement and mean KL(teacher || other) over the prompts both were probed on.

    Only meaningful when the two share a tokenizer; otherwise the figures are None and
    ``probe_note`` says why.
    """
    empty: dict[str, Any] = {"probe_prompts": 0, "probe_top1": None, "probe_kl": None,
                             "probe_exact": None}
    if teacher.tokenizer_hash != other.tokenizer_hash or teacher.vocab_size != other.vocab_size:
        return {**empty, "probe_note": "different tokenizers: next-token distributions are not comparable"}
    where = {p: i for i, p in enumerate(other.prompts)}
    pairs = [(i, where[p]) for i, p in enumerate(teacher.prompts) if p in where]
    if not pairs:
        return {**empty, "probe_note": "no probe prompts in common"}
    top1 = [teacher.top1(i) == other.top1(j) for i, j in pairs]
    kls = [kl_divergence(teacher.dense_logprobs(i), other.dense_logprobs(j)) for i, j in pairs]
    return {"probe_prompts": len(pairs), "probe_top1": float(np.mean(top1)),
            "probe_kl": float(np.mean(kls)), "probe_exact": teacher.full and other.full,
            "probe_note": ""}


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

            from .tasks import code

            code.register()  # code suites name the sandbox filter
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
