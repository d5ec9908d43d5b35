"""The three record formats of the bundled suites and how models are trained on them.

* generation: ``{"id", "prompt", "answer"}``, the prompt ends where the answer starts; an
  optional ``solution`` is a worked answer that ends in ``answer`` (scored on its last number);
* multiple choice: ``{"id", "prompt", "choices", "label"}``, scored by log-likelihood of
  ``" " + choice`` after the prompt;
* code: ``{"task_id", "prompt", "canonical_solution", "test", "entry_point"}`` as in HumanEval.

``training_pair`` gives the (context, target) a model is trained on. Every target ends with a
newline so a model learns where to stop: generation stops at ``"\\n"``, code at ``"\\n\\n"``.
"""

from __future__ import annotations

from typing import Any, Literal

from pytest_distillbench.errors import DistillbenchError

RecordKind = Literal["generation", "multiple_choice", "code"]

_KEYS: dict[RecordKind, frozenset[str]] = {
    "generation": frozenset({"id", "prompt", "answer"}),
    "multiple_choice": frozenset({"id", "prompt", "choices", "label"}),
    "code": frozenset({"task_id", "prompt", "canonical_solution", "test", "entry_point"}),
}


def record_kind(record: dict[str, Any]) -> RecordKind:
    """Name the format of ``record`` from its keys (extra keys are allowed)."""
    keys = set(record)
    for kind, required in _KEYS.items():
        if required <= keys:
            return kind
    raise DistillbenchError(
        f"record with keys {sorted(keys)} matches no known format",
        key=str(record.get("id", record.get("task_id", ""))) or None,
        fix="use one of: " + "; ".join(f"{k}: {sorted(v)}" for k, v in _KEYS.items()),
    )


def training_pair(record: dict[str, Any]) -> tuple[str, str]:
    """Return the (context, target) text a model is trained to continue."""
    kind = record_kind(record)
    if kind == "generation":
        return record["prompt"], record.get("solution", record["answer"]) + "\n"
    if kind == "multiple_choice":
        choices, label = record["choices"], record["label"]
        if not 0 <= label < len(choices):
            raise DistillbenchError(
                f"label {label} is outside the {len(choices)} choices",
                key=str(record["id"]),
                fix="label must index into choices",
            )
        return record["prompt"], " " + choices[label] + "\n"
    return record["prompt"], record["canonical_solution"] + "\n"
