"""Root conftest: the repository's own test run never picks up the bundled suite files.

`pytest` (no arguments) runs tests/ only (testpaths in pyproject.toml); the suites are evaluated
with `pytest --distillbench suites/`.
"""

collect_ignore_glob = ["benchmarks/*"]
