"""Shapes of the zoo's GPT-2 models and how to instantiate them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tokenizer import build_tokenizer

N_POSITIONS = 256  # the longest training example (a code prompt with its body) is under 200 tokens


@dataclass(frozen=True)
class ModelShape:
    n_layer: int
    n_embd: int
    n_head: int
    n_positions: int = N_POSITIONS


TEACHER_SHAPE = ModelShape(n_layer=4, n_embd=128, n_head=4)
STUDENT_SHAPE = ModelShape(n_layer=3, n_embd=64, n_head=4)


def gpt2_config(shape: ModelShape):
    """A GPT-2 config for the zoo's tokenizer; dropout off so training is a pure function
    of seeds and data order."""
    from transformers import GPT2Config

    tokenizer = build_tokenizer()
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=shape.n_positions,
        n_embd=shape.n_embd,
        n_layer=shape.n_layer,
        n_head=shape.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function="gelu",  # one fused kernel; "gelu_new" costs ~20% more per step on CPU
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )


def make_model(shape: ModelShape, seed: int):
    """A freshly initialised ``GPT2LMHeadModel``; the same (shape, seed) gives the same weights."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(gpt2_config(shape))
    model.generation_config.pad_token_id = model.config.pad_token_id
    model.generation_config.eos_token_id = model.config.eos_token_id
    model.generation_config.bos_token_id = model.config.bos_token_id
    return model


def parameter_counts(model) -> dict[str, int]:
    """Total parameters (tied embeddings counted once) and those outside the embeddings."""
    total = sum(p.numel() for p in model.parameters())
    embeddings = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    return {"total": total, "non_embedding": total - embeddings}
