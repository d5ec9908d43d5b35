"""A Markdown summary of a run for a CI job summary or a pull-request comment.

Short on purpose: the verdict first, one table row per task, the regressions with their
statistics, and each failure's message folded away in ``<details>``. Everything else is in
the HTML report and the run file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .html import fmt, item_status, models_of, number

MAX_FAILURES = 20  # pull-request comments are capped in length; the HTML report has them all


def cell(value: Any) -> str:
    """Table cell text: a pipe would end the cell and a newline the row."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    align = ["---:" if i in right else ":---" for i in range(len(headers))]
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _score(row: Mapping[str, Any] | None) -> str:
    if row is None or number(row.get("score")) is None:
        return "-"
    lo, hi = number(row.get("ci_low")), number(row.get("ci_high"))
    return fmt(row["score"]) + ("" if lo is None or hi is None else f" ±{(hi - lo) / 2:.3f}")


def _fence(text: str) -> str:
    fence = "~~~" if "```" in text else "```"
    return f"{fence}\n{text}\n{fence}"


def markdown_summary(doc: Mapping[str, Any]) -> str:
    items = doc.get("items", {})
    failed = [(nodeid, e) for nodeid, e in items.items() if e["outcome"] == "failed"]
    headline = (f"**FAILED**: {len(failed)} of {len(items)} items" if failed
                else f"**passed**: {sum(e['outcome'] == 'passed' for e in items.values())} of "
                     f"{len(items)} items passed")
    out = [f"## distillbench: {headline}", "",
           f"commit `{doc.get('git_commit') or 'none'}`, {doc.get('created', '?')}; scores with "
           "the half-width of their 95% Wilson interval", "", task_table(doc)]
    regressions = regression_table(doc)
    if regressions:
        out += ["", "### Against the baselines", "", regressions]
    if failed:
        out += ["", "### Failures", ""]
        for nodeid, e in failed[:MAX_FAILURES]:
            out += [f"<details><summary><code>{_html_text(nodeid)}</code></summary>", "",
                    _fence(e.get("message") or "(no message)"), "", "</details>"]
        if len(failed) > MAX_FAILURES:
            out.append(f"\nand {len(failed) - MAX_FAILURES} more failures (see the HTML report)")
    return "\n".join(out) + "\n"


def _html_text(text: str) -> str:
    from html import escape

    return escape(text)


def task_table(doc: Mapping[str, Any]) -> str:
    models = models_of(doc)
    students = [m for m, role in models if role == "student"]
    teacher = next((m for m, role in models if role == "teacher"), None)
    status = item_status(doc)
    by_task: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in doc.get("summary", []):
        by_task.setdefault(r["task_id"], {})[r["model"]] = r
    rows = []
    for task_id, by_model in by_task.items():
        n = next((r.get("n") for r in by_model.values() if number(r.get("n")) is not None), None)
        failed = any(status.get((task_id, m)) == "failed" for m, _ in models)
        row = [task_id, "-" if n is None else int(n)]
        row += [_score(by_model.get(m)) for m, _ in models]
        row += [fmt((by_model.get(s) or {}).get("retention"), ".2f") for s in students]
        row += [fmt((by_model.get(teacher) or {}).get("flops_per_item"), ".3g"),
                "**FAIL**" if failed else "ok"]
        rows.append(row)
    headers = ["task", "n", *(m for m, _ in models), *(f"retention {s}" for s in students),
               "teacher FLOPs/item", "status"]
    return md_table(headers, rows, right=range(1, len(headers) - 1))


def regression_table(doc: Mapping[str, Any]) -> str:
    """The compared baseline items (those with a p-value) that changed or failed; the rest counted."""
    rows, unchanged = [], 0
    for e in doc.get("items", {}).values():
        f = e.get("figures", {})
        if e["kind"] != "baseline" or number(f.get("p_value")) is None:
            continue
        if f.get("regressed"):
            verdict = "**REGRESSED**"
        elif e["outcome"] == "failed":
            verdict = "**FAIL** (cost)"
        elif f.get("improved"):
            verdict = "improved"
        else:
            unchanged += 1
            continue
        rows.append([e["task"], e["model"], fmt(f.get("baseline_score")), fmt(f.get("score")),
                     f.get("lost", "-"), f.get("gained", "-"), fmt(f.get("p_holm"), ".3g"), verdict])
    if not rows and not unchanged:
        return ""
    note = f"{unchanged} compared with no significant change"
    if not rows:
        return note
    table = md_table(["task", "model", "baseline", "now", "lost", "gained", "p (Holm)", "verdict"],
                     rows, right=range(2, 7))
    return f"{table}\n\n{note}" if unchanged else table


def write_markdown(doc: Mapping[str, Any], path: Path) -> Path:
    from ..fileio import atomic_write_text

    atomic_write_text(path, markdown_summary(doc))
    return path
