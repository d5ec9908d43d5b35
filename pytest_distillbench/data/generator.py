"""What a bundled task is: a seeded generator of records plus the sizes of its splits."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_distillbench.data.formats import RecordKind

Record = dict[str, Any]


def prompt_key(record: Record) -> str:
    """Two records pose the same problem when their prompts are equal."""
    return record["prompt"]


@dataclass(frozen=True)
class SplitSizes:
    """Target sizes. Test and validation must be filled; train takes what the space allows."""

    test: int
    validation: int
    train: int


@dataclass(frozen=True)
class TaskGenerator:
    """One task of a bundled suite.

    ``generate(rng)`` draws one record (without its id: ids are positions, given when the
    splits are cut). ``key`` names the problem a record poses, used to keep splits disjoint.
    """

    suite: str
    name: str
    description: str
    difficulty: int
    kind: RecordKind
    generate: Callable[[random.Random], Record]
    sizes: SplitSizes
    key: Callable[[Record], str] = prompt_key

    @property
    def qualified_name(self) -> str:
        return f"{self.suite}/{self.name}"
