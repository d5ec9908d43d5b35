"""Reports people look at: the Pareto plot, the HTML report, Markdown, JUnit properties, the table."""

from __future__ import annotations

import json
import math
import random
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_distillbench.cli import main as cli_main
from pytest_distillbench.measures import stats
from pytest_distillbench.records import ItemRecord, TaskRun
from pytest_distillbench.report.compare import render_comparison
from pytest_distillbench.report.html import (
    changed_items,
    comparison_html,
    report_from_run_file,
)
from pytest_distillbench.report.markdown import markdown_summary
from pytest_distillbench.report.plot import TaskScore, pareto_front, pareto_png, suite_points
from pytest_distillbench.report.table import TABLE_WIDTH, short, short_names, terminal_table
from pytest_distillbench.session import DistillbenchSession, ItemFigures
from pytest_distillbench.spec.models import ModelSpec
from pytest_distillbench.spec.settings import Settings
from pytest_distillbench.store.runfiles import RUN_SCHEMA, load_run

from conftest import mc_task, write_project

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# -- a stored run, built by hand ---------------------------------------------------------------

MODELS = [  # name, role, FLOPs per item, share correct now, share correct in the baseline run
    ("teacher", "teacher", 2.0e7, 0.85, 0.85),
    ("student-distilled-small", "student", 2.0e6, 0.55, 0.85),
    ("student-distilled-tiny", "student", 5.0e5, 0.50, 0.50),
    ("control-small", "control", 2.0e6, 0.45, 0.45),
]
TASKS = [("math", "add", 60), ("math", "sub", 40), ("reasoning", "compare", 50)]
REGRESSED = ("math/add", "student-distilled-small")


def make_run(task: str, model: str, flops: float, share: float, n: int) -> TaskRun:
    draws = random.Random(task)  # one draw per item, shared by every model and run: paired outcomes
    records = []
    for i in range(n):
        a, b, u = draws.randint(10, 99), draws.randint(10, 99), draws.random()
        target = str(a + b) if "add" in task else (str(a - b) if "sub" in task else ("A" if a > b else "B"))
        correct = u < share
        response = target if correct else f"{target}9"
        records.append(ItemRecord(doc_id=i, doc_hash=f"{task}-{i:03d}", prompt=f"Q: {a} ? {b} = ",
                                  target=target, response=response, raw_response=response,
                                  score=float(correct), prompt_tokens=10, output_tokens=3,
                                  flops=flops))
    return TaskRun(task=task, model=model, metric="exact_match,none", records=tuple(records),
                   wall_seconds=1.5, model_fingerprint=f"sha-{model}", task_fingerprint=f"fp-{task}",
                   cost=None).with_cost(_cost(flops, n))


def _cost(flops: float, n: int) -> Any:
    from pytest_distillbench.records import Cost

    return Cost(requests=n, prompt_tokens=10 * n, output_tokens=3 * n, seconds=1.5, flops=flops * n,
                flops_source="analytic")


