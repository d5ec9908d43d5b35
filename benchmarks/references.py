"""What the reference population costs the main job, measured side by side in one run.

    python benchmarks/references.py [--suites suites/*.yaml] [--limit N] [--repeat 2]

Two cold runs of the main job (``pytest --distillbench <suites> --distillbench-no-cache``, every
item: scores, retention, compute, baselines and evidence), each in a fresh subprocess, alternated
``--repeat`` times, the fastest of each counted (a shared machine only ever adds time):

  two controls    the model set the main job had before the population test: teacher, student
                  and two controls of the student's size (``control-01`` and ``control-02``
                  stand in for the former ``control`` and ``control-b``: same shape, same steps),
                  evidence for the student alone;
  eight controls  the default now: teacher, student, ``control-01`` ... ``control-08``, evidence
                  for the student and every control (leave-one-out).

Target (issue #20): eight / two <= 2.0. Last run (two cores, nothing else running): two
controls 60.3 s (runs 62.1, 60.3), eight controls 89.3 s (90.7, 89.3): 1.48. Before the eight
were references only (``scored = false``, not evaluated on the tasks the evidence does not
read), the same comparison gave 139.7 s against 60.5 s: 2.31.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from overhead import timed  # noqa: E402


def two_controls_toml(cache: str) -> str:
    from pytest_distillbench.spec.models import zoo_checkpoint

    lines = ["[tool.distillbench]", f'cache_dir = "{cache}/db"', 'baselines = "bl"']
    for name, role, extra in (("teacher", "teacher", ""),
                              ("student", "student", 'teacher = "teacher"\nexpect_distilled = true'),
                              ("control-01", "control", 'teacher = "teacher"'),
                              ("control-02", "control", 'teacher = "teacher"')):
        lines += [f"[tool.distillbench.models.{name}]", f'role = "{role}"',
                  f'path = "{zoo_checkpoint(name)}"', *([extra] if extra else [])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+",
                        default=["suites/math.yaml", "suites/reasoning.yaml", "suites/code.yaml"])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    from tabulate import tabulate

    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env = {**base, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1",
           "DISTILLBENCH_ALLOW_CODE_EXECUTION": "1"}
    limit = ["--distillbench-limit", str(args.limit)] if args.limit else []
    suites = [str((ROOT / s).resolve()) for s in args.suites]
    with tempfile.TemporaryDirectory() as two_dir, tempfile.TemporaryDirectory() as eight_dir:
        Path(two_dir, "pyproject.toml").write_text(two_controls_toml(two_dir))
        # no models declared: the embedded defaults, with the repository's baselines
        Path(eight_dir, "pyproject.toml").write_text(
            f'[tool.distillbench]\ncache_dir = "{eight_dir}/db"\nbaselines = "{ROOT / "baselines"}"\n')

        def command(root: str) -> list[str]:
            return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--distillbench",
                    *suites, "--rootdir", root, "-c", str(Path(root, "pyproject.toml")),
                    "--distillbench-no-cache", *limit]

        twos, eights = [], []
        for _ in range(max(1, args.repeat)):
            twos.append(timed(command(two_dir), env))
            eights.append(timed(command(eight_dir), env))
    two, eight = min(twos), min(eights)
    print(f"two-control runs: {', '.join(f'{r[0]:.1f}' for r in twos)} s; eight-control runs: "
          f"{', '.join(f'{r[0]:.1f}' for r in eights)} s (the fastest of each is compared)")
    print(tabulate([["teacher, student, 2 controls (before)", f"{two[0]:.1f}", f"{two[1]:.0f}", "1.00"],
                    ["teacher, student, 8 controls (default)", f"{eight[0]:.1f}", f"{eight[1]:.0f}",
                     f"{eight[0] / two[0]:.2f}"]],
                   headers=["main job, cold", "wall s", "peak RSS MiB", "ratio"], disable_numparse=True))
    print(f"eight / two = {eight[0] / two[0]:.3f} (target <= 2.0)")


if __name__ == "__main__":
    main()
