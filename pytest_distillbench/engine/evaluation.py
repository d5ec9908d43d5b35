"""Evaluate each (model, task) pair once per session through lm-eval, with a fingerprinted cache.

Test items never run models: they ask the ``Evaluator`` for a ``TaskRun``. The first request for a
model evaluates that model on every task the session's selected items need, then releases it,
so at most one model is in memory at a time.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import DistillbenchError
from ..fileio import atomic_write_text
from ..records import ItemRecord, Outcome, Request, TaskRun, Unavailable
from ..spec.models import ModelSpec, fingerprint
from ..spec.settings import Settings
from ..spec.suites import TaskSpec
from .sharding import Shard, assign, wait_for, write_outcome

RECORD_SCHEMA = 1
PROBE = "__probe__"  # pseudo-task: next-token distributions on probe prompts (evidence)
PROBES_PER_TASK = 8
LARGE_MODEL_BYTES = 256 * 2**20  # above this, releasing a model runs a full garbage collection
Progress = Callable[[str], None]




def _register_filters() -> None:
    from lm_eval.api.filter import Filter
    from lm_eval.api.registry import FILTER_REGISTRY, register_filter

    from .tasks import bigbench, code_filter

    code_filter.register()
    bigbench.register()
    if "distillbench_after_think" in FILTER_REGISTRY:
        return

    @register_filter("distillbench_after_think")
    class AfterThinking(Filter):
        """Keep the answer after a reasoning block; a block that never ends scores as wrong."""

        def __init__(self, delimiter: str = "</think>", **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.delimiter = delimiter

        def apply(self, resps: Iterable[list[str]], docs: list[dict]) -> Iterable[list[str]]:
            def answer(text: str) -> str:
                head, sep, tail = text.partition(self.delimiter)
                return tail.lstrip() if sep else ""

            return [[answer(r) if isinstance(r, str) else r for r in group] for group in resps]

    from .tasks import math_verify

    math_verify.register()


def with_think_filter(config: dict[str, Any], delimiter: str) -> dict[str, Any]:
    """Prefix every filter pipeline of a generation task with the after-think step."""
    step = {"function": "distillbench_after_think", "delimiter": delimiter}
    pipelines = config.get("filter_list") or [{"name": "none", "filter": [{"function": "take_first"}]}]
    config["filter_list"] = [{**p, "filter": [step, *p.get("filter", [])]} for p in pipelines]
    return config


@dataclass(frozen=True)
class ChatSettings:
    """The chat settings in force for one (model, task): what lm-eval's ``apply_chat_template``,
    ``system_instruction`` and ``fewshot_as_multiturn`` receive, and the template's hash."""

    apply: bool  # apply a chat template (else only a system prompt, as plain text)
    template_sha256: str | None  # None: no template; "server": applied by the chat API server
    template: str | None  # a template file's text, set on the tokenizer; None: the checkpoint's own
    system_prompt: str | None
    fewshot_as_multiturn: bool

    def to_dict(self) -> dict[str, Any]:
        return {"chat_template_sha256": self.template_sha256, "system_prompt": self.system_prompt,
                "fewshot_as_multiturn": self.fewshot_as_multiturn if self.apply else None}


def _template_of_checkpoint(directory: Path) -> str | None:
    """A checkpoint's chat template as transformers loads it (``chat_template.jinja``, else the
    ``chat_template`` of ``tokenizer_config.json``), read from the files without importing it."""
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    try:
        config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):  # named templates: lm-eval picks "default"
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) and template else None


