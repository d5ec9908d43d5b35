"""The ``distillbench_execute`` lm-eval filter (see ``code.py``): kept in its own module
because it subclasses lm-eval's ``Filter``, and importing lm-eval is what a warm, cached run
avoids. Importing this module registers the filter; ``register()`` says so where it is called."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lm_eval.api.filter import Filter
from lm_eval.api.registry import filter_registry, register_filter

from ...errors import DistillbenchError
from .code import FILTER, TIMEOUT_S, Problem, _require_opt_in, execute_all


class ExecuteCompletions(Filter):
    """lm-eval filter: runs every response of a task through the sandbox in one batch and
    returns each as an ``Executed`` string, keeping the shape it was given (per document a
    list of the repeats' responses, or a single response after e.g. ``take_first``)."""

    def __init__(self, workers: int | None = None, timeout_s: float = TIMEOUT_S,
                 require_isolation: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workers = workers
        self.timeout_s = timeout_s
        self.require_isolation = require_isolation  # a sandbox level (sandbox.LEVELS) or None

    def apply(self, resps: Iterable[Any], docs: list[dict[str, Any]]) -> list[Any]:
        _require_opt_in()
        groups = list(resps)
        if len(groups) != len(docs):
            raise DistillbenchError(f"the {FILTER} filter got {len(groups)} responses for "
                                    f"{len(docs)} documents", key="filter_list")
        texts = [[group] if isinstance(group, str) else list(group) for group in groups]
        for group in texts:
            if not all(isinstance(text, str) for text in group):
                raise DistillbenchError(f"the {FILTER} filter got {group!r:.80}, not generated text",
                                        key="output_type", fix="code tasks need output_type: generate_until")
        pairs = [(Problem.of(doc), text) for doc, group in zip(docs, texts, strict=True) for text in group]
        executed = iter(execute_all(pairs, workers=self.workers, timeout_s=self.timeout_s,
                                    required_isolation=self.require_isolation))
        return [next(executed) if isinstance(group, str) else [next(executed) for _ in listed]
                for group, listed in zip(groups, texts, strict=True)]


if FILTER not in filter_registry:  # a second import (e.g. a reload) keeps the first class
    register_filter(FILTER)(ExecuteCompletions)


def register() -> None:
    """Register the ``distillbench_execute`` filter with lm-eval (idempotent: importing this
    module did it)."""
