"""Quality against compute: one panel per suite, FLOPs per item on a log axis, the Pareto front.

Each model is one marker per suite (its share of the suite's items scored correct, with a 95%
Wilson interval as error bars); a baseline run's positions are drawn faintly beside the
current ones. matplotlib is imported only when a plot is drawn, and through ``Figure`` with the
Agg canvas rather than pyplot, so no GUI backend is ever touched and the global backend of the
user's process stays as it was.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..measures import stats

ROLE_MARKERS = {"teacher": "*", "student": "o", "control": "s"}
ROLE_ORDER = {"teacher": 0, "student": 1, "control": 2}
# Baseline markers sit this factor left of their FLOPs, so an unchanged model shows both markers
# side by side instead of one hiding the other (said so in the legend).
BASELINE_NUDGE = 0.85


@dataclass(frozen=True)
class TaskScore:
    """One model's result on one task, from a summary row or a baseline file."""

    suite: str
    task: str
    model: str
    role: str
    n: int
    score: float
    flops_per_item: float | None


@dataclass(frozen=True)
class SuitePoint:
    """One model's position in one suite's panel."""

    suite: str
    model: str
    role: str
    n: int
    score: float
    ci_low: float
    ci_high: float
    flops_per_item: float | None


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def task_scores(summary: Iterable[Mapping[str, Any]]) -> list[TaskScore]:
    """Rows of a run file's ``summary`` that have a score (a model that did not run has none)."""
    out = []
    for row in summary:
        score, n = _number(row.get("score")), _number(row.get("n"))
        if score is None or not n:
            continue
        out.append(TaskScore(suite=str(row["suite"]), task=str(row["task"]), model=str(row["model"]),
                             role=str(row.get("role") or ""), n=int(n), score=score,
                             flops_per_item=_number(row.get("flops_per_item"))))
    return out


def suite_points(scores: Iterable[TaskScore]) -> list[SuitePoint]:
    """Pool each model's tasks of a suite: items correct over items, FLOPs over items.

    Pooling items (not averaging task scores) keeps the Wilson interval honest for the number of
    items actually seen. The FLOPs of a suite are unknown when those of any of its tasks are.
    """
    groups: dict[tuple[str, str], list[TaskScore]] = {}
    for s in scores:
        groups.setdefault((s.suite, s.model), []).append(s)
    points = []
    for (suite, model), group in groups.items():
        n = sum(s.n for s in group)
        correct = sum(s.score * s.n for s in group)
        successes = min(n, max(0, round(correct)))
        lo, hi = stats.wilson_interval(successes, n)
        flops = None
        if all(s.flops_per_item is not None for s in group):
            flops = sum(s.flops_per_item * s.n for s in group) / n  # type: ignore[operator]
        points.append(SuitePoint(suite=suite, model=model, role=group[0].role, n=n, score=correct / n,
                                 ci_low=min(lo, correct / n), ci_high=max(hi, correct / n),
                                 flops_per_item=flops))
    return points


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, quality) points no other point beats, cheapest first.

    A point is beaten when another costs no more and scores no less, and is strictly better in
    one of the two. Of exact duplicates the first is kept, so the front has no repeated position.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _model_order(points: Iterable[SuitePoint]) -> list[str]:
    first: dict[str, tuple[int, int]] = {}
    for i, p in enumerate(points):
        first.setdefault(p.model, (ROLE_ORDER.get(p.role, 3), i))
    return sorted(first, key=first.__getitem__)


