"""One pandas DataFrame of the session's results -> terminal table, run files, CSV.

The terminal table is the primary output: one row per task, shown with ``-q`` too (it is written
by the terminal summary hook, after output capture has ended).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..measures import stats

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from ..records import SessionView

MAX_NAME = 18
TABLE_WIDTH = 100  # the terminal table must stay readable in a 100-column terminal or CI log


def short(name: str, width: int = MAX_NAME) -> str:
    """Abbreviate to ``width`` keeping both ends: variants differ at the end (-small, -v2)."""
    if len(name) <= width:
        return name
    head = width // 2
    return name[:head] + "~" + name[len(name) - (width - 1 - head):]


def short_names(names: list[str], width: int) -> dict[str, str]:
    """Abbreviations that stay distinct: when two collide, every name gets its position as tag."""
    out = {n: short(n, width) for n in names}
    if len(set(out.values())) == len(out):
        return out
    # Each result ends with "#<i>" and no i contains "#", so equal results would need equal i.
    return {n: short(n, width - len(f"#{i}")) + f"#{i}" for i, n in enumerate(out, 1)}


def shown_models(state: SessionView) -> list[Any]:
    """The models the score tables list: a reference alone (``scored = false``) has no score
    items; its accuracies are in the evidence section."""
    return [m for m in state.settings.models if m.scored]


def summary_frame(state: SessionView) -> pd.DataFrame:
    """One row per (task, model): the numbers every report is built from."""
    import pandas as pd

    from ..measures.figures import compute_figures, retention_figures

    rows: list[dict[str, Any]] = []
    runs = state.runs()
    settings = state.settings
    for task_id, task in state.tasks.items():
        for model in shown_models(state):
            run = runs.get((model.name, task_id))
            row: dict[str, Any] = {
                "suite": task.suite, "task": task.name, "task_id": task_id, "difficulty": task.difficulty,
                "model": model.name, "role": model.role, "metric": task.metric_key,
            }
            if run is None:
                rows.append(row)
                continue
            lo, hi = stats.score_interval([r.score for r in run.records])
            row.update(n=run.n, score=run.score, ci_low=lo, ci_high=hi, seconds=run.wall_seconds,
                       from_cache=run.from_cache)
            if run.repeats > 1:
                from ..measures.figures import repeat_figures

                row.update({k.replace("@", "_at_"): v for k, v in repeat_figures(run).items()})
            if run.cost is not None:
                c = run.cost
                row.update(flops=c.flops, flops_per_item=None if c.flops is None else c.flops / run.n,
                           tokens=None if c.prompt_tokens is None else c.prompt_tokens + (c.output_tokens or 0), mfu=c.mfu, dollars=c.dollars,
                           quality_per_flop=None if not c.flops else run.score / (c.flops / run.n))
            teacher = settings.teacher_of(model)
            trun = runs.get((teacher.name, task_id)) if teacher else None
            if trun is not None and model.role == "student":
                row.update(retention_figures(run, trun, settings.seed))
                row.update({k: v for k, v in compute_figures(run, trun, settings.seed).items()
                            if k in ("compute_ratio", "efficiency")})
            rows.append(row)
    frame = pd.DataFrame(rows)
    status = _task_status(state)
    if not frame.empty:
        frame["status"] = frame["task_id"].map(status).fillna("")
    return frame


def _task_status(state: SessionView) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in state.items.values():
        current = out.get(entry.task, "ok")
        if entry.outcome == "failed":
            current = "FAIL"
        elif entry.outcome == "skipped" and current == "ok":
            current = "skip"
        elif entry.outcome == "pending" and current == "ok":
            current = "-"
        out[entry.task] = current
    return out


def _cell(score: Any, lo: Any, hi: Any) -> str:
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return "-"
    return f"{score:.3f}±{(hi - lo) / 2:.3f}"


def _sci(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.2e}"


def terminal_table(state: SessionView, frame: pd.DataFrame) -> str:
    """One row per task while that fits in TABLE_WIDTH columns, else one row per (task, model)."""
    if frame.empty or "score" not in frame:
        return ""
    wide = _wide_table(state, frame)
    if max(len(line) for line in wide.splitlines()) <= TABLE_WIDTH:
        return wide
    return _long_table(state, frame)


def _wide_table(state: SessionView, frame: pd.DataFrame) -> str:
    from tabulate import tabulate

    models = shown_models(state)
    students = [m for m in models if m.role == "student"]
    names = short_names([m.name for m in models], 12)
    ret_names = short_names([s.name for s in students], 8)
    headers = ["suite", "task", "n"] + [names[m.name] for m in models]
    headers += [f"ret:{ret_names[s.name]}" for s in students]
    headers += ["FLOP/item", "status"]
    body = []
    for _task_id, group in frame.groupby("task_id", sort=False):
        by_model = {r["model"]: r for _, r in group.iterrows()}
        first = group.iloc[0]
        row = [short(first["suite"], 10), short(first["task"]), _task_n(by_model)]
        for m in models:
            r = by_model.get(m.name)
            row.append("-" if r is None else _cell(r.get("score"), r.get("ci_low"), r.get("ci_high")))
        for s in students:
            r = by_model.get(s.name)
            ret = None if r is None else r.get("retention")
            row.append("-" if _missing(ret) else f"{ret:.2f}")
        teacher = by_model.get(state.settings.teacher.name) if state.settings.teacher else None
        row.append("-" if teacher is None else _sci(teacher.get("flops_per_item")))
        status = first.get("status", "")
        row.append("FAIL <" if status == "FAIL" else status)
        body.append(row)
    return _rstrip(tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True,
                            colalign=("left", "left", "right") + ("right",) * (len(headers) - 3)))


def _long_table(state: SessionView, frame: pd.DataFrame) -> str:
    """Many models: a row each, so the width no longer grows with the number of models."""
    from tabulate import tabulate

    names = short_names([m.name for m in shown_models(state)], 16)
    status = _model_status(state)
    body = []
    for task_id, group in frame.groupby("task_id", sort=False):
        by_model = {r["model"]: r for _, r in group.iterrows()}
        first = group.iloc[0]
        for i, m in enumerate(shown_models(state)):
            r = by_model.get(m.name)
            ret = None if r is None else r.get("retention")
            st = status.get((task_id, m.name), "")
            body.append([short(first["suite"], 10) if i == 0 else "", short(first["task"]) if i == 0 else "",
                         names[m.name], _task_n(by_model) if i == 0 else "",
                         "-" if r is None else _cell(r.get("score"), r.get("ci_low"), r.get("ci_high")),
                         "-" if _missing(ret) else f"{ret:.2f}",
                         "-" if r is None else _sci(r.get("flops_per_item")),
                         "FAIL <" if st == "FAIL" else st])
    headers = ["suite", "task", "model", "n", "score", "ret", "FLOP/item", "status"]
    return _rstrip(tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True,
                            colalign=("left", "left", "left", "right", "right", "right", "right", "left")))


def _rstrip(table: str) -> str:
    return "\n".join(line.rstrip() for line in table.splitlines())


def _task_n(by_model: dict[str, Any]) -> Any:
    n = next((int(r["n"]) for r in by_model.values() if not _missing(r.get("n"))), None)
    return "-" if n is None else n


def _model_status(state: SessionView) -> dict[tuple[str, str], str]:
    """Like ``_task_status`` but per (task, model), so the failing model's row is the marked one."""
    rank = {"FAIL": 3, "skip": 2, "-": 1, "ok": 0}
    label = {"failed": "FAIL", "skipped": "skip", "pending": "-", "passed": "ok"}
    out: dict[tuple[str, str], str] = {}
    for entry in state.items.values():
        key = (entry.task, entry.model)
        now = label.get(entry.outcome, "-")
        if rank[now] >= rank.get(out.get(key, "ok"), 0):
            out[key] = now
    return out


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def cost_table(state: SessionView, frame: pd.DataFrame) -> str:
    """Per model: FLOPs per item, quality per FLOP, compute ratio, efficiency, MFU (suite means)."""
    from tabulate import tabulate

    if frame.empty or "flops_per_item" not in frame:
        return ""
    body = []
    for model in shown_models(state):
        sub = frame[frame["model"] == model.name]
        if sub.empty or "score" not in sub or sub["score"].isna().all():
            continue

        def mean(col: str, sub: Any = sub) -> Any:
            if col not in sub:
                return None
            vals = sub[col].dropna()
            return None if vals.empty else float(vals.mean())

        body.append([short(model.name, 12), model.role, _fmt(mean("score")), _sci(mean("flops_per_item")),
                     _sci(mean("quality_per_flop")), _fmt(mean("compute_ratio"), 4),
                     _fmt(mean("efficiency"), 2), _pct(mean("mfu"))])
    headers = ["model", "role", "mean score", "FLOP/item", "score/FLOP", "compute ratio",
               "efficiency", "MFU"]
    return tabulate(body, headers=headers, tablefmt="simple", disable_numparse=True)


