"""The zoo: training code on miniature builds, and the committed teacher, student and controls."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_distillbench.spec.models import fingerprint
from pytest_distillbench.zoo import ZOO_CONTROLS, ZOO_DIR
from pytest_distillbench.zoo.architecture import (
    N_POSITIONS,
    ModelShape,
    make_model,
    parameter_counts,
)
from pytest_distillbench.zoo.build import ZooPlan, build_zoo, save_checkpoint
from pytest_distillbench.zoo.corpus import (
    IGNORE,
    Example,
    batch_order,
    collate,
    encode_pair,
    encode_records,
    load_records,
    tokenizer,
)
from pytest_distillbench.zoo.tokenizer import CHARACTERS, INDENT, WORDS, frequent_words
from pytest_distillbench.zoo.training import (
    TrainConfig,
    distillation_kl,
    position_weights,
    shifted,
    train,
)

TINY_TEACHER = ModelShape(n_layer=2, n_embd=48, n_head=2, n_positions=128)
TINY_STUDENT = ModelShape(n_layer=1, n_embd=24, n_head=2, n_positions=128)
TINY_PLAN = ZooPlan(
    teacher_shape=TINY_TEACHER,
    student_shape=TINY_STUDENT,
    teacher=TrainConfig(steps=40, batch_size=16, lr=5e-3, warmup=5, log_every=20),
    student=TrainConfig(steps=20, batch_size=16, lr=5e-3, warmup=5, log_every=20, alpha=0.7),
    validation_limit=20,
    code_validation_limit=3,
)
PAD = 0
MINI = ("teacher", "student", "control-01", "control-02")


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def write_tiny_suites(root: Path) -> Path:
    """Three little tasks in the bundled formats: generation, multiple choice and code."""
    rng = random.Random(0)
    splits = {"train": 300, "validation": 30}
    for split, n in splits.items():
        add, larger, code = [], [], []
        for i in range(n):
            a, b = rng.randrange(10), rng.randrange(10)
            add.append({"id": f"{split}-{i}", "prompt": f"Q: {a}+{b}=", "answer": str(a + b)})
            x, y = rng.sample(range(10), 2)
            larger.append({"id": f"{split}-{i}", "prompt": f"Larger of {x} and {y}?",
                           "choices": [str(x), str(y)], "label": int(y > x)})
            k = rng.randrange(1, 9)
            code.append({"task_id": f"{split}/{i}", "entry_point": "f",
                         "prompt": f'def f(x):\n    """Return x plus {k}."""\n',
                         "canonical_solution": f"    return x + {k}\n",
                         "test": f"def check(candidate):\n    assert candidate(1) == {1 + k}\n"})
        _write(root / "math" / "add" / f"{split}.jsonl", add)
        _write(root / "reasoning" / "larger" / f"{split}.jsonl", larger)
        _write(root / "code" / "add_const" / f"{split}.jsonl", code)
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return write_tiny_suites(tmp_path_factory.mktemp("suites") / "data")


@pytest.fixture(scope="module")
def tiny_examples(tiny_data) -> dict[str, list[Example]]:
    return encode_records(load_records(tiny_data, "train"), 128)


@pytest.fixture(scope="module")
def miniature_builds(tiny_data, tmp_path_factory) -> tuple[Path, Path, dict]:
    first, second = tmp_path_factory.mktemp("zoo1"), tmp_path_factory.mktemp("zoo2")
    # two of the eight controls keep the fixture quick; each control's recipe is its own
    manifest = build_zoo(first, data_root=tiny_data, plan=TINY_PLAN, only=MINI, progress=lambda _: None)
    build_zoo(second, data_root=tiny_data, plan=TINY_PLAN, only=MINI, progress=lambda _: None)
    return first, second, manifest


# --- pure functions ---------------------------------------------------------------------------

@settings(deadline=None)
@given(text=st.lists(st.sampled_from(CHARACTERS + ("Cal", " taller", INDENT, "nums")), max_size=60)
       .map("".join))
def test_tokenizer_round_trips_any_printable_text_without_unknowns(text):
    ids = tokenizer()(text, add_special_tokens=False)["input_ids"]
    assert tokenizer().unk_token_id not in ids
    assert tokenizer().decode(ids) == text
    assert len(ids) <= len(text)


def test_tokenizer_keeps_known_words_whole_and_everything_else_per_character():
    pieces = tokenizer().tokenize("Cal is taller than Max. Sort: isab -> Calx 290+974=")
    assert pieces[:5] == ["Cal", " is", " taller", " than", " Max"]
    # letters that only start a known word, digits and unknown words stay characters
    assert pieces[pieces.index(":") + 2: pieces.index(":") + 6] == ["i", "s", "a", "b"]
    assert pieces[-14:] == list(" Calx 290+974=")
    assert tokenizer().tokenize("def f(a):\n    return a") == [
        "def", " ", "f", "(", "a", ")", ":", "\n", INDENT, "return", " ", "a"]


@given(words=st.lists(st.text(st.sampled_from("abcXY"), min_size=1, max_size=4), max_size=30),
       min_count=st.integers(1, 4))
def test_frequent_words_counts_whole_letter_runs(words, min_count):
    found = frequent_words([" ".join(words)], min_count)
    assert list(found) == sorted(found)
    for word in set(words):
        assert (word in found) == (words.count(word) >= min_count and len(word) >= 2)


def test_the_frozen_words_are_the_bundled_train_splits_frequent_words():
    from pytest_distillbench.data.formats import training_pair

    records = load_records(ZOO_DIR.parents[1] / "suites" / "data", "train")
    texts = ("".join(training_pair(r)) for rows in records.values() for r in rows)
    assert frequent_words(texts) == WORDS


@settings(deadline=None)
@given(ctx=st.text(st.sampled_from("ab1+= \n"), max_size=80),
       tgt=st.text(st.sampled_from("0123\n"), min_size=1, max_size=20),
       max_len=st.integers(24, 64))
def test_encode_pair_keeps_the_whole_target_and_fits(ctx, tgt, max_len):
    c, t = encode_pair(ctx, tgt, max_len)
    whole_ctx = tokenizer()(ctx, add_special_tokens=False)["input_ids"]
    assert len(c) + len(t) <= max_len
    assert len(t) == len(tgt)  # digits and newlines are one token each
    assert list(c) == whole_ctx[len(whole_ctx) - len(c):]  # the context's end is kept
    assert len(c) == min(len(whole_ctx), max_len - len(tgt)) or (len(c) == 1 and not ctx)


examples_strategy = st.lists(
    st.tuples(st.lists(st.integers(3, 99), min_size=1, max_size=12),
              st.lists(st.integers(3, 99), min_size=1, max_size=6)),
    min_size=1, max_size=8,
).map(lambda pairs: [Example("t", tuple(c), tuple(t)) for c, t in pairs])


@settings(deadline=None)
@given(examples=examples_strategy)
def test_collate_labels_exactly_the_target_tokens(examples):
    batch = collate(examples, PAD)
    for row, e in enumerate(examples):
        labels = batch.labels[row]
        assert labels[labels != IGNORE].tolist() == list(e.target)
        assert batch.input_ids[row, : len(e)].tolist() == list(e.context + e.target)
        assert int(batch.attention_mask[row].sum()) == len(e)
    assert batch.target_tokens == sum(len(e.target) for e in examples)


@settings(deadline=None)
@given(examples=examples_strategy)
def test_shifted_rows_predict_the_next_target_token(examples):
    batch = collate(examples, PAD)
    # logits that put all mass on the true next token: the rows picked must be exactly those
    one_hot = torch.nn.functional.one_hot(torch.roll(batch.input_ids, -1, dims=1), 100).float()
    rows, targets = shifted(one_hot, batch.labels)
    assert rows.argmax(-1).tolist() == targets.tolist()
    assert targets.tolist() == [tok for e in examples for tok in e.target]


@settings(max_examples=30, deadline=None)
@given(steps=st.integers(1, 40), batch_size=st.integers(1, 9), seed=st.integers(0, 2**32 - 1))
def test_batch_order_is_a_function_of_the_seed(steps, batch_size, seed):
    pool = {"a": [Example("a", (5,) * n, (6,)) for n in range(1, 30)],
            "b": [Example("b", (7,), (8,) * n) for n in range(1, 4)]}
    first = list(batch_order(pool, steps=steps, batch_size=batch_size, seed=seed))
    again = list(batch_order(pool, steps=steps, batch_size=batch_size, seed=seed))
    assert first == again
    assert len(first) == steps and all(len(b) == batch_size for b in first)


def test_batch_order_mixes_tasks_uniformly_regardless_of_size():
    pool = {"big": [Example("big", (5,), (6,))] * 1000, "small": [Example("small", (7,), (8,))] * 3}
    drawn = [e.task for b in batch_order(pool, steps=100, batch_size=20, seed=1) for e in b]
    assert 0.4 < drawn.count("small") / len(drawn) < 0.6


@given(examples=st.lists(st.tuples(st.integers(1, 6), st.integers(1, 9)), min_size=1, max_size=6))
def test_example_weighting_gives_every_example_the_same_share(examples):
    batch = collate([Example("t", tuple(range(3, 3 + c)), tuple(range(3, 3 + t))) for c, t in examples], 0)
    weights = position_weights(batch.labels, "example")
    rows, _ = shifted(torch.zeros(len(examples), batch.labels.shape[1], 4), batch.labels)
    assert weights.shape == (rows.shape[0],)
    # each example's target rows share 1 / (number of examples), however long its target
    at = 0
    for _, target in examples:
        assert float(weights[at:at + target].sum()) == pytest.approx(1 / len(examples))
        at += target
    assert position_weights(batch.labels, "token") is None


def test_distillation_kl_is_zero_only_on_agreement():
    a = torch.randn(5, 11)
    assert float(distillation_kl(a, a, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_kl(a, torch.randn(5, 11), 2.0)) > 0.0


# --- miniature training -----------------------------------------------------------------------

def test_training_lowers_the_loss(tiny_examples):
    model = make_model(TINY_TEACHER, seed=3)
    config = replace(TINY_PLAN.teacher, steps=60)
    log = train(model, batch_order(tiny_examples, steps=60, batch_size=16, seed=0), config,
                pad_id=PAD, progress=lambda _: None)
    assert log.steps == 60 and log.tokens > log.target_tokens > 0
    assert sum(log.losses[-10:]) / 10 < 0.7 * sum(log.losses[:10]) / 10


def test_saved_checkpoint_reloads_to_identical_logits(tmp_path, tiny_examples):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = make_model(TINY_STUDENT, seed=5)
    train(model, batch_order(tiny_examples, steps=5, batch_size=8, seed=0), TINY_PLAN.student,
          pad_id=PAD, progress=lambda _: None)
    save_checkpoint(model, tmp_path / "m")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m")
    ids = tokenizer(["Q: 3+4=", "Larger of 1 and 2? 2"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.equal(model(**ids).logits, reloaded(**ids).logits)


def test_miniature_build_is_deterministic(miniature_builds):
    first, second, _ = miniature_builds
    for name in MINI:
        assert fingerprint(first / name) == fingerprint(second / name)
        assert (first / name / "model.safetensors").read_bytes() == (second / name / "model.safetensors").read_bytes()


def test_miniature_build_writes_cards_and_manifest(miniature_builds):
    first, _, manifest = miniature_builds
    on_disk = json.loads((first / "manifest.json").read_text())
    assert on_disk["models"].keys() == set(MINI)
    for name, facts in on_disk["models"].items():
        assert facts["fingerprint"] == fingerprint(first / name)
        assert facts["fingerprint"] in (first / name / "README.md").read_text()
        assert set(facts["validation"]) == {"code/add_const", "math/add", "reasoning/larger"}
        assert facts["training_flops"] == 6 * facts["matmul_parameters"] * facts["training_tokens"]
    models = on_disk["models"]
    assert models["student"]["teacher_forward_flops"] == (
        2 * models["teacher"]["matmul_parameters"] * models["student"]["training_tokens"])
    assert models["control-01"]["teacher_forward_flops"] == models["control-02"]["teacher_forward_flops"] == 0
    # the student reads the teacher's batch order; each control draws its own initial weights
    # and its own batches
    assert models["student"]["seeds"]["data_order"] == models["teacher"]["seeds"]["data_order"]
    small = ("student", "control-01", "control-02")
    assert len({models[c]["seeds"]["init"] for c in small}) == 3
    assert len({models[c]["seeds"]["data_order"] for c in small}) == 3
    assert models["control-01"]["training_tokens"] != models["student"]["training_tokens"]
    assert models["control-02"]["fingerprint"] != models["control-01"]["fingerprint"]
    assert "--only teacher student control-01 control-02" in models["control-01"]["command"]
    assert manifest["models"]["student"]["fingerprint"] == models["student"]["fingerprint"]


def test_partial_rebuild_retrains_one_model_and_keeps_the_others(miniature_builds, tiny_data, tmp_path):
    import shutil

    first, _, _ = miniature_builds
    copy = tmp_path / "zoo"
    shutil.copytree(first, copy)
    (copy / "control-02" / "model.safetensors").unlink()
    before = json.loads((copy / "manifest.json").read_text())
    build_zoo(copy, data_root=tiny_data, plan=TINY_PLAN, only=("control-02",), progress=lambda _: None)
    after = json.loads((copy / "manifest.json").read_text())
    # same recipe, same weights, whether it trained beside the student or alone
    assert fingerprint(copy / "control-02") == fingerprint(first / "control-02")
    assert after["models"]["control-02"]["command"].endswith("--only control-02")
    for name in ("teacher", "student", "control-01"):
        assert after["models"][name] == before["models"][name]
    assert "control-02" in after["rebuilt"]


def test_distillation_pulls_the_student_towards_the_teacher(miniature_builds, tiny_examples):
    """From one initialisation and one batch order, the distilled student ends closer to the
    teacher than the control trained on labels: the loss really reads the teacher's logits."""
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(miniature_builds[0] / "teacher").eval()
    config = replace(TINY_PLAN.student, steps=30, alpha=1.0)
    held_out = collate([e for task in sorted(tiny_examples) for e in tiny_examples[task][-20:]], PAD)

    def kl_to_teacher(model) -> float:
        with torch.no_grad():
            s, _ = shifted(model(input_ids=held_out.input_ids, attention_mask=held_out.attention_mask).logits, held_out.labels)
            t, _ = shifted(teacher(input_ids=held_out.input_ids, attention_mask=held_out.attention_mask).logits, held_out.labels)
        return float(distillation_kl(s, t, 1.0))

    start = kl_to_teacher(make_model(TINY_STUDENT, seed=9))
    finals = {}
    for name, distil in (("student", teacher), ("control", None)):
        model = make_model(TINY_STUDENT, seed=9)
        train(model, batch_order(tiny_examples, steps=30, batch_size=16, seed=0), config,
              pad_id=PAD, teacher=distil, progress=lambda _: None)
        finals[name] = kl_to_teacher(model)
    assert finals["student"] < 0.95 * finals["control"] < 0.95 * start


