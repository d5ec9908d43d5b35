"""Compute accounting: analytic FLOPs per request, a measured cross-check, and derived figures.

What is counted
    Only matrix multiplications, two FLOPs per multiply-add, because they are more than 99% of a
    transformer's work and the only thing ``torch.utils.flop_counter`` counts as well:

    * ``2 * n_active_params`` per processed position: every projection in the blocks (attention,
      MLP, router, shared and *routed-to* experts). Embedding lookups, norms, activations,
      softmax, rotary embeddings and bias additions are left out.
    * attention: ``2 * n_heads * (head_dim + v_head_dim)`` per layer for every (query, key) pair
      actually attended, i.e. the scores ``Q·Kᵀ`` and the weighted sum ``P·V``. Causally a query
      at position ``p`` sees ``p + 1`` keys (at most ``sliding_window`` on sliding-window layers).
    * the LM head, ``2 * d_model * vocab_size`` per position whose logits are computed (see
      ``logits_positions``).

How lm-eval drives a model (and so what a request costs)
    * log-likelihood: one forward over ``(context + continuation)[:-1]``; the last continuation
      token is only a target, never an input (lm-eval ``HFLM._loglikelihood_tokens``). Logits
      are computed for every input position.
    * generation: ``model.generate`` prefills the prompt, then feeds each generated token back
      against a KV cache. transformers' ``generate`` asks for the last position's logits only
      (``logits_to_keep=1``), so the prefill's LM head runs once, not once per prompt token.
    * Padding inside a batch, and rows of a batch that keep decoding after their own stop
      sequence, are real work that this per-request estimate does not see.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import DistillbenchError
from ..records import ItemRecord, Request

LOGLIKELIHOOD_KINDS = frozenset({"loglikelihood", "loglikelihood_rolling", "multiple_choice"})
GENERATION_KINDS = frozenset({"generate_until"})


# --------------------------------------------------------------------------- architecture


def _attention_params(d_model: int, n_heads: int, n_kv_heads: int, head_dim: int) -> int:
    """q, k, v and output projections of standard (grouped-query) attention."""
    return 2 * d_model * n_heads * head_dim + 2 * d_model * n_kv_heads * head_dim


def _mlp_params(d_model: int, d_ff: int, gated: bool) -> int:
    """Gated MLPs (SwiGLU) have gate, up and down matrices; plain ones only up and down."""
    return (3 if gated else 2) * d_model * d_ff


@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only transformer, as far as its FLOPs are concerned.

    ``n_params`` / ``n_active_params`` count the matmul parameters of the transformer blocks:
    every projection weight, with all routed experts in ``n_params`` and only the experts a
    token is routed to (plus shared experts) in ``n_active_params``. The embedding lookup and the
    LM head are *not* included; the LM head (``d_model * vocab_size``) is counted separately
    because how many positions need logits depends on the request.
    """

    model_type: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int  # query/key width per head
    d_ff: int  # intermediate size of the dense MLP layers
    vocab_size: int
    n_params: float
    n_active_params: float
    gated_mlp: bool = False
    v_head_dim: int | None = None  # value width per head, when it differs (MLA)
    n_experts: int = 0  # routed experts per MoE layer; 0 means a dense model
    experts_per_token: int = 0
    n_shared_experts: int = 0
    expert_d_ff: int = 0  # intermediate size of one routed expert
    tied_embeddings: bool = False
    sliding_window: int | None = None
    n_sliding_layers: int = 0  # layers that use the sliding window; the rest attend fully
    # parameters (all layers) applied again to every *cached* position on each forward: MLA in
    # transformers caches the compressed latent and re-expands all of it each step
    cached_expand_params: float = 0.0

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff",
                     "vocab_size", "n_experts", "experts_per_token", "n_shared_experts",
                     "expert_d_ff", "n_sliding_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"Architecture.{name} must be >= 0, got {getattr(self, name)}")
        if self.cached_expand_params < 0:
            raise ValueError("cached_expand_params must be >= 0")
        if not 0 <= self.n_active_params <= self.n_params:
            raise ValueError(f"need 0 <= n_active_params ({self.n_active_params}) <= n_params ({self.n_params})")
        if self.experts_per_token > self.n_experts:
            raise ValueError(f"experts_per_token ({self.experts_per_token}) exceeds n_experts ({self.n_experts})")
        if self.n_sliding_layers > self.n_layers:
            raise ValueError("n_sliding_layers exceeds n_layers")
        if self.n_sliding_layers and not self.sliding_window:
            raise ValueError("n_sliding_layers is set but sliding_window is not")

    @property
    def value_head_dim(self) -> int:
        return self.head_dim if self.v_head_dim is None else self.v_head_dim

    @property
    def lm_head_params(self) -> int:
        return self.d_model * self.vocab_size

    @property
    def attention_flops_per_pair(self) -> int:
        """FLOPs of one (query, key) pair in one layer: scores plus the weighted sum of values."""
        return 2 * self.n_heads * (self.head_dim + self.value_head_dim)

    @classmethod
    def build(cls, *, n_layers: int, d_model: int, n_heads: int, d_ff: int, vocab_size: int,
              n_kv_heads: int | None = None, head_dim: int | None = None, gated_mlp: bool = True,
              n_experts: int = 0, experts_per_token: int = 0, expert_d_ff: int | None = None,
              n_shared_experts: int = 0, shared_d_ff: int = 0, n_dense_layers: int | None = None,
              tied_embeddings: bool = False, sliding_window: int | None = None,
              n_sliding_layers: int = 0, model_type: str = "custom") -> Architecture:
        """An architecture with standard (grouped-query) attention, dense or mixture-of-experts.

        For MoE (``n_experts > 0``) every layer is an MoE layer unless ``n_dense_layers`` says
        how many use the dense MLP of width ``d_ff``; each routed expert has width
        ``expert_d_ff`` (default ``d_ff``) and the shared experts together ``shared_d_ff``.
        """
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        head_dim = d_model // n_heads if head_dim is None else head_dim
        expert_d_ff = d_ff if expert_d_ff is None else expert_d_ff
        if n_experts:
            n_dense = 0 if n_dense_layers is None else n_dense_layers
        else:
            n_dense = n_layers
        n_moe = n_layers - n_dense
        if n_moe < 0:
            raise ValueError("n_dense_layers exceeds n_layers")
        attention = _attention_params(d_model, n_heads, n_kv_heads, head_dim)
        dense_mlp = _mlp_params(d_model, d_ff, gated_mlp)
        shared = _mlp_params(d_model, shared_d_ff, gated_mlp)
        total, active = _moe_layer_params(d_model, n_experts, experts_per_token,
                                          _mlp_params(d_model, expert_d_ff, gated_mlp), shared)
        return cls(
            model_type=model_type, n_layers=n_layers, d_model=d_model, n_heads=n_heads,
            n_kv_heads=n_kv_heads, head_dim=head_dim, d_ff=d_ff, vocab_size=vocab_size,
            n_params=float(n_layers * attention + n_dense * dense_mlp + n_moe * total),
            n_active_params=float(n_layers * attention + n_dense * dense_mlp + n_moe * active),
            gated_mlp=gated_mlp, n_experts=n_experts, experts_per_token=experts_per_token,
            n_shared_experts=n_shared_experts, expert_d_ff=expert_d_ff if n_experts else 0,
            tied_embeddings=tied_embeddings, sliding_window=sliding_window,
            n_sliding_layers=n_sliding_layers,
        )

    @classmethod
    def declared(cls, n_params: float, n_active_params: float | None = None) -> Architecture:
        """A model known only by its declared size (e.g. behind an API).

        Costs exactly ``2 * N`` FLOPs per processed token (``N`` = active parameters), with no
        attention term and no separate LM head, since neither shape is known: the figure
        understates long contexts.
        """
        if not n_params > 0:
            raise DistillbenchError(f"declared parameter count must be positive, got {n_params}",
                                    key="params", fix="set params to the model's parameter count, e.g. 7e9")
        active = n_params if n_active_params is None else n_active_params
        if not 0 < active <= n_params:
            raise DistillbenchError(
                f"declared active parameters ({active}) must be positive and at most params ({n_params})",
                key="active_params", fix="set active_params <= params (MoE: parameters used per token)")
        return cls(model_type="declared", n_layers=0, d_model=0, n_heads=0, n_kv_heads=0,
                   head_dim=0, d_ff=0, vocab_size=0, n_params=float(n_params),
                   n_active_params=float(active))

    @classmethod
    def from_config(cls, config: Any, *, source: object | None = None) -> Architecture:
        """From a transformers ``PretrainedConfig`` or the contents of a ``config.json``.

        ``source`` (e.g. the file the config came from) is named in errors.
        """
        model_type = config.get("model_type") if isinstance(config, dict) else getattr(config, "model_type", None)
        reader = _READERS.get(str(model_type))
        if reader is None:
            raise DistillbenchError(
                f"model type {model_type!r} has no FLOPs formula", path=source, key="model_type",
                fix=f"use one of: {', '.join(sorted(_READERS))}; or declare the model's size "
                    "(params, and active_params for mixture-of-experts) in settings")
        if isinstance(config, dict):
            from transformers import CONFIG_MAPPING

            # transformers' own defaults fill in what the file leaves out
            config = CONFIG_MAPPING[model_type].from_dict(config)
        return reader(config, source)

    @classmethod
    def from_path(cls, directory: str | Path) -> Architecture:
        """From a checkpoint directory's ``config.json``."""
        path = Path(directory) / "config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise DistillbenchError("no config.json, so the architecture is unknown", path=path,
                                    fix="point the model at a checkpoint directory, or declare params") from exc
        except json.JSONDecodeError as exc:
            raise DistillbenchError(f"not valid JSON ({exc.msg}, line {exc.lineno})", path=path) from exc
        return cls.from_config(data, source=path)


