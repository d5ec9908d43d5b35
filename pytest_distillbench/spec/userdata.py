r"""Users' own data as lm-eval datasets: a JSONL file with a field mapping, or a BIG-bench task.json.

Both loaders are lm-eval ``custom_dataset`` callables: lm-eval calls them with the task's
``dataset_kwargs`` (``source``, ``mapping``, and for BIG-bench ``mode``) plus its metadata, and
they return a ``DatasetDict`` with one ``test`` split whose rows have ``input`` and either
``targets`` (every accepted answer, generation) or ``choices`` + ``label`` (multiple choice).

BIG-bench task.json files are read with BIG-bench's own semantics (``bigbench/api/json_task.py``
and ``docs/doc.md``): the prompt is ``task_prefix`` + ``example_input_prefix`` (default
``"\nQ: "``) + input [+ ``choice_prefix`` (default ``"\n  choice: "``) before each choice, when
``append_choices_to_input`` (default true) and the example has ``target_scores``] +
``example_output_prefix`` (default ``"\nA: "``); choices are appended in the order
``numpy.random.RandomState(42).permutation(sorted(choices))`` gives, one generator drawn in
example order, as BIG-bench's JsonTask does; a generated answer is cut at ``stop_string`` (kept)
and reduced to the first match of ``output_regex`` (BIG-bench's default ``[^\.\?\!\;\n]+``
when neither is given), then compared with every target exactly (``exact_str_match``).
docs/user-data.md lists every field that is read.
"""

from __future__ import annotations

import json
import re
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
        label = out["label"]
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(out["choices"]):
            raise DistillbenchError(f"row {lineno}: label {label!r} is not the index of one of its "
                                    f"{len(out['choices'])} choices", path=source,
                                    fix="give the index of the right choice, counting from 0")
        out["label"] = label
    else:
        out["targets"] = _targets(out.pop("target", None), source, f"row {lineno}")
    out["input"] = str(out["input"])
    return out


def _targets(value: Any, source: Path, where: str) -> list[str]:
    """Every accepted answer: a list counts every entry (any of them is right), not the first."""
    values = value if isinstance(value, list) else [value]
    if not values or any(v is None or isinstance(v, (dict, list)) for v in values):
        raise DistillbenchError(f"{where}: the target must be a string or a list of strings, got "
                                f"{value!r}", path=source, fix="write the answer, or a list of answers")
    return [str(v) for v in values]


def jsonl_rows(source: Path, mapping: dict[str, str]) -> list[dict[str, Any]]:
    return [_map_row(r, mapping, source, i) for i, r in enumerate(_read_jsonl(source), 1)]


# BIG-bench's defaults (bigbench/api/json_task.py, docs/doc.md)
BIGBENCH_INPUT_PREFIX = "\nQ: "
BIGBENCH_OUTPUT_PREFIX = "\nA: "
BIGBENCH_CHOICE_PREFIX = "\n  choice: "
BIGBENCH_OUTPUT_REGEX = r"[^\.\?\!\;\n]+"
BIGBENCH_SEED = 42  # JsonTask's random_seed: the order in which choices are appended


def read_bigbench(source: Path) -> dict[str, Any]:
    try:
        task = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DistillbenchError(f"not valid JSON ({exc.msg} at line {exc.lineno})", path=source,
                                fix="a BIG-bench task.json has an 'examples' list") from None
    examples = task.get("examples") if isinstance(task, dict) else None
    if not isinstance(examples, list) or not examples:
        raise DistillbenchError("no 'examples' list", path=source,
                                fix="a BIG-bench task.json has an 'examples' list")
    for key in ("task_prefix", "example_input_prefix", "example_output_prefix", "choice_prefix",
                "output_regex", "stop_string"):
        if key in task and not isinstance(task[key], str):
            raise DistillbenchError(f"{key} must be a string, got {task[key]!r}", path=source,
                                    fix=f"write {key} as a JSON string")
    if "append_choices_to_input" in task and not isinstance(task["append_choices_to_input"], bool):
        raise DistillbenchError("append_choices_to_input must be true or false", path=source,
                                fix="write true or false")
    if "output_regex" in task:
        try:
            re.compile(task["output_regex"])
        except re.error as exc:
            raise DistillbenchError(f"output_regex is not a valid regular expression ({exc})",
                                    path=source, fix="fix the pattern") from None
    return task


