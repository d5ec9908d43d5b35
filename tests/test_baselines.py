"""Baselines: the update flow, verdicts, comparability, and safety of stored files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import mc_task, needs_zoo, write_jsonl, write_project

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites", *args)


def baseline_file(root: Path, model: str = "teacher") -> Path:
    return root / "baselines" / "demo" / "compare" / f"{model}.hf.json"


def test_missing_then_update_then_pass(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    first = run(pytester, "-k", "baseline", "-rs")
    first.assert_outcomes(skipped=1)  # a first run: no baseline anywhere yet
    out = first.stdout.str()
    assert "no baselines yet" in out and "--distillbench-update-baselines" in out
    assert "FAIL" not in out

    run(pytester, "-k", "baseline", "--distillbench-update-baselines").assert_outcomes(passed=1)
    doc = json.loads(baseline_file(pytester.path).read_text())
    assert doc["schema"] == 1 and doc["n"] == 16 and len(doc["items"]) == 16
    assert {"model", "data_sha256", "template_sha256", "torch", "lm_eval", "backend", "device"} <= set(
        doc["fingerprint"])
    assert doc["cost"]["flops_per_item"] > 0
    assert "margins" in doc  # multiple choice: per-item log-likelihood margins for the margin test

    run(pytester, "-k", "baseline").assert_outcomes(passed=1)

    # once baselines exist, a missing one fails (here: moved to another task's place)
    other = pytester.path / "baselines" / "demo" / "other" / "teacher.hf.json"
    other.parent.mkdir(parents=True)
    baseline_file(pytester.path).rename(other)
    missing = run(pytester, "-k", "baseline")
    missing.assert_outcomes(failed=1)
    out = missing.stdout.str()
    assert "no baseline for teacher" in out and "--distillbench-update-baselines" in out


@pytest.mark.parametrize("method", ["auto", "mcnemar", "margin", "margin-split"])
def test_verdict_method_is_selectable_and_recorded(pytester: pytest.Pytester, tiny_model: Path,
                                                   method: str) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    run(pytester, "-k", "baseline", "--distillbench-update-baselines").assert_outcomes(passed=1)
    run(pytester, "-k", "baseline", "--distillbench-verdict", method,
        "--distillbench-json", "run.json").assert_outcomes(passed=1)
    items = json.loads((pytester.path / "run.json").read_text())["items"]
    (figures,) = [i["figures"] for i in items.values() if i["kind"] == "baseline"]
    # auto on an unchanged model: margins on the same scale (log change 0), so the split test decides
    used = "margin-split" if method == "auto" else method
    assert figures["test"] == used and figures["regressed"] is False
    assert ("margin_scale" in figures) == (method == "auto")
    if method == "auto":
        assert figures["margin_scale"] == 0.0  # margins compared at the precision they are stored at
    assert run(pytester, "--distillbench-verdict", "coin-toss").ret == pytest.ExitCode.USAGE_ERROR


def test_changed_data_is_not_comparable(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    run(pytester, "-k", "baseline", "--distillbench-update-baselines").assert_outcomes(passed=1)
    data = pytester.path / "suites" / "data" / "compare.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[0]["prompt"] = rows[0]["prompt"].replace("larger", "bigger")
    write_jsonl(data, rows)
    result = run(pytester, "-k", "baseline")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "cannot be compared with its baseline" in out and "data_sha256" in out


def test_corrupt_baseline_is_reported_and_left_untouched(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    path = baseline_file(pytester.path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"schema": 1, "items": {"abc": 1.0')
    before = path.read_bytes()
    result = run(pytester, "-k", "baseline")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "teacher.hf.json: corrupt baseline: not valid JSON" in out and "fix:" in out
    assert "Traceback" not in out
    assert path.read_bytes() == before


_KILLER = """
import os, signal
import pytest_distillbench.fileio as util

def _die(fd):
    os.kill(os.getpid(), signal.SIGKILL)  # the process dies mid-update, after writing the temp file

util.os.fsync = _die
"""


def test_killed_during_update_leaves_previous_baseline(pytester: pytest.Pytester, tiny_model: Path,
                                                       tiny_model_b: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    run(pytester, "-k", "baseline", "--distillbench-update-baselines").assert_outcomes(passed=1)
    path = baseline_file(pytester.path)
    before = path.read_bytes()
    # Point the teacher at another model so the update would change the file, then kill it mid-write.
    write_project(pytester.path, {"teacher": ("teacher", tiny_model_b)}, [mc_task()])
    (pytester.path / "conftest.py").write_text(_KILLER)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--distillbench",
                           "suites", "-k", "baseline", "--distillbench-update-baselines"],
                          cwd=pytester.path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert path.read_bytes() == before
    json.loads(path.read_text())  # still a whole, valid file
    (pytester.path / "conftest.py").unlink()
    run(pytester, "-k", "baseline", "--distillbench-update-baselines").assert_outcomes(passed=1)
    assert path.read_bytes() != before


@needs_zoo
def test_lifecycle_on_embedded_models(pytester: pytest.Pytester) -> None:
    """first run -> skip; update -> pass; degraded -> fail with significance; improved -> pass."""
    # pytester's in-process runs unload the modules a run imported, and some extension modules
    # (numpy's, torch.distributed's operator registry) cannot be loaded twice in one process: a
    # second run that loads a model or compares with scipy would fail. Importing what a run
    # needs here keeps it loaded across the runs.
    import scipy.stats  # noqa: F401
    from transformers import AutoModelForCausalLM

    from conftest import ZOO

    AutoModelForCausalLM.from_pretrained(ZOO / "control-01")

    suites = Path(__file__).resolve().parents[1] / "suites"
    (pytester.path / "suites").symlink_to(suites)

    def project(student: str) -> None:
        # the swapped-in checkpoints differ in size; the FLOPs limit is lifted so the verdicts
        # here are about accuracy alone
        (pytester.path / "pyproject.toml").write_text(
            "[tool.distillbench]\nmax_flops_increase = 10.0\n"
            "[tool.distillbench.models.teacher]\nrole = \"teacher\"\n"
            f"path = \"{ZOO / 'teacher'}\"\n"
            "[tool.distillbench.models.small]\nrole = \"student\"\n"
            f"path = \"{ZOO / student}\"\nteacher = \"teacher\"\n")

    select = ("-k", "add_3d and small-baseline", "--distillbench-limit", "200",
              "--distillbench-baselines", "bl")
    project("student")
    run_ = lambda *a: pytester.runpytest("-p", "no:cacheprovider", "--distillbench",  # noqa: E731
                                         "suites/math.yaml", *select, *a)
    run_().assert_outcomes(skipped=1)  # a first run: the folder holds no baseline yet
    run_("--distillbench-update-baselines").assert_outcomes(passed=1)
    run_().assert_outcomes(passed=1)
    # On add_3d the teacher (0.995) is far better than the control (0.73): swapping the
    # checkpoints under the student's name simulates an improved and a degraded student.
    project("control-01")
    run_("--distillbench-update-baselines").assert_outcomes(passed=1)
    project("teacher")
    improved = run_()
    improved.assert_outcomes(passed=1)
    assert "improved on its baseline" in improved.stdout.str()
    run_("--distillbench-update-baselines").assert_outcomes(passed=1)
    project("control-01")
    degraded = run_()
    degraded.assert_outcomes(failed=1)
    out = degraded.stdout.str()
    assert "regressed against" in out and "lost" in out and "p" in out