def chat_settings(spec: ModelSpec, task: TaskSpec, rootdir: Path | None = None) -> ChatSettings | None:
    """The chat settings for ``spec`` on ``task`` (the task's overrides win), or None when
    neither a chat template nor a system prompt is in force, so such a pair is keyed as before."""
    over = dict(task.chat)
    use = over.get("chat_template", spec.chat_template)
    if use is True and isinstance(spec.chat_template, str):
        use = spec.chat_template  # a task turning the template on gets the model's template file
    system = over.get("system_prompt", spec.system_prompt)
    multiturn = over.get("fewshot_as_multiturn", spec.fewshot_as_multiturn)
    multiturn = True if multiturn is None else bool(multiturn)  # lm-eval's default
    key = f"models.{spec.name}.chat_template"
    if spec.backend == "api-chat":
        if use is False:
            raise DistillbenchError(f"model {spec.name!r} is a chat-only API model: its server always "
                                    f"applies its chat template, so {task.id} cannot turn it off",
                                    path=task.source, key=f"{task.name}.chat_template",
                                    fix="remove chat_template: false, or serve the model at "
                                        "/v1/completions and use backend = \"api\"")
        return ChatSettings(True, "server", None, system, multiturn)
    if not use:
        return None if system is None else ChatSettings(False, None, None, system, multiturn)
    text: str | None
    if isinstance(use, str):  # a template file declared on the model
        path = Path(use)
        if not path.is_absolute() and rootdir is not None:
            path = rootdir / path
        if not path.is_file():
            raise DistillbenchError(f"chat template file {use} does not exist", key=key,
                                    fix="point chat_template at a Jinja template file, or write "
                                        "chat_template = true to use the checkpoint's own")
        text = path.read_text(encoding="utf-8")
        given: str | None = text
    else:
        given = None
        where = [spec.option("tokenizer"), spec.path] if spec.backend != "api" else [spec.option("tokenizer")]
        text = None
        for candidate in filter(None, where):
            directory = Path(candidate) if Path(candidate).is_absolute() or rootdir is None else rootdir / candidate
            if directory.is_dir():
                text = _template_of_checkpoint(directory)
                if text is not None:
                    break
        if text is None:
            raise DistillbenchError(
                f"model {spec.name!r} has no chat template (no chat_template.jinja and no "
                f"chat_template in tokenizer_config.json at {' or '.join(filter(None, where)) or 'its path'})",
                key=key, fix="give the model a template file (chat_template = \"chat.jinja\"), or "
                             "turn the chat template off for it (chat_template = false)")
    sha = hashlib.sha256(text.encode()).hexdigest()
    return ChatSettings(True, sha, given, system, multiturn)


def _cache_key(model_fp: str, spec: ModelSpec, task: TaskSpec, settings: Settings, device: str) -> str:
    from ..store.runfiles import package_versions

    versions = package_versions()
    material = {
        "schema": RECORD_SCHEMA,
        "plugin": __version__,
        "model": model_fp,
        "task": task.fingerprint,
        "metric": task.metric_key,
        "backend": spec.backend,
        "dtype": spec.dtype,
        "batch_size": spec.batch_size,
        "device": device.split(":")[0],
        "think": spec.think_delimiter,
        "options": [list(o) for o in spec.options],  # backend tuning (max_length, ...) changes results
        "limit": task.limit if settings.limit is None else settings.limit,
        "seed": settings.seed,
        # read from package metadata: a warm run from the cache should not import the stack
        "versions": [versions["lm-eval"], versions["transformers"], versions["torch"]],
    }
    chat = chat_settings(spec, task, settings.rootdir)
    if chat is not None:  # only then: a model without chat settings keeps the key it had
        material["chat"] = chat.to_dict()
    if task.seed is not None:
        material["seed"] = task.seed
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def model_fingerprint(spec: ModelSpec) -> str:
    """Local checkpoints are hashed (any backend); a served model is known by where it is served
    and its name, since its weights cannot be read."""
    if Path(spec.path).is_dir():
        return fingerprint(spec.path)
    where = spec.option("base_url", "") if spec.backend in ("api", "api-chat") else ""
    return "name:" + hashlib.sha256(f"{spec.backend}:{where}:{spec.path}".encode()).hexdigest()