def test_lm_eval_runs_loglikelihood_and_generation(miniature_builds):
    lm = _hflm(miniature_builds[0] / "student")
    _exercise_lm_eval(lm)


def _hflm(path: Path):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(path), batch_size=32, device="cpu", logits_cache=False)


def _exercise_lm_eval(lm) -> None:
    from lm_eval.api.instance import Instance

    ll = lm.loglikelihood([Instance("loglikelihood", {}, ("Q: 3+4=", "7"), i) for i in range(2)])
    assert len(ll) == 2 and all(lp < 0 for lp, _ in ll)
    gen = lm.generate_until([Instance("generate_until", {}, ("Q: 3+4=", {"until": ["\n"], "max_gen_toks": 4, "do_sample": False}), 0)])
    assert len(gen) == 1 and isinstance(gen[0], str) and "\n" not in gen[0]


# --- the committed checkpoints ----------------------------------------------------------------

COMMITTED = ("teacher", "student", *ZOO_CONTROLS)
committed_missing = not all((ZOO_DIR / n / "model.safetensors").is_file() for n in COMMITTED) or not (
    ZOO_DIR / "manifest.json").is_file()
needs_committed = pytest.mark.skipif(committed_missing, reason="the zoo checkpoints are not built yet "
                                     "(distillbench zoo build)")


