"""The plugin's overhead over calling lm-eval directly, measured side by side in one run.

    python benchmarks/overhead.py [--suites suites/*.yaml] [--limit N] [--repeat 2]

Three measurements on the main job's suites and models, each in a fresh subprocess (so peak RSS
is that process's own); raw and cold alternate ``--repeat`` times and the fastest of each counts:
  raw    lm_eval.simple_evaluate on the same task configs and models, one call per model with all
         tasks, the same settings the plugin uses (batch size, fp32, logits_cache off,
         log_samples on, no bootstrap);
  cold   pytest --distillbench on the same suites with the cache bypassed;
  warm   the same pytest run again, reading per-item records from the cache.
Targets (issue #2): cold / raw <= 1.10, cold / warm >= 20.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RAW = r"""
import sys, json, time
from pathlib import Path
from pytest_distillbench.spec.settings import default_models
from pytest_distillbench.spec.suites import load_suite
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from pytest_distillbench.engine.tasks import code_filter
code_filter.register()  # the code suite's sandbox filter
suites = sys.argv[1].split(",")
limit = None if sys.argv[2] == "none" else int(sys.argv[2])
tasks = [t for s in suites for t in load_suite(s).tasks]
configs = [t.lm_eval_config() for t in tasks]
tm = TaskManager(include_defaults=False)
for spec in default_models():
    lm = HFLM(pretrained=spec.path, dtype="float32", device="cpu", batch_size=32, logits_cache=False)
    out = simple_evaluate(model=lm, tasks=[dict(c) for c in configs], limit=limit, log_samples=True,
                          bootstrap_iters=0, task_manager=tm, confirm_run_unsafe_code=True)
    del lm
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MiB, exit code) of one subprocess."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):  # 1: some thresholds failed, still a complete evaluation
        raise SystemExit(f"{cmd[:4]} failed with {code}: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # the main job's suites: all three, so code's sandboxed execution is part of both sides
    parser.add_argument("--suites", nargs="+",
                        default=["suites/math.yaml", "suites/reasoning.yaml", "suites/code.yaml"])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=2,
                        help="raw and cold runs alternate this many times; the fastest of each "
                             "counts (a shared machine only ever adds time)")
    args = parser.parse_args()
    from tabulate import tabulate

    # Python's defaults otherwise: some sandboxes export PYTHONDONTWRITEBYTECODE, which makes
    # every process recompile (and pytest re-rewrite) every module it imports.
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env = {**base, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1",
           "DISTILLBENCH_ALLOW_CODE_EXECUTION": "1"}
    limit = ["--distillbench-limit", str(args.limit)] if args.limit else []
    with tempfile.TemporaryDirectory() as cache:
        # the plugin's cache and run files go to a throwaway folder, not the repository's
        pyproject = Path(cache) / "pyproject.toml"
        pyproject.write_text(f'[tool.distillbench]\ncache_dir = "{cache}/db"\n')
        plugin = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--distillbench",
                  *args.suites, "-k", "not baseline and not evidence", "--rootdir", cache, "-c", str(pyproject),
                  *limit]
        raws, colds = [], []
        for _ in range(max(1, args.repeat)):
            raws.append(timed([sys.executable, "-c", RAW, ",".join(args.suites), str(args.limit or "none")], env))
            colds.append(timed([*plugin, "--distillbench-no-cache"], env))
        raw, cold = min(raws), min(colds)
        fill = timed(plugin, env)  # fills the cache (a cold run that writes it)
        warm = timed(plugin, env)
    rows = [["lm_eval.simple_evaluate (raw)", f"{raw[0]:.1f}", f"{raw[1]:.0f}", "1.00"],
            ["plugin, cache bypassed (cold)", f"{cold[0]:.1f}", f"{cold[1]:.0f}", f"{cold[0] / raw[0]:.2f}"],
            ["plugin, filling the cache", f"{fill[0]:.1f}", f"{fill[1]:.0f}", f"{fill[0] / raw[0]:.2f}"],
            ["plugin, from the cache (warm)", f"{warm[0]:.1f}", f"{warm[1]:.0f}", f"{warm[0] / raw[0]:.2f}"]]
    print(f"raw runs: {', '.join(f'{r[0]:.1f}' for r in raws)} s; cold runs: "
          f"{', '.join(f'{c[0]:.1f}' for c in colds)} s (the fastest of each is compared)")
    from pytest_distillbench.spec.settings import default_models

    print(f"suites: {', '.join(args.suites)}; models: the embedded "
          + ", ".join(m.name for m in default_models())
          + (f"; limit {args.limit}" if args.limit else ""))
    print(tabulate(rows, headers=["run", "wall s", "peak RSS MiB", "wall / raw"], disable_numparse=True))
    print(f"cold / raw = {cold[0] / raw[0]:.3f} (target <= 1.10); cold / warm = {cold[0] / warm[0]:.1f}x "
          f"(target >= 20x)")


if __name__ == "__main__":
    main()
