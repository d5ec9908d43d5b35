"""Training examples from the bundled suites' splits, and a seeded, length-bucketed batch order.

An example is a (context, target) pair of token ids; the loss is taken on the target only.
Batches mix tasks uniformly or by set weights (small tasks are not drowned by large ones) and
group examples of similar length so a batch of short arithmetic prompts is not padded to a code
prompt's length.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import DistillbenchError
from .tokenizer import build_tokenizer

IGNORE = -100  # label value the loss skips


@dataclass(frozen=True)
class Example:
    task: str  # "<suite>/<task>"
    context: tuple[int, ...]
    target: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.context) + len(self.target)


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # [B, L], right-padded
    attention_mask: torch.Tensor  # [B, L]
    labels: torch.Tensor  # [B, L]: the token at target positions, IGNORE elsewhere

    @property
    def target_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())


@lru_cache(maxsize=1)
def tokenizer():
    """The zoo's tokenizer, built once per process."""
    return build_tokenizer()


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def split_files(data_root: Path, split: str) -> dict[str, Path]:
    """``{"<suite>/<task>": path}`` for every ``<suite>/<task>/<split>.jsonl`` under data_root."""
    files = {f"{p.parent.parent.name}/{p.parent.name}": p
             for p in sorted(Path(data_root).glob(f"*/*/{split}.jsonl"))}
    if not files:
        raise DistillbenchError(
            f"no {split}.jsonl files found", path=data_root,
            fix="generate the bundled data first (suites/data/<suite>/<task>/<split>.jsonl)",
        )
    return files


def load_records(data_root: Path, split: str) -> dict[str, list[dict]]:
    return {task: read_jsonl(path) for task, path in split_files(data_root, split).items()}


def _fit(ctx: list[int], tgt: list[int], max_len: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    # an over-long context loses its start; the target is kept whole (up to max_len - 1)
    keep = max(1, max_len - len(tgt))
    return tuple(ctx[-keep:]), tuple(tgt[: max_len - 1])


def encode_pair(context: str, target: str, max_len: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Token ids of a (context, target) pair that fit in ``max_len`` positions."""
    ctx = tokenizer()(context, add_special_tokens=False)["input_ids"]
    tgt = tokenizer()(target, add_special_tokens=False)["input_ids"]
    return _fit(ctx, tgt, max_len)


def encode_records(records: Mapping[str, Sequence[dict]], max_len: int) -> dict[str, list[Example]]:
    from ..data.formats import training_pair

    encoded: dict[str, list[Example]] = {}
    for task, rows in records.items():
        pairs = [training_pair(row) for row in rows]
        ctx = tokenizer()([c for c, _ in pairs], add_special_tokens=False)["input_ids"]
        tgt = tokenizer()([t for _, t in pairs], add_special_tokens=False)["input_ids"]
        encoded[task] = [Example(task, *_fit(c, t, max_len)) for c, t in zip(ctx, tgt, strict=True)]
    return encoded


def task_probabilities(tasks: Sequence[str], weights: Mapping[str, float] | None) -> np.ndarray | None:
    """Sampling probability of each task: ``weights`` maps a task (``"<suite>/<task>"``) or a
    whole suite (``"<suite>"``) to a relative weight, 1 where not named; None means uniform."""
    if not weights:
        return None
    raw = np.array([float(weights.get(t, weights.get(t.split("/")[0], 1.0))) for t in tasks])
    if (raw < 0).any() or raw.sum() <= 0:
        raise ValueError(f"task weights must be non-negative and not all zero: {dict(weights)}")
    return raw / raw.sum()


def batch_order(examples: Mapping[str, Sequence[Example]], *, steps: int, batch_size: int,
                seed: int, bucket: int = 16, weights: Mapping[str, float] | None = None
                ) -> Iterator[list[Example]]:
    """``steps`` batches drawn with a seeded generator: tasks uniformly (or by ``weights``, see
    :func:`task_probabilities`), examples uniformly within a task; every ``bucket`` batches are
    drawn as one pool, sorted by length, cut into batches and shuffled, so padding stays small
    while the order stays a function of the seed."""
    rng = np.random.default_rng(seed)
    tasks = sorted(examples)
    probabilities = task_probabilities(tasks, weights)
    produced = 0
    while produced < steps:
        count = min(bucket, steps - produced)
        if probabilities is None:
            picks = rng.integers(len(tasks), size=count * batch_size)
        else:
            picks = rng.choice(len(tasks), size=count * batch_size, p=probabilities)
        pool = [examples[tasks[t]][int(rng.integers(len(examples[tasks[t]])))] for t in picks]
        pool.sort(key=len)
        chunks = [pool[i * batch_size:(i + 1) * batch_size] for i in range(count)]
        for i in rng.permutation(count):
            yield chunks[int(i)]
        produced += count


def collate(examples: Sequence[Example], pad_id: int) -> Batch:
    length = max(len(e) for e in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), length), dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE, dtype=torch.long)
    for row, e in enumerate(examples):
        ids = e.context + e.target
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        labels[row, len(e.context): len(ids)] = torch.tensor(e.target)
    return Batch(input_ids, attention, labels)
