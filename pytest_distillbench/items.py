"""pytest collector and items: a suite file becomes ``<task>[<model>]``-style test items.

Items are views: they ask the session's evaluator for results computed once and only compare
numbers. Their failures render as short readable messages, never tracebacks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .checks import DistillbenchFailure
from .errors import DistillbenchError
from .session import session_state
from .spec.suites import TaskSpec, load_suite

if TYPE_CHECKING:
    from .session import DistillbenchSession


class SuiteFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        state = session_state(self.config)
        try:
            suite = load_suite(self.path)
        except DistillbenchError as exc:
            raise SuiteError(str(exc)) from None
        settings = state.settings
        for task in suite.tasks:
            other = state.tasks.get(task.id)
            if other is not None and Path(other.source).resolve() != Path(task.source).resolve():
                # Decision: refuse. Baselines, caches and item names are keyed by suite/task, so
                # two definitions would share one baseline file and the later would silently
                # replace the earlier in the session.
                raise SuiteError(str(DistillbenchError(
                    f"task {task.name!r} of suite {task.suite!r} is also defined in {other.source}",
                    path=self.path, key=f"suite {task.suite}, task {task.name}",
                    fix="rename one of the tasks, or give one of the files another 'suite:' name")))
            _check_threshold_names(self, task, state)
            state.register_task(task)
            scored = [m for m in settings.models if m.scored]
            for model in scored:
                yield ScoreItem.from_parent(self, name=f"{task.name}[{model.name}]", task=task,
                                            model=model.name)
            for model in settings.models:
                if model.role != "student":
                    continue
                yield RetentionItem.from_parent(self, name=f"{task.name}[{model.name}-retention]",
                                                task=task, model=model.name)
                limits = task.thresholds_for(model.name, model.role)
                if limits.max_compute_ratio is not None or limits.min_efficiency is not None:
                    yield ComputeItem.from_parent(self, name=f"{task.name}[{model.name}-compute]",
                                                  task=task, model=model.name)
            for model in scored:
                yield BaselineItem.from_parent(self, name=f"{task.name}[{model.name}-baseline]",
                                               task=task, model=model.name)
            for model in settings.models:
                if model.role != "teacher" and model.expect_distilled is not None:
                    yield EvidenceItem.from_parent(self, name=f"{task.name}[{model.name}-evidence]",
                                                   task=task, model=model.name)


def _check_threshold_names(collector: SuiteFile, task: TaskSpec, state: DistillbenchSession) -> None:
    """Thresholds are keyed by role or model name; a key that is neither would be ignored, so
    the limit it sets would silently not apply. A near miss of a role or a model name is a typo
    and an error; another name (a model that other projects declare) is a warning."""
    import difflib

    from .spec.models import ROLES

    known = list(ROLES) + [m.name for m in state.settings.models]
    for who, _ in task.thresholds:
        if who in known:
            continue
        close = difflib.get_close_matches(who, known, n=1, cutoff=0.75)
        if close:
            raise SuiteError(str(DistillbenchError(
                f"{who!r} is neither a role nor a model of this session (did you mean {close[0]!r}?)",
                path=collector.path, key=f"{task.name}.thresholds.{who}",
                fix=f"use a role ({', '.join(ROLES)}) or a model name ({', '.join(known[len(ROLES):])})")))
        message = (f"{task.id}: thresholds for {who!r} apply to no model of this session "
                   f"(models: {', '.join(known[len(ROLES):])})")
        if message not in state.warnings:
            state.warnings.append(message)


class SuiteError(Exception):
    """Raised during collection; pytest shows it as a collection error without a traceback."""


class DistillbenchItem(pytest.Item):
    kind = "score"

    def __init__(self, *, task: TaskSpec, model: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.model = model

    @property
    def state(self) -> DistillbenchSession:
        return session_state(self.config)

    def needs(self) -> set[tuple[str, str]]:
        return {(self.model, self.task.id)}

    def runtest(self) -> None:
        self.state.run_item(self)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, (DistillbenchFailure, DistillbenchError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"{self.task.id} [{self.model} {self.kind}]"


class ScoreItem(DistillbenchItem):
    kind = "score"


class RetentionItem(DistillbenchItem):
    kind = "retention"

    def needs(self) -> set[tuple[str, str]]:
        teacher = self.state.settings.teacher_of(self.state.settings.model(self.model))
        assert teacher is not None
        return {(self.model, self.task.id), (teacher.name, self.task.id)}


class ComputeItem(RetentionItem):
    kind = "compute"


class BaselineItem(DistillbenchItem):
    kind = "baseline"


class EvidenceItem(RetentionItem):
    kind = "evidence"

    def needs(self) -> set[tuple[str, str]]:
        # The verdict is relative to the controls (or, for a control, to the students).
        settings = self.state.settings
        needed = super().needs()
        for m in settings.models:
            if m.role in ("student", "control"):
                needed.add((m.name, self.task.id))
        return needed
