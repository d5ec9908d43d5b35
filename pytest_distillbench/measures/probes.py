"""Next-token probes, the measuring half: one model's recorded next-token distributions
(:class:`ProbeResult`, made by ``engine/probes.py``) and how closely two models that share a
tokenizer agree: top-1 agreement and the mean KL(teacher || other), in nats.

Distributions are stored as log-probabilities. Up to ``FULL_VOCAB_MAX`` tokens the whole
distribution is kept and the KL is exact; for larger vocabularies only the ``top_k`` most likely
tokens are kept plus the mass of the rest (the tail), and the KL treats the tail as spread
evenly over the tokens not kept, an approximation the result marks with ``exact = False``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

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
