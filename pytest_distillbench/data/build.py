"""Cut each task's generated records into disjoint splits and write them as JSON lines.

Splits are filled in the order test, validation, train from one seeded stream, skipping any
record whose problem (``TaskGenerator.key``) was already drawn, so no test problem appears in
train or validation. Train stops at its target size or once the problem space is exhausted
(``patience`` draws in a row found nothing new). Output bytes depend only on the seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pytest_distillbench.data import arithmetic, codegen, reasoning
from pytest_distillbench.data.generator import Record, TaskGenerator
from pytest_distillbench.errors import DistillbenchError
from pytest_distillbench.zoo.tokenizer import CHARACTERS

DEFAULT_SEED = 1234
SPLITS = ("train", "validation", "test")
TASKS: tuple[TaskGenerator, ...] = arithmetic.TASKS + reasoning.TASKS + codegen.TASKS
_ALLOWED_CHARACTERS = frozenset(CHARACTERS)


def get_task(qualified_name: str) -> TaskGenerator:
    """Look a task up by ``"<suite>/<task>"``."""
    for task in TASKS:
        if task.qualified_name == qualified_name:
            return task
    raise DistillbenchError(
        f"no bundled task named {qualified_name!r}",
        fix="use one of: " + ", ".join(t.qualified_name for t in TASKS),
    )


def task_seed(task: TaskGenerator, seed: int = DEFAULT_SEED) -> int:
    """A per-task seed, so adding or reordering tasks leaves the others' data unchanged."""
    digest = hashlib.sha256(f"{seed}:{task.qualified_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _check_text(task: TaskGenerator, record: Record) -> None:
    texts = [v for v in record.values() if isinstance(v, str)] + list(record.get("choices", []))
    for text in texts:
        bad = set(text) - _ALLOWED_CHARACTERS
        if bad:
            raise DistillbenchError(
                f"generated text {text!r} has characters outside the tokenizer: {sorted(bad)!r}",
                key=task.qualified_name, fix="generate printable ASCII only",
            )


def _with_id(task: TaskGenerator, split: str, index: int, record: Record) -> Record:
    id_key = "task_id" if task.kind == "code" else "id"
    return {id_key: f"{task.qualified_name}/{split}/{index}", **record}


def make_splits(task: TaskGenerator, seed: int = DEFAULT_SEED, patience: int = 2000
                ) -> dict[str, list[Record]]:
    """Draw the task's records and cut them into disjoint test, validation and train splits."""
    rng = random.Random(task_seed(task, seed))
    seen: set[str] = set()
    drawn: dict[str, list[Record]] = {}
    for split in ("test", "validation", "train"):
        target = getattr(task.sizes, split)
        records: list[Record] = []
        misses = 0
        while len(records) < target and misses < patience:
            record = task.generate(rng)
            key = task.key(record)
            if key in seen:
                misses += 1
                continue
            misses = 0
            seen.add(key)
            _check_text(task, record)
            records.append(record)
        if split != "train" and len(records) < target:
            raise DistillbenchError(
                f"only {len(records)} distinct problems for the {split} split, {target} wanted",
                key=task.qualified_name, fix="widen the generator's problem space or shrink the split",
            )
        drawn[split] = [_with_id(task, split, i, r) for i, r in enumerate(records)]
    return {split: drawn[split] for split in SPLITS}


def to_jsonl(records: Iterable[Record]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode("ascii")


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def split_path(root: Path, task: TaskGenerator, split: str) -> Path:
    """Where a split lives under a suites folder: ``root/data/<suite>/<task>/<split>.jsonl``."""
    return Path(root) / "data" / task.suite / task.name / f"{split}.jsonl"


def build_task(root: Path, task: TaskGenerator, seed: int = DEFAULT_SEED) -> list[Path]:
    paths = []
    for split, records in make_splits(task, seed).items():
        path = split_path(root, task, split)
        _write_atomic(path, to_jsonl(records))
        paths.append(path)
    return paths


def build_all(root: Path, seed: int = DEFAULT_SEED) -> list[Path]:
    """Write every bundled task's splits under ``root`` (the ``suites/`` folder)."""
    return [path for task in TASKS for path in build_task(Path(root), task, seed)]