def run_doc(*, baseline: bool) -> dict[str, Any]:
    """A run file as ``runfiles.run_document`` writes it: the current run or its baseline run."""
    runs, summary, items = [], [], {}
    for suite, task, n in TASKS:
        tid = f"{suite}/{task}"
        by_model = {}
        for name, _role, flops, now, before in MODELS:
            run = make_run(tid, name, flops, before if baseline else now, n)
            by_model[name] = run
            runs.append(run)
        for name, role, flops, _, _ in MODELS:
            run = by_model[name]
            lo, hi = stats.wilson_interval(run.successes, run.n)
            row = {"suite": suite, "task": task, "task_id": tid, "model": name, "role": role,
                   "metric": run.metric, "n": n, "score": run.score, "ci_low": lo, "ci_high": hi,
                   "seconds": 1.5, "flops_per_item": flops, "quality_per_flop": run.score / flops}
            if role == "student":
                row.update(retention=run.score / by_model["teacher"].score, retention_low=0.5,
                           retention_high=0.9, compute_ratio=flops / 2.0e7)
            summary.append(row)
            items[f"suites/{suite}.yaml::{task}[{name}]"] = {
                "task": tid, "model": name, "kind": "score", "outcome": "passed", "message": "",
                "figures": {"score": run.score, "ci_low": lo, "ci_high": hi, "flops_per_item": flops}}
            regressed = (tid, name) == REGRESSED and not baseline
            items[f"suites/{suite}.yaml::{task}[{name}-baseline]"] = {
                "task": tid, "model": name, "kind": "baseline",
                "outcome": "failed" if regressed else "passed",
                "message": f"{tid}: {name} regressed against baselines/{tid}/{name}.hf.json" if regressed else "",
                "figures": {"baseline_score": 0.85 if regressed else run.score, "score": run.score,
                            "lost": 18 if regressed else 0, "gained": 0,
                            "p_value": 3.8e-6 if regressed else 1.0, "p_holm": 4.5e-5 if regressed else 1.0,
                            "regressed": regressed, "improved": False}}
            if role != "teacher":
                items[f"suites/{suite}.yaml::{task}[{name}-evidence]"] = {
                    "task": tid, "model": name, "kind": "evidence", "outcome": "passed", "message": "",
                    "figures": {"agreement": 0.9 if role == "student" else 0.6, "kappa": 0.4,
                                "p_value": 0.01, "distilled": role == "student"}}
    return {
        "schema": RUN_SCHEMA, "created": "2026-01-02T03:04:05Z", "git_commit": "abc123" if baseline else "def456",
        "settings": {"models": [{"name": n, "role": r, "backend": "hf", "dtype": "float32", "path": f"/m/{n}",
                                 "teacher": None if r == "teacher" else "teacher"} for n, r, *_ in MODELS],
                     "alpha": 0.05, "min_effect": 0.01, "seed": 1234},
        "environment": {"python": "3.11", "platform": "Linux", "versions": {"torch": "2.13", "lm-eval": "0.4.13"}},
        "tasks": {f"{s}/{t}": {"suite": s, "name": t, "metric": "exact_match,none", "difficulty": "easy",
                               "fingerprint": f"fp-{s}/{t}"} for s, t, _ in TASKS},
        "summary": summary,
        "items": items,
        "sections": {"evidence": {"student-distilled-small": {"agreement": 0.91, "kappa": 0.42, "verdict": "distilled"},
                                  "control-small": {"agreement": 0.61, "kappa": 0.03, "verdict": "independent"}}},
        "runs": [r.to_dict() for r in runs],
    }


@pytest.fixture(scope="module")
def run_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("runs")
    current, base = folder / "current.json", folder / "baseline.json"
    current.write_text(json.dumps(run_doc(baseline=False)), encoding="utf-8")
    base.write_text(json.dumps(run_doc(baseline=True)), encoding="utf-8")
    return current, base


