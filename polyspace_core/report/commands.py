"""`polyspace report`: run the notebooks headless and write reports/<preset>/."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="run the notebooks headless on a preset and write reports/<preset>/")
    p.add_argument("--preset", default="default", help="params/<preset>.yaml (default: default)")
    p.add_argument("--nb", default=None, help="only these notebooks: 04, 04_train_fusion or 01,02")
    p.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from ..paths import project_root
    from .run import run_report

    results = run_report(args.preset, args.nb, timeout_s=args.timeout)
    failed = [r.stage for r in results if r.status != "ok"]
    index = project_root() / "reports" / args.preset / "index.html"
    print(f"report: {index}")
    if failed:
        print(f"failed stages: {', '.join(failed)}")
        return 1
    return 0
