"""Build the zoo: train the teacher, distil the student from it, train the controls on labels.

``distillbench zoo build [--out DIR] [--steps-scale X] [--seed N] [--only NAME|controls ...]``.
Same command, same weights: fixed seeds, deterministic torch kernels, a fixed CPU thread count
per model, and batch orders drawn from seeded generators.
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

from ..spec.models import ZOO_CONTROLS, fingerprint
from . import ZOO_DIR
from .architecture import STUDENT_SHAPE, TEACHER_SHAPE, ModelShape, make_model, parameter_counts
from .card import ModelFacts, write_card, write_manifest
from .corpus import batch_order, encode_records, load_records
from .tokenizer import build_tokenizer, save_tokenizer
from .training import TrainConfig, TrainLog, train
from .validation import validation_scores

DEFAULT_DATA = ZOO_DIR.parents[1] / "suites" / "data"
THREADS = 2
# The reference population: the student's shape, data and steps, labels only, each control with
# its own initial weights and its own batch order. They are exchangeable with a student that never
# saw the teacher, which is what the population null of the evidence needs (measures.population);
# eight give the parametric test k - 1 = 7 degrees of freedom when one of them is left out.
CONTROLS = ZOO_CONTROLS
MODELS = ("teacher", "student", *CONTROLS)


def model_seeds(name: str, seed: int) -> dict[str, int]:
    """Initialisation and batch-order seeds of one zoo model. The student reads the teacher's
    batch order (its soft labels are the teacher's outputs on the same data); each control draws
    both from its own index, far from the others' (offsets 100 and 200)."""
    if name == "teacher":
        return {"init": seed + 1, "data_order": seed}
    if name == "student":
        return {"init": seed + 2, "data_order": seed}
    index = CONTROLS.index(name) + 1
    return {"init": seed + 100 + index, "data_order": seed + 200 + index}


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
              plan: ZooPlan | None = None, only: tuple[str, ...] = MODELS) -> dict[str, Any]:
    """Train and save ``teacher/``, ``student/`` and every ``control-NN/`` under ``out_dir``
    with their model cards and ``manifest.json``; return the manifest's content.

    ``only`` retrains some of them and keeps the others' cards in the manifest (a student
    trained alone distils from the saved teacher)."""
    out_dir = Path(out_dir)
    data_root = Path(data_root) if data_root is not None else DEFAULT_DATA
    base_plan = plan or ZooPlan()
    plan = base_plan.scaled(scale)
    torch.set_num_threads(plan.threads)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()

    prepared = _prepare(data_root, plan)
    progress(f"zoo: {len(prepared.examples)} tasks, {sum(prepared.data.values()):,} train examples "
             f"from {data_root}")
    command = f"distillbench zoo build --seed {seed} --steps-scale {scale:g}"
    if set(only) != set(MODELS):
        command += " --only " + (" ".join(m for m in MODELS if m in only)
                                 if set(only) != set(CONTROLS) else "controls")
    facts: dict[str, ModelFacts] = {}

    def finish(name: str, role: str, model, log: TrainLog, config: TrainConfig,
               scores: dict[str, float], teacher=None, threads: int = 1) -> None:
        directory = out_dir / name
        progress(f"[{name}] validation " + ", ".join(f"{t} {s:.3f}" for t, s in scores.items()))
        facts[name] = _facts(name, role, model, log, config, seeds=model_seeds(name, seed),
                             data=prepared.data, validation=scores, directory=directory,
                             command=command, threads=threads, teacher=teacher,
                             task_weights=dict(plan.task_weights))
        write_card(directory, facts[name])

    from transformers import GPT2LMHeadModel

    # The teacher trains alone on every thread: it is the largest model and the student waits
    # for it. Then the student trains on one thread while the controls, which need nothing from
    # the teacher, are taken from a queue by worker processes of one thread each: one beside the
    # student, all of them once it is done. Every small model trains on one thread wherever it
    # runs, so a partial rebuild gives the weights of a full one.
    teacher = None
    if "teacher" in only:
        torch.set_num_threads(plan.threads)
        teacher = make_model(plan.teacher_shape, model_seeds("teacher", seed)["init"])
        progress(f"[teacher] {parameter_counts(teacher)}")
        log = train(teacher, prepared.order(plan.teacher, model_seeds("teacher", seed)),
                    plan.teacher, pad_id=prepared.pad_id, name="teacher", progress=progress)
        save_checkpoint(teacher, out_dir / "teacher")
        finish("teacher", "teacher", teacher, log, plan.teacher,
               _validate(teacher, prepared, plan), threads=plan.threads)
    elif "student" in only:
        teacher = GPT2LMHeadModel.from_pretrained(out_dir / "teacher").eval()
    controls = [name for name in CONTROLS if name in only]
    pool = _ControlPool(out_dir, scale, seed, data_root, base_plan, controls)
    if "student" in only:
        pool.start(max(0, plan.threads - 1))
        torch.set_num_threads(1)
        model = make_model(plan.student_shape, model_seeds("student", seed)["init"])
        progress(f"[student] {parameter_counts(model)}")
        log = train(model, prepared.order(plan.student, model_seeds("student", seed)), plan.student,
                    pad_id=prepared.pad_id, teacher=teacher, name="student", progress=progress)
        save_checkpoint(model, out_dir / "student")
        finish("student", "student", model, log, plan.student, _validate(model, prepared, plan),
               teacher=teacher)
    pool.start(plan.threads - pool.started)
    for name, (log, scores) in pool.join().items():
        control = GPT2LMHeadModel.from_pretrained(out_dir / name)
        finish(name, "control", control, log, plan.student, scores)
    torch.set_num_threads(plan.threads)

    elapsed = time.perf_counter() - started
    extra = {"build_seconds": round(elapsed, 1), "seed": seed, "steps_scale": scale,
             "command": command, "data_root": "suites/data"}
    manifest = out_dir / "manifest.json"
    if set(only) != set(MODELS) and manifest.is_file():
        # a partial rebuild: the other models' entries (and the full build's figures) stay;
        # entries of models this version no longer builds go
        previous = json.loads(manifest.read_text(encoding="utf-8"))
        kept = {k: ModelFacts.from_dict(v) for k, v in previous.get("models", {}).items()
                if k not in facts and k in MODELS}
        extra = {**{k: v for k, v in previous.items() if k != "models"},
                 "rebuilt": {**previous.get("rebuilt", {}), ",".join(only): round(elapsed, 1)}}
        facts = {**kept, **facts}
    write_manifest(manifest, {k: facts[k] for k in MODELS if k in facts}, extra)
    progress(f"zoo: built {', '.join(only)} in {elapsed:.0f} s")
    return {**extra, "models": {k: v.to_dict() for k, v in facts.items()}}


