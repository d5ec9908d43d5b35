"""The distillation evidence in the terminal report: one row per task and model, the reasons
a task was not flagged, and a verdict per model (the statistics are ``measures/evidence.py``'s)."""

from __future__ import annotations

from ..measures.evidence import (
    FLAGGED,
    TEST_DESCRIPTION,
    ProbeSummary,
    SessionEvidence,
    fmt_num,
    fmt_p,
)


def _task_list(tasks: list[str]) -> str:
    return ", ".join(tasks) if len(tasks) <= 3 else f"{len(tasks)} tasks ({tasks[0]}, ...)"


def _probe_cell(probe: ProbeSummary | None) -> str:
    if probe is None or probe.top1 is None:
        return "n/a"
    return f"{probe.top1:.2f}/{probe.kl:.3f}"


def evidence_rows(result: SessionEvidence) -> list[list[str]]:
    rows = []
    for ev in result.tasks:
        p = ev.pair
        rows.append([
            ev.task, ev.model, ",".join(ev.references) or "-", str(p.n),
            f"{p.accuracy:.2f}/{p.teacher_accuracy:.2f}", f"{p.agreement:.2f}",
            f"{fmt_num(p.same_wrong)} ({fmt_num(ev._reference_mean('same_wrong'))})",
            f"{p.kappa:.2f} [{fmt_num(p.kappa_low)},{fmt_num(p.kappa_high)}]",
            fmt_num(ev._reference_mean("kappa")),
            f"{fmt_num(p.wrong_order)} ({fmt_num(ev._reference_mean('wrong_order'))})",
            fmt_num(p.jsd, 3), _probe_cell(ev.probe),
            fmt_p(ev.p_holm), ev.status.upper() if ev.status == FLAGGED else ev.status,
        ])
    return rows


def evidence_section(result: SessionEvidence) -> str:
    """Terminal report: statistics per task and model, reasons, and a verdict per model."""
    from tabulate import tabulate

    if not result.tasks:
        return ""
    headers = ["task", "model", "vs", "n", "acc/teacher", "agree", "same wrong (refs)",
               "kappa [95% CI]", "kappa refs", "wrong order (refs)", "JSD", "probe top1/KL",
               "p Holm", "verdict"]
    lines = [f"distillation evidence (alpha {result.alpha:g}; {TEST_DESCRIPTION}):",
             tabulate(evidence_rows(result), headers=headers, tablefmt="simple", disable_numparse=True)]
    grouped: dict[tuple[str, str], list[str]] = {}
    for ev in result.tasks:
        if ev.status != FLAGGED:
            grouped.setdefault((ev.model, ev.reason), []).append(ev.task)
    notes = [f"  {_task_list(tasks)} [{model}]: {reason}" for (model, reason), tasks in grouped.items()]
    if notes:
        lines += ["why not flagged:", *notes]
    lines += ["verdict per model:", *(f"  {m.line()}" for m in result.models)]
    lines += [f"  left out: {s}" for s in result.skipped]
    return "\n".join(lines)
