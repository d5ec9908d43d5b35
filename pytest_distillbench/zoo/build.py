"""Build the zoo: train the teacher, distil the student from it, train the control on labels.

``distillbench zoo build [--out DIR] [--steps-scale X] [--seed N]``. Same command, same
weights: fixed seeds, deterministic torch kernels, a fixed CPU thread count, and a batch order
drawn from a seeded generator that the student and the control share.
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..spec.models import fingerprint
from . import ZOO_DIR
from .architecture import STUDENT_SHAPE, TEACHER_SHAPE, ModelShape, make_model, parameter_counts
from .card import ModelFacts, write_card, write_manifest
from .corpus import batch_order, encode_records, load_records
from .tokenizer import build_tokenizer, save_tokenizer
from .training import TrainConfig, TrainLog, train
from .validation import validation_scores

DEFAULT_DATA = ZOO_DIR.parents[1] / "suites" / "data"
THREADS = 2
MODELS = ("teacher", "student", "control", "control-b")
# Controls: the student's shape, data and steps, labels only. "control" also shares the student's
# initial weights (only the teacher's logits differ between them); "control-b" starts from its own
# seed, so each control has an independent reference when the evidence asks whether *it* copies.
CONTROL_INIT = {"control": "student_init", "control-b": "control_b_init"}


@dataclass(frozen=True)
class ZooPlan:
    teacher_shape: ModelShape = TEACHER_SHAPE
    student_shape: ModelShape = STUDENT_SHAPE
    # Peak learning rates from pilots run side by side on one thread each (validation mean over
    # the math and reasoning tasks). Teacher, 12,000 steps: 0.848 at 1e-3, 0.836 at 1.5e-3; the
    # earlier 3e-3 gave 0.724 (two threads), with add_3d 0.72 and mul_1d2d 0.59 against 1.00 and
    # 0.995 at 1e-3; at 4,000 steps 3e-3 reached 0.31 against 0.54 for 1e-3. Student, distilled
    # from the 1e-3 pilot teacher: 0.756 at 2e-3 against 0.726 at 4e-3.
    teacher: TrainConfig = TrainConfig(steps=12000, batch_size=32, lr=1e-3, warmup=100, log_every=250)
    student: TrainConfig = TrainConfig(steps=6500, batch_size=32, lr=2e-3, warmup=100, log_every=250,
                                       alpha=0.9, temperature=2.0)
    validation_limit: int = 200
    code_validation_limit: int = 40
    threads: int = THREADS
    # The controls need nothing from the teacher, so they train beside the student in a second
    # process, one thread each (the two cores are used either way).
    parallel_control: bool = True
    tasks: tuple[str, ...] | None = field(default=None)  # None: every task under the data root
    # Relative sampling weights of tasks or suites (1 where not named; empty: uniform).
    task_weights: tuple[tuple[str, float], ...] = ()

    def scaled(self, scale: float) -> ZooPlan:
        return replace(self, teacher=self.teacher.scaled(scale), student=self.student.scaled(scale))


def matmul_parameters(model) -> int:
    counts = parameter_counts(model)
    return counts["non_embedding"] + model.transformer.wte.weight.numel()


def _facts(name: str, role: str, model, log: TrainLog, config: TrainConfig, *, seeds: dict[str, int],
           data: dict[str, int], validation: dict[str, float], directory: Path, command: str,
           threads: int, teacher=None, task_weights: dict[str, float] | None = None) -> ModelFacts:
    counts = parameter_counts(model)
    n = matmul_parameters(model)
    cfg = model.config
    return ModelFacts(
        name=name, role=role,
        architecture={"model_type": "gpt2", "n_layer": cfg.n_layer, "n_embd": cfg.n_embd,
                      "n_head": cfg.n_head, "n_positions": cfg.n_positions,
                      "vocab_size": cfg.vocab_size},
        parameters=counts["total"], non_embedding_parameters=counts["non_embedding"],
        matmul_parameters=n,
        training={**asdict(config), "betas": list(config.betas), "seconds": round(log.seconds, 1),
                  "steps_per_second": round(log.steps_per_second, 3),
                  "final_loss": round(sum(log.losses[-50:]) / len(log.losses[-50:]), 4),
                  "task_weights": dict(task_weights or {})},
        training_tokens=log.tokens, target_tokens=log.target_tokens,
        training_flops=6.0 * n * log.tokens,
        teacher_forward_flops=0.0 if teacher is None else 2.0 * matmul_parameters(teacher) * log.tokens,
        seeds=seeds, data=data, validation=validation, fingerprint=fingerprint(directory),
        command=command, teacher=None if teacher is None else "teacher",
        environment={"torch": torch.__version__, "torch_threads": threads,
                     "python": platform.python_version(), "machine": platform.machine()},
    )


def save_checkpoint(model, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    save_tokenizer(directory)


def build_zoo(out_dir: Path, *, scale: float = 1.0, seed: int = 0,
              progress: Callable[[str], None] = print, data_root: Path | None = None,
              plan: ZooPlan | None = None, only: tuple[str, ...] = MODELS,
              control_logs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and save ``teacher/``, ``student/``, ``control/`` and ``control-b/`` under
    ``out_dir`` with their model cards and ``manifest.json``; return the manifest's content.

    ``only`` retrains some of them and keeps the others' cards in the manifest (a student
    trained alone distils from the saved teacher)."""
    out_dir = Path(out_dir)
    data_root = Path(data_root) if data_root is not None else DEFAULT_DATA
    base_plan = plan or ZooPlan()
    plan = base_plan.scaled(scale)
    torch.set_num_threads(plan.threads)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()

    records = load_records(data_root, "train")
    validation = load_records(data_root, "validation")
    if plan.tasks is not None:
        records = {t: records[t] for t in plan.tasks}
        validation = {t: validation[t] for t in plan.tasks if t in validation}
    n_positions = plan.teacher_shape.n_positions
    examples = encode_records(records, n_positions)
    data = {f"{task}/train": len(rows) for task, rows in examples.items()}
    pad_id = build_tokenizer().pad_token_id
    progress(f"zoo: {len(examples)} tasks, {sum(data.values()):,} train examples from {data_root}")

    seeds = {"data_order": seed, "teacher_init": seed + 1, "student_init": seed + 2,
             "control_b_init": seed + 3}
    command = f"distillbench zoo build --seed {seed} --steps-scale {scale:g}"
    if set(only) != set(MODELS):
        command += " --only " + " ".join(m for m in MODELS if m in only)
    facts: dict[str, ModelFacts] = {}

    def order(config: TrainConfig):
        return batch_order(examples, steps=config.steps, batch_size=config.batch_size,
                           seed=seeds["data_order"], weights=dict(plan.task_weights))

    def finish(name: str, role: str, model, log: TrainLog, config: TrainConfig, teacher=None) -> None:
        directory = out_dir / name
        save_checkpoint(model, directory)
        scores = validation_scores(model, validation, limit=plan.validation_limit,
                                   code_limit=plan.code_validation_limit)
        progress(f"[{name}] validation " + ", ".join(f"{t} {s:.3f}" for t, s in scores.items()))
        facts[name] = _facts(name, role, model, log, config, seeds=seeds, data=data,
                             validation=scores, directory=directory, command=command,
                             threads=torch.get_num_threads(), teacher=teacher,
                             task_weights=dict(plan.task_weights))
        write_card(directory, facts[name])

    def train_control(name: str) -> TrainLog:
        model = make_model(plan.student_shape, seeds[CONTROL_INIT[name]])
        progress(f"[{name}] {parameter_counts(model)}")
        log = train(model, order(plan.student), plan.student, pad_id=pad_id, name=name,
                    progress=progress)
        save_checkpoint(model, out_dir / name)
        return log

    controls = [name for name in CONTROL_INIT if name in only]
    if control_logs is not None:  # the child process of a parallel build: train and save only
        torch.set_num_threads(1)
        for name in controls:
            control_logs[name] = train_control(name)
        return {}
    from transformers import GPT2LMHeadModel

    # The teacher trains alone on every thread: it is the largest model and the others wait for
    # it (the student distils from it). Then the student trains on one thread while the controls,
    # which need nothing from the teacher, train one after the other on the other.
    if "teacher" in only:
        torch.set_num_threads(plan.threads)
        teacher = make_model(plan.teacher_shape, seeds["teacher_init"])
        progress(f"[teacher] {parameter_counts(teacher)}")
        log = train(teacher, order(plan.teacher), plan.teacher, pad_id=pad_id, name="teacher",
                    progress=progress)
        finish("teacher", "teacher", teacher, log, plan.teacher)
    elif "student" in only:
        teacher = GPT2LMHeadModel.from_pretrained(out_dir / "teacher").eval()
    control_job = None
    if plan.parallel_control and controls and "student" in only:
        import multiprocessing

        # a plain (non-daemon) process: validation runs generated code in child processes
        control_job = multiprocessing.get_context("spawn").Process(
            target=_control_process, args=(out_dir, scale, seed, data_root, base_plan, tuple(controls)))
        control_job.start()
    # one thread for the student and the controls whether or not they run side by side, so a
    # partial rebuild gives the weights of a full one
    small_threads = 1 if plan.parallel_control else plan.threads
    torch.set_num_threads(small_threads)
    if "student" in only:
        model = make_model(plan.student_shape, seeds["student_init"])
        progress(f"[student] {parameter_counts(model)}")
        log = train(model, order(plan.student), plan.student, pad_id=pad_id, teacher=teacher,
                    name="student", progress=progress)
        finish("student", "student", model, log, plan.student, teacher=teacher)
    if control_job is not None:
        control_job.join()
        if control_job.exitcode != 0:
            raise RuntimeError(f"training the controls failed (exit code {control_job.exitcode})")
    for name in controls:
        if control_job is not None:
            facts_file = out_dir / name / ".facts.pickle"
            log = pickle.loads(facts_file.read_bytes())
            facts_file.unlink()
        else:
            log = train_control(name)
        control = GPT2LMHeadModel.from_pretrained(out_dir / name)
        finish(name, "control", control, log, plan.student)
    torch.set_num_threads(plan.threads)

    elapsed = time.perf_counter() - started
    extra = {"build_seconds": round(elapsed, 1), "seed": seed, "steps_scale": scale,
             "command": command, "data_root": "suites/data"}
    manifest = out_dir / "manifest.json"
    if set(only) != set(MODELS) and manifest.is_file():
        # a partial rebuild: the other models' entries (and the full build's figures) stay
        previous = json.loads(manifest.read_text(encoding="utf-8"))
        kept = {k: ModelFacts.from_dict(v) for k, v in previous.get("models", {}).items() if k not in facts}
        extra = {**{k: v for k, v in previous.items() if k != "models"},
                 "rebuilt": {**previous.get("rebuilt", {}), ",".join(only): round(elapsed, 1)}}
        facts = {**kept, **facts}
    write_manifest(manifest, facts, extra)
    progress(f"zoo: built {', '.join(only)} in {elapsed:.0f} s")
    return {**extra, "models": {k: v.to_dict() for k, v in facts.items()}}


def _control_process(out_dir: Path, scale: float, seed: int, data_root: Path, plan: ZooPlan,
                     controls: tuple[str, ...]) -> None:
    """The controls, one after the other on one thread, in a child process; leaves their
    training logs for the parent to write the cards and the manifest."""
    logs: dict[str, Any] = {}
    build_zoo(out_dir, scale=scale, seed=seed, data_root=data_root, plan=plan, only=controls,
              control_logs=logs, progress=lambda line: print(line, flush=True))
    for name, log in logs.items():
        (Path(out_dir) / name / ".facts.pickle").write_bytes(pickle.dumps(log))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="distillbench zoo build",
                                     description="Train the embedded teacher, student and controls.")
    parser.add_argument("--out", type=Path, default=ZOO_DIR, help="where to write the checkpoints")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every step count (e.g. 0.01 for a miniature build)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="root of <suite>/<task>/{train,validation}.jsonl")
    parser.add_argument("--only", nargs="+", choices=MODELS, default=list(MODELS),
                        help="retrain only these (a student alone distils from the saved teacher)")
    args = parser.parse_args(argv)
    build_zoo(args.out, scale=args.steps_scale, seed=args.seed, data_root=args.data,
              only=tuple(m for m in MODELS if m in args.only),
              progress=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