def _moe_layer_params(d_model: int, n_experts: int, experts_per_token: int, expert: int,
                      shared: int) -> tuple[int, int]:
    """(total, active) matmul parameters of one MoE layer: router + experts + shared experts."""
    if not n_experts:
        return 0, 0
    router = d_model * n_experts
    return router + n_experts * expert + shared, router + experts_per_token * expert + shared


def _sliding_layers(config: Any) -> tuple[int | None, int]:
    window = getattr(config, "sliding_window", None)
    if not window:
        return None, 0
    layer_types = getattr(config, "layer_types", None)
    if layer_types is None:  # Mistral: one window for every layer
        return int(window), int(config.num_hidden_layers)
    count = sum(1 for kind in layer_types if kind == "sliding_attention")
    return (int(window), count) if count else (None, 0)


def _gqa_shape(config: Any) -> dict[str, int]:
    n_heads = int(config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
    window, n_sliding = _sliding_layers(config)
    return {
        "n_layers": int(config.num_hidden_layers), "d_model": int(config.hidden_size),
        "n_heads": n_heads, "n_kv_heads": int(getattr(config, "num_key_value_heads", None) or n_heads),
        "head_dim": int(head_dim), "vocab_size": int(config.vocab_size),
        "tied_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        "sliding_window": window, "n_sliding_layers": n_sliding,
    }


def _gpt2(config: Any, source: object | None = None) -> Architecture:
    d_model = int(config.n_embd)
    return Architecture.build(
        model_type="gpt2", n_layers=int(config.n_layer), d_model=d_model, n_heads=int(config.n_head),
        d_ff=int(config.n_inner or 4 * d_model), vocab_size=int(config.vocab_size), gated_mlp=False,
        tied_embeddings=bool(config.tie_word_embeddings))


def _dense_gated(config: Any, source: object | None = None) -> Architecture:
    return Architecture.build(model_type=config.model_type, d_ff=int(config.intermediate_size),
                              gated_mlp=True, **_gqa_shape(config))


def _mixtral(config: Any, source: object | None = None) -> Architecture:
    return Architecture.build(
        model_type="mixtral", d_ff=int(config.intermediate_size), gated_mlp=True,
        n_experts=int(config.num_local_experts), experts_per_token=int(config.num_experts_per_tok),
        **_gqa_shape(config))


def _qwen_moe(config: Any, source: object | None = None) -> Architecture:
    """Qwen2-MoE / Qwen3-MoE: MoE on every ``decoder_sparse_step``-th layer not in ``mlp_only_layers``."""
    n_layers = int(config.num_hidden_layers)
    n_experts = int(getattr(config, "num_experts", None) or getattr(config, "num_local_experts", 0) or 0)
    step = int(getattr(config, "decoder_sparse_step", 1) or 1)
    dense_only = set(getattr(config, "mlp_only_layers", None) or ())
    n_moe = sum(1 for i in range(n_layers)
                if n_experts > 0 and i not in dense_only and (i + 1) % step == 0)
    shared_d_ff = int(getattr(config, "shared_expert_intermediate_size", 0) or 0)
    arch = Architecture.build(
        model_type=config.model_type, d_ff=int(config.intermediate_size), gated_mlp=True,
        n_experts=n_experts if n_moe else 0, experts_per_token=int(config.num_experts_per_tok) if n_moe else 0,
        expert_d_ff=int(config.moe_intermediate_size), n_shared_experts=1 if shared_d_ff else 0,
        shared_d_ff=shared_d_ff, n_dense_layers=n_layers - n_moe, **_gqa_shape(config))
    if not shared_d_ff:
        return arch
    # Qwen2-MoE scales its shared expert by a learned sigmoid gate: one d_model -> 1 projection
    gate = n_moe * int(config.hidden_size)
    return _with_params(arch, arch.n_params + gate, arch.n_active_params + gate)


def _deepseek(config: Any, source: object | None = None) -> Architecture:
    """DeepSeek-V2/V3 with multi-head latent attention (MLA), counted as transformers runs it.

    transformers (checked against 5.24) caches the compressed latent and, on every forward,
    decompresses the latent of *all* positions, cached ones included, into full per-head keys and
    values (``kv_b_proj``); attention is then ordinary multi-head attention with query/key width
    ``qk_nope_head_dim + qk_rope_head_dim`` and value width ``v_head_dim``. The re-expansion of
    cached positions is ``cached_expand_params``. Older transformers releases cached the expanded
    keys and values instead (no re-expansion); engines that absorb ``kv_b_proj`` into the query
    and output projections (DeepSeek's own, vLLM) attend over the ``kv_lora_rank``-wide latent:
    both do different work from what is counted here. V3's multi-token-prediction layers are not
    run by transformers and are not counted.
    """
    d_model, n_heads = int(config.hidden_size), int(config.num_attention_heads)
    nope, rope, v_dim = int(config.qk_nope_head_dim), int(config.qk_rope_head_dim), int(config.v_head_dim)
    kv_rank, q_rank = int(config.kv_lora_rank), config.q_lora_rank
    qk_dim = nope + rope
    q_proj = d_model * n_heads * qk_dim if q_rank is None else d_model * int(q_rank) + int(q_rank) * n_heads * qk_dim
    attention = (q_proj + d_model * (kv_rank + rope) + kv_rank * n_heads * (nope + v_dim)
                 + n_heads * v_dim * d_model)
    n_layers = int(config.num_hidden_layers)
    n_experts = int(config.n_routed_experts or 0)
    k = config.num_experts_per_tok
    if n_experts and k is None:
        raise DistillbenchError("num_experts_per_tok is not set, so the active experts are unknown",
                                path=source, key="num_experts_per_tok", fix="set it in config.json (DeepSeek-V2: 6)")
    n_dense = min(int(config.first_k_dense_replace or 0), n_layers) if n_experts else n_layers
    n_moe = n_layers - n_dense
    n_shared = int(config.n_shared_experts or 0)
    expert_d_ff = int(config.moe_intermediate_size)
    total, active = _moe_layer_params(d_model, n_experts, int(k or 0), _mlp_params(d_model, expert_d_ff, True),
                                      _mlp_params(d_model, n_shared * expert_d_ff, True))
    dense_mlp = _mlp_params(d_model, int(config.intermediate_size), True)
    expand = kv_rank * n_heads * (nope + v_dim)
    return Architecture(
        model_type=config.model_type, n_layers=n_layers, d_model=d_model, n_heads=n_heads,
        n_kv_heads=n_heads, head_dim=qk_dim, v_head_dim=v_dim, d_ff=int(config.intermediate_size),
        vocab_size=int(config.vocab_size),
        n_params=float(n_layers * attention + n_dense * dense_mlp + n_moe * total),
        n_active_params=float(n_layers * attention + n_dense * dense_mlp + n_moe * active),
        gated_mlp=True, n_experts=n_experts if n_moe else 0, experts_per_token=int(k or 0) if n_moe else 0,
        n_shared_experts=n_shared, expert_d_ff=expert_d_ff if n_moe else 0,
        tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        cached_expand_params=float(n_layers * expand))


def _with_params(arch: Architecture, n_params: float, n_active_params: float) -> Architecture:
    return replace(arch, n_params=float(n_params), n_active_params=float(n_active_params))


_READERS = {
    "gpt2": _gpt2,
    "llama": _dense_gated,
    "mistral": _dense_gated,
    "qwen2": _dense_gated,
    "qwen3": _dense_gated,
    "mixtral": _mixtral,
    "qwen2_moe": _qwen_moe,
    "qwen3_moe": _qwen_moe,
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
}


# --------------------------------------------------------------------------- analytic FLOPs


def _check_count(name: str, value: int) -> int:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def _sum_min(lo: int, hi: int, cap: int) -> int:
    """sum(min(v, cap) for v in range(lo, hi + 1)) in closed form (lo >= 1)."""
    if hi < lo:
        return 0
    if hi <= cap:
        return (lo + hi) * (hi - lo + 1) // 2
    if lo > cap:
        return cap * (hi - lo + 1)
    return (lo + cap) * (cap - lo + 1) // 2 + cap * (hi - cap)


def attended_pairs(new_tokens: int, past_tokens: int = 0, *, causal: bool = True,
                   window: int | None = None) -> int:
    """(query, key) pairs one layer scores when ``new_tokens`` follow ``past_tokens``.

    Causally the query at absolute position ``p`` sees keys ``0..p`` (the last ``window`` of them
    under a sliding window). Non-causally every query sees every key present; that is also what
    ``FlopCounterMode`` reports for a masked attention, since it does not discount the mask.
    """
    new_tokens, past_tokens = _check_count("new_tokens", new_tokens), _check_count("past_tokens", past_tokens)
    if not causal:
        return new_tokens * (past_tokens + new_tokens)
    # query positions p = past..past+new-1 see p + 1 keys each
    cap = window if window else past_tokens + new_tokens
    return _sum_min(past_tokens + 1, past_tokens + new_tokens, cap)


def forward_flops(arch: Architecture, new_tokens: int, past_tokens: int = 0, *, causal: bool = True,
                  logits_positions: int | None = None) -> float:
    """FLOPs of one forward pass over ``new_tokens`` positions after ``past_tokens`` cached ones.

    ``logits_positions``: how many of the new positions go through the LM head. ``None`` means
    all of them, as a plain ``model(input_ids)`` call computes (lm-eval's log-likelihood path);
    ``generate`` computes only the last one (``logits_to_keep=1``).
    """
    new_tokens = _check_count("new_tokens", new_tokens)
    heads = new_tokens if logits_positions is None else min(_check_count("logits_positions", logits_positions), new_tokens)
    full_layers = arch.n_layers - arch.n_sliding_layers
    pairs = full_layers * attended_pairs(new_tokens, past_tokens, causal=causal)
    if arch.n_sliding_layers:
        pairs += arch.n_sliding_layers * attended_pairs(new_tokens, past_tokens, causal=causal,
                                                        window=arch.sliding_window)
    return float(2 * arch.n_active_params * new_tokens + arch.attention_flops_per_pair * pairs
                 + 2 * arch.lm_head_params * heads + 2 * arch.cached_expand_params * past_tokens)


def loglikelihood_flops(arch: Architecture, context_tokens: int, continuation_tokens: int, *,
                        causal: bool = True) -> float:
    """One forward over context + continuation without a cache, minus the final token.

    lm-eval feeds ``(context + continuation)[:-1]``: the last continuation token is only scored,
    never fed in, and logits are computed for every input position.
    """
    total = _check_count("context_tokens", context_tokens) + _check_count("continuation_tokens", continuation_tokens)
    return forward_flops(arch, max(total - 1, 0), causal=causal)


def generation_flops(arch: Architecture, prompt_tokens: int, generated_tokens: int, *,
                     kv_cache: bool = True, causal: bool = True,
                     logits_positions: int | None = 1) -> tuple[float, float]:
    """(prefill, decode) FLOPs of greedy generation of ``generated_tokens`` after a prompt.

    The prefill forward over the prompt yields the first generated token; each later token costs
    one decode forward of the previous token against the growing KV cache (so ``generated - 1``
    decode steps: the last token is never fed back). ``kv_cache=False`` instead recomputes the
    whole prefix for every step. ``logits_positions`` is per forward; the default 1 matches
    transformers' ``generate`` (``logits_to_keep=1``); ``None`` computes logits everywhere.
    """
    prompt_tokens = _check_count("prompt_tokens", prompt_tokens)
    generated_tokens = _check_count("generated_tokens", generated_tokens)
    prefill = forward_flops(arch, prompt_tokens, causal=causal, logits_positions=logits_positions)
    if kv_cache:
        return prefill, _cached_decode_flops(arch, prompt_tokens, generated_tokens - 1, logits_positions)
    decode = sum(forward_flops(arch, prompt_tokens + step, causal=causal, logits_positions=logits_positions)
                 for step in range(1, generated_tokens))
    return prefill, float(decode)


def _cached_decode_flops(arch: Architecture, prompt_tokens: int, steps: int,
                         logits_positions: int | None) -> float:
    """Sum of ``forward_flops(arch, 1, prompt_tokens + s)`` for s in 0..steps-1, in closed form.

    A single query sees every cached key whether or not a mask is applied, so ``causal`` does not
    matter here; the closed form keeps long generations as cheap to estimate as short ones.
    """
    if steps <= 0:
        return 0.0
    heads = 1 if logits_positions is None or logits_positions >= 1 else 0
    first, last = prompt_tokens + 1, prompt_tokens + steps  # keys seen by the first and last step
    full_layers = arch.n_layers - arch.n_sliding_layers
    pairs = full_layers * _sum_min(first, last, last)
    if arch.n_sliding_layers:
        pairs += arch.n_sliding_layers * _sum_min(first, last, arch.sliding_window or last)
    cached = steps * prompt_tokens + steps * (steps - 1) // 2  # cached positions, summed over steps
    return float(2 * arch.n_active_params * steps + arch.attention_flops_per_pair * pairs
                 + 2 * arch.lm_head_params * heads * steps + 2 * arch.cached_expand_params * cached)


def request_flops(arch: Architecture, request: Request) -> tuple[float, float]:
    """(prefill, decode) FLOPs of one request; log-likelihood work counts as prefill."""
    if request.kind in LOGLIKELIHOOD_KINDS:
        return loglikelihood_flops(arch, request.context_tokens, request.output_tokens), 0.0
    if request.kind in GENERATION_KINDS:
        return generation_flops(arch, request.context_tokens, request.output_tokens)
    raise ValueError(f"unknown request kind {request.kind!r}; expected one of "
                     f"{sorted(LOGLIKELIHOOD_KINDS | GENERATION_KINDS)}")


def item_flops(arch: Architecture, record: ItemRecord) -> tuple[float, float]:
    """(prefill, decode) FLOPs of all requests made for one item."""
    if not record.requests:
        raise ValueError(f"item {record.doc_id} has no recorded requests; its FLOPs are unknown")
    prefill = decode = 0.0
    for request in record.requests:
        p, d = request_flops(arch, request)
        prefill += p
        decode += d
    return prefill, decode


def records_flops(arch: Architecture, records: Iterable[ItemRecord]) -> tuple[float, float]:
    """(prefill, decode) FLOPs summed over items, e.g. all records of a ``TaskRun``."""
    prefill = decode = 0.0
    for record in records:
        p, d = item_flops(arch, record)
        prefill += p
        decode += d
    return prefill, decode


# --------------------------------------------------------------------------- measured FLOPs


@contextlib.contextmanager
def counting(model: Any) -> Iterator[Any]:
    """Count a model's matmul FLOPs, forcing code paths the counter can see.

    The math SDPA backend runs attention as plain matmuls (the fused CPU flash kernel has no
    counter formula), and MoE experts run through transformers' eager per-expert loop, because
    the default ``grouped_mm`` path has no counter formula either and would count as zero.
    """
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    config = getattr(model, "config", None)
    experts = getattr(config, "_experts_implementation", None)
    swap = experts not in (None, "eager") and hasattr(model, "set_experts_implementation")
    if swap:
        model.set_experts_implementation("eager")
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
            yield counter
    finally:
        if swap:
            model.set_experts_implementation(experts)


def measure_forward_flops(model: Any, input_ids: Any) -> float:
    """Counted FLOPs of ``model(input_ids)`` (no cache, logits for every position).

    The counter charges attention for the full query × key square; it does not discount the
    causal mask. Compare with ``forward_flops(arch, n, causal=False)``.
    """
    with counting(model) as counter:
        model(input_ids, use_cache=False)
    return float(counter.get_total_flops())


def measure_decode_flops(model: Any, input_ids: Any) -> float:
    """Counted FLOPs of one cached decode step: the last token of ``input_ids`` after the rest.

    The prefix is prefilled uncounted; compare with ``forward_flops(arch, 1, past_tokens=n - 1)``
    (exact: a single query attends every cached key, so the mask discounts nothing).
    """
    import torch

    with torch.no_grad():
        prefix = model(input_ids[:, :-1], use_cache=True)
    # transformers 5 renamed the cache argument and output from ``past_key_values`` to ``cache``
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with counting(model) as counter:
        model(input_ids[:, -1:], use_cache=True, **{name: getattr(prefix, name)})
    return float(counter.get_total_flops())


def measure_generation_flops(model: Any, input_ids: Any, new_tokens: int, *, kv_cache: bool = True) -> float:
    """Counted FLOPs of greedy ``model.generate`` producing exactly ``new_tokens`` tokens.

    Compare with the sum of ``generation_flops(arch, n, new_tokens, kv_cache=..., causal=False)``:
    the prefill's attention is charged in full by the counter.
    """
    with counting(model) as counter:
        model.generate(input_ids, attention_mask=input_ids.new_ones(input_ids.shape),
                       max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                       use_cache=kv_cache, pad_token_id=0)
    return float(counter.get_total_flops())


# --------------------------------------------------------------------------- derived figures


def _known(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def quality_per_flop(score: float | None, flops_per_item: float | None) -> float | None:
    """Score per FLOP spent on an item; None when either is unknown or no FLOPs were counted."""
    if not _known(score, flops_per_item) or flops_per_item <= 0:  # type: ignore[operator]
        return None
    return score / flops_per_item  # type: ignore[operator]


def compute_ratio(student_flops: float | None, teacher_flops: float | None) -> float | None:
    """Student compute as a fraction of the teacher's on the same items (0.1 = a tenth)."""
    if not _known(student_flops, teacher_flops) or teacher_flops <= 0:  # type: ignore[operator]
        return None
    return student_flops / teacher_flops  # type: ignore[operator]


def distillation_efficiency(retention: float | None, compute_ratio: float | None) -> float | None:
    """Quality kept per unit of compute kept: retention ÷ compute ratio.

    1.0 means quality shrank exactly as fast as compute; keeping 90% of the score at 10% of the
    FLOPs gives 9.
    """
    if not _known(retention, compute_ratio) or compute_ratio <= 0:  # type: ignore[operator]
        return None
    return retention / compute_ratio  # type: ignore[operator]


def mfu(flops: float | None, seconds: float | None, peak_flops_per_s: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s as a fraction of the device's peak."""
    if not _known(flops, seconds, peak_flops_per_s) or seconds <= 0 or peak_flops_per_s <= 0:  # type: ignore[operator]
        return None
    return flops / seconds / peak_flops_per_s  # type: ignore[operator]


def dollar_cost(prompt_tokens: int, output_tokens: int, price_in_per_1k: float | None,
                price_out_per_1k: float | None) -> float | None:
    """Price of the tokens at per-1,000-token prices; None when a price that is needed is unknown.

    A missing price only matters for tokens of its kind: a log-likelihood-only run with no output
    tokens can be priced from the input price alone.
    """
    if price_in_per_1k is None and price_out_per_1k is None:
        return None
    total = 0.0
    for tokens, price in ((prompt_tokens, price_in_per_1k), (output_tokens, price_out_per_1k)):
        if tokens < 0:
            raise ValueError(f"token counts must be >= 0, got {tokens}")
        if tokens:
            if price is None:
                return None
            total += tokens / 1000 * price
    return total
