"""The distillation evidence in the terminal report: one row per task and model (figures beside
the references' means), a verdict per model with the suspect's statistics beside the
references' (a strip per statistic), and the controls' calibration check (the statistics and
the tests are ``measures/evidence.py``'s and ``measures/population.py``'s)."""

from __future__ import annotations

from ..measures.evidence import (
    FLAGGED,
    TEST_DESCRIPTION,
    ProbeSummary,
    SessionEvidence,
    TaskEvidence,
    fmt_num,
    fmt_p,
)
from ..measures.population import ASSUMPTIONS, METHOD_NAMES


def _probe_cell(probe: ProbeSummary | None) -> str:
    if probe is None or probe.top1 is None:
        return "n/a"
    return f"{probe.top1:.2f}/{probe.kl:.3f}"


def _rank_cell(ev: TaskEvidence) -> str:
    """This task's statistics as rank among the suspect and its references (1 = most like the
    teacher), e.g. ``kappa 1/9``."""
    short = {"kappa": "kappa", "same_wrong_answer": "wrong", "choice_order": "order"}
    return " ".join(f"{short.get(t.statistic.name, t.statistic.name)} {t.rank}/{len(t.references) + 1}"
                    for t in ev.tests) or "-"


def evidence_rows(result: SessionEvidence) -> list[list[str]]:
    """Rows of the suspects; a control's rows (it against the others) only when no other model
    is asked about, the calibration lines speak for the controls otherwise (the run file keeps
    every row)."""
    rows = []
    suspects = [ev for ev in result.tasks if ev.reference_kind != "other controls"] or list(result.tasks)
    for ev in suspects:
        p = ev.pair
        rows.append([
            ev.task, ev.model, str(len(ev.references)), str(p.n),
            f"{p.accuracy:.2f}/{p.teacher_accuracy:.2f}", f"{p.agreement:.2f}",
            f"{fmt_num(p.same_wrong)} ({fmt_num(ev._reference_mean('same_wrong'))})",
            f"{p.kappa:.2f} ({fmt_num(ev._reference_mean('kappa'))})",
            f"{fmt_num(p.wrong_order)} ({fmt_num(ev._reference_mean('wrong_order'))})",
            _probe_cell(ev.probe), _rank_cell(ev),
            ev.status.upper() if ev.status == FLAGGED else ev.status,
        ])
    return rows


def evidence_section(result: SessionEvidence) -> str:
    """Terminal report: figures per task and model, a verdict per model, the calibration."""
    from tabulate import tabulate

    if not result.tasks and not result.models:
        return ""
    headers = ["task", "model", "refs", "n", "acc/teacher", "agree", "same wrong (refs)",
               "kappa (refs)", "wrong order (refs)", "probe top1/KL", "rank among refs", "verdict"]
    lines = [f"distillation evidence (alpha {result.alpha:g}; {TEST_DESCRIPTION}):",
             tabulate(evidence_rows(result), headers=headers, tablefmt="simple", disable_numparse=True),
             "verdict per model (strips: each reference |, the suspect *, lowest to highest):"]
    # suspects first, in full; each control with its deciding statistic
    for m in sorted(result.models, key=lambda m: m.reference_kind == "other controls"):
        lines.append(f"  {m.line()}")
        lines += [f"      {s}" for s in m.strips(limit=1 if m.reference_kind == "other controls" else 6)]
    methods = dict.fromkeys(m.population.method for m in result.models if m.population.method)
    lines += [f"  {METHOD_NAMES[x]} assumes {ASSUMPTIONS[x]}" for x in methods]
    for teacher, calibration in result.calibration:
        if calibration.verdicts:
            lines += [f"  {line}" for line in calibration.lines()]
            lines.append(f"    (controls of {teacher}; a control's verdict is taken on its Holm p)")
    lines += [f"  left out: {s}" for s in result.skipped]
    return "\n".join(lines)


__all__ = ["evidence_rows", "evidence_section", "fmt_p"]