def pareto_png(current: Sequence[SuitePoint], *, baseline: Sequence[SuitePoint] = (),
               title: str = "") -> bytes:
    """One panel per suite, as PNG bytes (written to disk and embedded in HTML alike)."""
    from io import BytesIO

    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    suites = list(dict.fromkeys(p.suite for p in current))
    if not suites:
        raise ValueError("no scored results to plot")
    models = _model_order([*current, *baseline])
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
               "#17becf", "#bcbd22", "#7f7f7f"]
    colour = {m: palette[i % len(palette)] for i, m in enumerate(models)}
    cols = min(3, len(suites))
    rows = math.ceil(len(suites) / cols)
    fig = Figure(figsize=(5.4 * cols, 4.3 * rows + 0.9), dpi=110, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(suites):]:
        ax.set_visible(False)
    for ax, suite in zip(axes[: len(suites)], suites, strict=True):
        here = [p for p in current if p.suite == suite]
        before = {p.model: p for p in baseline if p.suite == suite and p.flops_per_item}
        _draw_suite(ax, suite, here, before, colour)
    handles = [Line2D([], [], color=colour[m], marker=ROLE_MARKERS.get(_role(m, current, baseline), "D"),
                      linestyle="", markersize=8, label=f"{m} ({_role(m, current, baseline)})")
               for m in models]
    handles.append(Line2D([], [], color="0.35", linestyle="--", label="Pareto front"))
    if baseline:
        handles.append(Line2D([], [], color="0.5", marker="o", markerfacecolor="none", alpha=0.45,
                              linestyle=":", label="baseline (drawn just left)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)
    if title:
        fig.suptitle(title)
    buffer = BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _role(model: str, *groups: Sequence[SuitePoint]) -> str:
    for group in groups:
        for p in group:
            if p.model == model:
                return p.role
    return ""


def _draw_suite(ax: Any, suite: str, here: list[SuitePoint], before: dict[str, SuitePoint],
                colour: dict[str, str]) -> None:
    known = [p for p in here if p.flops_per_item]
    unknown = [p.model for p in here if not p.flops_per_item]
    for p in before.values():  # faint first, so the current markers sit on top
        x = p.flops_per_item * BASELINE_NUDGE  # type: ignore[operator]
        ax.errorbar(x, p.score, yerr=[[p.score - p.ci_low], [p.ci_high - p.score]],
                    fmt=ROLE_MARKERS.get(p.role, "D"), color=colour[p.model], markerfacecolor="none",
                    alpha=0.35, capsize=2, markersize=7)
        now = next((q for q in known if q.model == p.model), None)
        if now is not None:
            ax.plot([x, now.flops_per_item], [p.score, now.score], ":",
                    color=colour[p.model], alpha=0.4)
    for p in known:
        ax.errorbar(p.flops_per_item, p.score, yerr=[[p.score - p.ci_low], [p.ci_high - p.score]],
                    fmt=ROLE_MARKERS.get(p.role, "D"), color=colour[p.model], capsize=3,
                    markersize=11 if p.role == "teacher" else 7, zorder=3)
    # Models at one position (e.g. a control that is a copy of the teacher) share one label.
    labels: dict[tuple[float, float], list[SuitePoint]] = {}
    for p in known:
        labels.setdefault((float(f"{p.flops_per_item:.4g}"), round(p.score, 4)), []).append(p)
    for group in labels.values():
        ax.annotate(", ".join(p.model for p in group), (group[0].flops_per_item, group[0].score),
                    textcoords="offset points", xytext=(6, 5), fontsize=8,
                    color=colour[group[0].model] if len(group) == 1 else "0.2")
    if known:
        front = [known[i] for i in pareto_front([(p.flops_per_item, p.score) for p in known])]  # type: ignore[misc]
        xs = [p.flops_per_item for p in front]
        ys = [p.score for p in front]
        # The front as attainable quality for a budget: flat until the next cheapest better model.
        ax.step(xs + [max(xs) * 10], ys + [ys[-1]], where="post", linestyle="--", color="0.35",
                linewidth=1, zorder=2)
        xs_all = [p.flops_per_item for p in known] + [p.flops_per_item for p in before.values()]
        ax.set_xlim(min(xs_all) / 2.5, max(xs_all) * 2.5)  # type: ignore[type-var,operator]
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(True, which="major", alpha=0.3)
    items = max((p.n for p in here), default=0)
    ax.set_title(f"{suite} ({items} items)")
    ax.set_xlabel("FLOPs per item (log scale)")
    ax.set_ylabel("share of items correct (95% CI)")
    if unknown:
        ax.text(0.02, 0.02, "FLOPs unknown: " + ", ".join(unknown), transform=ax.transAxes,
                fontsize=7, color="0.3")