class Evaluator:
    def __init__(self, settings: Settings, tasks: dict[str, TaskSpec], progress: Progress,
                 shard: Shard | None = None) -> None:
        self.settings = settings
        self.tasks = tasks
        self.progress = progress
        self.shard = shard  # set on pytest-xdist workers
        self.planned: dict[str, list[str]] = {}
        self.results: dict[tuple[str, str], Outcome] = {}
        self.errors: dict[str, DistillbenchError] = {}
        self._fingerprints: dict[str, str] = {}
        self._task_managers: dict[bool, Any] = {}
        self._exchanged = False
        self.frozen = False  # True where results may only be read (the xdist controller)
        self.probes: dict[str, Any] = {}  # model -> probes.ProbeResult
        self._probe_prompts: list[str] | None = None

    # -- planning ---------------------------------------------------------------------------
    def plan(self, pairs: Iterable[tuple[str, str]]) -> None:
        planned: dict[str, list[str]] = {}
        for model, task in sorted(set(pairs)):
            planned.setdefault(model, []).append(task)
        self.planned = planned

    def result(self, model: str, task_id: str) -> Outcome:
        key = (model, task_id)
        if self.shard is not None and not self._exchanged:
            self._exchange()
        if key not in self.results:
            if model in self.errors:
                raise self.errors[model]
            if self.frozen:
                return Unavailable(f"{model} on {task_id} was not evaluated by any worker")
            if task_id not in self.planned.get(model, []):
                self.planned.setdefault(model, []).append(task_id)
            try:
                self._evaluate_model(self.settings.model(model))
            except DistillbenchError as exc:
                self.errors[model] = exc
                raise
        return self.results[key]

    def done(self) -> dict[tuple[str, str], TaskRun]:
        return {k: v for k, v in self.results.items() if isinstance(v, TaskRun)}

    # -- xdist ------------------------------------------------------------------------------
    def _exchange(self) -> None:
        """Evaluate this worker's share, publish it, then take every worker's outcomes."""
        shard = self.shard
        assert shard is not None
        self._exchanged = True
        pairs = [(m, t) for m, ts in self.planned.items() for t in ts]
        mine = assign(pairs, shard.count)[shard.index]
        by_model: dict[str, list[str]] = {}
        for model, task in mine:
            by_model.setdefault(model, []).append(task)
        for model, tasks in by_model.items():
            try:
                self._evaluate_model(self.settings.model(model), tasks)
                payloads = [self._payload(self.results.get((model, t), Unavailable("")), model, t)
                            for t in tasks]
            except DistillbenchError as exc:
                payloads = [{"error": str(exc)}] * len(tasks)
            for task, payload in zip(tasks, payloads, strict=True):
                write_outcome(shard, (model, task), payload)
        self.load_outcomes(wait_for(shard, pairs))

    def _payload(self, outcome: Outcome, model: str = "", task: str = "") -> dict[str, Any]:
        if task == PROBE:
            probe = self.probes.get(model)
            return {"probe": None if probe is None else probe.to_dict()}
        if isinstance(outcome, Unavailable):
            return {"unavailable": outcome.reason}
        return {"run": outcome.to_dict(), "from_cache": outcome.from_cache}

    def load_outcomes(self, outcomes: Iterable[dict[str, Any]]) -> None:
        for o in outcomes:
            key = (o["model"], o["task"])
            if "probe" in o:
                from ..measures.probes import ProbeResult

                if o["probe"] is not None:
                    self.probes[o["model"]] = ProbeResult.from_dict(o["probe"])
                self.results[key] = Unavailable("probe")
            elif "run" in o:
                run = TaskRun.from_dict(o["run"], from_cache=bool(o.get("from_cache")))
                run.meta["worker"] = o.get("worker")
                self.results[key] = run
            elif "unavailable" in o:
                self.results[key] = Unavailable(o["unavailable"])
            else:
                self.errors.setdefault(o["model"], DistillbenchError(o["error"]))

    # -- running ----------------------------------------------------------------------------
    def model_fp(self, spec: ModelSpec) -> str:
        if spec.name not in self._fingerprints:
            self._fingerprints[spec.name] = model_fingerprint(spec)
        return self._fingerprints[spec.name]

    def _evidence_tasks(self, spec: ModelSpec, pending: list[str]) -> list[str]:
        """A reference alone (``scored = false``) is evaluated only where the evidence reads it:
        its probes, and the tasks whose teacher run carries per-task evidence
        (``measures.population.carries_evidence``: the teacher is not right, or wrong, on every
        item); the teacher is evaluated first to know.
        On pytest-xdist workers the shares are fixed in advance, so every planned task runs."""
        from ..measures.population import uniform_outcome

        teacher = self.settings.teacher_of(spec)
        if teacher is None:
            return pending
        keep = []
        for task in pending:
            if task == PROBE:
                keep.append(task)
                continue
            try:
                run = self.result(teacher.name, task)
            except DistillbenchError:
                keep.append(task)  # the evidence will say the teacher is unavailable
                continue
            where = uniform_outcome(run) if isinstance(run, TaskRun) else None
            if where is not None:
                self.results[(spec.name, task)] = Unavailable(
                    f"{spec.name} is a reference only (scored = false) and {teacher.name} is {where} "
                    f"on every item of {task}, so no statistic of the evidence reads it: not evaluated")
            else:
                keep.append(task)
        return keep

    def _cache_path(self, key: str) -> Path:
        return self.settings.cache_dir / "cache" / f"{key}.json"

    def _evaluate_model(self, spec: ModelSpec, tasks: list[str] | None = None) -> None:
        from .backends import backend_module

        wanted = self.planned.get(spec.name, []) if tasks is None else tasks
        pending = [t for t in wanted if (spec.name, t) not in self.results]
        if not spec.scored and self.shard is None:
            pending = self._evidence_tasks(spec, pending)
        if not pending:
            return
        backend = backend_module(spec.backend)
        reason = backend.available()
        if reason:
            for t in pending:
                self.results[(spec.name, t)] = Unavailable(f"backend {spec.backend!r} unavailable: {reason}")
            return
        device = backend.resolve_device(spec.device) if hasattr(backend, "resolve_device") else spec.device
        model_fp = self.model_fp(spec)
        probe = PROBE in pending and spec.backend == "hf"
        if PROBE in pending:
            pending.remove(PROBE)
            self.results[(spec.name, PROBE)] = Unavailable("probe")  # marks the pseudo-task done
            if probe and self._load_cached_probe(spec, model_fp):
                probe = False
        keys = {t: _cache_key(model_fp, spec, self.tasks[t], self.settings, device) for t in pending}
        to_run = []
        for t in pending:
            cached = self._read_cache(keys[t]) if self.settings.use_cache else None
            if cached is not None:
                self.results[(spec.name, t)] = TaskRun.from_dict(
                    {**cached, "model": spec.name}, from_cache=True)
                self.progress(f"distillbench: {spec.name} on {t}: from cache "
                              f"({len(cached['records'])} items)")
            else:
                to_run.append(t)
        if not to_run and not probe:
            return
        self.progress(f"distillbench: loading {spec.name} ({spec.backend}) from {spec.path}")
        lm = backend.build(spec, self.settings)
        large = _weight_bytes(lm) >= LARGE_MODEL_BYTES
        counter = backend.token_counter(lm) if hasattr(backend, "token_counter") else None
        # A task's choices share their context and tasks share prompts: count each text once.
        count = None if counter is None else functools.lru_cache(maxsize=1 << 16)(counter)
        try:
            if probe:
                self._run_probe(lm, spec, model_fp)
            for t in to_run:
                outcome = self._run_task(lm, backend, spec, self.tasks[t], model_fp, device, count)
                self.results[(spec.name, t)] = outcome
                if isinstance(outcome, TaskRun) and self.settings.use_cache:
                    atomic_write_text(self._cache_path(keys[t]), json.dumps(outcome.to_dict()))
        finally:
            del lm, count
            if large:
                # lm-eval's wrappers can hold the weights in reference cycles; a full collection
                # frees them before the next model loads. It costs ~0.5 s on the heap lm-eval
                # builds, so small models (freed well enough by reference counting) skip it.
                gc.collect()
                with contextlib.suppress(Exception):
                    import torch

                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()

    # -- probes (distillation evidence) -----------------------------------------------------
    def probe_prompts(self) -> list[str]:
        if self._probe_prompts is None:
            from .probes import probe_prompts

            planned = sorted({t for ts in self.planned.values() for t in ts if t in self.tasks})
            # Building the prompts means building every lm-eval task; a warm run reads them back.
            material = [PROBES_PER_TASK, self.settings.seed, [self.tasks[t].fingerprint for t in planned]]
            key = "prompts-" + hashlib.sha256(json.dumps(material).encode()).hexdigest()
            cached = self._read_cache(key) if self.settings.use_cache else None
            if isinstance(cached, dict) and isinstance(cached.get("prompts"), list):
                self._probe_prompts = [str(p) for p in cached["prompts"]]
            else:
                with _quiet_lm_eval():
                    self._probe_prompts = probe_prompts([self.tasks[t] for t in planned],
                                                        per_task=PROBES_PER_TASK, seed=self.settings.seed,
                                                        task_manager=self._task_manager)
                if self.settings.use_cache:
                    atomic_write_text(self._cache_path(key), json.dumps({"prompts": self._probe_prompts}))
        return self._probe_prompts

    def _probe_key(self, model_fp: str) -> str:
        material = {"schema": RECORD_SCHEMA, "model": model_fp, "probe_prompts": self.probe_prompts()}
        return "probe-" + hashlib.sha256(json.dumps(material).encode()).hexdigest()

    def _load_cached_probe(self, spec: ModelSpec, model_fp: str) -> bool:
        from ..measures.probes import ProbeResult

        cached = self._read_cache(self._probe_key(model_fp)) if self.settings.use_cache else None
        if cached is None:
            return False
        self.probes[spec.name] = ProbeResult.from_dict(cached)
        return True

    def _run_probe(self, lm: Any, spec: ModelSpec, model_fp: str) -> None:
        from .probes import probe_distributions

        prompts = self.probe_prompts()
        if not prompts:
            return
        result = probe_distributions(lm, prompts)
        self.probes[spec.name] = result
        self.progress(f"distillbench: {spec.name}: next-token probes on {len(prompts)} prompts")
        if self.settings.use_cache:
            atomic_write_text(self._cache_path(self._probe_key(model_fp)), json.dumps(result.to_dict()))

    def _read_cache(self, key: str) -> dict[str, Any] | None:
        path = self._cache_path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # a missing or torn cache entry is simply recomputed

    def _task_manager(self, builtin: bool) -> Any:
        if builtin not in self._task_managers:
            from lm_eval.tasks import TaskManager

            _register_filters()  # the suites' filters must exist before any task is built

            self._task_managers[builtin] = TaskManager(include_defaults=builtin)
        return self._task_managers[builtin]

    def _load_task(self, task: TaskSpec, spec: ModelSpec) -> Any:
        config = task.lm_eval_config()
        if isinstance(config, dict) and spec.think_delimiter and task.output_type == "generate_until":
            config = with_think_filter(config, spec.think_delimiter)
        tm = self._task_manager(task.builtin is not None)
        try:
            loaded = tm.load([config])
        except Exception as exc:  # lm-eval raises many types while building tasks
            if task.builtin:
                if isinstance(exc, KeyError):
                    raise DistillbenchError(f"{task.builtin!r} is not an lm-eval task", path=task.source,
                                            key=f"{task.name}.lm_eval_task",
                                            fix="use a name from 'lm-eval ls tasks'") from None
                cache = os.environ.get("HF_DATASETS_CACHE", "~/.cache/huggingface/datasets")
                return Unavailable(f"data for lm-eval task {task.builtin!r} is not available offline "
                                   f"({type(exc).__name__}); to cache it, run once with network "
                                   f"access and --distillbench-online (it is downloaded into {cache}, "
                                   "where later offline runs find it); see docs/user-data.md")
            files = _data_files(config)
            if files and _is_data_error(exc):
                # the data, not the config, is what lm-eval could not read: name the file and
                # line when a check finds it, else the files
                from ..spec.suites import check_json_data

                if config.get("dataset_path") == "json":
                    for f in files:
                        check_json_data(Path(f), suite=task.source,
                                        key=f"{task.name}.lm_eval.dataset_kwargs.data_files")
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                cause = exc.__cause__ or exc.__context__
                detail = f"{first}; {type(cause).__name__}: {str(cause).splitlines()[0]}" if cause and str(cause) else first
                raise DistillbenchError(f"lm-eval cannot read the data of this task ({detail})",
                                        path=", ".join(files), key=f"{task.source.name}: {task.name}",
                                        fix="check that every line of the data file is a JSON object "
                                            "with the same fields of the same types") from None
            raise DistillbenchError(f"lm-eval cannot build this task ({type(exc).__name__}: {exc})",
                                    path=task.source, key=f"{task.name}.lm_eval",
                                    fix="check the task config keys against lm-eval's TaskConfig") from None
        tasks = list(loaded["tasks"].values())
        if len(tasks) != 1:
            raise DistillbenchError(f"expands to {len(tasks)} lm-eval tasks; name a single task",
                                    path=task.source, key=f"{task.name}.lm_eval_task",
                                    fix="name one subtask instead of a group")
        return tasks[0]

    def _run_task(self, lm: Any, backend: Any, spec: ModelSpec, task: TaskSpec, model_fp: str,
                  device: str, count: Callable[[str], int] | None) -> Outcome:
        from lm_eval import simple_evaluate

        lm_task = self._load_task(task, spec)  # its task manager has registered our filters
        if isinstance(lm_task, Unavailable):
            self.progress(f"distillbench: {spec.name} on {task.id}: skipped ({lm_task.reason})")
            return lm_task
        if not getattr(backend, "LOGLIKELIHOOD", True) and lm_task.OUTPUT_TYPE != "generate_until":
            reason = (f"{spec.name} is a chat-only API model ({spec.backend}): a chat completions "
                      f"endpoint returns no log-likelihoods, which {lm_task.OUTPUT_TYPE} tasks need")
            self.progress(f"distillbench: {spec.name} on {task.id}: skipped ({reason})")
            return Unavailable(reason)
        chat = chat_settings(spec, task, self.settings.rootdir)
        chat_kwargs: dict[str, Any] = {}
        if chat is not None:
            if chat.apply:
                chat_kwargs.update(apply_chat_template=True, fewshot_as_multiturn=chat.fewshot_as_multiturn)
                if chat.template is not None:  # a template file: lm-eval applies it from the tokenizer
                    lm.tokenizer.chat_template = chat.template
            if chat.system_prompt is not None:
                chat_kwargs["system_instruction"] = chat.system_prompt
        seed = self.settings.seed if task.seed is None else task.seed
        if hasattr(lm, "distillbench_start_task"):
            lm.distillbench_start_task(seed)  # chat API: per-request seeds and logprobs, per task
        limit = task.limit if self.settings.limit is None else self.settings.limit
        self.progress(f"distillbench: {spec.name} on {task.id}: evaluating"
                      + (f" (limit {limit})" if limit else ""))
        env = {"DISTILLBENCH_ALLOW_CODE_EXECUTION": "1"} if task.unsafe_code else {}
        if task.unsafe_code:
            from .tasks import code

            # the sandbox's isolation level, said once on the progress line (stderr is captured)
            code.set_announcer(self.progress)
        measure = self.settings.flops_mode == "measured" and spec.backend == "hf"
        counter_cm: Any = contextlib.nullcontext(None)
        if measure:
            from ..measures.flops import counting

            counter_cm = counting(lm.model)  # every real forward pass, attention included
        start = time.perf_counter()
        with _quiet_lm_eval(), _environ(env), _without_environment_report(), counter_cm as counter:
            out = simple_evaluate(
                model=lm, tasks=[lm_task], limit=limit, log_samples=True, bootstrap_iters=0,
                random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                fewshot_random_seed=seed, confirm_run_unsafe_code=task.unsafe_code,
                task_manager=self._task_manager(False), **chat_kwargs,
            )
        seconds = time.perf_counter() - start
        samples = out["samples"][lm_task.task_name] if out else []
        gen_limit = int((lm_task.config.generation_kwargs or {}).get("max_gen_toks", 256) or 256)
        records = records_from_samples(samples, task, count, gen_limit)
        if int(getattr(lm_task.config, "repeats", 1) or 1) > 1:
            records = with_repeats(records, samples, lm_task, task)
        log = getattr(lm, "distillbench_logprobs", None)
        if log:
            records = with_token_logprobs(records, samples, log)
        if not records:
            raise DistillbenchError("the task produced no items", path=task.source, key=task.name,
                                    fix="check the test split and the data file")
        meta = {"device": device, "dtype": spec.dtype, "batch_size": spec.batch_size,
                "lm_task": lm_task.task_name}
        over = over_context(records, _max_length(lm), gen_limit)
        if over:
            # lm-eval keeps the last tokens of a prompt that does not fit and says nothing; the
            # run file and the summary say how many items were cut
            meta.update(prompts_over_context=over, max_length=_max_length(lm))
            self.progress(f"distillbench: {spec.name} on {task.id}: {over} of {len(records)} prompts "
                          f"are longer than the model's context ({_max_length(lm)} tokens); lm-eval "
                          "kept only their last tokens")
        run = TaskRun(task=task.id, model=spec.name, metric=task.metric_key, records=records,
                      wall_seconds=seconds, model_fingerprint=model_fp,
                      task_fingerprint=task.fingerprint, backend=spec.backend,
                      meta={**meta, **({} if chat is None else chat.to_dict()),
                            **({"repeats": records[0].repeats, "sampling_seed": seed,
                                "generation_kwargs": _plain(lm_task.config.generation_kwargs)}
                               if records and records[0].repeats > 1 else {})})
        from ..measures.costing import attach_cost

        measured = float(counter.get_total_flops()) if counter is not None else None
        run = attach_cost(run, lm, backend, spec, self.settings, device, measured_flops=measured)
        self.progress(f"distillbench: {spec.name} on {task.id}: {len(records)} items in "
                      f"{seconds:.1f}s ({len(records) / max(seconds, 1e-9):.1f} items/s), "
                      f"score {run.score:.3f}")
        return run


