"""The state of one ``--distillbench`` session: settings, tasks, the evaluator, item figures.

Lives in ``config.stash`` (only when the flag is given and not on xdist workers' controller
side twice). Items call ``run_item``; the terminal summary and run files read what it gathered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from .evaluation import Evaluator, Outcome, Unavailable
from .records import TaskRun
from .settings import Settings
from .suites import TaskSpec

if TYPE_CHECKING:
    from .items import DistillbenchItem


@dataclass
class ItemFigures:
    """What an item measured, for the report and JUnit properties."""

    task: str
    model: str
    kind: str
    outcome: str = "pending"
    message: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


class DistillbenchSession:
    def __init__(self, settings: Settings, progress: Callable[[str], None]) -> None:
        self.settings = settings
        self.tasks: dict[str, TaskSpec] = {}
        self.evaluator = Evaluator(settings, self.tasks, progress)
        self.items: dict[str, ItemFigures] = {}
        self.progress = progress
        self.warnings: list[str] = []
        self.extra: dict[str, Any] = {}  # e.g. merged results from xdist workers

    def register_task(self, task: TaskSpec) -> None:
        self.tasks[task.id] = task

    # -- hooks (this object is registered as a plugin while the session runs) ---------------
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from .items import DistillbenchItem

        pairs: set[tuple[str, str]] = set()
        for item in session.items:
            if isinstance(item, DistillbenchItem):
                pairs |= item.needs()
                self.items[item.nodeid] = ItemFigures(item.task.id, item.model, item.kind)
        self.evaluator.plan(pairs)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.items.get(report.nodeid)
        if entry is not None and (report.when == "call" or report.outcome != "passed"):
            entry.outcome = report.outcome

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from .report import write_outputs

        write_outputs(self, terminalreporter)

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
        from .items import DistillbenchFailure

        entry = self.items.setdefault(item.nodeid, ItemFigures(item.task.id, item.model, item.kind))
        check: Callable[..., checks.CheckResult] = getattr(checks, f"check_{item.kind}")
        result = check(self, item.task, item.model)
        entry.figures.update(result.figures)
        entry.message = result.failure or ""
        for key, value in result.figures.items():
            if isinstance(value, (int, float, str, bool)) or value is None:
                item.user_properties.append((key, value))
        if result.failure:
            raise DistillbenchFailure(result.failure)
