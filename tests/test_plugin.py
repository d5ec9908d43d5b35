"""The plugin as a user meets it, through pytester."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import gen_task, mc_task, write_project

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def test_inert_without_flag(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    pytester.makepyfile(test_plain="def test_one():\n    assert True\n")
    result = run(pytester, "suites", "test_plain.py", "-q")
    result.assert_outcomes(passed=1)
    assert "distillbench" not in result.stdout.str()


def test_no_heavy_imports_at_startup(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_one():\n    assert True\n")
    pytester.makeconftest(
        "import sys, json\n"
        "def pytest_sessionfinish(session):\n"
        "    open('modules.json', 'w').write(json.dumps(sorted(sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_plain.py"], cwd=pytester.path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    timed = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    modules = set(json.loads((pytester.path / "modules.json").read_text()))
    assert "pytest_distillbench.plugin" in modules  # loaded through its entry point ...
    for heavy in ("torch", "lm_eval", "transformers", "pandas"):
        assert heavy not in modules and heavy not in timed  # ... and stayed light


def test_suite_passes_and_prints_table(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model), "small": ("student", tiny_model)},
                  [mc_task(thresholds="thresholds: {teacher: {min: 0.0}, student: {min_retention: 0.5}}"),
                   gen_task()])
    result = run(pytester, "--distillbench", "suites", "-q", "-k", "not baseline")
    result.assert_outcomes(passed=6)  # 2 tasks x (2 score items + 1 retention item)
    out = result.stdout.str()
    assert "distillbench summary" in out
    assert "compare" in out and "teacher" in out and "ret:small" in out


def test_threshold_failure_is_readable(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)},
                  [mc_task(thresholds="thresholds: {teacher: {min: 0.99}}")])
    result = run(pytester, "--distillbench", "suites", "-k", "compare and teacher and not baseline")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "below its minimum score" in out
    assert "95% Wilson interval" in out and "n=16" in out and "threshold: min 0.990" in out
    assert "Traceback" not in out and "def runtest" not in out
    assert result.ret == 1


@pytest.mark.parametrize(
    ("suite_text", "needle"),
    [
        ("suite: demo\ntasks: []\n", "tasks: the suite has no tasks"),
        ("suite: demo\nbogus: 1\ntasks: []\n", "bogus: unknown key"),
        ("suite: demo\ntasks:\n  - name: t\n    metric: acc\n    lm_eval:\n      dataset_path: json\n"
         "      dataset_kwargs: {data_files: {test: data/missing.jsonl}}\n", "does not exist"),
        ("suite: demo\ntasks:\n  - name: t\n    metric: f1\n    lm_eval:\n      output_type: multiple_choice\n",
         "'f1' is not produced by this task"),
        ("suite: demo\ntasks:\n  - name: t\n    metric: acc\n    thresholds: {teacher: {minimum: 1}}\n"
         "    lm_eval: {output_type: multiple_choice}\n", "thresholds.teacher.minimum: unknown threshold"),
        ("suite: [unclosed\n", "not valid YAML"),
    ],
)
def test_malformed_suite_is_one_clear_error(pytester: pytest.Pytester, tiny_model: Path, suite_text: str,
                                            needle: str) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    (pytester.path / "suites" / "demo.yaml").write_text(suite_text)
    result = run(pytester, "--distillbench", "suites")
    out = result.stdout.str()
    assert result.ret == 2  # collection error -> interrupted
    assert "demo.yaml" in out and needle in out, out
    assert "Traceback" not in out
    assert "fix:" in out


def test_k_selection_runs_only_needed_models(pytester: pytest.Pytester, tiny_model: Path,
                                             tiny_model_b: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model), "small": ("student", tiny_model_b)},
                  [mc_task()])
    result = run(pytester, "--distillbench", "suites", "-k", "compare and teacher and not baseline")
    result.assert_outcomes(passed=1, deselected=4)
    out = result.stdout.str()
    assert "loading teacher" in out
    assert "loading small" not in out and "small on" not in out


def test_missing_model_is_one_clear_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tmp_path / "nowhere")}, [mc_task()])
    result = run(pytester, "--distillbench", "suites")
    err = result.stderr.str() + result.stdout.str()
    assert result.ret != 0
    assert "nowhere" in err and "does not exist" in err and "fix:" in err
    assert "Traceback" not in err


def test_cache_and_reproducibility(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task(), gen_task()])
    args = ("--distillbench", "suites", "-q", "-k", "not baseline")
    first = run(pytester, *args, "--distillbench-json", "a.json", "--distillbench-no-cache")
    second = run(pytester, *args, "--distillbench-json", "b.json", "--distillbench-no-cache")
    assert first.ret == second.ret == 0
    a = json.loads((pytester.path / "a.json").read_text())
    b = json.loads((pytester.path / "b.json").read_text())
    records = lambda doc: {(r["task"], r["model"]): r["records"] for r in doc["runs"]}  # noqa: E731
    assert records(a) == records(b) and len(records(a)) == 2
    # A third run fills the cache, a fourth reads from it and yields the same records.
    run(pytester, *args)
    cached = run(pytester, *args, "--distillbench-json", "c.json")
    assert "from cache" in cached.stdout.str() and "loading teacher" not in cached.stdout.str()
    assert records(json.loads((pytester.path / "c.json").read_text())) == records(a)


def test_run_file_written(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    run(pytester, "--distillbench", "suites", "-q", "-k", "not baseline")
    runs = list((pytester.path / ".distillbench" / "runs").glob("*.json"))
    assert len(runs) == 1
    doc = json.loads(runs[0].read_text())
    assert doc["schema"] == 1 and doc["environment"]["versions"]["torch"]
    (run_,) = doc["runs"]
    assert run_["task"] == "demo/compare" and len(run_["records"]) == 16
    record = run_["records"][0]
    assert {"doc_hash", "prompt", "target", "response", "score", "prompt_tokens", "output_tokens"} <= set(record)
    from pytest_distillbench.zoo.tokenizer import build_tokenizer

    assert record["prompt_tokens"] == len(build_tokenizer()(record["prompt"])["input_ids"])


def test_xdist_shards_without_double_work(pytester: pytest.Pytester, tiny_model: Path,
                                          tiny_model_b: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model), "small": ("student", tiny_model_b)},
                  [mc_task(), gen_task()])
    args = ("--distillbench", "suites", "-q", "-k", "not baseline", "--distillbench-no-cache")
    single = run(pytester, *args, "--distillbench-json", "single.json")
    sharded = run(pytester, *args, "-n", "2", "--distillbench-json", "sharded.json")
    assert single.ret == sharded.ret == 0
    assert "distillbench summary" in sharded.stdout.str()  # one report, from the controller
    a = json.loads((pytester.path / "single.json").read_text())
    b = json.loads((pytester.path / "sharded.json").read_text())
    strip = lambda doc: {(r["task"], r["model"]): r["records"] for r in doc["runs"]}  # noqa: E731
    assert strip(a) == strip(b) and len(strip(b)) == 4
    # each (model, task) evaluated by exactly one worker; whole models go to one worker each
    workers = {(r["model"], r["task"]): r["meta"]["worker"] for r in b["runs"]}
    assert {workers[("teacher", t)] for t in ("demo/add", "demo/compare")} != \
        {workers[("small", t)] for t in ("demo/add", "demo/compare")}
    assert len({w for (m, _), w in workers.items() if m == "teacher"}) == 1
    assert {i["outcome"] for i in b["items"].values()} == {"passed"} and len(b["items"]) == 6


def test_measured_flops_mode(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    args = ("--distillbench", "suites", "-q", "-k", "not baseline", "--distillbench-no-cache")
    run(pytester, *args, "--distillbench-json", "analytic.json")
    run(pytester, *args, "--distillbench-json", "measured.json", "--distillbench-flops", "measured")
    cost = lambda name: json.loads((pytester.path / name).read_text())["runs"][0]["cost"]  # noqa: E731
    analytic, measured = cost("analytic.json"), cost("measured.json")
    assert analytic["flops_source"] == "analytic" and measured["flops_source"] == "measured"
    # The counter also charges padding in a batch and full (not causal) attention squares, so it
    # counts somewhat more than the estimate of what the items needed, never less.
    assert analytic["flops"] <= measured["flops"] <= 2.0 * analytic["flops"]


def test_evidence_runs_next_token_probes_once_per_model(pytester: pytest.Pytester, tiny_model: Path,
                                                        tiny_model_b: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    (pytester.path / "pyproject.toml").write_text(
        f'[tool.distillbench.models.teacher]\nrole = "teacher"\npath = "{tiny_model}"\n'
        f'[tool.distillbench.models.copy]\nrole = "student"\npath = "{tiny_model}"\n'
        'expect_distilled = true\n'
        f'[tool.distillbench.models.other]\nrole = "control"\npath = "{tiny_model_b}"\n'
        'expect_distilled = false\n')
    result = run(pytester, "--distillbench", "suites", "-k", "evidence", "--distillbench-json", "run.json")
    out = result.stdout.str()
    # three models but two checkpoints: copy has the teacher's very weights, so whichever of the
    # two runs second reads the probes the first one cached (the key is the model fingerprint)
    assert out.count("next-token probes on") == 2 and "other: next-token probes" in out
    rows = {r["model"]: r for r in json.loads((pytester.path / "run.json").read_text())["sections"]
            ["evidence"]["tasks"]}
    assert rows["copy"]["probe_top1"] == 1.0 and rows["copy"]["probe_kl"] == pytest.approx(0.0, abs=1e-9)
    assert rows["other"]["probe_kl"] > 0.0
    # a second session reads the probes from the cache instead of loading models
    again = run(pytester, "--distillbench", "suites", "-k", "evidence")
    assert "next-token probes" not in again.stdout.str() and "loading" not in again.stdout.str()
