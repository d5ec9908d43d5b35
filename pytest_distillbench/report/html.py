"""One self-contained HTML report per run: tables, the plot, verdicts, evidence, environment.

The file embeds its images as ``data:`` URIs and carries no script, stylesheet link or font
from elsewhere, so it opens from disk, offline, and can be mailed or attached to a CI job.
It is built from a run document: ``runfiles.run_document`` in a live session (runs as dicts)
or ``runfiles.load_run`` from a stored file (runs as ``TaskRun``); both are accepted.
"""

from __future__ import annotations

import base64
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..records import TaskRun
from .plot import SuitePoint, pareto_png, suite_points, task_scores

if TYPE_CHECKING:
    from ..records import SessionView
    from .compare import ComparisonRow

PLOT_NAME = "pareto.png"
REPORT_NAME = "report.html"
MAX_CHANGED = 25  # rows of changed items shown per failure; the rest are counted
PROMPT_TAIL = 600  # few-shot prompts are long; the question is at their end

Key = tuple[str, str]  # (task id, model)


# -- reading a run document ------------------------------------------------------------------

def task_runs(doc: Mapping[str, Any]) -> dict[Key, TaskRun]:
    out = {}
    for run in doc.get("runs", []):
        run = run if isinstance(run, TaskRun) else TaskRun.from_dict(run)
        out[(run.task, run.model)] = run
    return out


def models_of(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, role) of every model, in the session's order."""
    declared = [(m["name"], m["role"]) for m in doc.get("settings", {}).get("models", [])]
    if declared:
        return declared
    return list(dict.fromkeys((r["model"], r.get("role", "")) for r in doc.get("summary", [])))


def teachers_of(doc: Mapping[str, Any]) -> dict[str, str]:
    """Each non-teacher model's teacher (its declared one, else the session's teacher)."""
    specs = doc.get("settings", {}).get("models", [])
    default = next((m["name"] for m in specs if m["role"] == "teacher"), None)
    return {m["name"]: m.get("teacher") or default for m in specs
            if m["role"] != "teacher" and (m.get("teacher") or default)}


def item_status(doc: Mapping[str, Any]) -> dict[Key, str]:
    """Worst outcome over the items of each (task, model): failed > skipped > passed."""
    rank = {"failed": 3, "skipped": 2, "passed": 1}
    out: dict[Key, str] = {}
    for entry in doc.get("items", {}).values():
        key = (entry["task"], entry["model"])
        if rank.get(entry["outcome"], 0) > rank.get(out.get(key, ""), 0):
            out[key] = entry["outcome"]
    return out


def failed_items(doc: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(nodeid, e) for nodeid, e in doc.get("items", {}).items() if e["outcome"] == "failed"]


def number(x: Any) -> float | None:
    if x is None or isinstance(x, (bool, str)):
        return None
    x = float(x)
    return None if math.isnan(x) else x


def fmt(x: Any, spec: str = ".3f") -> str:
    value = number(x)
    return "-" if value is None else format(value, spec)


# -- what changed under a failure ------------------------------------------------------------

@dataclass(frozen=True)
class ChangedItem:
    doc_hash: str
    prompt: str
    target: str
    response: str
    score: float
    reference_response: str | None  # None when only the reference's score is stored
    reference_score: float | None  # None when there is no reference (items got wrong)

    @property
    def lost(self) -> bool:
        return self.reference_score is not None and self.reference_score >= 0.5 > self.score


def changed_items(current: TaskRun, reference: TaskRun | Mapping[str, float] | None) -> list[ChangedItem]:
    """Items whose correctness differs from the reference, those it lost first.

    ``reference`` is another run (baseline run or teacher: both responses are known), a baseline
    file's per-item scores (the old response is not stored), or None (the items it got wrong).
    """
    if reference is None:
        return [ChangedItem(r.doc_hash, r.prompt, r.target, r.response, r.score, None, None)
                for r in current.records if not r.correct]
    if isinstance(reference, TaskRun):
        by_hash = {r.doc_hash: r for r in reference.records}
        pairs = [(r, by_hash[r.doc_hash].score, by_hash[r.doc_hash].response)
                 for r in current.records if r.doc_hash in by_hash]
    else:
        pairs = [(r, float(reference[r.doc_hash]), None) for r in current.records if r.doc_hash in reference]
    out = [ChangedItem(r.doc_hash, r.prompt, r.target, r.response, r.score, resp, ref)
           for r, ref, resp in pairs if (ref >= 0.5) != r.correct]
    return sorted(out, key=lambda c: not c.lost)


