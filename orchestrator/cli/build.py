"""`orch build CONFIG`: validate the whole grid, then write every job's sbatch script."""

from __future__ import annotations

import argparse
import sys

from orchestrator.cli.check import add_check_arguments, check_rendered
from orchestrator.cli.common import add_job_selection_arguments, selected_jobs
from orchestrator.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("build", help="validate the grid and write every sbatch script")
    add_job_selection_arguments(parser)
    parser.add_argument("--dry", action="store_true", help="print the job names only, write nothing")
    add_check_arguments(parser)
    parser.set_defaults(handler=run_build)


def build_campaign(args: argparse.Namespace) -> int:
    """Build the selected jobs' scripts and report; shared with `orch build-and-run`."""
    from orchestrator.render.generated import write_generated_files
    from orchestrator.render.write import build_scripts, render_all, script_path_clashes

    jobs = selected_jobs(args, warn_unused_keys=True)
    clashes = script_path_clashes(jobs)
    if clashes:
        raise UserError(f"several jobs write the same script: {clashes[0]}; put {{name}} in `sbatch_script`")
    rendered = render_all(jobs)  # a bad template or a failed check stops the build before any file is written
    check_rendered(args, rendered)
    generated = write_generated_files(jobs)  # e.g. each job's blended data list, at its DATA_MIX_FILE
    if generated:
        print(f"{generated} generated file(s) written (data mixtures)")
    result = build_scripts(jobs, rendered)
    from orchestrator.cli.common import campaign_state_dir
    from orchestrator.state.builds import record_build

    record_build(result.digests, campaign_state_dir(args.config, jobs))  # what `orch plan --diff` compares with
    for warning in result.warnings:
        print(f"orch: {warning}", file=sys.stderr)
    print(f"{len(jobs)} jobs: {result.written} scripts written, {result.unchanged} unchanged")
    return 0


def run_build(args: argparse.Namespace) -> int:
    if args.dry:
        for job in selected_jobs(args):
            print(job.name)
        return 0
    return build_campaign(args)
