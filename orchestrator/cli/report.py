"""`orch report CONFIG -o report.html`: one self-contained HTML page about the campaign (see docs/analysis.md)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from orchestrator.cli.common import (
    campaign_state_dir,
    add_job_selection_arguments,
    non_negative_int,
    positive_flops,
    require_matplotlib,
    require_science,
    selected_jobs,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="one self-contained HTML page: jobs, loss curves, LR check, fit")
    add_job_selection_arguments(parser)
    parser.add_argument("-o", "--output", default="report.html", metavar="HTML", help="default: report.html")
    parser.add_argument("--bootstrap", type=non_negative_int, default=200, metavar="K",
                        help="bootstrap resamples for the fit's intervals (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=positive_flops, action="append", default=[], metavar="FLOPS",
                        help="compute budgets to allocate (default: 10x and 100x the largest run's)")
    parser.add_argument("--irreducible", type=float, metavar="LOSS", help="the data's known entropy, if any")
    parser.add_argument("--predict", choices=("mpl", "tissue"), metavar="LAW",
                        help="add every cooldown branch's predicted loss curve beside its observed one, by this law "
                             "(mpl or tissue; as `orch predict CONFIG`: a fit per branch, seconds each)")
    parser.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    require_science("orch report")
    require_matplotlib()
    from orchestrator.analysis.report import FitSettings, build_report
    from orchestrator.state import StateStore

    jobs = selected_jobs(args)
    store = StateStore.open_existing(campaign_state_dir(args.config, jobs))
    try:
        page = build_report(args.config, jobs, store, FitSettings(args.bootstrap, args.seed, tuple(args.budget),
                                                                  args.irreducible), predict_law=args.predict)
    finally:
        if store is not None:
            store.close()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    temporary.write_text(page, encoding="utf-8")
    temporary.replace(output)  # never a half-written report
    print(f"report: {output} ({len(page) / 1024:.0f} KiB, self-contained)")
    return 0
