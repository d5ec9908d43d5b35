"""Suite files: schema, validation, and the lm-eval task configs they describe.

A suite is a YAML file::

    suite: math
    description: ...
    allow_code_execution: false
    tasks:
      - name: add_sub_2d
        metric: exact_match,final_number
        thresholds: {teacher: {min: 0.85}, student: {min_retention: 0.75}}
        lm_eval: {...an inline lm-eval task config...}     # or
        lm_eval_task: gsm8k                                # a built-in lm-eval task, or
        data: {jsonl: mine.jsonl, input: question, target: answer}   # your own data
        chat_template: false         # optional: override the model's chat settings for this task
        repeats: 8                   # optional: k samples per item, scored as pass@1 over k
        temperature: 0.6
        top_p: 0.95
        seed: 0

Every problem is reported as one ``DistillbenchError`` naming the file, the key and the fix.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import DistillbenchError

SUITE_KEYS = {"suite", "description", "allow_code_execution", "require_isolation", "tasks"}
ISOLATION_LEVELS = ("rlimits", "seccomp", "namespaces")  # sandbox.LEVELS (spec does not import engine)
TASK_KEYS = {
    "name", "description", "difficulty", "metric", "thresholds", "lm_eval", "lm_eval_task",
    "data", "generation", "limit",
    # chat models (override the model's settings for this task)
    "chat_template", "system_prompt", "fewshot_as_multiturn",
    # sampling: k samples per item at this temperature / top-p, seeded
    "repeats", "temperature", "top_p", "seed",
}
THRESHOLD_KEYS = {"min", "min_retention", "max_compute_ratio", "min_efficiency", "max_flops_increase"}
DATA_KEYS = {"jsonl", "bigbench", "input", "target", "choices", "label", "answer_pattern", "filter",
             "ignore_case", "ignore_punctuation"}
_NAME = re.compile(r"^[A-Za-z0-9_]+$")

# What lm-eval reports when a task does not list its metrics.
_DEFAULT_METRICS = {
    "generate_until": ("exact_match",),
    "multiple_choice": ("acc", "acc_norm"),
    "loglikelihood": ("perplexity", "acc"),
    "loglikelihood_rolling": ("word_perplexity", "byte_perplexity", "bits_per_byte"),
}


@dataclass(frozen=True)
class Thresholds:
    min: float | None = None
    min_retention: float | None = None
    max_compute_ratio: float | None = None
    min_efficiency: float | None = None
    max_flops_increase: float | None = None  # fraction above the baseline's FLOPs per item


@dataclass(frozen=True)
class TaskSpec:
    suite: str
    name: str
    description: str
    difficulty: int | None
    metric: str  # lm-eval metric name
    filter: str  # lm-eval filter pipeline the metric is read from ("none" without filters)
    source: Path  # the suite file
    thresholds: tuple[tuple[str, Thresholds], ...]  # keyed by role or model name
    output_type: str
    config: dict[str, Any] = field(compare=False, repr=False)  # lm-eval config, absolute paths
    builtin: str | None = None  # a built-in lm-eval task name
    unsafe_code: bool = False
    data_sha256: str = ""
    template_sha256: str = ""
    limit: int | None = None
    # per-task overrides of the model's chat settings: (key, value) for the keys the task sets
    chat: tuple[tuple[str, Any], ...] = ()
    repeats: int = 1
    seed: int | None = None  # the sampling seed; None: the session's seed

    @property
    def id(self) -> str:
        return f"{self.suite}/{self.name}"

    @property
    def lm_task_name(self) -> str:
        return self.builtin or f"distillbench_{self.suite}_{self.name}"

    @property
    def metric_key(self) -> str:
        return f"{self.metric},{self.filter}"

    @property
    def fingerprint(self) -> str:
        """Changes when the data or the prompt template changes; not with absolute paths."""
        return hashlib.sha256(f"{self.data_sha256}:{self.template_sha256}".encode()).hexdigest()

    def thresholds_for(self, model: str, role: str) -> Thresholds:
        table = dict(self.thresholds)
        return table.get(model) or table.get(role) or Thresholds()

    def lm_eval_config(self) -> dict[str, Any] | str:
        if self.builtin:
            # sampling overrides of a built-in task ride on its name, as in lm-eval's own YAML
            return {"task": self.builtin, **copy.deepcopy(self.config)} if self.config else self.builtin
        return {"task": self.lm_task_name, **copy.deepcopy(self.config)}


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    description: str
    path: Path
    allow_code_execution: bool
    tasks: tuple[TaskSpec, ...]


class _FunctionRef(str):
    """A ``!function module.attr`` reference, resolved after validation."""


class _SuiteLoader(yaml.SafeLoader):
    pass


def _function_constructor(loader: yaml.SafeLoader, node: yaml.Node) -> _FunctionRef:
    return _FunctionRef(loader.construct_scalar(node))  # type: ignore[arg-type]


_SuiteLoader.add_constructor("!function", _function_constructor)


def resolve_function(ref: str, *, suite_path: Path, key: str) -> Any:
    """``pkg.module.attr`` importable, or ``file.attr`` relative to the suite file."""
    module_name, _, attr = ref.rpartition(".")
    if not module_name:
        raise DistillbenchError(f"!function {ref!r} needs a module and a name", path=suite_path,
                                key=key, fix="write it as module.function")
    local = suite_path.parent / (module_name.replace(".", "/") + ".py")
    try:
        if local.is_file():
            spec = importlib.util.spec_from_file_location(f"_distillbench_{local.stem}", local)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise DistillbenchError(f"!function {ref!r} cannot be imported ({exc})", path=suite_path,
                                key=key, fix="check the module path and the function name") from None


def _resolve_functions(value: Any, *, suite_path: Path, key: str) -> Any:
    if isinstance(value, _FunctionRef):
        return resolve_function(str(value), suite_path=suite_path, key=key)
    if isinstance(value, dict):
        return {k: _resolve_functions(v, suite_path=suite_path, key=f"{key}.{k}")
                for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_functions(v, suite_path=suite_path, key=f"{key}[{i}]")
                for i, v in enumerate(value)]
    return value


def _stable(value: Any) -> Any:
    """A JSON-able form of a config for hashing: functions by qualified name."""
    if isinstance(value, _FunctionRef):
        return f"!function {value}"
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}"
    if isinstance(value, dict):
        return {str(k): _stable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_stable(v) for v in value]
    return value


def sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.name.encode() + b"\0")
        digest.update(p.read_bytes())
    return digest.hexdigest()


def _fail(path: Path, key: str, message: str, fix: str) -> DistillbenchError:
    return DistillbenchError(message, path=path, key=key, fix=fix)


def _yaml_problem(exc: yaml.YAMLError, path: Path) -> tuple[str, str]:
    """The line to blame and what is wrong there. An unclosed bracket or quote is only noticed
    where the file goes on (often the next line or the end of the file): PyYAML's problem mark is
    there, and the construct that was never closed starts at its context mark, which is the
    line to fix."""
    problem = getattr(exc, "problem", None) or str(exc)
    mark = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context", None) or ""
    start = getattr(exc, "context_mark", None)
    unclosed = start is not None and mark is not None and start.line < mark.line and (
        "flow" in context or "quoted" in context)
    blamed = start if unclosed else mark
    if blamed is None:
        return "yaml", f"not valid YAML ({problem})"
    try:
        text = path.read_text(encoding="utf-8").splitlines()[blamed.line].strip()
    except (OSError, IndexError):
        text = ""
    detail = problem
    if unclosed:
        what = context.replace("while parsing a ", "").replace("while scanning a ", "")
        detail = f"this {what} is never closed; {problem} at line {mark.line + 1}"
    shown = f": {text!r}" if text else ""
    return f"line {blamed.line + 1}", f"not valid YAML ({detail}){shown}"


def load_suite(path: str | Path) -> SuiteSpec:
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_SuiteLoader)  # noqa: S506
    except yaml.YAMLError as exc:
        where, message = _yaml_problem(exc, path)
        raise _fail(path, where, message, "fix the YAML syntax at that line") from None
    except OSError as exc:
        raise _fail(path, "file", f"cannot be read ({exc.strerror})", "check the path") from None
    if not isinstance(raw, dict):
        raise _fail(path, "(top level)", "a suite must be a mapping with 'suite' and 'tasks'",
                    "start the file with 'suite: <name>' and a 'tasks:' list")
    unknown = sorted(set(raw) - SUITE_KEYS)
    if unknown:
        raise _fail(path, unknown[0], "unknown key", f"use only: {', '.join(sorted(SUITE_KEYS))}")
    name = raw.get("suite")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(path, "suite", "missing or invalid suite name",
                    "add 'suite: <name>' using letters, digits and underscores")
    tasks_raw = raw.get("tasks")
    if not isinstance(tasks_raw, list) or not tasks_raw:
        raise _fail(path, "tasks", "the suite has no tasks", "add a non-empty 'tasks:' list")
    allow_code = raw.get("allow_code_execution", False)
    if not isinstance(allow_code, bool):
        raise _fail(path, "allow_code_execution", "must be true or false", "write true or false")
    from . import schema

    schema.validate(schema.Suite, raw, path=path)
    tasks: list[TaskSpec] = []
    seen: set[str] = set()
    for i, task_raw in enumerate(tasks_raw):
        task = _load_task(path, name, i, task_raw, allow_code)
        if task.name in seen:
            raise _fail(path, f"tasks[{i}].name", f"duplicate task name {task.name!r}",
                        "give every task in a suite its own name")
        seen.add(task.name)
        tasks.append(task)
    _require_isolation(path, raw.get("require_isolation"), tasks)
    return SuiteSpec(name=name, description=str(raw.get("description", "")), path=path,
                     allow_code_execution=allow_code, tasks=tuple(tasks))


def _require_isolation(path: Path, level: Any, tasks: list[TaskSpec]) -> None:
    """``require_isolation: <level>``: every code task's ``distillbench_execute`` filter gets
    it as its ``require_isolation`` argument and refuses to run below that sandbox level."""
    if level is None:
        return
    if level not in ISOLATION_LEVELS:
        raise _fail(path, "require_isolation", f"unknown isolation level {level!r}",
                    f"use one of: {', '.join(ISOLATION_LEVELS)}")
    for task in tasks:
        if not task.unsafe_code:
            continue
        steps = [step for pipeline in task.config.get("filter_list") or [] if isinstance(pipeline, dict)
                 for step in pipeline.get("filter") or [] if isinstance(step, dict)
                 and step.get("function") == "distillbench_execute"]
        if not steps:
            raise _fail(path, "require_isolation", f"task {task.name!r} runs code without the "
                        "distillbench_execute filter, which is what enforces the level",
                        "add filter_list: [{name: executed, filter: [{function: distillbench_execute}]}]")
        for step in steps:
            step["require_isolation"] = level


def _load_thresholds(path: Path, key: str, raw: Any) -> tuple[tuple[str, Thresholds], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise _fail(path, key, "thresholds must map a role or model name to limits",
                    "write e.g. thresholds: {teacher: {min: 0.8}, student: {min_retention: 0.75}}")
    out = []
    for who, limits in raw.items():
        if not isinstance(limits, dict):
            raise _fail(path, f"{key}.{who}", "must be a mapping of limits",
                        f"use keys among: {', '.join(sorted(THRESHOLD_KEYS))}")
        bad = sorted(set(limits) - THRESHOLD_KEYS)
        if bad:
            raise _fail(path, f"{key}.{who}.{bad[0]}", "unknown threshold",
                        f"use one of: {', '.join(sorted(THRESHOLD_KEYS))}")
        for k, v in limits.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise _fail(path, f"{key}.{who}.{k}", f"must be a number, got {v!r}", "write a number")
        out.append((str(who), Thresholds(**{k: float(v) for k, v in limits.items()})))
    return tuple(out)


def _load_task(path: Path, suite: str, i: int, raw: Any, allow_code: bool) -> TaskSpec:
    key = f"tasks[{i}]"
    if not isinstance(raw, dict):
        raise _fail(path, key, "a task must be a mapping", "give the task a name, a metric and a source")
    bad = sorted(set(raw) - TASK_KEYS)
    if bad:
        raise _fail(path, f"{key}.{bad[0]}", "unknown key", f"use only: {', '.join(sorted(TASK_KEYS))}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(path, f"{key}.name", "missing or invalid task name",
                    "add 'name: <name>' using letters, digits and underscores")
    key = f"tasks[{i}] ({name})"
    from . import schema

    schema.validate(schema.Task, raw, path=path, prefix=key)  # types and ranges of every key
    sources = [k for k in ("lm_eval", "lm_eval_task", "data") if k in raw]
    if "generation" in raw and "data" not in raw:
        raise _fail(path, f"{key}.generation", "generation: applies to data: tasks only, so it "
                    "would be ignored here", "put generation_kwargs inside the lm_eval: config "
                    "(or remove it for a built-in task)")
    if len(sources) != 1:
        raise _fail(path, key, "a task needs exactly one of lm_eval, lm_eval_task, data",
                    "write the lm-eval config inline (lm_eval:), name a built-in task "
                    "(lm_eval_task:), or point at your data (data:)")
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric:
        raise _fail(path, f"{key}.metric", "missing primary metric",
                    "add e.g. 'metric: acc' or 'metric: exact_match,<filter name>'")
    metric_name, _, filter_name = metric.partition(",")
    thresholds = _load_thresholds(path, f"{key}.thresholds", raw.get("thresholds"))
    limit = raw.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise _fail(path, f"{key}.limit", "must be a positive integer", "write e.g. limit: 100")
    chat, sampling = _load_chat_and_sampling(path, key, raw)
    common = dict(suite=suite, name=name, description=str(raw.get("description", "")),
                  difficulty=raw.get("difficulty"), source=path, thresholds=thresholds, limit=limit,
                  chat=chat, repeats=int(sampling.get("repeats", 1)), seed=sampling.get("seed"))

    if "lm_eval_task" in raw:
        builtin = raw["lm_eval_task"]
        if not isinstance(builtin, str):
            raise _fail(path, f"{key}.lm_eval_task", "must be a task name", "write e.g. lm_eval_task: gsm8k")
        overrides = _sampling_config(sampling, {}) if sampling else {}
        template = f"builtin:{builtin}"
        if sampling:
            template += ":" + hashlib.sha256(json.dumps(sampling, sort_keys=True).encode()).hexdigest()
        return TaskSpec(metric=metric_name, filter=filter_name or "none", output_type="unknown",
                        config=overrides, builtin=builtin, data_sha256=f"builtin:{builtin}",
                        template_sha256=template, **common)

    if "data" in raw:
        config, data_files = _config_from_user_data(path, key, raw["data"], raw.get("generation"),
                                                    metric_name)
    else:
        config = raw["lm_eval"]
        if not isinstance(config, dict):
            raise _fail(path, f"{key}.lm_eval", "must be an lm-eval task config mapping",
                        "write the task's lm-eval YAML keys under lm_eval:")
        config = copy.deepcopy(config)
        config.pop("task", None)
        data_files = _resolve_data_files(path, key, config)
    output_type = config.get("output_type", "generate_until")
    if sampling and output_type != "generate_until":
        raise _fail(path, f"{key}.repeats", "repeats, temperature, top_p and seed apply to "
                    "generation tasks only", "remove them, or make the task output_type: generate_until")
    if sampling:
        config = _sampling_config(sampling, config)
    if output_type not in _DEFAULT_METRICS:
        raise _fail(path, f"{key}.lm_eval.output_type", f"unknown output type {output_type!r}",
                    f"use one of: {', '.join(_DEFAULT_METRICS)}")
    unsafe = bool(config.get("unsafe_code", False))
    if unsafe and not allow_code:
        raise _fail(path, f"{key}.lm_eval.unsafe_code", "this task runs generated code but the "
                    "suite does not allow it", "add 'allow_code_execution: true' at the top of the "
                    "suite if you accept running model-written code in the sandbox")
    _check_metric(path, key, config, output_type, metric_name, filter_name)
    template = {k: v for k, v in config.items() if k not in ("dataset_kwargs", "custom_dataset")}
    if sampling.get("seed") is not None:
        template["distillbench_seed"] = sampling["seed"]  # a new seed draws other samples
    resolved = _resolve_functions(config, suite_path=path, key=f"{key}.lm_eval")
    return TaskSpec(
        metric=metric_name, filter=filter_name or _default_filter(config), output_type=output_type,
        config=resolved, unsafe_code=unsafe, data_sha256=sha256_files(data_files),
        template_sha256=hashlib.sha256(json.dumps(_stable(template), sort_keys=True).encode()).hexdigest(),
        **common,
    )


def _load_chat_and_sampling(path: Path, key: str, raw: dict[str, Any]
                            ) -> tuple[tuple[tuple[str, Any], ...], dict[str, Any]]:
    """The task's chat overrides and its sampling keys, checked."""
    chat = []
    for name, kinds, fix in (("chat_template", (bool,), "write chat_template: true or false"),
                             ("system_prompt", (str,), "write system_prompt: \"...\""),
                             ("fewshot_as_multiturn", (bool,), "write fewshot_as_multiturn: true")):
        if name in raw:
            if not isinstance(raw[name], kinds):
                raise _fail(path, f"{key}.{name}", f"must be {' or '.join(k.__name__ for k in kinds)}, "
                            f"got {raw[name]!r}", fix)
            chat.append((name, raw[name]))
    sampling: dict[str, Any] = {}
    repeats = raw.get("repeats")
    if repeats is not None:
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise _fail(path, f"{key}.repeats", f"must be a positive integer, got {repeats!r}",
                        "write e.g. repeats: 8")
        sampling["repeats"] = repeats
    for name, low, high in (("temperature", 0.0, 10.0), ("top_p", 0.0, 1.0)):
        value = raw.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high \
                or (name == "top_p" and value == 0):
            raise _fail(path, f"{key}.{name}", f"must be a number in {'(' if name == 'top_p' else '['}"
                        f"{low}, {high}], got {value!r}", f"write e.g. {name}: 0.6")
        sampling[name] = float(value)
    seed = raw.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise _fail(path, f"{key}.seed", f"must be a non-negative integer, got {seed!r}",
                        "write e.g. seed: 0")
        sampling["seed"] = seed
    if sampling.get("repeats", 1) > 1 and not sampling.get("temperature"):
        raise _fail(path, f"{key}.repeats", "repeats > 1 with greedy decoding gives k identical "
                    "samples", "add e.g. temperature: 0.6 (and top_p: 0.95) to sample")
    return tuple(chat), sampling


