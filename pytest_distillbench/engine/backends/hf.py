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
        return HFLM(**kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise load_error(spec, exc, "model",
                         "point it at a Hugging Face checkpoint directory (config.json, weights, "
                         "tokenizer) that exists on this machine; no model is downloaded at run time"
                         ) from None


def token_counter(lm: Any):
    """A function str -> token count using the loaded model's own tokenizer."""
    return lambda text: len(lm.tok_encode(text))


def model_config(lm: Any) -> dict[str, Any] | None:
    model = getattr(lm, "model", None)
    config = getattr(model, "config", None)
    return None if config is None else config.to_dict()