def records_from_samples(samples: list[dict[str, Any]], task: TaskSpec,
                         count: Callable[[str], int] | None, gen_limit: int) -> tuple[ItemRecord, ...]:
    """lm-eval's logged samples (one entry per doc and filter) -> our per-item records."""
    chosen = [s for s in samples if s.get("filter") == task.filter]
    if not chosen and samples:
        names = sorted({str(s.get("filter")) for s in samples})
        if len(names) > 1:
            # several filter pipelines and none is the one asked for: mixing them would count
            # every document once per pipeline
            raise DistillbenchError(f"filter {task.filter!r} is not one of this task's filter "
                                    f"pipelines ({', '.join(names)})", path=task.source,
                                    key=f"{task.name}.metric",
                                    fix=f"write e.g. metric: {task.metric},{names[0]}")
        chosen = samples
    if chosen and task.metric not in chosen[0]:
        produced = ", ".join(k for k in chosen[0].get("metrics", []))
        raise DistillbenchError(f"metric {task.metric!r} is not produced by the task",
                                path=task.source, key=f"{task.name}.metric",
                                fix=f"use one of: {produced}")
    tokens = count or (lambda text: 0)
    out = []
    for s in sorted(chosen, key=lambda s: s["doc_id"]):
        value = s[task.metric]
        if not isinstance(value, (int, float)):  # bool is an int
            raise DistillbenchError(f"metric {task.metric!r} has no per-item value (it is "
                                    "aggregated over the corpus)", path=task.source,
                                    key=f"{task.name}.metric", fix="choose a per-item metric such as "
                                    "acc, exact_match or pass@1")
        args = [tuple(_text(a) if i == 0 else a for i, a in enumerate(arg)) for arg in s["arguments"]]
        gold_text: str | None = None
        requests: list[Request] = []
        choice_logprobs = gold = None
        raw = response = ""
        if args and len(args[0]) >= 2 and isinstance(args[0][1], str):  # log-likelihood requests
            kind = "multiple_choice" if len(args) > 1 else "loglikelihood"
            for context, continuation, *_ in args:
                if count is None:
                    break  # token counts unknown (no tokenizer): no requests recorded, cost unknown
                ctx = tokens(context)
                requests.append(Request(kind, ctx, max(tokens(context + continuation) - ctx, 1)))
            lls = [float(r[0]) if isinstance(r, (list, tuple)) else float(r) for r in s["filtered_resps"]]
            choice_logprobs = tuple(lls)
            if len(args) > 1:
                best = max(range(len(lls)), key=lls.__getitem__)
                response = args[best][1].strip()
                target = s.get("target")
                gold = int(target) if isinstance(target, int) or str(target).isdigit() else None
                if gold is not None and 0 <= gold < len(args):
                    # the record shows the gold choice's text beside the chosen one, not its index
                    gold_text = args[gold][1].strip()
        else:  # generation: one request per repeat
            context = args[0][0]
            gens = s["resps"][0] if s.get("resps") else []
            raw = gens[0] if gens else ""
            filtered = s["filtered_resps"][0] if s.get("filtered_resps") else ""
            response = filtered if isinstance(filtered, str) else str(filtered[0] if filtered else "")
            ctx = tokens(context)
            for g in gens if count is not None else ():
                # tokens the item needed: the answer plus the stop sequence, up to the generation cap
                requests.append(Request("generate_until", ctx, min(gen_limit, tokens(g) + 1)))
        out.append(ItemRecord(
            doc_id=int(s["doc_id"]), doc_hash=str(s["doc_hash"]), prompt=args[0][0] if args else "",
            target=gold_text if gold_text is not None else _target_text(s.get("target")), response=response, raw_response=raw, score=float(value),
            prompt_tokens=sum(r.context_tokens for r in requests[:1]) if requests else 0,
            output_tokens=sum(r.output_tokens for r in requests),
            requests=tuple(requests), choice_logprobs=choice_logprobs, gold=gold,
        ))
    return tuple(out)


