"""Every class of bad input gets one readable message naming the file or option and the fix,
before any model loads where it can be checked before, and never a traceback; and no case
changes a byte under ``baselines/``. One test (or a few) per class, through pytester."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_distillbench.errors import DistillbenchError
from pytest_distillbench.spec import schema
from pytest_distillbench.spec.settings import _MODEL_KEYS, _TOP_KEYS, build_settings
from pytest_distillbench.spec.suites import DATA_KEYS, SUITE_KEYS, TASK_KEYS, THRESHOLD_KEYS

from conftest import gen_task, mc_task, write_jsonl, write_project

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, str]:
    result = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", *args)
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    return result, out


def assert_no_model_loaded(out: str) -> None:
    assert "loading " not in out and "evaluating" not in out, out


# -- the schema is the one place types and ranges are declared ----------------------------------

def test_schema_keys_are_keys_the_readers_accept() -> None:
    assert set(schema.ProjectSettings.model_fields) - {"json_"} | {"json"} <= _TOP_KEYS
    assert set(schema.ModelTable.model_fields) <= _MODEL_KEYS
    assert set(schema.Task.model_fields) <= TASK_KEYS
    assert set(schema.Suite.model_fields) <= SUITE_KEYS
    assert set(schema.Limits.model_fields) <= THRESHOLD_KEYS
    assert set(schema.DataShortcut.model_fields) <= DATA_KEYS
    from typing import get_args

    from pytest_distillbench.spec.models import BACKENDS, ROLES
    from pytest_distillbench.spec.settings import VERDICT_METHODS

    assert get_args(schema.Role) == ROLES and get_args(schema.Backend) == BACKENDS
    assert get_args(schema.Verdict) == VERDICT_METHODS


# -- wrong type ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("toml", "needle"), [
    ('batch_size = "lots"', "[tool.distillbench].batch_size: must be a whole number, got 'lots'"),
    ("offline = 1", "[tool.distillbench].offline: must be true or false, got 1"),
    ("seed = 1.5", "[tool.distillbench].seed: must be a whole number, got 1.5"),
    ('alpha = "0.05"', "[tool.distillbench].alpha: must be a number, got '0.05'"),
    ("[tool.distillbench.models.teacher]\nrole = \"teacher\"\npath = \"x\"\nbatch_size = \"8\"",
     "[tool.distillbench.models.teacher].batch_size: must be a whole number, got '8'"),
    ("[tool.distillbench.models.teacher]\nrole = \"teacher\"\npath = \"x\"\noptions = {a = [1]}",
     "[tool.distillbench.models.teacher].options.a"),
])
def test_wrong_type_in_pyproject(pytester: pytest.Pytester, tiny_model: Path, toml: str, needle: str) -> None:
    write_project(pytester.path, {}, [mc_task()])
    (pytester.path / "pyproject.toml").write_text(f"[tool.distillbench]\n{toml}\n")
    result, out = run(pytester, "suites")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "pyproject.toml" in out and needle in out and "fix: write e.g." in out, out
    assert_no_model_loaded(out)


def test_wrong_type_in_a_suite(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)},
                  [mc_task(thresholds="thresholds: {teacher: {min: high}}")])
    result, out = run(pytester, "suites")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "demo.yaml: tasks[0] (compare).thresholds.teacher.min: must be a number, got 'high'" in out
    assert "fix: write e.g. min: 0.8" in out


# -- out of range -------------------------------------------------------------------------------

@pytest.mark.parametrize(("thresholds", "needle"), [
    ("thresholds: {teacher: {min: 1.5}}", "thresholds.teacher.min: must be <= 1.0, got 1.5"),
    ("thresholds: {student: {min_retention: 75}}", "thresholds.student.min_retention: must be <= 1.0, got 75"),
    ("thresholds: {student: {max_compute_ratio: 0}}", "max_compute_ratio: must be > 0.0, got 0"),
    ("limit: 0", "tasks[0] (compare).limit: must be >= 1, got 0"),
])
def test_out_of_range_in_a_suite(pytester: pytest.Pytester, tiny_model: Path, thresholds: str,
                                 needle: str) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task(thresholds=thresholds)])
    result, out = run(pytester, "suites")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert needle in out and "fix:" in out, out
    assert_no_model_loaded(out)


@pytest.mark.parametrize(("args", "needle"), [
    (("--distillbench-batch-size", "-4"), "--distillbench-batch-size: must be >= 1, got -4"),
    (("--distillbench-batch-size", "0"), "--distillbench-batch-size: must be >= 1, got 0"),
    (("--distillbench-limit", "0"), "--distillbench-limit: must be >= 1, got 0"),
    (("--distillbench-device", "gpu"), "--distillbench-device: is not a device, got 'gpu'"),
])
def test_out_of_range_on_the_command_line(pytester: pytest.Pytester, tiny_model: Path,
                                          args: tuple[str, ...], needle: str) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    result, out = run(pytester, "suites", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert needle in out and "fix:" in out and "pyproject.toml" not in out, out
    assert_no_model_loaded(out)


def test_out_of_range_in_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.distillbench]\nalpha = 1.5\n")
    with pytest.raises(DistillbenchError, match=r"\[tool.distillbench\].alpha: must be < 1.0, got 1.5"):
        build_settings(SimpleNamespace(), tmp_path)


# -- a model and a tokenizer that do not fit ----------------------------------------------------

def test_tokenizer_larger_than_the_embedding(pytester: pytest.Pytester, tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    from pytest_distillbench.zoo.tokenizer import build_tokenizer

    tok = build_tokenizer()
    directory = tmp_path / "misfit"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok) - 20, n_positions=64, n_embd=16, n_layer=1,
                               n_head=2)).save_pretrained(directory)
    tok.save_pretrained(directory)
    write_project(pytester.path, {"teacher": ("teacher", directory)}, [gen_task()])
    result, out = run(pytester, "suites", "-k", "teacher and not baseline")
    result.assert_outcomes(failed=1)
    assert f"has {len(tok)} tokens but the model's embedding has {len(tok) - 20} rows" in out, out
    assert "fix: use the tokenizer the model was trained with" in out
    assert "IndexError" not in out and "evaluating" not in out


# -- two files that define the same thing -------------------------------------------------------

def test_same_task_in_two_suite_files(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    (pytester.path / "suites" / "demo2.yaml").write_text(
        (pytester.path / "suites" / "demo.yaml").read_text())
    result, out = run(pytester, "suites")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "demo2.yaml" in out and "task 'compare' of suite 'demo' is also defined in" in out, out
    assert "demo.yaml" in out and "fix: rename one of the tasks" in out


def test_same_model_name_on_the_command_line_and_in_pyproject(tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.distillbench.models.teacher]\nrole = "teacher"\npath = "{tiny_model}"\n'
        f'[tool.distillbench.models.small]\nrole = "control"\npath = "{tiny_model}"\n')
    with pytest.raises(DistillbenchError, match="--distillbench-student small=.*two models share the name 'small'"):
        build_settings(SimpleNamespace(distillbench_student=[f"small={tiny_model}"]), tmp_path)


# -- errors inside a data file an inline lm_eval config reads -----------------------------------

def test_bad_line_in_an_inline_configs_data(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [gen_task()])
    data = pytester.path / "suites" / "data" / "add.jsonl"
    lines = data.read_text().splitlines()
    lines[3] = lines[3][:-1]  # drop the closing brace of the 4th row
    data.write_text("\n".join(lines) + "\n")
    result, out = run(pytester, "suites")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "add.jsonl: line 4: not valid JSON" in out and "fix:" in out, out
    assert "DatasetGenerationError" not in out
    assert_no_model_loaded(out)


def test_field_of_two_types_in_an_inline_configs_data(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [gen_task()])
    rows = [{"prompt": "Q: 1+1=", "answer": "2"}, {"prompt": "Q: 2+2=", "answer": 4}]
    write_jsonl(pytester.path / "suites" / "data" / "add.jsonl", rows)
    result, out = run(pytester, "suites")
    assert "add.jsonl: line 2: field 'answer' is a number, but a string in line 1" in out, out
    assert_no_model_loaded(out)


def test_bad_line_in_a_split_read_later(pytester: pytest.Pytester, tiny_model: Path) -> None:
    # a train split is only read by lm-eval; its error still names the file and the line
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [gen_task()])
    suite = pytester.path / "suites" / "demo.yaml"
    (pytester.path / "suites" / "data" / "train.jsonl").write_text('{"prompt": "a", "answer": "b"}\n{oops\n')
    suite.write_text(suite.read_text().replace("{test: data/add.jsonl}",
                                               "{test: data/add.jsonl, train: data/train.jsonl}"))
    result, out = run(pytester, "suites", "-k", "teacher and not baseline")
    result.assert_outcomes(failed=1)
    assert "train.jsonl: line 2: not valid JSON" in out, out
    assert "fix: check the task config keys" not in out


# -- output paths -------------------------------------------------------------------------------

@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--distillbench-report", "afile", "is a file, but a folder is needed here"),
    ("--distillbench-report", "afile/sub", "cannot be created"),
    ("--distillbench-json", "adir", "is a folder, but a file is written here"),
    ("--distillbench-markdown", "afile/summary.md", "cannot be created"),
])
def test_output_path_that_cannot_be_written(pytester: pytest.Pytester, tiny_model: Path, option: str,
                                            value: str, needle: str) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    (pytester.path / "afile").write_text("x")
    (pytester.path / "adir").mkdir()
    result, out = run(pytester, "suites", option, value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"distillbench: {option}: " in out and needle in out and "fix:" in out, out
    assert_no_model_loaded(out)


def test_output_path_in_pyproject_is_blamed_on_pyproject(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "pyproject.toml").write_text('[tool.distillbench]\nreport = "f"\n')
    with pytest.raises(DistillbenchError, match=r"pyproject.toml: \[tool.distillbench\].report: .* is a file"):
        build_settings(SimpleNamespace(), tmp_path)


# -- a path with no suite files -----------------------------------------------------------------

def test_path_without_suite_files_says_so(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    (pytester.path / "empty").mkdir()
    result, out = run(pytester, "empty")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert "distillbench: no suite files found under empty" in out and "fix: pass a folder" in out, out


# -- messages that point at the right place, with a safe fix ------------------------------------

def test_yaml_error_names_the_line_of_the_unclosed_bracket(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    (pytester.path / "suites" / "demo.yaml").write_text(
        "suite: demo\ntasks:\n  - name: t\n    metric: [acc\n  - name: u\n    metric: acc\n")
    result, out = run(pytester, "suites")
    assert "demo.yaml: line 4: not valid YAML (this flow sequence is never closed" in out, out
    assert "'metric: [acc'" in out


def test_command_line_models_are_blamed_on_the_option(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    result, out = run(pytester, "suites", "--distillbench-student", f"small={pytester.path / 'nope'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "distillbench: --distillbench-student small=" in out and "does not exist" in out, out
    assert "pyproject.toml" not in out


def test_folder_given_as_a_data_file(pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [])
    (pytester.path / "suites" / "mine").mkdir()
    (pytester.path / "suites" / "demo.yaml").write_text(
        "suite: demo\ntasks:\n  - name: t\n    metric: acc\n    data: {bigbench: mine}\n")
    result, out = run(pytester, "suites")
    assert "is a folder, not a data file" in out and "does not exist" not in out, out


def test_folder_given_as_a_checkpoint_file(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_text("x")
    with pytest.raises(DistillbenchError, match="is a file, not a checkpoint directory"):
        build_settings(SimpleNamespace(distillbench_teacher=str(tmp_path / "weights.bin")), tmp_path)


def test_newer_baseline_schema_is_not_called_corrupt_and_is_never_overwritten(
        pytester: pytest.Pytester, tiny_model: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model)}, [mc_task()])
    path = pytester.path / "baselines" / "demo" / "compare" / "teacher.hf.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema": 2, "items": {}, "score": 0.5, "fingerprint": {}, "n": 0}))
    before = path.read_bytes()
    for extra in ((), ("--distillbench-update-baselines",)):
        result, out = run(pytester, "suites", "-k", "teacher-baseline", *extra)
        result.assert_outcomes(failed=1)
        assert "written by a newer pytest-distillbench (baseline schema 2; this version reads schema 1)" in out
        assert "corrupt baseline" not in out and "fix: upgrade pytest-distillbench" in out
        assert path.read_bytes() == before


def test_retention_when_the_teacher_scores_zero(pytester: pytest.Pytester, tiny_model: Path) -> None:
    # answers no random model writes: the teacher scores 0, and retention is undefined
    write_project(pytester.path, {"teacher": ("teacher", tiny_model), "small": ("student", tiny_model)},
                  [gen_task(thresholds="thresholds: {student: {min_retention: 0.5}}")])
    write_jsonl(pytester.path / "suites" / "data" / "add.jsonl",
                [{"prompt": f"Q: {i}=", "answer": "qqqqqqqqqqqqqqqq"} for i in range(4)])
    result, out = run(pytester, "suites", "-k", "retention", "-rs", "--distillbench-json", "run.json")
    result.assert_outcomes(skipped=1)
    assert "retention of small is undefined: teacher scored 0.000 on the 4 shared items" in out, out
    assert "nan" not in out.lower().replace("nanos", "")
    doc = json.loads((pytester.path / "run.json").read_text())  # strict JSON: no NaN in it
    assert doc is not None


# -- the first run of a new user ----------------------------------------------------------------

def test_command_line_student_alone_keeps_the_embedded_teacher_and_controls(tmp_path: Path,
                                                                            tiny_model: Path) -> None:
    from conftest import zoo_ready

    if not zoo_ready():
        pytest.skip("embedded zoo checkpoints are not built")
    s = build_settings(SimpleNamespace(distillbench_student=[f"mine={tiny_model}"]), tmp_path)
    assert [(m.name, m.role) for m in s.models] == [
        ("teacher", "teacher"), *((f"control-{i:02d}", "control") for i in range(1, 9)), ("mine", "student")]
    assert s.model("mine").teacher == "teacher" and s.model("mine").expect_distilled is True
    s = build_settings(SimpleNamespace(distillbench_teacher=str(tiny_model)), tmp_path)
    assert s.teacher is not None and s.teacher.path == str(tiny_model)
    assert [m.name for m in s.by_role("control")] == [f"control-{i:02d}" for i in range(1, 9)]
    # the embedded student's claim was about the embedded teacher: no longer asserted
    assert s.model("student").expect_distilled is None


# -- the distillbench command: files it reads and writes ----------------------------------------

def test_cli_bad_inputs_are_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_distillbench.cli import main

    (tmp_path / "broken.json").write_text(json.dumps({"schema": 1, "runs": [{"task": "a/b"}]}))
    assert main(["report", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: cannot read run file" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "broken.json"), str(tmp_path / "broken.json"), "--alpha", "5"]) == 2
    assert "--alpha: must be between 0 and 1, got 5.0" in capsys.readouterr().err
    from pytest_distillbench.store.runfiles import RUN_SCHEMA

    (tmp_path / "broken.json").write_text(json.dumps({"schema": RUN_SCHEMA, "runs": [{"task": "a/b"}]}))
    assert main(["report", str(tmp_path / "broken.json")]) == 2
    err = capsys.readouterr().err
    assert "broken.json: a run in this file is incomplete" in err and "Traceback" not in err


# -- keys that would be silently ignored, or a filter read wrongly ------------------------------

def test_generation_on_an_lm_eval_task_is_refused(tmp_path: Path) -> None:
    from pytest_distillbench.spec.suites import load_suite

    (tmp_path / "s.yaml").write_text("suite: s\ntasks:\n  - name: t\n    metric: exact_match\n"
                                     "    generation: {max_gen_toks: 4}\n    lm_eval: {output_type: generate_until}\n")
    with pytest.raises(DistillbenchError, match="generation: applies to data: tasks only"):
        load_suite(tmp_path / "s.yaml")


def test_metric_without_one_of_several_filters_is_refused(tmp_path: Path) -> None:
    from pytest_distillbench.engine.evaluation import records_from_samples
    from pytest_distillbench.spec.suites import TaskSpec

    task = TaskSpec(suite="s", name="gsm", description="", difficulty=None, metric="exact_match",
                    filter="none", source=tmp_path / "s.yaml", thresholds=(), output_type="unknown",
                    config={}, builtin="gsm8k")
    samples = [{"doc_id": 0, "doc_hash": "h", "filter": f, "exact_match": 1.0, "target": "1",
                "arguments": [["q", {}]], "resps": [["1"]], "filtered_resps": ["1"]}
               for f in ("strict-match", "flexible-extract")]
    with pytest.raises(DistillbenchError, match="filter 'none' is not one of this task's filter pipelines "
                                                r"\(flexible-extract, strict-match\)"):
        records_from_samples(samples, task, None, 8)
    assert len(records_from_samples(samples[:1], task, None, 8)) == 1  # one pipeline: that one


def test_only_a_control_can_be_a_reference_alone(tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.distillbench.models.teacher]\nrole = "teacher"\npath = "{tiny_model}"\n'
        f'[tool.distillbench.models.small]\nrole = "student"\npath = "{tiny_model}"\nscored = false\n')
    with pytest.raises(DistillbenchError, match=r"models\.small\]\.scored.*only a control") as info:
        build_settings(SimpleNamespace(), tmp_path)
    assert "fix: remove scored = false, or make the model a control" in str(info.value)


def test_unknown_evidence_method_names_the_choices(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.distillbench]\nevidence_method = "bogus"\n')
    with pytest.raises(DistillbenchError, match="evidence_method: must be one of 'auto', 'exact' or 'parametric'"):
        build_settings(SimpleNamespace(), tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.distillbench]\nevidence_method = "exact"\n')
    assert build_settings(SimpleNamespace(), tmp_path).evidence_method == "exact"
