"""Users' own data as lm-eval datasets: a JSONL file with a field mapping, or a BIG-bench task.json.

Both loaders are lm-eval ``custom_dataset`` callables: lm-eval calls them with the task's
``dataset_kwargs`` (``source``, ``mapping``) plus its metadata, and they return a
``DatasetDict`` with one ``test`` split whose rows have ``input`` and either ``target`` or
``choices`` + ``label``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DistillbenchError


def _read_jsonl(source: Path) -> list[dict[str, Any]]:
    rows = []
    with source.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DistillbenchError(f"line {lineno} is not valid JSON ({exc.msg})", path=source,
                                        fix="write one JSON object per line") from None
            if not isinstance(row, dict):
                raise DistillbenchError(f"line {lineno} is not a JSON object", path=source,
                                        fix="write one JSON object per line")
            rows.append(row)
    return rows


def _map_row(row: dict[str, Any], mapping: dict[str, str], source: Path, lineno: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ours, theirs in mapping.items():
        if theirs not in row:
            raise DistillbenchError(f"row {lineno} has no field {theirs!r} (mapped to {ours!r})",
                                    path=source, fix="fix the field mapping under data:")
        out[ours] = row[theirs]
    if "choices" in out:
        if not isinstance(out["choices"], list) or "label" not in out:
            raise DistillbenchError(f"row {lineno}: choices must be a list and a label field is needed",
                                    path=source, fix="map 'choices' to a list field and 'label' to its index")
        out["choices"] = [str(c) for c in out["choices"]]
        out["label"] = int(out["label"])
    else:
        target = out.get("target")
        out["target"] = str(target[0] if isinstance(target, list) and target else target)
    out["input"] = str(out["input"])
    return out


def jsonl_rows(source: Path, mapping: dict[str, str]) -> list[dict[str, Any]]:
    return [_map_row(r, mapping, source, i) for i, r in enumerate(_read_jsonl(source), 1)]


def bigbench_rows(source: Path) -> list[dict[str, Any]]:
    """Examples of a BIG-bench JSON task: ``target`` (generation) or ``target_scores`` (choice)."""
    try:
        task = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DistillbenchError(f"not valid JSON ({exc.msg})", path=source,
                                fix="a BIG-bench task.json has an 'examples' list") from None
    examples = task.get("examples") if isinstance(task, dict) else None
    if not isinstance(examples, list) or not examples:
        raise DistillbenchError("no 'examples' list", path=source,
                                fix="a BIG-bench task.json has an 'examples' list")
    prefix = str(task.get("example_input_prefix", ""))
    suffix = str(task.get("example_output_prefix", " "))
    rows = []
    for i, ex in enumerate(examples):
        text = f"{prefix}{ex['input']}{suffix}".rstrip(" ")
        if "target_scores" in ex:
            choices = list(ex["target_scores"])
            scores = [float(ex["target_scores"][c]) for c in choices]
            rows.append({"input": text, "choices": choices, "label": scores.index(max(scores))})
        elif "target" in ex:
            target = ex["target"]
            rows.append({"input": text, "target": str(target[0] if isinstance(target, list) else target)})
        else:
            raise DistillbenchError(f"example {i} has neither 'target' nor 'target_scores'",
                                    path=source, fix="give every example a target")
    return rows


def peek_kind(kind: str, source: Path, mapping: dict[str, str]) -> str:
    rows = jsonl_rows(source, mapping) if kind == "jsonl" else bigbench_rows(source)
    if not rows:
        raise DistillbenchError("the data file has no rows", path=source, fix="add examples")
    kinds = {"multiple_choice" if "choices" in r else "generate_until" for r in rows}
    if len(kinds) > 1:
        raise DistillbenchError("mixes multiple-choice and free-answer examples", path=source,
                                fix="split them into two tasks")
    return kinds.pop()


def _as_dataset(rows: list[dict[str, Any]]):
    import datasets

    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def load_jsonl(source: str, mapping: dict[str, str], **_: Any):
    return _as_dataset(jsonl_rows(Path(source), mapping))


def load_bigbench(source: str, mapping: dict[str, str] | None = None, **_: Any):
    return _as_dataset(bigbench_rows(Path(source)))