def _data_files(config: Any) -> list[str]:
    files = ((config.get("dataset_kwargs") or {}).get("data_files") if isinstance(config, dict) else None)
    if isinstance(files, dict):
        files = list(files.values())
    if isinstance(files, str):
        files = [files]
    out: list[str] = []
    for f in files or []:
        out += [str(x) for x in f] if isinstance(f, list) else [str(f)]
    return out


def _is_data_error(exc: BaseException) -> bool:
    """An error raised while `datasets` read the files (not a config mistake)."""
    seen: BaseException | None = exc
    while seen is not None:
        module = type(seen).__module__ or ""
        if module.startswith(("datasets", "pyarrow")) or type(seen).__name__ == "DatasetGenerationError":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _max_length(lm: Any) -> int | None:
    try:
        value = lm.max_length
    except Exception:  # a backend without a known context length
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def over_context(records: Iterable[ItemRecord], max_length: int | None, gen_limit: int) -> int:
    """Items with a request that does not fit the model's context, as lm-eval's HF model cuts
    them: a generation prompt longer than max_length - max_gen_toks, a log-likelihood request
    (context + continuation) longer than max_length + 1. 0 when either count is unknown."""
    if not max_length:
        return 0
    over = 0
    for r in records:
        for q in r.requests:
            if q.kind == "generate_until":
                cut = q.context_tokens > max_length - gen_limit
            else:
                cut = q.context_tokens + q.output_tokens > max_length + 1
            if cut:
                over += 1
                break
    return over


