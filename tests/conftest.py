"""Shared fixtures: a tiny random model and helpers that lay out a user's project for pytester."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

# pytester's in-process runs drop modules first imported inside them; pyarrow refuses to see
# `datasets` registered twice, so the heavy stack is imported once for the whole test session.
import datasets  # noqa: F401,E402
import lm_eval.evaluator  # noqa: F401,E402
import lm_eval.models.huggingface  # noqa: F401,E402
import pytest

# torch registers operator libraries when torch._dynamo is first imported (transformers' model
# code pulls it in); imported again after an in-process run dropped it, the registration fails
import torch._dynamo  # noqa: F401,E402
import transformers.models.gpt2.modeling_gpt2  # noqa: F401,E402

ZOO = Path(__file__).resolve().parents[1] / "pytest_distillbench" / "zoo"


def zoo_ready() -> bool:
    return all((ZOO / n / "model.safetensors").is_file() for n in ("teacher", "student", *(f"control-{i:02d}" for i in range(1, 9))))


needs_zoo = pytest.mark.skipif(not zoo_ready(), reason="embedded zoo checkpoints are not built")


def build_tiny_model(directory: Path, seed: int = 0, layers: int = 2, width: int = 32,
                     init_range: float = 0.02) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from pytest_distillbench.zoo.tokenizer import build_tokenizer

    tok = build_tokenizer()
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=width, n_layer=layers, n_head=2,
                        initializer_range=init_range, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_model_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tinyb") / "model", seed=1)


MC_ROWS = [
    {"prompt": f"Q: Which is larger, {a} or {b}? A:", "choices": [str(a), str(b)], "label": 0 if a > b else 1}
    for a, b in [(12, 7), (3, 9), (40, 4), (5, 50), (66, 6), (8, 80), (21, 2), (1, 11), (90, 9), (7, 70),
                 (13, 31), (45, 54), (60, 16), (2, 20), (99, 19), (38, 83)]
]
GEN_ROWS = [{"prompt": f"Q: {a}+{b}=", "answer": str(a + b)} for a, b in
            [(1, 2), (3, 4), (5, 1), (2, 2), (7, 1), (4, 4), (6, 3), (8, 1)]]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")


def mc_task(name: str = "compare", data: str = "data/compare.jsonl", thresholds: str = "") -> str:
    return textwrap.dedent(f"""\
      - name: {name}
        metric: acc
        {thresholds}
        lm_eval:
          dataset_path: json
          dataset_kwargs: {{data_files: {{test: {data}}}}}
          test_split: test
          output_type: multiple_choice
          doc_to_text: "{{{{prompt}}}}"
          doc_to_choice: "{{{{choices}}}}"
          doc_to_target: "{{{{label}}}}"
          target_delimiter: " "
          metric_list: [{{metric: acc}}, {{metric: acc_norm}}]
    """)


def gen_task(name: str = "add", data: str = "data/add.jsonl", thresholds: str = "") -> str:
    return textwrap.dedent(f"""\
      - name: {name}
        metric: exact_match
        {thresholds}
        lm_eval:
          dataset_path: json
          dataset_kwargs: {{data_files: {{test: {data}}}}}
          test_split: test
          output_type: generate_until
          doc_to_text: "{{{{prompt}}}}"
          doc_to_target: "{{{{answer}}}}"
          target_delimiter: ""
          generation_kwargs: {{until: ["\\n"], max_gen_toks: 4, do_sample: false}}
          metric_list: [{{metric: exact_match}}]
    """)


def write_project(root: Path, models: dict[str, tuple[str, Path]], tasks: list[str],
                  suite: str = "demo", extra_toml: str = "") -> Path:
    """A user's project: pyproject with models, a suite file and its data."""
    write_jsonl(root / "suites" / "data" / "compare.jsonl", MC_ROWS)
    write_jsonl(root / "suites" / "data" / "add.jsonl", GEN_ROWS)
    lines = ["[tool.distillbench]", extra_toml]
    for name, (role, path) in models.items():
        lines += [f"[tool.distillbench.models.{name}]", f'role = "{role}"', f'path = "{path}"']
        if role == "student":
            lines.append('teacher = "teacher"')
    (root / "pyproject.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    body = f"suite: {suite}\ndescription: a small demo suite\ntasks:\n" + "".join(
        textwrap.indent(t, "") for t in tasks)
    suite_path = root / "suites" / f"{suite}.yaml"
    suite_path.write_text(body, encoding="utf-8")
    return suite_path