@pytest.fixture(scope="module")
def zoo_manifest() -> dict:
    return json.loads((ZOO_DIR / "manifest.json").read_text())


@needs_committed
@pytest.mark.parametrize("name", COMMITTED)
def test_committed_fingerprints_match_card_and_manifest(name, zoo_manifest):
    actual = fingerprint(ZOO_DIR / name)
    assert zoo_manifest["models"][name]["fingerprint"] == actual
    assert f"`{actual}`" in (ZOO_DIR / name / "README.md").read_text()


@needs_committed
@pytest.mark.parametrize("name", COMMITTED)
def test_committed_checkpoints_load_offline(name, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = AutoModelForCausalLM.from_pretrained(ZOO_DIR / name, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(ZOO_DIR / name, local_files_only=True)
    assert model.config.model_type == "gpt2" and model.config.n_positions == N_POSITIONS
    assert (model.config.eos_token_id, model.config.pad_token_id, model.config.bos_token_id) == (
        tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id)
    assert tokenizer.decode(tokenizer("Q: 37+58=\n")["input_ids"]) == "Q: 37+58=\n"


@needs_committed
def test_committed_student_is_small_and_control_matches_it():
    from transformers import AutoConfig, AutoModelForCausalLM

    sizes = {n: parameter_counts(AutoModelForCausalLM.from_pretrained(ZOO_DIR / n))["total"] for n in COMMITTED}
    assert sizes["teacher"] >= 4 * sizes["student"]
    assert {sizes[c] for c in ZOO_CONTROLS} == {sizes["student"]}
    configs = [AutoConfig.from_pretrained(ZOO_DIR / n).to_dict() for n in ("student", *ZOO_CONTROLS)]
    for config in configs:
        config.pop("_name_or_path", None)  # where it was loaded from
    assert all(config == configs[0] for config in configs)


@needs_committed
def test_committed_checkpoints_fit_the_size_budget():
    total = sum(p.stat().st_size for p in ZOO_DIR.rglob("*") if p.is_file())
    assert total <= 25 * 1024 * 1024


@needs_committed
def test_committed_teacher_runs_in_lm_eval():
    _exercise_lm_eval(_hflm(ZOO_DIR / "teacher"))


def test_cli_zoo_build_takes_the_build_verb(capsys):
    from pytest_distillbench.cli import main as cli_main

    with pytest.raises(SystemExit) as exc:
        cli_main(["zoo", "build", "--help"])
    assert exc.value.code == 0 and "--only" in capsys.readouterr().out
    assert cli_main(["zoo", "train"]) == 2
    assert "usage: distillbench zoo build" in capsys.readouterr().err