def _target_text(target: Any) -> str:
    """One accepted answer as itself; several (any of them counts) as a JSON list."""
    if isinstance(target, (list, tuple)):
        return str(target[0]) if len(target) == 1 else json.dumps([str(t) for t in target])
    return str(target)


def _text(value: Any) -> Any:
    """A request's context as text: chat API requests carry their messages as lm-eval's
    ``JsonChatStr`` (the messages as a JSON string)."""
    prompt = getattr(value, "prompt", None)
    if isinstance(prompt, str):
        return prompt
    if isinstance(value, (tuple, list)) and len(value) == 1 and isinstance(value[0], str):
        return value[0]  # the same, after lm-eval's logged samples turned it into a plain tuple
    return value


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str)) if value is not None else None


def _pipeline(lm_task: Any, name: str) -> Any:
    for ensemble in getattr(lm_task, "_filters", []):
        if ensemble.name == name:
            return ensemble
    return None


def with_repeats(records: tuple[ItemRecord, ...], samples: list[dict[str, Any]], lm_task: Any,
                 task: TaskSpec) -> tuple[ItemRecord, ...]:
    """Every sample of a repeated task scored on its own, through the task's own lm-eval filter
    pipeline (without its final take-first step) and metric; the item's score becomes the mean
    over its k samples (pass@1 averaged over k), and the metric of the most frequent filtered
    answer (lm-eval's majority vote) is kept for maj@k.

    A pipeline that keeps every repeat (code tasks score their repeats themselves, as pass@k)
    is left as lm-eval scored it, with the raw samples recorded."""
    from dataclasses import replace

    from lm_eval.filters.selection import MajorityVoteFilter, TakeFirstFilter

    ensemble = _pipeline(lm_task, task.filter)
    steps = [] if ensemble is None else [f() for f in ensemble.filters]
    keeps_all = ensemble is not None and not any(isinstance(f, TakeFirstFilter) for f in steps)
    steps = [f for f in steps if not isinstance(f, TakeFirstFilter)]
    by_doc = {int(s["doc_id"]): s for s in samples if s.get("filter") == task.filter} or \
        {int(s["doc_id"]): s for s in samples}
    out = []
    for r in records:
        s = by_doc[r.doc_id]
        gens = [str(g) for g in (s["resps"][0] if s.get("resps") else [])]
        if keeps_all or not gens:
            out.append(replace(r, samples=tuple(gens)))
            continue
        filtered: Any = [gens]
        for step in steps:
            filtered = list(step.apply(filtered, [s["doc"]]))
        answers = [a if isinstance(a, str) else str(a) for a in filtered[0]]

        def score(answer: str, doc: dict[str, Any] = s["doc"]) -> float:
            return float(lm_task.process_results(doc, [answer])[task.metric])

        scores = tuple(score(a) for a in answers)
        [[vote]] = [list(v) for v in MajorityVoteFilter().apply([answers], [s["doc"]])]
        out.append(replace(r, samples=tuple(gens), sample_responses=tuple(answers),
                           sample_scores=scores, score=sum(scores) / len(scores),
                           majority_score=score(vote)))
    return tuple(out)


