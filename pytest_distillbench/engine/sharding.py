"""Splitting (model, task) evaluations across pytest-xdist workers.

Every worker collects the same items, so every worker knows the whole plan. Each evaluates only
its share (whole models where there are at least as many models as workers, so a model is loaded
by one worker), writes the outcomes to a folder shared by the run, then waits until every planned
pair is there and reads them all. Items on any worker then see the same session-wide results, so
verdicts that need all of them (Holm across baselines, evidence across tasks) agree with a
single-process run. The controller reads the same folder to write one report and one run file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DistillbenchError
from ..fileio import atomic_write_text


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    exchange: Path  # shared by all workers of one test run
    timeout_s: float = 6 * 3600.0


def assign(pairs: Iterable[tuple[str, str]], count: int) -> dict[int, list[tuple[str, str]]]:
    """Which worker evaluates which pair; deterministic, balanced by number of tasks."""
    by_model: dict[str, list[tuple[str, str]]] = {}
    for pair in sorted(set(pairs)):
        by_model.setdefault(pair[0], []).append(pair)
    out: dict[int, list[tuple[str, str]]] = {i: [] for i in range(count)}
    if len(by_model) >= count:
        # whole models to the least-loaded worker, biggest first: one load per model
        for _model, model_pairs in sorted(by_model.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            target = min(out, key=lambda i: (len(out[i]), i))
            out[target].extend(model_pairs)
    else:
        for i, pair in enumerate(p for ps in by_model.values() for p in ps):
            out[i % count].append(pair)
    return out


def _name(pair: tuple[str, str]) -> str:
    return hashlib.sha256("\0".join(pair).encode()).hexdigest()[:24] + ".json"


def write_outcome(shard: Shard, pair: tuple[str, str], payload: dict[str, Any]) -> None:
    atomic_write_text(shard.exchange / "outcomes" / _name(pair),
                      json.dumps({"model": pair[0], "task": pair[1], "worker": shard.index, **payload}))


def read_outcomes(exchange: Path) -> list[dict[str, Any]]:
    folder = exchange / "outcomes"
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return out


def wait_for(shard: Shard, pairs: Iterable[tuple[str, str]], poll_s: float = 0.2) -> list[dict[str, Any]]:
    wanted = {_name(p): p for p in pairs}
    folder = shard.exchange / "outcomes"
    deadline = time.monotonic() + shard.timeout_s
    while True:
        present = {p.name for p in folder.glob("*.json")} if folder.is_dir() else set()
        if set(wanted) <= present:
            break
        if time.monotonic() > deadline:
            missing = sorted(wanted[n] for n in set(wanted) - present)
            raise DistillbenchError(f"xdist worker {shard.index} waited {shard.timeout_s:.0f}s for "
                                    f"{len(missing)} evaluations of other workers (e.g. {missing[0]})",
                                    fix="check the other workers' output; re-run without -n to see errors")
        time.sleep(poll_s)
    return [json.loads((folder / n).read_text(encoding="utf-8")) for n in sorted(wanted)]


def exchange_dir(cache_dir: Path, run_id: str) -> Path:
    return cache_dir / "xdist" / run_id


def visible_gpu_for_worker(index: int) -> str | None:
    """One GPU per worker when several are visible; None leaves the environment alone."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        ids = [x for x in listed.split(",") if x.strip()]
        return ids[index % len(ids)] if len(ids) > 1 else None
    try:
        import torch

        count = torch.cuda.device_count()  # NVML query; does not create a CUDA context
    except Exception:  # noqa: BLE001 - no torch/driver: nothing to assign
        return None
    return str(index % count) if count > 1 else None
