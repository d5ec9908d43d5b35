"""Deterministic generators for the bundled suites (math, reasoning, code) and their data."""

from pytest_distillbench.data.build import (
    DEFAULT_SEED,
    SPLITS,
    TASKS,
    build_all,
    build_task,
    get_task,
    make_splits,
    split_path,
)
from pytest_distillbench.data.formats import record_kind, training_pair
from pytest_distillbench.data.generator import SplitSizes, TaskGenerator

__all__ = [
    "DEFAULT_SEED", "SPLITS", "TASKS", "SplitSizes", "TaskGenerator", "build_all", "build_task",
    "get_task", "make_splits", "record_kind", "split_path", "training_pair",
]
