"""pytest hooks. Inert unless ``--distillbench`` is given: no collection, no torch, no lm_eval.

Modelled on pytest's junitxml plugin: the session object goes into ``config.stash`` only when
enabled and only on the controller (not on xdist workers, which get their own lightweight one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .spec.settings import (  # stdlib-only module: the plugin stays light
    DEFAULT_VERDICT,
    VERDICT_METHODS,
)

if TYPE_CHECKING:
    from .session import DistillbenchSession

_ERROR = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("distillbench", "distillation benchmarks (pytest-distillbench)")
    group.addoption("--distillbench", action="store_true", default=False,
                    help="evaluate the suite files (*.yaml) under the given paths on the teacher, "
                         "students and controls")
    group.addoption("--distillbench-teacher", metavar="PATH", default=None,
                    help="teacher checkpoint (overrides [tool.distillbench] models)")
    group.addoption("--distillbench-student", metavar="NAME=PATH", action="append", default=[],
                    help="a student checkpoint; repeatable")
    group.addoption("--distillbench-control", metavar="NAME=PATH", action="append", default=[],
                    help="a control checkpoint (same size, never saw the teacher); repeatable")
    group.addoption("--distillbench-update-baselines", action="store_true", default=False,
                    help="write or refresh baselines/ for the selected items")
    group.addoption("--distillbench-baselines", metavar="DIR", default=None,
                    help="baseline folder (default: baselines/)")
    group.addoption("--distillbench-no-cache", action="store_true", default=False,
                    help="re-run every model instead of reading cached per-item records")
    group.addoption("--distillbench-limit", metavar="N", type=int, default=None,
                    help="evaluate only the first N items of each task (smoke runs)")
    group.addoption("--distillbench-device", metavar="DEVICE", default=None,
                    help="device for local models: auto (default), cpu, cuda, cuda:1")
    group.addoption("--distillbench-batch-size", metavar="N", type=int, default=None,
                    help="batch size for local models (default 32)")
    group.addoption("--distillbench-verdict", choices=VERDICT_METHODS, default=None,
                    help=f"paired regression test against baselines (default {DEFAULT_VERDICT})")
    group.addoption("--distillbench-flops", choices=("analytic", "measured"), default=None,
                    help="how FLOPs are counted (measured: torch FlopCounterMode, HF only)")
    group.addoption("--distillbench-json", metavar="PATH", default=None,
                    help="also write the run file to PATH")
    group.addoption("--distillbench-csv", metavar="PATH", default=None,
                    help="write per-item records as CSV")
    group.addoption("--distillbench-report", metavar="DIR", default=None,
                    help="write the HTML report and quality-vs-compute plot to DIR")
    group.addoption("--distillbench-markdown", metavar="PATH", default=None,
                    help="write a Markdown summary (CI job summary, PR comment)")
    group.addoption("--distillbench-online", action="store_true", default=False,
                    help="allow Hugging Face hub access (offline by default)")


def enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("distillbench", default=False))


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if not enabled(config):
        return
    from .errors import DistillbenchError
    from .spec.settings import build_settings

    try:
        settings = build_settings(config.option, Path(config.rootpath))
    except DistillbenchError as exc:
        # Reported once at collection start as a usage error, without a traceback.
        config.stash[_ERROR] = str(exc)
        return
    if settings.offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # lm-eval and datasets draw progress bars per request batch; the plugin prints its own lines
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def progress(line: str) -> None:
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(line)

    from .session import SESSION_KEY

    state = _make_session(config, settings, progress)
    config.stash[SESSION_KEY] = state
    # The session object carries the per-run hooks (collection finish, reports, summary).
    config.pluginmanager.register(state, "distillbench-session")


def _make_session(config: pytest.Config, settings: Any, progress: Any) -> DistillbenchSession:
    """single process, xdist worker (evaluates a share) or xdist controller (reports)."""
    import uuid

    from .engine.sharding import Shard, exchange_dir, visible_gpu_for_worker
    from .session import DistillbenchSession

    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "distillbench_exchange" in workerinput:
        index = int(str(workerinput["workerid"]).lstrip("gw") or 0)
        gpu = visible_gpu_for_worker(index)
        if gpu is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        shard = Shard(index=index, count=int(workerinput["workercount"]),
                      exchange=Path(workerinput["distillbench_exchange"]))
        return DistillbenchSession(settings, progress, mode="worker", shard=shard)
    distributing = getattr(config.option, "dist", "no") != "no" and bool(getattr(config.option, "tx", None))
    if workerinput is None and distributing:
        return DistillbenchSession(settings, progress, mode="controller",
                                   exchange=exchange_dir(settings.cache_dir, uuid.uuid4().hex))
    return DistillbenchSession(settings, progress)


def pytest_sessionstart(session: pytest.Session) -> None:
    message = session.config.stash.get(_ERROR, None)
    if message is not None:
        raise pytest.UsageError(f"distillbench: {message}")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if not enabled(parent.config) or file_path.suffix not in (".yaml", ".yml"):
        return None
    from .items import SuiteFile
    from .session import SESSION_KEY

    if SESSION_KEY not in parent.config.stash:
        return None

    return SuiteFile.from_parent(parent, path=file_path)


@pytest.hookimpl(tryfirst=True)
def pytest_collectreport(report: pytest.CollectReport) -> None:
    # A malformed suite is one readable line, not a traceback through the collector.
    if report.failed and hasattr(report, "longrepr"):
        text = str(report.longrepr)
        if "SuiteError: " in text:
            report.longrepr = "distillbench: " + text.split("SuiteError: ", 1)[1].strip()


def pytest_collection_finish(session: pytest.Session) -> None:
    if not enabled(session.config):
        return
    from .items import DistillbenchItem
    from .session import SESSION_KEY

    state = session.config.stash.get(SESSION_KEY, None)
    if state is not None:
        state.plan([item for item in session.items if isinstance(item, DistillbenchItem)])


def pytest_unconfigure(config: pytest.Config) -> None:
    if not enabled(config):
        return
    from .session import SESSION_KEY

    state = config.stash.get(SESSION_KEY, None)
    if state is not None:
        config.pluginmanager.unregister(state)
        del config.stash[SESSION_KEY]