# -- the baseline a report is drawn against ---------------------------------------------------

@dataclass(frozen=True)
class BaselineView:
    """Where the current run is compared from: a baseline run file or the baselines/ folder."""

    label: str
    points: tuple[SuitePoint, ...] = ()
    runs: Mapping[Key, TaskRun] = field(default_factory=dict)  # responses known
    scores: Mapping[Key, Mapping[str, float]] = field(default_factory=dict)  # scores only

    def reference(self, key: Key) -> TaskRun | Mapping[str, float] | None:
        return self.runs.get(key) or self.scores.get(key)


NO_BASELINE = BaselineView(label="")


def baseline_from_run(doc: Mapping[str, Any], label: str) -> BaselineView:
    return BaselineView(label=label, points=tuple(suite_points(task_scores(doc.get("summary", [])))),
                        runs=task_runs(doc))


def baseline_from_folder(state: SessionView) -> BaselineView:
    """The stored baselines of a live session's (task, model) pairs; unreadable ones are left out
    (their items already report them)."""
    from ..errors import DistillbenchError
    from ..store.baselines import baseline_path, read_baseline
    from .plot import TaskScore

    scores: dict[Key, Mapping[str, float]] = {}
    rows = []
    for task_id, task in state.tasks.items():
        for model in state.settings.models:
            try:
                base = read_baseline(baseline_path(state.settings.baselines_dir, task, model.name,
                                                   model.backend))
            except DistillbenchError:
                continue
            if base is None:
                continue
            scores[(task_id, model.name)] = base.items
            flops = number((base.data.get("cost") or {}).get("flops_per_item"))
            rows.append(TaskScore(suite=task.suite, task=task.name, model=model.name, role=model.role,
                                  n=int(base.data["n"]), score=base.score, flops_per_item=flops))
    return BaselineView(label=str(state.settings.baselines_dir), points=tuple(suite_points(rows)),
                        scores=scores)


# -- writing ----------------------------------------------------------------------------------

def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # a shared report, not a private temp file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(doc: Mapping[str, Any], out_dir: Path, *, baseline: BaselineView = NO_BASELINE) -> list[Path]:
    """The plot (when anything was scored) and report.html in ``out_dir``; returns their paths."""
    points = suite_points(task_scores(doc.get("summary", [])))
    written = []
    png = None
    if points:
        png = pareto_png(points, baseline=baseline.points, title="quality against compute")
        _write_bytes(out_dir / PLOT_NAME, png)
        written.append(out_dir / PLOT_NAME)
    _write_bytes(out_dir / REPORT_NAME, render_report(doc, plot=png, baseline=baseline).encode("utf-8"))
    written.append(out_dir / REPORT_NAME)
    return written


def report_from_run_file(run_file: Path, out_dir: Path, *, baseline: Path | None = None) -> list[Path]:
    """``distillbench report RUN_FILE [--baseline RUN]``: plot and HTML from stored runs."""
    from ..store.runfiles import load_run

    doc = load_run(run_file)
    view = NO_BASELINE if baseline is None else baseline_from_run(load_run(baseline), str(baseline))
    return write_report(doc, out_dir, baseline=view)