def with_token_logprobs(records: tuple[ItemRecord, ...], samples: list[dict[str, Any]],
                        log: dict[str, list[tuple[str, Any]]]) -> tuple[ItemRecord, ...]:
    """Attach the per-token top log-probabilities a chat API returned to each sample of each
    item, matched by the request's messages and the generated text."""
    from dataclasses import replace

    pending = {prompt: list(entries) for prompt, entries in log.items()}
    by_doc = {int(s["doc_id"]): s for s in samples}
    out = []
    for r in records:
        s = by_doc.get(r.doc_id)
        args = s["arguments"] if s else []
        prompt = _text(args[0][0]) if args else None
        entries = pending.get(prompt, []) if isinstance(prompt, str) else []
        kept = []
        for gen in (s["resps"][0] if s and s.get("resps") else []):
            hit = next((i for i, (text, _) in enumerate(entries) if text == gen), None)
            kept.append(None if hit is None else entries.pop(hit)[1])
        out.append(replace(r, token_logprobs=tuple(kept)) if any(k is not None for k in kept) else r)
    return tuple(out)


def _weight_bytes(lm: Any) -> int:
    """Bytes of the loaded model's parameters; 0 when the backend holds no local weights."""
    try:
        return sum(p.numel() * p.element_size() for p in lm.model.parameters())
    except (AttributeError, TypeError):  # a served model: lm.model is a name or absent
        return 0


@contextlib.contextmanager
def _without_environment_report():
    """``simple_evaluate`` ends by collecting torch's environment report (subprocesses for pip,
    lscpu, nvidia-smi...) and the git hash: 1-2 s per call, paid here once per (model, task).
    The plugin writes its own environment into the run file and discards lm-eval's, so both
    are skipped for the duration of the call."""
    import lm_eval.evaluator as evaluator

    saved = evaluator.add_env_info, evaluator.get_git_commit_hash
    evaluator.add_env_info = lambda storage: None
    evaluator.get_git_commit_hash = lambda: None
    try:
        yield
    finally:
        evaluator.add_env_info, evaluator.get_git_commit_hash = saved


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _quiet_lm_eval():
    """lm-eval logs every step at INFO/WARNING; the plugin prints its own progress lines."""
    loggers = [logging.getLogger(n) for n in ("lm-eval", "lm_eval", "datasets", "transformers")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)
