"""The ``distillbench`` command: build the zoo and data, compare runs, render reports.

Exit status: 0 on success, 1 when ``compare`` finds a significant regression, 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import DistillbenchError
from .spec.settings import DEFAULT_VERDICT, VERDICT_METHODS


def _compare(args: argparse.Namespace) -> int:
    from .report.compare import compare_runs, render_comparison
    from .store.runfiles import load_run

    a, b = load_run(args.run_a), load_run(args.run_b)
    rows = compare_runs(a, b, alpha=args.alpha, min_effect=args.min_effect, method=args.verdict)
    print(render_comparison(rows, args.run_a, args.run_b))
    if args.html:
        from .report.html import comparison_html

        Path(args.html).write_text(comparison_html(rows, a, b), encoding="utf-8")
        print(f"wrote {args.html}")
    return 1 if any(r.regressed for r in rows) else 0


def _report(args: argparse.Namespace) -> int:
    from .report.html import report_from_run_file

    for path in report_from_run_file(Path(args.run_file), Path(args.out),
                                     baseline=Path(args.baseline) if args.baseline else None):
        print(f"wrote {path}")
    return 0


def _zoo(rest: list[str]) -> int:
    if rest[:1] != ["build"]:
        print("usage: distillbench zoo build [--out DIR] [--steps-scale X] [--seed N] [--only NAME ...]",
              file=sys.stderr)
        return 2
    from .zoo.build import main as zoo_main

    return int(zoo_main(rest[1:]) or 0)


def _data(args: argparse.Namespace) -> int:
    from .data import build_all

    for path in build_all(Path(args.root)):
        print(path)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="distillbench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="differences between two run files, with paired statistics")
    c.add_argument("run_a")
    c.add_argument("run_b")
    c.add_argument("--alpha", type=float, default=0.05)
    c.add_argument("--min-effect", type=float, default=0.01)
    c.add_argument("--verdict", choices=VERDICT_METHODS, default=DEFAULT_VERDICT,
                   help=f"paired test, as the plugin's --distillbench-verdict (default {DEFAULT_VERDICT})")
    c.add_argument("--html", metavar="PATH", help="also write the comparison as HTML")
    r = sub.add_parser("report", help="regenerate the plot and HTML report from a run file")
    r.add_argument("run_file")
    r.add_argument("--out", default="distillbench-report")
    r.add_argument("--baseline", metavar="RUN_FILE", help="a run to show faintly beside this one")
    sub.add_parser("zoo", help="zoo build [--out DIR] [--steps-scale X] [--seed N] [--only NAME ...]: "
                              "retrain the embedded models", add_help=False)
    d = sub.add_parser("data", help="regenerate the bundled suite data")
    d.add_argument("action", choices=["build"])
    d.add_argument("--root", default="suites")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["zoo"]:
            return _zoo(argv[1:])
        args = parser().parse_args(argv)
        if args.command == "compare":
            return _compare(args)
        if args.command == "report":
            return _report(args)
        if args.command == "data":
            return _data(args)
    except DistillbenchError as exc:
        print(f"distillbench: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
