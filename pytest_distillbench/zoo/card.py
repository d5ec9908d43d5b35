"""What is known about each built checkpoint: the model card (README.md) and zoo/manifest.json."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelFacts:
    name: str
    role: str  # teacher, student or control
    architecture: dict[str, Any]  # GPT-2 shape: n_layer, n_embd, n_head, n_positions, vocab_size
    parameters: int
    non_embedding_parameters: int
    matmul_parameters: int  # non-embedding plus the (tied) output projection: the N in 6·N·D
    training: dict[str, Any]  # steps, batch size, optimiser settings, seconds, steps/s
    training_tokens: int
    target_tokens: int
    training_flops: float
    teacher_forward_flops: float  # 0 unless distilled
    seeds: dict[str, int]
    data: dict[str, int]  # train split -> examples available
    validation: dict[str, float]  # quick validation score per task
    fingerprint: str
    command: str
    teacher: str | None = None
    environment: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelFacts:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _describe_role(facts: ModelFacts) -> str:
    if facts.role == "teacher":
        return "The teacher: trained on the labels of every bundled train split."
    if facts.role == "student":
        t = facts.training
        return (f"A student distilled from `{facts.teacher}` (Hinton et al. 2015): "
                f"loss = {t['alpha']}·T²·KL(teacher_T ‖ student_T) + {1 - t['alpha']:g}·CE, "
                f"T = {t['temperature']}, on the target positions.")
    return ("A control, one of the zoo's reference population: the student's architecture, data "
            "and steps, trained on the labels alone from its own initial weights and its own "
            "batch order; it never saw the teacher. The evidence compares a suspect with these "
            "controls (and each control, left out in turn, with the others).")


def render_card(facts: ModelFacts) -> str:
    arch = facts.architecture
    t = facts.training
    total_flops = facts.training_flops + facts.teacher_forward_flops
    lines = [
        f"# distillbench zoo: {facts.name}",
        "",
        _describe_role(facts),
        "",
        "## Model",
        "",
        f"- architecture: GPT-2 (`GPT2LMHeadModel`), {arch['n_layer']} layers, width {arch['n_embd']}, "
        f"{arch['n_head']} heads, {arch['n_positions']} positions, vocabulary of "
        f"{arch['vocab_size']} (characters and the suites' frequent words; tied input/output embeddings)",
        f"- parameters: {facts.parameters:,} total, {facts.non_embedding_parameters:,} non-embedding, "
        f"{facts.matmul_parameters:,} in matrix multiplies (non-embedding + output projection)",
        f"- fingerprint (sha256 of weights, config and tokenizer; this card excluded): `{facts.fingerprint}`",
        "",
        "## Training",
        "",
        f"- steps: {t['steps']:,} of batch {t['batch_size']}; AdamW lr {t['lr']}, betas {tuple(t['betas'])}, "
        f"weight decay {t['weight_decay']}, {t['warmup']} warm-up steps then cosine decay, "
        f"gradient clip {t['grad_clip']}; loss averaged per {t.get('weighting', 'token')}",
        f"- time: {t['seconds']:.0f} s ({t['steps_per_second']:.2f} steps/s) with "
        f"{(facts.environment or {}).get('torch_threads', '?')} CPU threads",
        f"- training tokens: {facts.training_tokens:,} read, {facts.target_tokens:,} of them targets (loss on targets only)",
        f"- training FLOPs ≈ 6·N·D = {facts.training_flops:.3e}"
        + (f"; plus teacher forward passes ≈ 2·N_teacher·D = {facts.teacher_forward_flops:.3e} "
           f"(total {total_flops:.3e})" if facts.teacher_forward_flops else ""),
        "- seeds: " + ", ".join(f"{k} {v}" for k, v in facts.seeds.items()),
        "- data (train splits, examples available; tasks drawn uniformly per example"
        + "".join(f", {k} weighted {v:g}" for k, v in t.get("task_weights", {}).items()) + "): "
        + ", ".join(f"`{k}` {v:,}" for k, v in facts.data.items()),
        "",
        "## Quick validation scores",
        "",
        "Greedy exact match (generation; the last number of a worked answer), choice with highest "
        "log-likelihood (multiple choice), "
        "pass@1 of the greedy completion (code), on the first items of each validation split. "
        "These calibrate the build; the plugin's own test-split scores come from lm-eval.",
        "",
        "| task | score |",
        "| --- | --- |",
        *[f"| {task} | {score:.3f} |" for task, score in facts.validation.items()],
        "",
        "## Rebuild",
        "",
        "```",
        facts.command,
        "```",
        "",
    ]
    return "\n".join(lines)


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_card(directory: Path, facts: ModelFacts) -> None:
    atomic_write(directory / "README.md", render_card(facts))


def write_manifest(path: Path, models: dict[str, ModelFacts], extra: dict[str, Any]) -> None:
    data = {**extra, "models": {name: facts.to_dict() for name, facts in models.items()}}
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
