"""``python -m pytest_distillbench.data [SUITES_DIR]`` regenerates the bundled data files."""

from __future__ import annotations

import sys
from pathlib import Path

from pytest_distillbench.data.build import build_all


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path("suites")
    for path in build_all(root):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