def bigbench_postprocess(task: dict[str, Any]) -> tuple[str | None, str | None]:
    """(stop_string, output_regex) as BIG-bench applies them; the default regex only when the
    task gives neither."""
    stop, regex = task.get("stop_string"), task.get("output_regex")
    if stop is None and regex is None:
        regex = BIGBENCH_OUTPUT_REGEX
    return stop, regex


def bigbench_rows(source: Path, mode: str = "auto") -> list[dict[str, Any]]:
    """Examples of a BIG-bench JSON task as prompts, formatted as BIG-bench formats them.

    ``mode`` "choice": rows with ``choices`` and ``label`` (every example needs ``target_scores``);
    "generate": rows with ``targets`` (``target``, or the best of ``target_scores`` when an
    example has no ``target``, as BIG-bench derives it); "auto": choice when every example has
    ``target_scores``, else generate."""
    import numpy as np

    task = read_bigbench(source)
    examples = task["examples"]
    if mode == "auto":
        mode = "choice" if all(isinstance(ex, dict) and "target_scores" in ex for ex in examples) else "generate"
    task_prefix = task.get("task_prefix", "")
    input_prefix = task.get("example_input_prefix", BIGBENCH_INPUT_PREFIX)
    output_prefix = task.get("example_output_prefix", BIGBENCH_OUTPUT_PREFIX)
    choice_prefix = task.get("choice_prefix", BIGBENCH_CHOICE_PREFIX)
    append = task.get("append_choices_to_input", True)
    rng = np.random.RandomState(seed=BIGBENCH_SEED)
    rows, seen = [], set()
    for i, ex in enumerate(examples):
        where = f"examples[{i}]"
        if not isinstance(ex, dict) or not isinstance(ex.get("input"), str):
            raise DistillbenchError(f"{where} has no 'input' string", path=source,
                                    fix="give every example an 'input'")
        key = json.dumps(ex, sort_keys=True)
        if key in seen:  # BIG-bench drops exact duplicates (remove_duplicates)
            continue
        seen.add(key)
        scores = ex.get("target_scores")
        if scores is not None and (not isinstance(scores, dict) or not scores or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values())):
            raise DistillbenchError(f"{where}.target_scores must map each choice to a number",
                                    path=source, fix='write e.g. "target_scores": {"yes": 1, "no": 0}')
        text = ex["input"]
        if scores is not None and append:
            text = text + choice_prefix + choice_prefix.join(rng.permutation(sorted(scores)))
        prompt = task_prefix + input_prefix + text + output_prefix
        if mode == "choice":
            if scores is None:
                raise DistillbenchError(f"{where} has no 'target_scores', so it cannot be scored "
                                        "as multiple choice", path=source,
                                        fix="score the task by generation (metric: exact_match) or "
                                            "give every example target_scores")
            choices = list(scores)
            best = max(scores.values())
            rows.append({"input": prompt, "choices": choices,
                         "label": next(j for j, c in enumerate(choices) if scores[c] == best)})
        else:
            if "target" in ex:
                targets = _targets(ex["target"], source, where)
            elif scores is not None:
                best = max(scores.values())
                targets = [next(c for c, v in scores.items() if v == best)]
            else:
                raise DistillbenchError(f"{where} has neither 'target' nor 'target_scores'",
                                        path=source, fix="give every example a target")
            rows.append({"input": prompt, "targets": targets})
    return rows


def bigbench_filter_step(stop_string: str | None, output_regex: str | None) -> dict[str, Any]:
    return {"function": "distillbench_bigbench", "stop_string": stop_string, "output_regex": output_regex}


def postprocess(text: str, stop_string: str | None, output_regex: str | None) -> str:
    """BIG-bench's ``postprocess_output``: keep the text up to and including ``stop_string``
    (when it occurs after the first character), then the first match of ``output_regex`` ("" when
    nothing matches). Nothing is stripped: BIG-bench compares the result exactly."""
    if stop_string:
        index = text.find(stop_string)
        if index > 0:
            text = text[: index + len(stop_string)]
    if output_regex:
        match = next(iter(re.findall(output_regex, text)), "")
        text = match if isinstance(match, str) else next((m for m in match if m), "")
    return text


def peek_kind(kind: str, source: Path, mapping: dict[str, str], mode: str = "auto") -> str:
    rows = jsonl_rows(source, mapping) if kind == "jsonl" else bigbench_rows(source, mode)
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


def load_bigbench(source: str, mapping: dict[str, str] | None = None, mode: str = "auto", **_: Any):
    return _as_dataset(bigbench_rows(Path(source), mode))
