"""The state of one ``--distillbench`` session: settings, tasks, the evaluator, item figures.

Lives in ``config.stash`` and is registered as a plugin, only when the flag is given. It runs in
one of three modes: ``single`` (no xdist), ``worker`` (an xdist worker: evaluates its share of
pairs and runs items, writes no report) and ``controller`` (xdist's controller: evaluates
nothing, gathers item figures from the workers' reports and the runs they published, and writes
the one report and run file). Items call ``run_item``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .engine.evaluation import Evaluator
from .engine.sharding import Shard
from .fileio import atomic_write_text
from .records import ItemFigures, Outcome, TaskRun, Unavailable
from .spec.settings import Settings
from .spec.suites import TaskSpec

if TYPE_CHECKING:
    from .items import DistillbenchItem

SESSION_KEY = pytest.StashKey["DistillbenchSession"]()


def session_state(config: pytest.Config) -> DistillbenchSession:
    """The session of a ``--distillbench`` run (in ``config.stash`` only when enabled)."""
    return config.stash[SESSION_KEY]


class DistillbenchSession:
    def __init__(self, settings: Settings, progress: Callable[[str], None], *, mode: str = "single",
                 shard: Shard | None = None, exchange: Path | None = None) -> None:
        self.settings = settings
        self.mode = mode
        self.exchange = exchange if shard is None else shard.exchange
        self.tasks: dict[str, TaskSpec] = {}
        self.evaluator = Evaluator(settings, self.tasks, progress, shard=shard)
        self.items: dict[str, ItemFigures] = {}
        self.progress = progress
        self.warnings: list[str] = []
        self.extra: dict[str, Any] = {}  # session-wide caches and report sections

    def register_task(self, task: TaskSpec) -> None:
        self.tasks[task.id] = task

    # -- hooks (this object is registered as a plugin while the session runs) ---------------
    def plan(self, selected: list[DistillbenchItem]) -> None:
        """After collection and deselection (the plugin's ``pytest_collection_finish``): the
        (model, task) pairs the selected items need are all this session evaluates."""
        pairs: set[tuple[str, str]] = set()
        for item in selected:
            pairs |= item.needs()
            self.items[item.nodeid] = ItemFigures(item.task.id, item.model, item.kind)
        if any(e.kind == "evidence" for e in self.items.values()):
            from .engine.evaluation import PROBE

            pairs |= {(m.name, PROBE) for m in self.settings.models if m.backend == "hf"}
        self.evaluator.plan(pairs)
        if self.mode == "worker" and self.exchange is not None:
            # the controller collects nothing: tell it which suite files the run used
            sources = sorted({str(t.source) for t in self.tasks.values()})
            atomic_write_text(self.exchange / "suites.json", json.dumps(sources))

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:  # xdist controller, per worker
        node.workerinput["distillbench_exchange"] = str(self.exchange)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        outcome = yield
        entry = self.items.get(item.nodeid)
        if entry is not None and self.mode == "worker":
            # travels to the controller with the report (xdist serialises extra attributes)
            outcome.get_result().distillbench = {
                "task": entry.task, "model": entry.model, "kind": entry.kind,
                "message": entry.message, "figures": entry.figures}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        shipped = getattr(report, "distillbench", None)
        if shipped is not None and report.nodeid not in self.items:
            self.items[report.nodeid] = ItemFigures(shipped["task"], shipped["model"], shipped["kind"])
        entry = self.items.get(report.nodeid)
        if entry is None:
            return
        if shipped is not None:
            entry.message = shipped["message"]
            entry.figures.update(shipped["figures"])
        if report.when == "call" or report.outcome != "passed":
            entry.outcome = report.outcome

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from .report.table import write_outputs

        if self.mode == "worker":
            return
        if self.mode == "controller":
            self._gather_from_workers()
        write_outputs(self, terminalreporter)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # after the terminal summary, which reads the exchange folder
        if self.mode == "controller" and self.exchange is not None:
            shutil.rmtree(self.exchange, ignore_errors=True)

    def _gather_from_workers(self) -> None:
        from .engine.sharding import read_outcomes
        from .spec.suites import load_suite

        assert self.exchange is not None
        try:
            sources = json.loads((self.exchange / "suites.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            sources = []
        wanted = {e.task for e in self.items.values()}
        for source in sources:
            for task in load_suite(source).tasks:
                if task.id in wanted:
                    self.register_task(task)
        self.evaluator.load_outcomes(read_outcomes(self.exchange))
        self.evaluator.frozen = True  # the controller reports; it never runs a model
        if any(e.kind == "evidence" for e in self.items.values()):
            from .checks import session_evidence

            session_evidence(self)  # the same statistics the workers decided on, for the report

    # -- helpers ---------------------------------------------------------------------------
    def outcome(self, model: str, task_id: str) -> TaskRun:
        result: Outcome = self.evaluator.result(model, task_id)
        if isinstance(result, Unavailable):
            pytest.skip(result.reason)
        return result

    def runs(self) -> dict[tuple[str, str], TaskRun]:
        return self.evaluator.done()

    # -- items -----------------------------------------------------------------------------
    def run_item(self, item: DistillbenchItem) -> None:
        from . import checks

        entry = self.items.setdefault(item.nodeid, ItemFigures(item.task.id, item.model, item.kind))
        check: Callable[..., checks.CheckResult] = getattr(checks, f"check_{item.kind}")
        result = check(self, item.task, item.model)
        entry.figures.update(result.figures)
        entry.message = result.failure or ""
        for key, value in result.figures.items():
            if isinstance(value, (int, float, str, bool)) or value is None:
                item.user_properties.append((key, value))
        if result.failure:
            raise checks.DistillbenchFailure(result.failure)
