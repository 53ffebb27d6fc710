"""`polyspace report` (the notebooks headless into reports/<preset>/), `polyspace sweep` (one
notebook over a grid of parameter values) and `polyspace compare` (reports side by side)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="run the notebooks headless on a preset and write reports/<preset>/")
    p.add_argument("--preset", default="default", help="params/<preset>.yaml (default: default)")
    p.add_argument("--nb", default=None, help="only these notebooks: 04, 04_train_fusion or 01,02")
    p.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    p.add_argument("--overwrite", action="store_true",
                   help="replace stages the report holds with results of other parameters (else an error)")
    p.add_argument("--jobs", type=int, default=1,
                   help="notebooks run at once, each once the stages it reads have finished, each kernel "
                        "with its share of the cores (default 1: one after another; make report uses 2)")
    p.add_argument("-p", dest="params", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="set a parameter over the preset for this run, in every notebook that reads it "
                        "(e.g. -p featurize_root /data/hmdb51); repeat for more")
    p.set_defaults(func=_report)

    p = sub.add_parser("sweep", help="run one notebook over a grid of parameter values; "
                                     "reports/<preset>/sweeps/<name>/ with a comparison page")
    p.add_argument("--nb", required=True, help="the notebook: 04 or 04_train_fusion")
    p.add_argument("-p", dest="grid", nargs=2, action="append", required=True, metavar=("NAME", "VALUES"),
                   help="a parameter and its comma-separated values (a list parameter: [a,b],[c]); "
                        "repeat for a grid (every combination runs)")
    p.add_argument("--preset", default="default", help="params/<preset>.yaml: the base values and whose "
                                                       "upstream outputs the points read (default: default)")
    p.add_argument("--name", default=None, help="the sweep's folder under reports/<preset>/sweeps/ "
                                                "(default: the notebook's number and the swept names)")
    p.add_argument("--jobs", type=int, default=1, help="points run at once (default 1: one after another)")
    p.add_argument("--metric", default=None, help="the figure plotted against each parameter "
                                                  "(default: the notebook's first headline figure)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a sweep of this name (its reports, runs and generated data) instead of resuming it")
    p.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    p.set_defaults(func=_sweep)

    p = sub.add_parser("compare", help="reports side by side on one page, differences highlighted")
    p.add_argument("reports", nargs="+", metavar="REPORT_DIR",
                   help="reports/<preset>/, a sweep point's folder or a stage's report folder")
    p.add_argument("--out", default=None, help="the page to write (default: reports/compare.html)")
    p.set_defaults(func=_compare)


def _report(args: argparse.Namespace) -> int:
    from ..paths import project_root
    from .run import run_report

    results = run_report(args.preset, args.nb, timeout_s=args.timeout, overwrite=args.overwrite,
                         overrides=dict(args.params), jobs=args.jobs)
    failed = [r.stage for r in results if r.status != "ok"]
    index = project_root() / "reports" / args.preset / "index.html"
    print(f"report: {index}")
    if failed:
        print(f"failed stages: {', '.join(failed)}")
        return 1
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from ..paths import project_root
    from .sweep import run_sweep, sweep_dir

    sweep = run_sweep(args.nb, [tuple(pair) for pair in args.grid], preset=args.preset, name=args.name,
                      jobs=args.jobs, metric=args.metric, overwrite=args.overwrite, timeout_s=args.timeout)
    points = sweep["points"]
    reused = sum(p["reused"] for p in points)
    failed = [p["point"] for p in points if p["status"] != "ok"]
    print(f"sweep {sweep['name']}: {len(points)} points, {len(points) - reused} run now, {reused} done earlier, "
          f"{len(failed)} failed")
    print(f"sweep: {sweep_dir(project_root(), args.preset, sweep['name']) / 'index.html'}")
    if failed:
        print(f"failed points: {', '.join(failed)}")
        return 1
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .compare import compare_reports

    print(f"compare: {compare_reports(args.reports, args.out)}")
    return 0