def _fmt(x: Any, digits: int = 3) -> str:
    return "-" if _missing(x) else f"{x:.{digits}f}"


def _pct(x: Any) -> str:
    return "-" if _missing(x) else f"{100 * x:.2f}%"


def write_outputs(state: SessionView, terminalreporter: Any) -> None:
    from ..store.runfiles import write_run_files

    frame = summary_frame(state)
    table = terminal_table(state, frame)
    if not table:
        return
    tr = terminalreporter
    tr.write_sep("=", "distillbench summary")
    tr.write_line(table)
    costs = cost_table(state, frame)
    if costs:
        tr.write_line("")
        tr.write_line("compute (means over tasks; FLOPs are analytic unless stated):")
        tr.write_line(costs)
    evidence = state.extra.get("evidence")
    if evidence is not None:
        from .evidence import evidence_section

        text = evidence_section(evidence)
        if text:
            tr.write_line("")
            tr.write_line(text)
    for warning in state.warnings:
        tr.write_line(f"warning: {warning}")
    for writer in (write_run_files, write_shareable_reports):
        try:
            written = writer(state, frame)
        except OSError as exc:
            # the paths were checked before the run; this is a disk that filled up or a folder
            # removed meanwhile: one line, not a traceback after the whole run
            tr.write_line(f"distillbench: cannot write {exc.filename or 'an output file'} "
                          f"({exc.strerror or exc})\n  fix: free space or choose another path")
            continue
        for path in written:
            tr.write_line(f"distillbench: wrote {path}")


def write_shareable_reports(state: SessionView, frame: pd.DataFrame) -> list[Path]:
    """``--distillbench-report DIR`` (plot + HTML) and ``--distillbench-markdown PATH``."""
    settings = state.settings
    if not state.runs() or not (settings.report_dir or settings.markdown_path):
        return []
    from ..store.runfiles import run_document

    doc = run_document(state, frame)
    written: list[Path] = []
    if settings.report_dir:
        from .html import write_session_report

        written += write_session_report(state, doc, settings.report_dir)
    if settings.markdown_path:
        from .markdown import write_markdown

        written.append(write_markdown(doc, settings.markdown_path))
    return written
