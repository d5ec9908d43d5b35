"""Transformers backend through lm-eval's ``HFLM``.

Deterministic settings: a fixed batch size (never "auto"), and ``logits_cache=False`` because
lm-eval's logits cache can reuse one request's logits for another with a shared prefix in a way
that depends on batch composition (lm-eval issue #1625).
"""

from __future__ import annotations

from typing import Any

from ...measures.hardware import surely_no_gpu
from ...spec.models import ModelSpec
from . import load_error


def available() -> str | None:
    return None  # torch and transformers are hard dependencies


def resolve_device(device: str) -> str:
    """Device "auto" is CUDA when torch sees a GPU, else the CPU."""
    if device != "auto":
        return device
    if surely_no_gpu():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build(spec: ModelSpec, settings: Any = None) -> Any:
    from lm_eval.models.huggingface import HFLM

    kwargs: dict[str, Any] = dict(
        pretrained=spec.path,
        dtype=spec.dtype,
        device=resolve_device(spec.device),
        batch_size=int(spec.batch_size),
        logits_cache=False,
    )
    tokenizer = spec.option("tokenizer")
    if tokenizer:
        kwargs["tokenizer"] = tokenizer
    if spec.option("max_length"):
        kwargs["max_length"] = int(spec.option("max_length"))  # type: ignore[arg-type]
    try:
        lm = HFLM(**kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise load_error(spec, exc, "model",
                         "point it at a Hugging Face checkpoint directory (config.json, weights, "
                         "tokenizer) that exists on this machine; no model is downloaded at run time"
                         ) from None
    check_vocabulary(spec, lm)
    return lm


def check_vocabulary(spec: ModelSpec, lm: Any) -> None:
    """A tokenizer with more tokens than the model has embedding rows produces ids the model
    cannot look up: torch fails deep inside the forward pass (``IndexError: index out of range
    in self``) on the first prompt that uses one. Checked once the model is loaded, before any
    item runs. A smaller tokenizer is normal (embeddings are often padded)."""
    from ...errors import DistillbenchError

    try:
        rows = int(lm.model.get_input_embeddings().num_embeddings)
        tokens = len(lm.tokenizer)
    except (AttributeError, TypeError, NotImplementedError):
        return  # an architecture without a plain embedding table: nothing to compare
    if tokens > rows:
        where = spec.option("tokenizer") or spec.path
        raise DistillbenchError(
            f"model {spec.name!r}: its tokenizer ({where}) has {tokens} tokens but the model's "
            f"embedding has {rows} rows, so token ids {rows}-{tokens - 1} cannot be looked up",
            key=f"models.{spec.name}.path",
            fix="use the tokenizer the model was trained with (options.tokenizer), or resize the "
                "model's embeddings to the tokenizer (model.resize_token_embeddings) and save it")


def token_counter(lm: Any):
    """A function str -> token count using the loaded model's own tokenizer."""
    return lambda text: len(lm.tok_encode(text))


def model_config(lm: Any) -> dict[str, Any] | None:
    model = getattr(lm, "model", None)
    config = getattr(model, "config", None)
    return None if config is None else config.to_dict()