def write_session_report(state: SessionView, doc: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Live session: against the baselines/ folder, unless this run is rewriting it."""
    view = NO_BASELINE if state.settings.update_baselines else baseline_from_folder(state)
    return write_report(doc, out_dir, baseline=view)


# -- HTML building blocks ---------------------------------------------------------------------

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;
 padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ddd;padding:.25em .55em}
th{background:#f3f3f3;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fail td{background:#fde8e8}tr.skip td{color:#777}.ci{color:#666;font-size:.85em}
.badge{display:inline-block;padding:.1em .6em;border-radius:.8em;color:#fff;font-weight:600}
.badge.ok{background:#2e7d32}.badge.fail{background:#c62828}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;white-space:pre-wrap}
.scroll{overflow-x:auto}img{max-width:100%}code{font-size:.9em}.muted{color:#666}
code.txt{white-space:pre-wrap;background:#f1f1f1}
"""


def _cell(value: Any, cls: str = "") -> str:
    text = value if isinstance(value, Raw) else escape(str(value))
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


class Raw(str):
    """Markup built here, not to be escaped again."""


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric: Iterable[int] = (),
          row_classes: Sequence[str] | None = None) -> str:
    numeric = set(numeric)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes else ""
        cells = "".join(_cell(v, "num" if j in numeric else "") for j, v in enumerate(row))
        body.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def score_with_ci(score: Any, lo: Any, hi: Any) -> Raw:
    if number(score) is None:
        return Raw("-")
    ci = f' <span class="ci">[{fmt(lo, ".2f")}, {fmt(hi, ".2f")}]</span>' if number(lo) is not None else ""
    return Raw(f"{fmt(score)}{ci}")


