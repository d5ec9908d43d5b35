"""Baseline files and regression verdicts against them.

One readable JSON file per (suite, task, model, backend) under ``baselines/``:
``baselines/<suite>/<task>/<model>.<backend>.json`` holding per-item outcomes keyed by doc hash,
the aggregate score with its interval, the cost, and a fingerprint of everything that decides
whether two runs are comparable. Files are written atomically under a lock and only with
``--distillbench-update-baselines``; a corrupt file is reported and never touched otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import stats
from .checks import CheckResult, fmt
from .errors import DistillbenchError
from .records import TaskRun
from .suites import TaskSpec
from .util import atomic_write_text, file_lock

if TYPE_CHECKING:
    from .session import DistillbenchSession

SCHEMA = 1
# Differences that make a comparison meaningless (error) vs worth a warning only.
BLOCKING = ("data_sha256", "template_sha256", "metric", "chat_template", "system_prompt")
DRIFT = ("lm_eval", "transformers", "torch", "device", "dtype", "batch_size", "seed")


@dataclass(frozen=True)
class Baseline:
    path: Path
    data: dict[str, Any]

    @property
    def items(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.data["items"].items()}

    @property
    def margins(self) -> dict[str, float] | None:
        m = self.data.get("margins")
        return None if not m else {k: float(v) for k, v in m.items()}

    @property
    def score(self) -> float:
        return float(self.data["score"])


def baseline_path(directory: Path, task: TaskSpec, model: str, backend: str) -> Path:
    return directory / task.suite / task.name / f"{model}.{backend}.json"


MARGIN_DECIMALS = 6  # baselines store margins to this precision


def margins(run: TaskRun) -> dict[str, float] | None:
    """Log-likelihood margin of the gold choice over the best wrong one, per item; None unless
    every item has one (a baseline stores margins for all of its items or for none). Rounded as
    stored, so an unchanged model's margins equal its baseline's instead of differing by rounding
    noise that a margin test would rank."""
    from .verdicts import item_margins

    out = item_margins(run.records)
    return {k: round(v, MARGIN_DECIMALS) for k, v in out.items()} if len(out) == len(run.records) else None


def fingerprint_of(run: TaskRun, task: TaskSpec, session: DistillbenchSession) -> dict[str, Any]:
    from .runfiles import package_versions

    versions = package_versions()
    return {
        "model": run.model_fingerprint,
        "data_sha256": task.data_sha256,
        "template_sha256": task.template_sha256,
        "metric": task.metric_key,
        "lm_eval": versions.get("lm-eval"),
        "transformers": versions.get("transformers"),
        "torch": versions.get("torch"),
        "backend": run.backend,
        "dtype": run.meta.get("dtype"),
        "batch_size": run.meta.get("batch_size"),
        "seed": session.settings.seed,
        "device": str(run.meta.get("device", "")).split(":")[0],
        # the chat template in force (its sha256; "server" behind a chat API); None without one
        "chat_template": run.meta.get("chat_template_sha256"),
        "system_prompt": run.meta.get("system_prompt"),
    }


def baseline_document(run: TaskRun, task: TaskSpec, session: DistillbenchSession) -> dict[str, Any]:
    lo, hi = stats.score_interval([r.score for r in run.records])
    spec = session.settings.model(run.model)
    cost = run.cost
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "suite": task.suite, "task": task.name, "model": run.model, "role": spec.role,
        "metric": task.metric_key, "n": run.n, "score": run.score, "ci95": [lo, hi],
        "cost": {
            "flops_per_item": None if cost is None or cost.flops is None else cost.flops / run.n,
            "tokens_per_item": None if cost is None or cost.prompt_tokens is None
            else (cost.prompt_tokens + (cost.output_tokens or 0)) / run.n,
            "flops_source": None if cost is None else cost.flops_source,
        },
        "fingerprint": fingerprint_of(run, task, session),
        "items": {r.doc_hash: r.score for r in sorted(run.records, key=lambda r: r.doc_hash)},
    }
    m = margins(run)
    if m is not None:
        doc["margins"] = dict(sorted(m.items()))
    return doc


def read_baseline(path: Path) -> Baseline | None:
    """None when missing; a DistillbenchError (file left untouched) when unreadable."""
    if not path.exists():
        return None
    fix = ("restore it from version control (git checkout -- FILE) or rewrite it with "
           "--distillbench-update-baselines")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DistillbenchError(f"corrupt baseline: not valid JSON ({exc.msg} at line {exc.lineno})",
                                path=path, fix=fix) from None
    except OSError as exc:
        raise DistillbenchError(f"cannot read baseline ({exc.strerror})", path=path, fix=fix) from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise DistillbenchError(f"corrupt baseline: schema {data.get('schema') if isinstance(data, dict) else '?'}"
                                f", expected {SCHEMA}", path=path, fix=fix)
    for key in ("items", "score", "fingerprint", "n"):
        if key not in data:
            raise DistillbenchError(f"corrupt baseline: no {key!r}", path=path, fix=fix)
    if not isinstance(data["items"], dict) or not all(isinstance(v, (int, float)) for v in data["items"].values()):
        raise DistillbenchError("corrupt baseline: 'items' must map doc hashes to scores", path=path, fix=fix)
    return Baseline(path, data)


def write_baseline(path: Path, doc: dict[str, Any]) -> None:
    with file_lock(path):
        atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")


@dataclass(frozen=True)
class Comparability:
    blocking: tuple[str, ...]
    drift: tuple[str, ...]


def comparability(baseline: Baseline, current: dict[str, Any], run: TaskRun) -> Comparability:
    old = baseline.data["fingerprint"]
    blocking = [f"{k}: {old.get(k)} -> {current.get(k)}" for k in BLOCKING if old.get(k) != current.get(k)]
    if set(baseline.items) != {r.doc_hash for r in run.records}:
        a, b = set(baseline.items), {r.doc_hash for r in run.records}
        blocking.append(f"items differ ({len(a - b)} only in the baseline, {len(b - a)} only in this run)")
    drift = [f"{k}: {old.get(k)} -> {current.get(k)}" for k in DRIFT if old.get(k) != current.get(k)]
    return Comparability(tuple(blocking), tuple(drift))


# -- the session-wide verdict --------------------------------------------------------------

def _session_verdicts(session: DistillbenchSession) -> dict[tuple[str, str], Any]:
    """Compare every selected baseline item of the session at once, Holm-corrected across them."""
    cached = session.extra.get("baseline_verdicts")
    if cached is not None:
        return cached
    from .evaluation import Unavailable
    from .verdicts import decide, gate_comparison

    keys, comparisons = [], []
    for entry in session.items.values():
        if entry.kind != "baseline":
            continue
        task = session.tasks[entry.task]
        spec = session.settings.model(entry.model)
        outcome = session.evaluator.result(entry.model, entry.task)
        if isinstance(outcome, Unavailable):
            continue
        path = baseline_path(session.settings.baselines_dir, task, entry.model, spec.backend)
        try:
            base = read_baseline(path)
        except DistillbenchError:
            continue
        if base is None or comparability(base, fingerprint_of(outcome, task, session), outcome).blocking:
            continue
        comparisons.append(gate_comparison(base.items, outcome.outcomes(), baseline_margins=base.margins,
                                           current_margins=margins(outcome), method=session.settings.verdict))
        keys.append((entry.task, entry.model))
    verdicts = decide(comparisons, alpha=session.settings.alpha, min_effect=session.settings.min_effect)
    result = dict(zip(keys, verdicts, strict=True))
    session.extra["baseline_verdicts"] = result
    return result


def check_against_baseline(session: DistillbenchSession, task: TaskSpec, model: str) -> CheckResult:
    spec = session.settings.model(model)
    run = session.outcome(model, task.id)
    path = baseline_path(session.settings.baselines_dir, task, model, spec.backend)
    rel = _relative(path, session.settings.rootdir)
    current = fingerprint_of(run, task, session)
    if session.settings.update_baselines:
        write_baseline(path, baseline_document(run, task, session))
        return CheckResult({"baseline_written": str(rel), "score": run.score})
    base = read_baseline(path)  # raises a readable error for a corrupt file, which stays as is
    if base is None:
        return CheckResult({"baseline": None}, (
            f"{task.id}: no baseline for {model} ({rel})\n"
            f"  create it with: pytest --distillbench {_relative(task.source, session.settings.rootdir)} "
            f"--distillbench-update-baselines -k \"{task.name} and {model}-baseline\""))
    comp = comparability(base, current, run)
    if comp.drift:
        session.warnings.append(f"{task.id} [{model}]: compared with a baseline made under other "
                                f"conditions ({'; '.join(comp.drift)})")
    if comp.blocking:
        return CheckResult({"comparable": False}, (
            f"{task.id}: {model} cannot be compared with its baseline {rel}: "
            + "; ".join(comp.blocking)
            + "\n  if the change is intended, refresh the baseline with --distillbench-update-baselines"))
    verdict = _session_verdicts(session).get((task.id, model))
    figures: dict[str, Any] = {"baseline_score": base.score, "score": run.score}
    problems = []
    if verdict is not None:
        c = verdict.comparison
        figures.update(lost=c.lost, gained=c.gained, p_value=c.p_value, p_holm=verdict.adjusted_p,
                       regressed=verdict.regressed, improved=verdict.improved, test=c.method,
                       **({"test_note": c.note} if c.note else {}),
                       **({"margin_scale": c.margin_scale} if c.margin_scale is not None else {}))
        if verdict.improved:
            session.warnings.append(f"{task.id} [{model}]: improved on its baseline "
                                    f"({base.score:.3f} -> {run.score:.3f}, p={verdict.adjusted_p:.3g})")
        if verdict.regressed:
            problems.append(verdict.message())
    base_flops = (base.data.get("cost") or {}).get("flops_per_item")
    limit = task.thresholds_for(model, spec.role).max_flops_increase
    limit = session.settings.max_flops_increase if limit is None else limit
    if base_flops and run.cost is not None and run.cost.flops is not None:
        now = run.cost.flops / run.n
        figures.update(baseline_flops_per_item=base_flops, flops_per_item=now)
        if now > base_flops * (1 + limit):
            problems.append(f"cost regression: {fmt(now, 0)} FLOPs per item vs baseline "
                            f"{fmt(base_flops, 0)} (+{100 * (now / base_flops - 1):.1f}% > allowed "
                            f"+{100 * limit:.1f}%)")
    if problems:
        return CheckResult(figures, f"{task.id}: {model} regressed against {rel}\n  "
                           + "\n  ".join(p.replace("\n", "\n  ") for p in problems))
    return CheckResult(figures)


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return path
