"""Items per second of each available backend on the default suites, side by side in one run.

    python benchmarks/backends.py [--model DIR] [--limit 20] [--batch-size 32]
                                  [--api-base-url URL --api-model NAME]

Every backend evaluates the same checkpoint (default: the embedded zoo teacher) on the same
items of ``suites/*.yaml`` through the plugin's own ``Evaluator`` (no cache). ``hf`` runs
transformers in this process; ``vllm`` runs lm-eval's vLLM model where vLLM and a device are
usable; ``api`` sends lm-eval's ``local-completions`` requests over HTTP, to ``--api-base-url``
when given, else to ``pytest_distillbench.engine.serve`` started on loopback over the same checkpoint
(a single-stream server: it measures the protocol's overhead, not a serving engine). A backend
that is not usable is listed with its reason. Seconds are lm-eval's evaluation time per task
(model loading excluded); the score column shows the backends agree.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_distillbench.engine.backends import backend_module  # noqa: E402
from pytest_distillbench.engine.evaluation import Evaluator, Unavailable  # noqa: E402
from pytest_distillbench.records import TaskRun  # noqa: E402
from pytest_distillbench.spec.models import BACKENDS, ModelSpec  # noqa: E402
from pytest_distillbench.spec.settings import Settings  # noqa: E402
from pytest_distillbench.spec.suites import TaskSpec, collect_suite_paths, load_suite  # noqa: E402
from pytest_distillbench.zoo import checkpoint  # noqa: E402


def default_tasks(suites_dir: Path) -> dict[str, TaskSpec]:
    tasks: dict[str, TaskSpec] = {}
    for path in collect_suite_paths([suites_dir]):
        for task in load_suite(path).tasks:
            tasks[task.id] = task
    return tasks


@contextlib.contextmanager
def api_endpoint(args: argparse.Namespace, model: Path) -> Iterator[tuple[str, str, str]]:
    """(base_url, served model name, what serves it)."""
    if args.api_base_url:
        yield args.api_base_url, args.api_model or str(model), "given endpoint"
        return
    from pytest_distillbench.engine.serve import serve

    with serve(str(model), model_name="bench") as server:
        yield server.base_url, "bench", "built-in server"


def spec_for(backend: str, model: Path, batch_size: int, api: tuple[str, str, str] | None) -> ModelSpec:
    if backend == "api":
        assert api is not None
        base_url, name, _ = api
        return ModelSpec(name="teacher", role="teacher", path=name, backend="api", batch_size=batch_size,
                         options=(("base_url", base_url), ("tokenizer", str(model))))
    return ModelSpec(name="teacher", role="teacher", path=str(model), backend=backend, batch_size=batch_size)


def evaluate(spec: ModelSpec, tasks: dict[str, TaskSpec], limit: int, workdir: Path) -> dict[str, TaskRun | str]:
    settings = Settings(rootdir=workdir, models=(spec,), cache_dir=workdir / spec.backend,
                        baselines_dir=workdir / "baselines", use_cache=False, limit=limit)
    evaluator = Evaluator(settings, tasks, progress=lambda line: print(line, file=sys.stderr))
    evaluator.plan((spec.name, t) for t in tasks)
    out: dict[str, TaskRun | str] = {}
    for task_id in tasks:
        outcome = evaluator.result(spec.name, task_id)
        out[task_id] = outcome.reason if isinstance(outcome, Unavailable) else outcome
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=checkpoint("teacher"))
    parser.add_argument("--suites", type=Path, default=ROOT / "suites")
    parser.add_argument("--limit", type=int, default=20, help="items per task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--api-base-url", default=None)
    parser.add_argument("--api-model", default=None)
    args = parser.parse_args(argv)
    if not (args.model / "config.json").is_file():
        parser.error(f"no checkpoint at {args.model}; build the zoo ('distillbench zoo build') "
                     "or pass --model DIR")
    from tabulate import tabulate

    logging.getLogger("lm-eval").setLevel(logging.ERROR)
    tasks = default_tasks(args.suites)
    results: dict[str, dict[str, TaskRun | str]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        for backend in BACKENDS:
            reason = backend_module(backend).available()
            if reason:
                notes.append(f"{backend}: not run ({reason})")
                continue
            api = stack.enter_context(api_endpoint(args, args.model)) if backend == "api" else None
            if api is not None:
                notes.append(f"api: lm-eval local-completions -> {api[2]} at {api[0]}")
            results[backend] = evaluate(spec_for(backend, args.model, args.batch_size, api), tasks,
                                        args.limit, Path(tmp))

    backends = list(results)
    rows = []
    totals = {b: [0, 0.0] for b in backends}
    for task_id in tasks:
        row: list[object] = [task_id]
        for b in backends:
            run = results[b][task_id]
            if isinstance(run, str):
                row += ["-", f"skipped: {run}"]
                continue
            totals[b][0] += run.n
            totals[b][1] += run.wall_seconds
            row += [f"{run.n / run.wall_seconds:.1f}", f"{run.score:.3f}"]
        rows.append(row)
    rows.append(["all tasks"] + [x for b in backends
                                 for x in (f"{totals[b][0] / max(totals[b][1], 1e-9):.1f}", "")])
    headers = ["task"] + [h for b in backends for h in (f"{b} items/s", f"{b} score")]
    print(f"model: {args.model}   items per task: {args.limit}   batch size: {args.batch_size}")
    print(tabulate(rows, headers=headers, tablefmt="github"))
    if "hf" in totals and totals["hf"][1] > 0:
        hf_rate = totals["hf"][0] / totals["hf"][1]
        for b in backends:
            if b != "hf" and totals[b][1] > 0:
                print(f"{b} / hf throughput: {totals[b][0] / totals[b][1] / hf_rate:.2f}x")
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