class Page(HTMLParser):
    """Collects what a self-contained page must (and must not) hold."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html_text: str) -> Page:
    page = Page()
    page.feed(html_text)
    page.close()
    return page


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# -- the stored run renders --------------------------------------------------------------------

def test_report_from_run_file(run_files: tuple[Path, Path], tmp_path: Path) -> None:
    current, base = run_files
    written = report_from_run_file(current, tmp_path / "out", baseline=base)
    assert [p.name for p in written] == ["pareto.png", "report.html"]
    import matplotlib.image

    pixels = matplotlib.image.imread(written[0])  # decodes: a valid PNG
    assert pixels.shape[0] > 400 and pixels.shape[1] > 800
    html_text = written[1].read_text(encoding="utf-8")
    page = parse(html_text)
    text = " ".join(page.text)
    for name, *_ in MODELS:
        assert name in text
    for suite, task, _ in TASKS:
        assert suite in text and task in text
    assert "script" not in page.tags and "link" not in page.tags
    assert page.urls and all(u.startswith("data:image/png;base64,") for u in page.urls)
    assert "REGRESSED" in text and "4.5e-05" in text  # the verdict with its statistics
    assert "distilled" in text and "independent" in text  # the evidence section
    assert "def456" in text and "sha-teacher" in text and "fp-math/add" in text  # fingerprints
    # The failure shows the items it lost: prompt, target and both runs' responses.
    failure = html_text.split("<h2>Failures</h2>", 1)[1].split("<h2>", 1)[0]
    assert "baseline response" in failure and "student-distilled-small response" in failure
    pick = {(r.task, r.model): r for r in load_run(current)["runs"]}[REGRESSED]
    lost = changed_items(pick, {(r.task, r.model): r for r in load_run(base)["runs"]}[REGRESSED])
    assert lost and all(c.lost for c in lost)
    row = next(r for r in failure.split("<tr>") if f">{lost[0].target}9</code>" in r)
    assert row.count(f">{lost[0].target}</code>") == 2  # the target and the baseline's response


def test_report_without_baseline_says_where_to_find_it(run_files: tuple[Path, Path], tmp_path: Path) -> None:
    html_text = (report_from_run_file(run_files[0], tmp_path)[1]).read_text(encoding="utf-8")
    assert "--baseline" in html_text and "baseline response" not in html_text


def test_plot_shows_baseline_beside_current(run_files: tuple[Path, Path]) -> None:
    doc, base = load_run(run_files[0]), load_run(run_files[1])
    from pytest_distillbench.report.plot import task_scores

    now = suite_points(task_scores(doc["summary"]))
    before = suite_points(task_scores(base["summary"]))
    alone, beside = pareto_png(now), pareto_png(now, baseline=before)
    assert png_size(alone) == png_size(beside)
    assert alone != beside  # the faint baseline markers are drawn
    assert {p.suite for p in now} == {"math", "reasoning"}


def test_cli_report_and_compare_html(run_files: tuple[Path, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    current, base = run_files
    out = tmp_path / "rep"
    assert cli_main(["report", str(current), "--out", str(out), "--baseline", str(base)]) == 0
    assert (out / "report.html").is_file() and (out / "pareto.png").is_file()
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
    page_path = tmp_path / "cmp.html"
    assert cli_main(["compare", str(base), str(current), "--html", str(page_path)]) == 1  # a regression
    page = parse(page_path.read_text(encoding="utf-8"))
    text = " ".join(page.text)
    assert "REGRESSED" in text and "student-distilled-small" in text
    assert "mcnemar" in page.text  # the test that decided each row (no margins in these runs)
    assert "A response" in text and "B response" in text and "script" not in page.tags


def _mc_run(margins: list[float]) -> TaskRun:
    records = tuple(ItemRecord(doc_id=i, doc_hash=f"mc-{i:03d}", prompt="Q", target="A", response="A",
                               raw_response="", score=float(m > 0), prompt_tokens=5, output_tokens=0,
                               choice_logprobs=(-1.0, -1.0 - m), gold=0)
                    for i, m in enumerate(margins))
    return TaskRun(task="reasoning/mc", model="student", metric="acc,none", records=records,
                   wall_seconds=1.0, model_fingerprint="sha-s", task_fingerprint="fp-mc", cost=None)


def test_compare_uses_the_gate_s_default_test_with_margins() -> None:
    from pytest_distillbench.report.compare import compare_runs

    rng = random.Random(3)
    base = [rng.gauss(0.5, 1.0) for _ in range(300)]
    drop = [m - 0.3 + rng.gauss(0.0, 0.2) for m in base]  # worse everywhere, same scale
    docs = {name: {"runs": [_mc_run(m)]} for name, m in
            (("base", base), ("drop", drop), ("wider", [1.5 * m for m in base]))}
    (row,) = compare_runs(docs["base"], docs["drop"])
    assert row.test == "margin-split" and row.regressed
    (row,) = compare_runs(docs["base"], docs["wider"])  # same answers, margins 50 % wider
    assert row.test == "mcnemar" and not row.regressed and row.lost == row.gained == 0
    (row,) = compare_runs(docs["base"], docs["drop"], method="mcnemar")
    assert row.test == "mcnemar"
    assert "margin-split" in render_comparison(compare_runs(docs["base"], docs["drop"]), "a", "b")


def test_cli_report_bad_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "run.json"
    bad.write_text("{}", encoding="utf-8")
    assert cli_main(["report", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not a distillbench run file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_comparison_html_escapes_model_output(run_files: tuple[Path, Path]) -> None:
    from pytest_distillbench.report.compare import compare_runs

    a, b = load_run(run_files[1]), load_run(run_files[0])
    doc = run_doc(baseline=False)
    for run in doc["runs"]:
        for rec in run["records"]:
            rec["response"] = "<script>alert(1)</script>" if rec["score"] < 0.5 else rec["response"]
    b = load_run_from(doc)
    page = comparison_html(compare_runs(a, b), a, b)
    assert "<script>" not in page and "&lt;script&gt;" in page


def load_run_from(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "runs": [TaskRun.from_dict(r) for r in doc["runs"]]}


def test_markdown_summary(run_files: tuple[Path, Path]) -> None:
    text = markdown_summary(load_run(run_files[0]))
    assert text.startswith("## distillbench: **FAILED**: 1 of ")
    rows = [line for line in text.splitlines() if line.startswith("| math/") or line.startswith("| reasoning/")]
    assert len(rows) == len(TASKS) + 1  # one per task, plus the regressed baseline row
    assert any("**FAIL**" in r for r in rows) and any("**REGRESSED**" in r and "4.5e-05" in r for r in rows)
    assert "11 compared with no significant change" in text
    assert "<details><summary><code>suites/math.yaml::add[student-distilled-small-baseline]</code>" in text
    header = next(line for line in text.splitlines() if line.startswith("| task | n |"))
    assert all(name in header for name, *_ in MODELS)


def test_markdown_cells_cannot_break_the_table() -> None:
    from pytest_distillbench.report.markdown import md_table

    table = md_table(["a", "b"], [["x|y", "two\nlines"]])
    assert table.splitlines()[2] == "| x\\|y | two lines |"


# -- pure parts ----------------------------------------------------------------------------------

finite = st.floats(min_value=1e-3, max_value=1e12, allow_nan=False)
share = st.floats(min_value=0, max_value=1, allow_nan=False)


@given(st.lists(st.tuples(finite, share), min_size=1, max_size=30))
def test_pareto_front(points: list[tuple[float, float]]) -> None:
    front = pareto_front(points)

    def beats(q: tuple[float, float], p: tuple[float, float]) -> bool:
        return q[0] <= p[0] and q[1] >= p[1] and q != p

    assert front and len(set(front)) == len(front)
    assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)
    for i in front:  # nothing beats a front point
        assert not any(beats(q, points[i]) for q in points)
    for j in set(range(len(points))) - set(front):  # everything else is beaten or a duplicate
        assert any(beats(points[i], points[j]) or points[i] == points[j] for i in front)


def test_pareto_front_example() -> None:
    points = [(1e6, 0.5), (2e6, 0.4), (1e7, 0.8), (1e8, 0.8), (5e5, 0.5)]
    assert pareto_front(points) == [4, 2]


@given(st.lists(st.tuples(st.integers(1, 200), share, st.one_of(st.none(), finite)), min_size=1, max_size=6))
def test_suite_points_pool_items(tasks: list[tuple[int, float, float | None]]) -> None:
    scores = [TaskScore("s", f"t{i}", "m", "student", n, round(s * n) / n, f)
              for i, (n, s, f) in enumerate(tasks)]
    (point,) = suite_points(scores)
    assert point.n == sum(s.n for s in scores)
    assert min(s.score for s in scores) - 1e-12 <= point.score <= max(s.score for s in scores) + 1e-12
    assert point.ci_low <= point.score <= point.ci_high
    if any(s.flops_per_item is None for s in scores):
        assert point.flops_per_item is None
    else:
        lo, hi = min(s.flops_per_item for s in scores), max(s.flops_per_item for s in scores)
        assert lo * (1 - 1e-9) <= point.flops_per_item <= hi * (1 + 1e-9)


def test_suite_point_interval_is_wilson_on_pooled_items() -> None:
    (p,) = suite_points([TaskScore("s", "a", "m", "teacher", 10, 0.7, 1e6),
                         TaskScore("s", "b", "m", "teacher", 30, 0.1, 3e6)])
    assert p.score == pytest.approx(10 / 40) and p.flops_per_item == pytest.approx(2.5e6)
    assert (p.ci_low, p.ci_high) == pytest.approx(stats.wilson_interval(10, 40))


@given(st.text(min_size=1, max_size=60), st.integers(4, 30))
def test_short_keeps_both_ends(name: str, width: int) -> None:
    out = short(name, width)
    assert len(out) <= width
    if len(name) <= width:
        assert out == name
    else:
        assert "~" in out and name.startswith(out[: width // 2]) and name.endswith(out[width // 2 + 1:])


@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=12, unique=True), st.integers(6, 20))
def test_short_names_stay_distinct(names: list[str], width: int) -> None:
    out = short_names(names, width)
    assert set(out) == set(names)
    assert len(set(out.values())) == len(names)
    assert all(len(v) <= width for v in out.values())


def test_changed_items_against_scores_only() -> None:
    run = make_run("math/add", "s", 1.0, 0.5, 20)
    reference = {r.doc_hash: 1.0 for r in run.records}
    changes = changed_items(run, reference)
    assert len(changes) == sum(not r.correct for r in run.records)
    assert all(c.lost and c.reference_response is None for c in changes)
    assert changed_items(run, None) and all(c.reference_score is None for c in changed_items(run, None))
    assert changed_items(run, run) == []


# -- the terminal table at 100 columns ------------------------------------------------------------

def table_session(tmp_path: Path, names: list[tuple[str, str]], tasks: list[str]) -> tuple[Any, pd.DataFrame]:
    specs = tuple(ModelSpec(name=n, role=r, path=str(tmp_path), teacher=None if r == "teacher" else names[0][0])
                  for n, r in names)
    settings = Settings(rootdir=tmp_path, models=specs, cache_dir=tmp_path / "c", baselines_dir=tmp_path / "b")
    state = DistillbenchSession(settings, lambda line: None)
    rows = []
    for t in tasks:
        for i, (n, r) in enumerate(names):
            rows.append({"suite": "reasoning-and-arithmetic", "task": t, "task_id": f"suite/{t}", "model": n,
                         "role": r, "n": 1000, "score": 0.5 + i / 50, "ci_low": 0.45, "ci_high": 0.55,
                         "flops_per_item": 1.234e9, "retention": 0.9 if r == "student" else math.nan,
                         "status": "FAIL" if t == tasks[0] else "ok"})
            state.items[f"{t}[{n}]"] = ItemFigures(f"suite/{t}", n, "score",
                                                   "failed" if (t, i) == (tasks[0], 2) else "passed")
    return state, pd.DataFrame(rows)


def test_terminal_table_fits_100_columns_with_many_students(tmp_path: Path) -> None:
    names = [("teacher-llama-3-8b-instruct", "teacher")]
    names += [(f"student-distilled-from-llama-{s}", "student") for s in ("small", "medium", "large")]
    names += [("control-trained-without-teacher-small", "control")]
    state, frame = table_session(tmp_path, names, ["two-digit-addition-with-carry", "multi-step-word-problems"])
    table = terminal_table(state, frame)
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= TABLE_WIDTH
    shown = [short_names([n for n, _ in names], 16)[n] for n, _ in names]
    assert len(set(shown)) == len(shown) and all(s in table for s in shown)
    failing = [line for line in lines if line.rstrip().endswith("FAIL <")]
    assert len(failing) == 1 and short_names([n for n, _ in names], 16)[names[2][0]] in failing[0]


def test_terminal_table_stays_wide_when_it_fits(tmp_path: Path) -> None:
    state, frame = table_session(tmp_path, [("teacher", "teacher"), ("small", "student")], ["add"])
    lines = terminal_table(state, frame).splitlines()
    assert lines[0].split() == ["suite", "task", "n", "teacher", "small", "ret:small", "FLOP/item", "status"]
    assert len(lines) == 3 and lines[2].rstrip().endswith("FAIL <")
    # Numbers are right-aligned: the score columns end at the same offset in header and row.
    assert lines[0].index("teacher") + len("teacher") == lines[2].index("0.500±0.050") + len("0.500±0.050")


# -- a live session: JUnit properties, report folder, Markdown -----------------------------------

def test_session_writes_reports_and_junit_properties(pytester: pytest.Pytester, tiny_model: Path,
                                                     tiny_model_b: Path) -> None:
    write_project(pytester.path, {"teacher": ("teacher", tiny_model), "small": ("student", tiny_model_b)},
                  [mc_task()])
    first = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites",
                               "--distillbench-update-baselines")
    first.assert_outcomes(passed=5)  # 2 scores, 1 retention, 2 baselines written
    result = pytester.runpytest("-p", "no:cacheprovider", "--distillbench", "suites", "--junitxml=junit.xml",
                                "--distillbench-report", "report", "--distillbench-markdown", "summary.md")
    result.assert_outcomes(passed=5)
    out = result.stdout.str()
    assert "wrote" in out and "report.html" in out and "summary.md" in out

    cases = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
             for c in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    score = cases["compare[teacher]"]
    assert {"score", "ci_low", "ci_high", "n", "flops_per_item"} <= set(score)
    assert float(score["ci_low"]) <= float(score["score"]) <= float(score["ci_high"]) and float(score["flops_per_item"]) > 0
    baseline = cases["compare[small-baseline]"]
    assert {"baseline_score", "p_value", "p_holm", "lost", "gained", "flops_per_item"} <= set(baseline)
    assert float(baseline["baseline_score"]) == float(baseline["score"]) and float(baseline["p_value"]) == 1.0
    assert "retention" in cases["compare[small-retention]"]

    html_text = (pytester.path / "report" / "report.html").read_text(encoding="utf-8")
    page = parse(html_text)
    assert all(u.startswith("data:image/png;base64,") for u in page.urls) and page.urls
    assert "small" in " ".join(page.text) and "demo" in " ".join(page.text)
    assert png_size((pytester.path / "report" / "pareto.png").read_bytes())[0] > 400
    md = (pytester.path / "summary.md").read_text(encoding="utf-8")
    assert md.startswith("## distillbench: **passed**: 5 of 5 items passed") and "| demo/compare | 16 |" in md