def image(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def _row_class(status: str) -> str:
    return {"failed": "fail", "skipped": "skip"}.get(status, "")


# -- the report -------------------------------------------------------------------------------

def render_report(doc: Mapping[str, Any], *, plot: bytes | None, baseline: BaselineView = NO_BASELINE) -> str:
    failures = failed_items(doc)
    items = doc.get("items", {})
    verdict = "fail" if failures else "ok"
    head = (f"<h1>distillbench report "
            f'<span class="badge {verdict}">{"FAILED" if failures else "PASSED"}</span></h1>'
            f'<p class="muted">created {escape(str(doc.get("created", "?")))}, commit '
            f'<code>{escape(str(doc.get("git_commit") or "none"))}</code>; '
            f"{len(items)} items: {_outcome_counts(items)}"
            + (f"; baseline: <code>{escape(baseline.label)}</code>" if baseline.label else "") + "</p>")
    parts = [head, "<h2>Summary</h2>", summary_table(doc)]
    parts += ["<h2>Quality against compute</h2>",
              image(plot, "score against FLOPs per item, one panel per suite") if plot
              else '<p class="muted">no scored results to plot</p>',
              '<p class="muted">Share of each suite\'s items answered correctly (95% Wilson interval) '
              "against FLOPs per item; dashed: the Pareto front (best quality attainable for a "
              "budget); hollow, drawn just left of their FLOPs so both stay visible: the baseline's "
              "positions.</p>"]
    parts += ["<h2>Suites</h2>", suite_tables(doc)]
    parts += ["<h2>Regression verdicts</h2>", verdict_table(doc)]
    parts += ["<h2>Distillation evidence</h2>", evidence_html(doc)]
    parts += ["<h2>Failures</h2>", failures_html(doc, baseline) if failures
              else '<p class="muted">none</p>']
    parts += ["<h2>Environment and fingerprints</h2>", environment_html(doc)]
    return page("distillbench report", "\n".join(parts))


def _outcome_counts(items: Mapping[str, Any]) -> str:
    counts: dict[str, int] = {}
    for e in items.values():
        counts[e["outcome"]] = counts.get(e["outcome"], 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"


def summary_table(doc: Mapping[str, Any]) -> str:
    """One row per task: every model's score, each student's retention, the teacher's FLOPs."""
    models = models_of(doc)
    students = [m for m, role in models if role == "student"]
    teacher = next((m for m, role in models if role == "teacher"), None)
    status = item_status(doc)
    rows, classes = [], []
    by_task: dict[str, dict[str, dict[str, Any]]] = {}
    for r in doc.get("summary", []):
        by_task.setdefault(r["task_id"], {})[r["model"]] = r
    for task_id, by_model in by_task.items():
        first = next(iter(by_model.values()))
        n = next((r.get("n") for r in by_model.values() if number(r.get("n")) is not None), None)
        worst = max((status.get((task_id, m), "") for m, _ in models),
                    key=lambda s: {"failed": 2, "skipped": 1}.get(s, 0))
        row = [first["suite"], first["task"], "-" if n is None else int(n)]
        row += [score_with_ci(*(by_model.get(m, {}).get(k) for k in ("score", "ci_low", "ci_high")))
                for m, _ in models]
        row += [fmt(by_model.get(s, {}).get("retention"), ".2f") for s in students]
        row += [fmt(by_model.get(teacher, {}).get("flops_per_item"), ".3g"), worst or "-"]
        rows.append(row)
        classes.append(_row_class(worst))
    headers = ["suite", "task", "n"] + [f"{m} ({role})" for m, role in models]
    headers += [f"retention {s}" for s in students] + ["teacher FLOPs/item", "status"]
    numeric = range(2, len(headers) - 1)
    return table(headers, rows, numeric=numeric, row_classes=classes)


def suite_tables(doc: Mapping[str, Any]) -> str:
    status = item_status(doc)
    suites: dict[str, list[dict[str, Any]]] = {}
    for r in doc.get("summary", []):
        suites.setdefault(r["suite"], []).append(r)
    headers = ["task", "model", "role", "n", "score [95% CI]", "FLOPs/item", "score/FLOP", "retention [95% CI]",
               "compute ratio", "efficiency", "seconds", "status"]
    out = []
    for suite, rows in suites.items():
        body, classes = [], []
        for r in rows:
            st = status.get((r["task_id"], r["model"]), "-")
            retention = (score_with_ci(r.get("retention"), r.get("retention_low"), r.get("retention_high"))
                         if number(r.get("retention")) is not None else "-")
            body.append([r["task"], r["model"], r.get("role", ""), fmt(r.get("n"), ".0f"),
                         score_with_ci(r.get("score"), r.get("ci_low"), r.get("ci_high")),
                         fmt(r.get("flops_per_item"), ".3g"), fmt(r.get("quality_per_flop"), ".3g"),
                         retention, fmt(r.get("compute_ratio"), ".4f"), fmt(r.get("efficiency"), ".2f"),
                         fmt(r.get("seconds"), ".1f"), st])
            classes.append(_row_class(st))
        out.append(f"<h3>{escape(suite)}</h3>" + table(headers, body, numeric=range(3, 11),
                                                       row_classes=classes))
    return "\n".join(out) or '<p class="muted">no results</p>'


def verdict_table(doc: Mapping[str, Any]) -> str:
    rows, classes = [], []
    for e in doc.get("items", {}).values():
        if e["kind"] != "baseline":
            continue
        f = e.get("figures", {})
        if f.get("baseline_written"):
            verdict = f"baseline written: {f['baseline_written']}"
        elif f.get("comparable") is False:
            verdict = "not comparable"
        elif f.get("baseline", "missing") is None:
            verdict = "no baseline"
        elif f.get("regressed"):
            verdict = "REGRESSED"
        elif f.get("improved"):
            verdict = "improved"
        else:
            verdict = "no significant change" if "p_value" in f else e["outcome"]
        rows.append([e["task"], e["model"], fmt(f.get("baseline_score")), fmt(f.get("score")),
                     f.get("lost", "-"), f.get("gained", "-"), fmt(f.get("p_value"), ".3g"),
                     fmt(f.get("p_holm"), ".3g"), fmt(f.get("baseline_flops_per_item"), ".3g"),
                     fmt(f.get("flops_per_item"), ".3g"), verdict, e["outcome"]])
        classes.append(_row_class(e["outcome"]))
    if not rows:
        return '<p class="muted">no baseline items in this run</p>'
    headers = ["task", "model", "baseline", "score", "lost", "gained", "p", "p (Holm)",
               "baseline FLOPs/item", "FLOPs/item", "verdict", "outcome"]
    return (table(headers, rows, numeric=range(2, 10), row_classes=classes)
            + '<p class="muted">lost: items the baseline got right and this run got wrong; gained: '
              "the reverse. p: one-sided paired test on those items; Holm-corrected across the session.</p>")


def evidence_html(doc: Mapping[str, Any]) -> str:
    entries = [e for e in doc.get("items", {}).values() if e["kind"] == "evidence"]
    parts = []
    if entries:
        keys = list(dict.fromkeys(k for e in entries for k, v in e.get("figures", {}).items()
                                  if v is None or isinstance(v, (int, float, str, bool))))
        rows = [[e["task"], e["model"], *(_plain(e["figures"].get(k)) for k in keys), e["outcome"]]
                for e in entries]
        parts.append(table(["task", "model", *keys, "outcome"], rows, numeric=range(2, 2 + len(keys)),
                           row_classes=[_row_class(e["outcome"]) for e in entries]))
    section = doc.get("sections", {}).get("evidence")
    if section:
        parts.append(json_html(section))
    return "\n".join(parts) or '<p class="muted">no evidence items in this run</p>'


def _plain(v: Any) -> str:
    if isinstance(v, float):
        return fmt(v, ".4g")
    return "-" if v is None else str(v)


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (int, float, str, bool))


def json_html(value: Any, depth: int = 0) -> str:
    """A JSON-able section as tables where it is tabular, as nested headings otherwise."""
    if isinstance(value, Mapping) and value and all(isinstance(v, Mapping) and all(map(_scalar, v.values()))
                                                    for v in value.values()):
        keys = list(dict.fromkeys(k for v in value.values() for k in v))
        return table(["", *keys], [[k, *(_plain(v.get(c)) for c in keys)] for k, v in value.items()],
                     numeric=range(1, 1 + len(keys)))
    if isinstance(value, list) and value and all(isinstance(v, Mapping) and all(map(_scalar, v.values()))
                                                 for v in value):
        keys = list(dict.fromkeys(k for v in value for k in v))
        return table(keys, [[_plain(v.get(c)) for c in keys] for v in value])
    if isinstance(value, Mapping) and value and all(map(_scalar, value.values())):
        return table(["key", "value"], [[k, _plain(v)] for k, v in value.items()])
    if isinstance(value, Mapping) and depth < 3:
        return "\n".join(f"<h4>{escape(str(k))}</h4>{json_html(v, depth + 1)}" for k, v in value.items())
    return f"<pre>{escape(json.dumps(value, indent=1, default=str))}</pre>"


def model_text(text: str) -> Raw:
    """Targets and responses exactly, spaces and line breaks included (they decide the score)."""
    return Raw(f'<code class="txt">{escape(text)}</code>')


def changed_table(changes: Sequence[ChangedItem], reference_name: str, current_name: str) -> str:
    if not changes:
        return '<p class="muted">no item changed its outcome</p>'
    shown = changes[:MAX_CHANGED]
    with_ref = shown[0].reference_score is not None
    with_ref_text = with_ref and any(c.reference_response is not None for c in shown)
    headers = ["prompt (end)", "target"]
    headers += [f"{reference_name} response"] if with_ref_text else []
    headers += [f"{current_name} response", "change" if with_ref else "score"]
    rows = []
    for c in shown:
        prompt = c.prompt if len(c.prompt) <= PROMPT_TAIL else "…" + c.prompt[-PROMPT_TAIL:]
        row: list[Any] = [Raw(f"<pre>{escape(prompt)}</pre>"), model_text(c.target)]
        if with_ref_text:
            row.append(model_text(c.reference_response) if c.reference_response is not None
                       else "(not stored)")
        row.append(model_text(c.response))
        row.append(("lost" if c.lost else "gained") if with_ref else fmt(c.score, ".2f"))
        rows.append(row)
    more = len(changes) - len(shown)
    return table(headers, rows) + (f'<p class="muted">and {more} more</p>' if more > 0 else "")


def failures_html(doc: Mapping[str, Any], baseline: BaselineView) -> str:
    runs = task_runs(doc)
    teachers = teachers_of(doc)
    out = []
    for nodeid, e in failed_items(doc):
        key = (e["task"], e["model"])
        block = [f"<h3><code>{escape(nodeid)}</code></h3>", f"<pre>{escape(e.get('message') or '')}</pre>"]
        current = runs.get(key)
        if current is not None:
            reference: TaskRun | Mapping[str, float] | None
            if e["kind"] == "baseline":
                reference, name = baseline.reference(key), "baseline"
                if reference is None:
                    block.append('<p class="muted">the baseline\'s per-item outcomes are not in this run '
                                 "file; give one with <code>distillbench report RUN --baseline "
                                 "BASELINE_RUN</code></p>")
            else:
                name = teachers.get(e["model"], "")
                reference = runs.get((e["task"], name)) if name else None
            if reference is not None or e["kind"] != "baseline":
                what = (f"items where {e['model']} and {name} differ" if reference is not None
                        else f"items {e['model']} got wrong")
                block.append(f"<p>{escape(what)}:</p>" + changed_table(changed_items(current, reference), name, e["model"]))
        out.append("\n".join(block))
    return "\n".join(out)


def environment_html(doc: Mapping[str, Any]) -> str:
    env = dict(doc.get("environment", {}))
    versions = env.pop("versions", {}) or {}
    settings = {k: v for k, v in doc.get("settings", {}).items() if k != "models"}
    specs = doc.get("settings", {}).get("models", [])
    parts = [table(["key", "value"], [[k, _plain(v) if _scalar(v) else json.dumps(v)] for k, v in env.items()]),
             "<h3>Versions</h3>", table(["package", "version"], [[k, v or "-"] for k, v in versions.items()]),
             "<h3>Settings</h3>", table(["key", "value"], [[k, _plain(v)] for k, v in settings.items()])]
    if specs:
        parts += ["<h3>Models</h3>", table(
            ["name", "role", "backend", "dtype", "teacher", "path"],
            [[m["name"], m["role"], m.get("backend", ""), m.get("dtype", ""), m.get("teacher") or "-",
              m.get("path", "")] for m in specs])]
    fingerprints = {}
    for run in task_runs(doc).values():
        fingerprints.setdefault((run.model, run.backend), (run.model_fingerprint, run.meta))
    if fingerprints:
        parts += ["<h3>Model fingerprints</h3>", table(
            ["model", "backend", "device", "sha256 of weights, config and tokenizer"],
            [[m, b, str(meta.get("device", "-")), Raw(f"<code>{escape(fp)}</code>")]
             for (m, b), (fp, meta) in fingerprints.items()])]
    tasks = doc.get("tasks", {})
    if tasks:
        parts += ["<h3>Task fingerprints</h3>", table(
            ["task", "metric", "difficulty", "sha256 of data, template and metric"],
            [[tid, t.get("metric", ""), t.get("difficulty") or "-",
              Raw(f"<code>{escape(str(t.get('fingerprint', '')))}</code>")] for tid, t in tasks.items()])]
    return "\n".join(parts)


# -- distillbench compare --html --------------------------------------------------------------

def comparison_html(rows: list[ComparisonRow], run_a: dict[str, Any], run_b: dict[str, Any]) -> str:
    """The paired comparison of two run files, with the items each regression lost."""
    regressed = [r for r in rows if r.regressed]
    verdict = "fail" if regressed else "ok"
    head = (f'<h1>distillbench compare <span class="badge {verdict}">'
            f'{f"{len(regressed)} REGRESSED" if regressed else "no regression"}</span></h1>'
            + table(["run", "created", "commit"],
                    [[label, str(d.get("created", "?")), str(d.get("git_commit") or "none")]
                     for label, d in (("A", run_a), ("B", run_b))]))
    body, classes = [], []
    for r in rows:
        verdict_text = "REGRESSED" if r.regressed else ("improved" if r.improved else (r.note or "same"))
        backend = r.backend_a if r.backend_a == r.backend_b else f"{r.backend_a} / {r.backend_b}"
        body.append([r.task, r.model, backend, r.n or "-", fmt(r.score_a), fmt(r.score_b),
                     fmt(r.score_b - r.score_a, "+.3f"), r.lost, r.gained, r.test or "-", fmt(r.p_value, ".3g"),
                     fmt(r.p_holm, ".3g"), fmt(r.flops_a, ".3g"), fmt(r.flops_b, ".3g"), verdict_text])
        classes.append("fail" if r.regressed else "")
    headers = ["task", "model", "backend", "n", "A", "B", "B-A", "lost", "gained", "test", "p", "p (Holm)",
               "FLOPs/item A", "FLOPs/item B", "verdict"]
    numeric = [*range(3, 9), *range(10, 14)]  # the test's name is text
    parts = [head, "<h2>Paired differences</h2>", table(headers, body, numeric=numeric, row_classes=classes)]
    runs_a, runs_b = task_runs(run_a), task_runs(run_b)
    for r in regressed:
        a, b = runs_a.get((r.task, r.model)), runs_b.get((r.task, r.model))
        if a is not None and b is not None:
            parts += [f"<h3>{escape(r.task)} [{escape(r.model)}]: items that changed</h3>",
                      changed_table(changed_items(b, a), "A", "B")]
    return page("distillbench compare", "\n".join(parts))