def _sampling_config(sampling: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """lm-eval's own keys for the sampling a task declares: ``repeats`` and the generation
    kwargs ``do_sample`` / ``temperature`` / ``top_p``."""
    config = dict(config)
    if "repeats" in sampling:
        config["repeats"] = sampling["repeats"]
    gen = dict(config.get("generation_kwargs") or {})
    if sampling.get("temperature"):
        gen.update(do_sample=True, temperature=sampling["temperature"])
        if "top_p" in sampling:
            gen["top_p"] = sampling["top_p"]
    elif "temperature" in sampling:
        gen.update(do_sample=False, temperature=0.0)
    if gen:
        config["generation_kwargs"] = gen
    return config


def _default_filter(config: Mapping[str, Any]) -> str:
    filters = config.get("filter_list")
    if filters:
        return str(filters[0].get("name", "none"))
    return "none"


def _check_metric(path: Path, key: str, config: Mapping[str, Any], output_type: str,
                  metric: str, filter_name: str) -> None:
    listed = config.get("metric_list")
    if listed:
        names = [m.get("metric") for m in listed if isinstance(m, dict)]
    else:
        names = list(_DEFAULT_METRICS[output_type])
    if metric not in names:
        raise _fail(path, f"{key}.metric", f"{metric!r} is not produced by this task",
                    f"use one of: {', '.join(str(n) for n in names)}")
    filters = [f.get("name") for f in config.get("filter_list") or [] if isinstance(f, dict)] or ["none"]
    if filter_name and filter_name not in filters:
        raise _fail(path, f"{key}.metric", f"filter {filter_name!r} is not defined by this task",
                    f"use one of: {', '.join(str(f) for f in filters)}")


def _resolve_data_files(path: Path, key: str, config: dict[str, Any]) -> list[Path]:
    """Make data paths absolute relative to the suite file (lm-eval would use the cwd)."""
    kwargs = config.get("dataset_kwargs") or {}
    files = kwargs.get("data_files")
    if files is None:
        return []
    found: list[Path] = []
    # The split items come from is checked line by line here, before any model loads (the
    # bundled suites' test files: ~0.1 s). Other splits (train files can be large; checking all of
    # the bundled ones costs 1.5 s a collection) are checked only if lm-eval fails to read them
    # (evaluation.py names the file and line then).
    checked = {"", str(config.get("test_split", "test"))}

    def fix(value: Any, where: str) -> Any:
        if isinstance(value, list):
            return [fix(v, f"{where}[{j}]") for j, v in enumerate(value)]
        p = Path(str(value))
        p = p if p.is_absolute() else (path.parent / p)
        at = f"{key}.lm_eval.dataset_kwargs.data_files{where}"
        if p.is_dir():
            raise _fail(path, at, f"{p} is a folder, not a data file", "name the data file itself")
        if not p.is_file():
            raise _fail(path, at, f"data file {p} does not exist",
                        "create the file or fix the path (relative paths start at the suite file)")
        if config.get("dataset_path") == "json" and where.lstrip(".").split("[")[0] in checked:
            check_json_data(p, suite=path, key=at)
        found.append(p.resolve())
        return str(p.resolve())

    if isinstance(files, dict):
        kwargs["data_files"] = {split: fix(v, f".{split}") for split, v in files.items()}
    else:
        kwargs["data_files"] = fix(files, "")
    config["dataset_kwargs"] = kwargs
    return found


_JSON_TYPES = {bool: "true/false", int: "a number", float: "a number", str: "a string",
               list: "a list", dict: "an object"}


def check_json_data(data: Path, *, suite: Path, key: str) -> None:
    """What `datasets` needs to read a JSON(-lines) data file, checked at collection so that a
    bad line is named by file and line before any model loads (lm-eval would only say
    DatasetGenerationError, later): every row a JSON object, each field of one type throughout
    (null aside)."""
    fix = f"fix that line; the file is read by {key} of {suite.name}"
    try:
        text = data.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DistillbenchError(f"cannot be read ({exc})", path=data, fix="save it as UTF-8 text") from None
    rows: list[tuple[int, Any]] = []
    if data.suffix == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DistillbenchError(f"line {exc.lineno}: not valid JSON ({exc.msg})", path=data, fix=fix) from None
        if isinstance(doc, dict) and len(doc) == 1 and isinstance(next(iter(doc.values())), list):
            doc = next(iter(doc.values()))  # {"data": [...]}, which `datasets` reads through `field`
        if not isinstance(doc, list):
            return  # a layout `datasets` reads with options (field=...): left to it
        rows = [(i + 1, r) for i, r in enumerate(doc)]
        where = "row"
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DistillbenchError(f"line {lineno}: not valid JSON ({exc.msg}, column {exc.colno})",
                                        path=data, fix=fix) from None
        where = "line"
    first: dict[str, tuple[str, int]] = {}
    for n, row in rows:
        if not isinstance(row, dict):
            raise DistillbenchError(f"{where} {n}: not a JSON object", path=data,
                                    fix="write one JSON object per line")
        for field_name, value in row.items():
            if value is None:
                continue
            kind = _JSON_TYPES.get(type(value), type(value).__name__)
            seen = first.setdefault(field_name, (kind, n))
            if seen[0] != kind:
                raise DistillbenchError(
                    f"{where} {n}: field {field_name!r} is {kind}, but {seen[0]} in {where} {seen[1]}",
                    path=data, fix="give each field one type in every row (e.g. quote numbers meant as text)")


def _config_from_user_data(path: Path, key: str, data: Any, generation: Any, metric: str = ""
                           ) -> tuple[dict[str, Any], list[Path]]:
    """A task from the user's own JSONL (with a field mapping) or a BIG-bench task.json.

    Defaults, documented in docs/user-data.md: JSONL free answers are scored by exact match
    ignoring case and punctuation against every target, generation stops at a newline after 32
    tokens; BIG-bench tasks are scored as BIG-bench scores them (exact match, case and
    punctuation kept, after its output_regex / stop_string); ``answer_pattern`` (a regex: the last
    match, its first group if it has one) or ``filter`` (lm-eval filter steps) picks the answer
    out of a longer response."""
    if not isinstance(data, dict):
        raise _fail(path, f"{key}.data", "must be a mapping",
                    "write data: {jsonl: file.jsonl, input: <field>, target: <field>}")
    bad = sorted(set(data) - DATA_KEYS)
    if bad:
        raise _fail(path, f"{key}.data.{bad[0]}", "unknown key", f"use only: {', '.join(sorted(DATA_KEYS))}")
    if ("jsonl" in data) == ("bigbench" in data):
        raise _fail(path, f"{key}.data", "give exactly one of jsonl or bigbench",
                    "point 'jsonl:' at a JSON-lines file or 'bigbench:' at a BIG-bench task.json")
    kind = "jsonl" if "jsonl" in data else "bigbench"
    source = Path(str(data[kind]))
    source = (source if source.is_absolute() else path.parent / source).resolve()
    if source.is_dir():
        raise _fail(path, f"{key}.data.{kind}", f"{source} is a folder, not a data file",
                    "name the file itself" + (", e.g. .../task.json" if kind == "bigbench" else ""))
    if not source.is_file():
        raise _fail(path, f"{key}.data.{kind}", f"data file {source} does not exist",
                    "create the file or fix the path (relative paths start at the suite file)")
    from .userdata import (
        bigbench_filter_step,
        bigbench_postprocess,
        load_bigbench,
        load_jsonl,
        peek_kind,
        read_bigbench,
    )

    mapping = {k: data[k] for k in ("input", "target", "choices", "label") if k in data}
    if kind == "jsonl" and ("input" not in mapping or ("target" not in mapping and "label" not in mapping)):
        raise _fail(path, f"{key}.data", "a JSONL task needs 'input' and 'target' (or 'choices' "
                    "and 'label') field names", "add e.g. input: question, target: answer")
    if kind == "bigbench" and mapping:
        raise _fail(path, f"{key}.data.{next(iter(mapping))}", "a BIG-bench task.json has fixed "
                    "fields (input, target, target_scores); there is nothing to map",
                    "remove the field names, or convert the file to JSONL")
    if "answer_pattern" in data and "filter" in data:
        raise _fail(path, f"{key}.data", "give answer_pattern or filter, not both",
                    "answer_pattern is a shortcut for a one-step regex filter")
    # BIG-bench: the metric decides how a task that carries both target and target_scores is
    # scored, as preferred_score does in BIG-bench (acc: choices by log-likelihood; exact_match:
    # generation scored by exact_str_match)
    mode = "choice" if metric in ("acc", "acc_norm") else "generate"
    loader = load_jsonl if kind == "jsonl" else load_bigbench
    try:
        multiple_choice = peek_kind(kind, source, mapping, mode) == "multiple_choice"
    except DistillbenchError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise _fail(path, f"{key}.data.{kind}", f"{source.name} cannot be read as {kind} ({exc})",
                    "check the file format and the field names") from None
    delimiter = " " if kind == "jsonl" else ""  # BIG-bench's output prefix ends with its space
    config: dict[str, Any] = {
        "custom_dataset": loader,
        "dataset_kwargs": {"source": str(source), "mapping": mapping,
                           **({"mode": mode} if kind == "bigbench" else {})},
        "test_split": "test",
        "doc_to_text": "{{input}}",
    }
    picks = "answer_pattern" in data or "filter" in data
    if multiple_choice:
        if picks:
            raise _fail(path, f"{key}.data.{'filter' if 'filter' in data else 'answer_pattern'}",
                        "a multiple-choice task has no generated answer to filter",
                        "remove it, or score the task by generation")
        config.update(output_type="multiple_choice", doc_to_choice="{{choices}}",
                      doc_to_target="{{label}}", target_delimiter=delimiter,
                      metric_list=[{"metric": "acc"}, {"metric": "acc_norm"}])
        return config, [source]
    loose = kind == "jsonl"
    gen = {"until": ["\n"], "max_gen_toks": 32, "do_sample": False}
    if kind == "bigbench":
        stop, regex = bigbench_postprocess(read_bigbench(source))
        if "answer_pattern" in data:
            stop, regex = None, str(data["answer_pattern"])
        steps = [bigbench_filter_step(stop, regex)]
        if stop is not None or regex != r"[^\.\?\!\;\n]+":
            gen["until"] = []  # the task's own stop string / pattern decides where the answer ends
        config["filter_list"] = [{"name": "bigbench", "filter": [*steps, {"function": "take_first"}]}]
    elif "answer_pattern" in data:
        config["filter_list"] = [{"name": "answer", "filter": [
            {"function": "regex", "regex_pattern": str(data["answer_pattern"]), "group_select": -1},
            {"function": "take_first"}]}]
    elif "filter" in data:
        steps = [dict(step) for step in data["filter"]]
        if steps[-1].get("function") not in ("take_first", "majority_vote", "take_first_k"):
            steps.append({"function": "take_first"})
        config["filter_list"] = [{"name": "answer", "filter": steps}]
    if isinstance(generation, dict):
        gen.update(generation)
    config.update(output_type="generate_until", doc_to_target="targets", target_delimiter=delimiter,
                  generation_kwargs=gen,
                  metric_list=[{"metric": "exact_match", "aggregation": "mean",
                                "higher_is_better": True,
                                "ignore_case": bool(data.get("ignore_case", loose)),
                                "ignore_punctuation": bool(data.get("ignore_punctuation", loose))}])
    return config, [source]


def collect_suite_paths(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.glob("*.yaml") if q.is_file()))
        elif p.suffix in (".yaml", ".yml"):
            out.append(p)
    return out