@dataclass(frozen=True)
class _Prepared:
    examples: dict[str, list]
    validation: dict[str, list]
    data: dict[str, int]
    pad_id: int
    task_weights: tuple[tuple[str, float], ...]

    def order(self, config: TrainConfig, seeds: dict[str, int]):
        return batch_order(self.examples, steps=config.steps, batch_size=config.batch_size,
                           seed=seeds["data_order"], weights=dict(self.task_weights))


def _prepare(data_root: Path, plan: ZooPlan) -> _Prepared:
    records = load_records(data_root, "train")
    validation = load_records(data_root, "validation")
    if plan.tasks is not None:
        records = {t: records[t] for t in plan.tasks}
        validation = {t: validation[t] for t in plan.tasks if t in validation}
    examples = encode_records(records, plan.teacher_shape.n_positions)
    return _Prepared(examples=examples, validation=validation,
                     data={f"{task}/train": len(rows) for task, rows in examples.items()},
                     pad_id=build_tokenizer().pad_token_id, task_weights=plan.task_weights)


def _validate(model, prepared: _Prepared, plan: ZooPlan) -> dict[str, float]:
    return validation_scores(model, prepared.validation, limit=plan.validation_limit,
                             code_limit=plan.code_validation_limit)


class _ControlPool:
    """Worker processes (spawned, one thread each) that take controls from a queue, train,
    save and validate them, and leave ``(TrainLog, scores)`` beside each checkpoint."""

    def __init__(self, out_dir: Path, scale: float, seed: int, data_root: Path, plan: ZooPlan,
                 controls: list[str]) -> None:
        import multiprocessing

        self._context = multiprocessing.get_context("spawn")
        self._queue = self._context.Queue()
        for name in controls:
            self._queue.put(name)
        self._args = (out_dir, scale, seed, data_root, plan)
        self._controls = controls
        self._processes: list = []

    @property
    def started(self) -> int:
        return len(self._processes)

    def start(self, workers: int) -> None:
        for _ in range(min(workers, len(self._controls) - len(self._processes))):
            # plain (non-daemon) processes: validation runs generated code in child processes
            process = self._context.Process(target=_control_worker, args=(*self._args, self._queue))
            process.start()
            self._processes.append(process)

    def join(self) -> dict[str, tuple[TrainLog, dict[str, float]]]:
        for process in self._processes:
            process.join()
        failed = [p.exitcode for p in self._processes if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"training the controls failed (exit codes {failed})")
        out_dir = self._args[0]
        results = {}
        for name in self._controls:
            facts_file = Path(out_dir) / name / ".facts.pickle"
            results[name] = pickle.loads(facts_file.read_bytes())
            facts_file.unlink()
        return results


def _control_worker(out_dir: Path, scale: float, seed: int, data_root: Path, base_plan: ZooPlan,
                    queue) -> None:
    import queue as queues

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    plan = base_plan.scaled(scale)
    prepared = _prepare(data_root, plan)
    while True:
        try:
            name = queue.get(timeout=2)
        except queues.Empty:
            return
        seeds = model_seeds(name, seed)
        model = make_model(plan.student_shape, seeds["init"])
        print(f"[{name}] {parameter_counts(model)}", flush=True)
        log = train(model, prepared.order(plan.student, seeds), plan.student,
                    pad_id=prepared.pad_id, name=name, progress=lambda line: print(line, flush=True))
        save_checkpoint(model, Path(out_dir) / name)
        scores = _validate(model, prepared, plan)
        (Path(out_dir) / name / ".facts.pickle").write_bytes(pickle.dumps((log, scores)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="distillbench zoo build",
                                     description="Train the embedded teacher, student and controls.")
    parser.add_argument("--out", type=Path, default=ZOO_DIR, help="where to write the checkpoints")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every step count (e.g. 0.01 for a miniature build)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="root of <suite>/<task>/{train,validation}.jsonl")
    parser.add_argument("--only", nargs="+", choices=(*MODELS, "controls"), default=list(MODELS),
                        help="retrain only these ('controls': the reference population; a "
                             "student alone distils from the saved teacher)")
    args = parser.parse_args(argv)
    chosen = set(args.only) | (set(CONTROLS) if "controls" in args.only else set())
    build_zoo(args.out, scale=args.steps_scale, seed=args.seed, data_root=args.data,
              only=tuple(m for m in MODELS if m in chosen),
              progress=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
