"""The one-way house: the import contracts in pyproject.toml hold on the tree, fail when a
module reaches up a layer, and no two modules import each other in a circle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pytest_distillbench"
LINT = shutil.which("lint-imports")
needs_linter = pytest.mark.skipif(LINT is None, reason="import-linter is not installed (pip install -e '.[test]')")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    assert LINT is not None
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([LINT, "--no-cache", "--no-logo", "pyproject.toml"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _copy_tree(tmp_path: Path) -> Path:
    """The package's Python files and the contracts, without the zoo's weights."""
    shutil.copytree(PACKAGE, tmp_path / PACKAGE.name,
                    ignore=lambda d, names: [n for n in names
                                             if not n.endswith(".py") and not (Path(d) / n).is_dir()
                                             or n == "__pycache__"])
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@needs_linter
def test_the_tree_keeps_its_contracts(tmp_path: Path) -> None:
    result = _lint(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "one-way layers KEPT" in result.stdout
    assert "measures are pure" in result.stdout and "BROKEN" not in result.stdout


@needs_linter
@pytest.mark.parametrize(("module", "line", "broken"), [
    # a measure that asks the session: the cycle issue 19 removed
    ("measures/evidence.py", "from ..session import DistillbenchSession\n", "one-way layers"),
    # the store deciding with the engine's types
    ("store/baselines.py", "from ..engine.evaluation import Evaluator\n", "one-way layers"),
    # reports may not run models, nor may the engine format reports (siblings)
    ("report/table.py", "from ..engine import evaluation\n", "one-way layers"),
    # a lazy import inside a function counts too
    ("spec/settings.py", "def _late():\n    from ..checks import CheckResult\n", "one-way layers"),
    # a measure that imports pytest
    ("measures/stats.py", "import pytest\n", "measures are pure"),
])
def test_an_upward_import_breaks_a_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    tree = _copy_tree(tmp_path)
    target = tree / PACKAGE.name / module
    target.write_text(target.read_text(encoding="utf-8") + "\n\n" + line, encoding="utf-8")
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout, result.stdout


def test_no_import_cycles_between_modules() -> None:
    """Strongly connected components of the module graph (every import, lazy ones included;
    TYPE_CHECKING-only imports are annotations, not dependencies)."""
    grimp = pytest.importorskip("grimp")
    sys.path.insert(0, str(ROOT))
    try:
        graph = grimp.build_graph(PACKAGE.name, exclude_type_checking_imports=True, cache_dir=None)
    finally:
        sys.path.remove(str(ROOT))
    edges = {m: {d for d in graph.find_modules_directly_imported_by(m) if d != PACKAGE.name}
             for m in graph.modules}
    cycles = [scc for scc in _strongly_connected(edges) if len(scc) > 1]
    assert cycles == [], f"import cycles: {cycles}"


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_strongly_connected_helper_finds_a_cycle() -> None:
    # the check above is only as good as this helper: a known cycle must come out
    found = _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert sorted(c for c in found if len(c) > 1) == [["a", "b", "c"]]
