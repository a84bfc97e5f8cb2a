"""`orch for-each CONFIG CMD [KEY=V1,V2 ...]`: run a shell command once per job, formatted with its values.

AutoExperiment's `for_each`: `orch for-each c.yaml 'tail -n1 {output_file}' MODE=train`. Commands run
one after another in job order; each one's output is printed under a `== NAME ==` header. Exit 0 when
every command exited 0, 1 when some did not, 2 on bad input (nothing run).
"""

from __future__ import annotations

import argparse
import sys

from orchestrator.cli.common import add_job_selection_arguments, selected_jobs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("for-each", help="run a shell command once per job, formatted with its values")
    add_job_selection_arguments(parser, command_help="shell command, formatted with each job's values ({name}, {lr})")
    parser.add_argument("--timeout", type=float, metavar="SECS", help="kill a command running longer (default: none)")
    parser.set_defaults(handler=run_for_each_command)


def run_for_each_command(args: argparse.Namespace) -> int:
    from orchestrator.job_commands import run_for_each

    failed = 0
    for outcome in run_for_each(selected_jobs(args), args.command, args.timeout):
        if outcome.result is None:
            status = f" (killed after {args.timeout:g} s)"
        elif outcome.result.returncode:
            status = f" (exit {outcome.result.returncode})"
        else:
            status = ""
        failed += not outcome.succeeded
        print(f"== {outcome.job.name}{status} ==", flush=True)
        if outcome.result is not None:
            sys.stdout.write(outcome.result.stdout)
            sys.stderr.write(outcome.result.stderr)
            sys.stdout.flush()
    if failed:
        print(f"orch: {failed} command(s) failed", file=sys.stderr)
    return 1 if failed else 0
