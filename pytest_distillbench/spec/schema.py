"""The declared schema of everything a user writes: ``[tool.distillbench]`` and its model tables,
the command-line options, and suite files (tasks, thresholds, ``data:`` shortcuts).

Types and ranges are declared once here, with pydantic, and checked before any model is loaded.
A value of the wrong type or out of range becomes one ``DistillbenchError`` naming the file (or
the option), the key and the fix; pydantic's own error text never reaches the user.

Which keys exist is decided by the modules that read them (``settings.py`` derives the model keys
from ``ModelSpec``; ``suites.py`` lists the task keys) and checked there first, with the list of
valid keys in the fix; the models here ignore keys they do not declare so that a key added there
needs no change here to be accepted. ``tests/test_bad_input.py`` checks that every key declared here
is one of those keys, so the two cannot drift apart.

Imports only pydantic, the standard library and ``errors`` (the plugin must stay light).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import DistillbenchError

# kept equal to models.ROLES / models.BACKENDS and settings.VERDICT_METHODS (tests/test_bad_input.py)
Role = Literal["teacher", "student", "control"]
EvidenceMethod = Literal["auto", "exact", "parametric"]
Backend = Literal["hf", "vllm", "api", "api-chat"]
Verdict = Literal["auto", "mcnemar", "margin", "margin-split"]
# torch dtype names that lm-eval's HFLM and vLLM accept
Dtype = Literal["auto", "float32", "float16", "bfloat16", "float64", "float", "half", "double"]
DEVICE = re.compile(r"^(auto|cpu|mps|(cuda|xpu|npu|hpu)(:\d+)?)$")
NAME = re.compile(r"^[A-Za-z0-9_]+$")


class _Schema(BaseModel):
    # strict: "lots" is not an integer, true is not 1, 1 is not "1"; ints are accepted as floats
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


def _check_device(value: str) -> str:
    if not DEVICE.match(value):
        raise ValueError("device")
    return value


Device = Annotated[str, AfterValidator(_check_device)]


# -- pyproject.toml -------------------------------------------------------------------------

class ModelTable(_Schema):
    role: Role = Field(description='role = "teacher", "student" or "control"')
    path: str = Field(min_length=1, description='path = "checkpoints/student" (a checkpoint '
                                                'directory, "zoo:<name>", a hub id or a served name)')
    backend: Backend = Field("hf", description='backend = "hf", "vllm", "api" or "api-chat"')
    dtype: Dtype = Field("float32", description='dtype = "float32", "bfloat16", "float16" or "auto"')
    device: Device = Field("auto", description='device = "auto", "cpu", "cuda" or "cuda:1"')
    batch_size: int = Field(32, ge=1, description="batch_size = 32 (a whole number, at least 1)")
    teacher: str | None = Field(None, min_length=1, description='teacher = "<the teacher model\'s name>"')
    expect_distilled: bool | None = Field(None, description="expect_distilled = true or false")
    scored: bool = Field(True, description="scored = false (a control that is only a reference of the evidence)")
    think_delimiter: str | None = Field(None, min_length=1, description='think_delimiter = "</think>"')
    params: float | None = Field(None, gt=0, description="params = 7e9 (matmul parameters, > 0)")
    active_params: float | None = Field(None, gt=0, description="active_params = 1.3e9 (> 0)")
    price_in_per_1k: float | None = Field(None, ge=0, description="price_in_per_1k = 0.0005 (dollars, >= 0)")
    price_out_per_1k: float | None = Field(None, ge=0, description="price_out_per_1k = 0.0015 (dollars, >= 0)")
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description='options = {max_length = 2048, tokenizer = "path"} '
                                          "(strings, numbers or booleans)")
    chat_template: bool | str | None = Field(None, description='chat_template = true (the checkpoint\'s '
                                             'own) or a template file, "templates/chat.jinja"')
    system_prompt: str | None = Field(None, min_length=1, description='system_prompt = "You are ..."')
    fewshot_as_multiturn: bool | None = Field(None, description="fewshot_as_multiturn = true or false")


class ProjectSettings(_Schema):
    models: dict[str, ModelTable] = Field(default_factory=dict,
                                          description="[tool.distillbench.models.<name>] tables")
    baselines: str = Field("baselines", min_length=1, description='baselines = "baselines" (a folder)')
    cache_dir: str = Field(".distillbench", min_length=1, description='cache_dir = ".distillbench" (a folder)')
    min_effect: float = Field(0.01, ge=0, lt=1, description="min_effect = 0.01 (a score difference, 0 <= x < 1)")
    alpha: float = Field(0.05, gt=0, lt=1, description="alpha = 0.05 (an error rate, 0 < x < 1)")
    max_flops_increase: float = Field(0.10, ge=0, description="max_flops_increase = 0.10 (a fraction, >= 0)")
    verdict: Verdict = Field("auto", description='verdict = "auto", "mcnemar", "margin" or "margin-split"')
    evidence_method: EvidenceMethod = Field(
        "auto", description='evidence_method = "auto", "exact" or "parametric" (the population test)')
    seed: int = Field(1234, ge=0, description="seed = 1234 (a whole number, >= 0)")
    batch_size: int | None = Field(None, ge=1, description="batch_size = 32 (a whole number, at least 1)")
    device: Device | None = Field(None, description='device = "auto", "cpu", "cuda" or "cuda:1"')
    offline: bool = Field(True, description="offline = true or false")
    flops: Literal["analytic", "measured"] = Field("analytic", description='flops = "analytic" or "measured"')
    report: str | None = Field(None, min_length=1, description='report = "reports/distillbench" (a folder)')
    markdown: str | None = Field(None, min_length=1, description='markdown = "summary.md"')
    json_: str | None = Field(None, alias="json", min_length=1, description='json = "run.json"')
    csv: str | None = Field(None, min_length=1, description='csv = "items.csv"')


# -- the command line -----------------------------------------------------------------------

# the option each field comes from
OPTIONS = {
    "limit": "--distillbench-limit", "batch_size": "--distillbench-batch-size",
    "device": "--distillbench-device", "baselines": "--distillbench-baselines",
    "teacher": "--distillbench-teacher",
}


class CommandLine(_Schema):
    limit: int | None = Field(None, ge=1, description="--distillbench-limit 20 (a whole number, at least 1)")
    batch_size: int | None = Field(None, ge=1, description="--distillbench-batch-size 16 (at least 1)")
    device: Device | None = Field(None, description="--distillbench-device cpu (auto, cpu, cuda, cuda:1)")
    baselines: str | None = Field(None, min_length=1, description="--distillbench-baselines baselines")
    teacher: str | None = Field(None, min_length=1, description="--distillbench-teacher checkpoints/teacher")


# -- suite files ----------------------------------------------------------------------------

class Limits(_Schema):
    # every score the plugin gates on is a rate in [0, 1]: per-item scores are right/wrong or
    # partial credit, and the interval is Wilson's
    min: float | None = Field(None, ge=0, le=1, description="min: 0.8 (a score between 0 and 1)")
    min_retention: float | None = Field(None, ge=0, le=1, description="min_retention: 0.75 (the "
                                        "share of the teacher's score to keep, between 0 and 1)")
    max_compute_ratio: float | None = Field(None, gt=0, description="max_compute_ratio: 0.5 (student "
                                            "FLOPs per item / teacher's, > 0)")
    min_efficiency: float | None = Field(None, ge=0, description="min_efficiency: 2.0 (>= 0)")
    max_flops_increase: float | None = Field(None, ge=0, description="max_flops_increase: 0.1 (a "
                                             "fraction above the baseline's FLOPs, >= 0)")


class FilterStep(_Schema):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    function: str = Field(min_length=1, description="{function: regex, regex_pattern: '...'}")


class DataShortcut(_Schema):
    jsonl: str | None = Field(None, min_length=1, description="jsonl: data/mine.jsonl")
    bigbench: str | None = Field(None, min_length=1, description="bigbench: tasks/navigate/task.json")
    input: str | None = Field(None, min_length=1, description="input: question (a field name)")
    target: str | None = Field(None, min_length=1, description="target: answer (a field name)")
    choices: str | None = Field(None, min_length=1, description="choices: options (a list field)")
    label: str | None = Field(None, min_length=1, description="label: answer_index (an integer field)")
    answer_pattern: str | None = Field(None, min_length=1, description=r"answer_pattern: '(-?\d+)\s*$'")
    filter: list[FilterStep] | None = Field(None, min_length=1, description="filter: [{function: regex, "
                                            "regex_pattern: '...'}, {function: take_first}]")
    ignore_case: bool | None = Field(None, description="ignore_case: true or false")
    ignore_punctuation: bool | None = Field(None, description="ignore_punctuation: true or false")

    @field_validator("answer_pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"regex: {exc}") from None
        return v


class Generation(_Schema):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)  # any lm-eval generation kwarg
    max_gen_toks: int | None = Field(None, ge=1, description="max_gen_toks: 64 (at least 1)")
    until: list[str] | str | None = Field(None, description='until: ["\\n"] (stop strings)')
    do_sample: bool | None = Field(None, description="do_sample: false")
    temperature: float | None = Field(None, ge=0, description="temperature: 0.0 (>= 0)")


class Task(_Schema):
    name: str = Field(pattern=NAME.pattern, description="name: my_task (letters, digits, underscores)")
    description: str | None = Field(None, description="description: a sentence")
    difficulty: int | None = Field(None, ge=0, description="difficulty: 2 (a whole number, >= 0)")
    metric: str = Field(min_length=1, description="metric: acc or metric: exact_match,<filter>")
    thresholds: dict[str, Limits] | None = Field(None, description="thresholds: {teacher: {min: 0.8}}")
    lm_eval: dict[str, Any] | None = Field(None, description="lm_eval: {...an lm-eval task config...}")
    lm_eval_task: str | None = Field(None, min_length=1, description="lm_eval_task: gsm8k")
    data: DataShortcut | None = Field(None, description="data: {jsonl: file.jsonl, input: q, target: a}")
    generation: Generation | None = Field(None, description="generation: {max_gen_toks: 32}")
    limit: int | None = Field(None, ge=1, description="limit: 100 (a whole number, at least 1)")
    chat_template: bool | str | None = Field(None, description="chat_template: true, false or a "
                                             "template file")
    system_prompt: str | None = Field(None, min_length=1, description="system_prompt: 'You are ...'")
    fewshot_as_multiturn: bool | None = Field(None, description="fewshot_as_multiturn: true or false")
    repeats: int | None = Field(None, ge=1, description="repeats: 4 (samples per item, at least 1)")
    temperature: float | None = Field(None, ge=0, description="temperature: 0.6 (>= 0)")
    top_p: float | None = Field(None, gt=0, le=1, description="top_p: 0.95 (0 < x <= 1)")
    seed: int | None = Field(None, ge=0, description="seed: 1234 (a whole number, >= 0)")


class Suite(_Schema):
    suite: str = Field(pattern=NAME.pattern, description="suite: my_suite (letters, digits, underscores)")
    description: str | None = Field(None, description="description: a sentence")
    allow_code_execution: bool = Field(False, description="allow_code_execution: true or false")
    # the level's name is checked by suites._require_isolation, which lists the levels
    require_isolation: str | None = Field(None, description="require_isolation: namespaces")
    tasks: list[dict[str, Any]] = Field(min_length=1, description="a non-empty 'tasks:' list")


# -- validation -----------------------------------------------------------------------------

def _describe(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field_description(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """The declared description of the field at ``loc`` (dict keys and list indices skipped)."""
    current: Any = model
    info = None
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None) or {}
        by_alias = {(f.alias or n): f for n, f in fields.items()}
        if part not in by_alias:
            continue  # a dict key (a model's name, a role) or an unknown extra
        info = by_alias[part]
        current = _inner_model(info.annotation)
    return None if info is None else info.description


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _message(err: dict[str, Any]) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    got = f", got {_describe(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number{got}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number{got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false{got}"
    if kind in ("string_type",):
        return f"must be a string{got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping (a table){got}"
    if kind in ("list_type",):
        return f"must be a list{got}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}{got}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        sign = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
                "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()), "?")
        return f"must be {sign} {bound}{got}"
    if kind in ("too_short", "string_too_short"):
        return f"must not be empty{got}"
    if kind == "string_pattern_mismatch":
        return f"must use letters, digits and underscores only{got}"
    if kind == "missing":
        return "is missing"
    if kind == "value_error":
        reason = str(ctx.get("error", ""))
        if reason == "device":
            return f"is not a device{got}"
        if reason.startswith("regex: "):
            return f"is not a valid regular expression ({reason[7:]}){got}"
        return f"is not valid ({reason}){got}"
    return f"is not valid ({err.get('msg', kind)}){got}"


def _dotted(prefix: str, loc: tuple[Any, ...]) -> str:
    key = prefix
    for part in loc:
        key = f"{key}[{part}]" if isinstance(part, int) else (f"{key}.{part}" if key else str(part))
    return key


def validate(model: type[_Schema], data: Any, *, path: Path | str | None, prefix: str = "",
             keys: dict[str, str] | None = None) -> _Schema:
    """Validate ``data`` against ``model``; the first problem becomes a ``DistillbenchError``.

    ``prefix`` is where ``data`` sits in the file (``tasks[2] (add).``); ``keys`` renames top-level
    fields (a command-line field to its option)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = tuple(err["loc"])
        if keys and loc and loc[0] in keys:
            key = _dotted(keys[str(loc[0])], loc[1:])
        else:
            key = _dotted(prefix, loc)
        hint = _field_description(model, loc)
        fix = f"write e.g. {hint}" if hint else "see the README for the accepted values"
        raise DistillbenchError(_message(err), path=path, key=key, fix=fix) from None
