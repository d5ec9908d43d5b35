"""Baseline files: what a run is compared with (the verdicts are ``measures/verdicts.py``'s).

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
from typing import Any

from ..errors import DistillbenchError
from ..fileio import atomic_write_text, file_lock
from ..measures import stats
from ..records import TaskRun
from ..spec.suites import TaskSpec

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
    from ..measures.verdicts import item_margins

    out = item_margins(run.records)
    return {k: round(v, MARGIN_DECIMALS) for k, v in out.items()} if len(out) == len(run.records) else None


def fingerprint_of(run: TaskRun, task: TaskSpec, seed: int) -> dict[str, Any]:
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
        "seed": seed,
        "device": str(run.meta.get("device", "")).split(":")[0],
        # the chat template in force (its sha256; "server" behind a chat API); None without one
        "chat_template": run.meta.get("chat_template_sha256"),
        "system_prompt": run.meta.get("system_prompt"),
    }


def baseline_document(run: TaskRun, task: TaskSpec, role: str, seed: int) -> dict[str, Any]:
    lo, hi = stats.score_interval([r.score for r in run.records])
    cost = run.cost
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "suite": task.suite, "task": task.name, "model": run.model, "role": role,
        "metric": task.metric_key, "n": run.n, "score": run.score, "ci95": [lo, hi],
        "cost": {
            "flops_per_item": None if cost is None or cost.flops is None else cost.flops / run.n,
            "tokens_per_item": None if cost is None or cost.prompt_tokens is None
            else (cost.prompt_tokens + (cost.output_tokens or 0)) / run.n,
            "flops_source": None if cost is None else cost.flops_source,
        },
        "fingerprint": fingerprint_of(run, task, seed),
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
    schema = data.get("schema") if isinstance(data, dict) else None
    if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA:
        raise DistillbenchError(
            f"written by a newer pytest-distillbench (baseline schema {schema}; this version reads "
            f"schema {SCHEMA})", path=path,
            fix="upgrade pytest-distillbench to compare with it; do not rewrite it with this version, "
                "which would replace it with the older format")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise DistillbenchError(f"corrupt baseline: schema {data.get('schema') if isinstance(data, dict) else '?'}"
                                f", expected {SCHEMA}", path=path, fix=fix)
    for key in ("items", "score", "fingerprint", "n"):
        if key not in data:
            raise DistillbenchError(f"corrupt baseline: no {key!r}", path=path, fix=fix)
    if not isinstance(data["items"], dict) or not all(isinstance(v, (int, float)) for v in data["items"].values()):
        raise DistillbenchError("corrupt baseline: 'items' must map doc hashes to scores", path=path, fix=fix)
    return Baseline(path, data)


def any_baseline(directory: Path) -> bool:
    """Whether the folder holds any baseline file (a first run has none)."""
    return directory.is_dir() and next(directory.glob("*/*/*.json"), None) is not None


def refuse_newer(path: Path) -> None:
    """--distillbench-update-baselines never replaces a baseline a newer version wrote."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # missing or corrupt: rewriting it is the documented fix
    if isinstance(data, dict) and isinstance(data.get("schema"), int) and data["schema"] > SCHEMA:
        read_baseline(path)  # raises the readable error; the file stays as it is


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
