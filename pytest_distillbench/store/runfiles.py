"""Run files: every session's settings, environment, results and per-item records as JSON.

Written to ``.distillbench/runs/<UTC time>_<git commit>.json`` (and ``--distillbench-json PATH``),
with per-item CSV on request. ``load_run`` reads them back for ``distillbench compare/report``.
"""

from __future__ import annotations

import functools
import json
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DistillbenchError
from ..fileio import atomic_write_text
from ..records import TaskRun

if TYPE_CHECKING:
    import pandas as pd

    from ..records import SessionView

RUN_SCHEMA = 1


def git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@functools.cache
def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages results depend on (read once per process: the
    metadata lookup costs milliseconds and is asked for per task)."""
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for pkg in ("pytest-distillbench", "lm-eval", "torch", "transformers", "pytest", "pandas"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    return versions


def environment() -> dict[str, Any]:
    versions = dict(package_versions())
    env: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                           "machine": platform.machine(), "processor": platform.processor(),
                           "versions": versions}
    torch = sys.modules.get("torch")
    if torch is None:
        # Nothing ran in torch (a warm run read every result from the cache): importing it only
        # to describe it would cost more than the run. Without a GPU device node it sees none.
        from ..measures.hardware import surely_no_gpu

        env["cuda"] = False if surely_no_gpu() else None  # None: not known without torch
        return env
    env["cuda"] = torch.cuda.is_available()
    if env["cuda"]:
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    env["torch_threads"] = torch.get_num_threads()
    return env


def settings_dict(state: SessionView) -> dict[str, Any]:
    s = state.settings
    return {
        "models": [asdict(m) for m in s.models],
        "use_cache": s.use_cache, "min_effect": s.min_effect, "alpha": s.alpha,
        "max_flops_increase": s.max_flops_increase, "verdict": s.verdict, "seed": s.seed,
        "limit": s.limit, "flops_mode": s.flops_mode,
    }


def run_document(state: SessionView, frame: pd.DataFrame) -> dict[str, Any]:
    import math

    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if hasattr(value, "item"):
            return value.item()
        return value

    runs = state.runs()
    return {
        "schema": RUN_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": git_commit(state.settings.rootdir),
        "settings": settings_dict(state),
        "environment": environment(),
        "tasks": {tid: {"suite": t.suite, "name": t.name, "metric": t.metric_key,
                        "difficulty": t.difficulty, "fingerprint": t.fingerprint,
                        "source": str(t.source)} for tid, t in state.tasks.items()},
        "summary": [{k: clean(v) for k, v in row.items()} for row in frame.to_dict("records")],
        "items": {nodeid: {"task": e.task, "model": e.model, "kind": e.kind, "outcome": e.outcome,
                           "message": e.message,
                           "figures": {k: clean(v) for k, v in e.figures.items()}}
                  for nodeid, e in state.items.items()},
        "sections": state.extra.get("run_sections", {}),
        "runs": [run.to_dict() for run in runs.values()],
    }


def write_run_files(state: SessionView, frame: pd.DataFrame) -> list[Path]:
    if not state.runs():
        return []
    doc = run_document(state, frame)
    # compact: with an indent json falls back from its C encoder (10x slower on many records)
    text = json.dumps(doc, separators=(",", ":"), default=str)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{stamp}_{doc['git_commit'] or 'nogit'}.json"
    written = [state.settings.cache_dir / "runs" / name]
    atomic_write_text(written[0], text)
    if state.settings.json_path:
        atomic_write_text(state.settings.json_path, text)
        written.append(state.settings.json_path)
    if state.settings.csv_path:
        records_frame(state.runs().values()).to_csv(state.settings.csv_path, index=False)
        written.append(state.settings.csv_path)
    return written


def records_frame(runs: Any) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for run in runs:
        for r in run.records:
            d = r.to_dict()
            d.pop("requests")
            rows.append({"task": run.task, "model": run.model, **d})
    return pd.DataFrame(rows)


def load_run(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DistillbenchError(f"cannot read run file ({exc.strerror})", path=path,
                                fix="give a file from .distillbench/runs/") from None
    except json.JSONDecodeError as exc:
        raise DistillbenchError(f"not a valid run file ({exc.msg} at line {exc.lineno})", path=path,
                                fix="give a file written by pytest --distillbench") from None
    if not isinstance(doc, dict) or doc.get("schema") != RUN_SCHEMA or "runs" not in doc:
        raise DistillbenchError("not a distillbench run file (schema mismatch)", path=path,
                                fix="give a file written by pytest --distillbench")
    doc["runs"] = [TaskRun.from_dict(r) for r in doc["runs"]]
    return doc
