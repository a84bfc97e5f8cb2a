"""Arguments shared by the commands that select jobs of a campaign (build, plan, run, status, cancel)."""

from __future__ import annotations

import argparse

from orchestrator.jobs import Job


def add_job_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """CONFIG, AutoExperiment's `-f KEY=VALUE` fixes and positional `KEY=V1,V2` filters."""
    parser.add_argument("config", metavar="CONFIG", help="campaign YAML file")
    parser.add_argument(
        "filters", metavar="KEY=V1,V2", nargs="*", default=[], help="keep only jobs whose KEY is one of the values"
    )
    parser.add_argument(
        "-f", "--fix", dest="fixes", metavar="KEY=VALUE", action="append", default=[],
        help="fix a value before expansion (repeatable)",
    )


def selected_jobs(args: argparse.Namespace) -> list[Job]:
    from orchestrator.config import load_jobs

    return load_jobs(args.config, fixes=args.fixes, filters=args.filters)
