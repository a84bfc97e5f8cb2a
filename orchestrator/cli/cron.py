"""`orch cron CONFIG`: the crontab and scrontab lines that run a campaign's monitor as ticks (`orch run --once`).

A tick runs one monitor cycle and exits; the campaign's lease keeps ticks from overlapping each other or a
long-running `orch run` (a tick that finds the lease held says so and exits 0, so cron mails nothing). Login
nodes reboot and many centres kill long-lived user processes there: ticks from cron (a login node's) or from
scrontab (Slurm's own cron, where the site enables `ScronParameters=enable`) survive both.
"""

from __future__ import annotations

import argparse
import os
import shlex

from orchestrator.cli.common import add_job_selection_arguments, campaign_state_dir, rerun_words


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cron", help="print the crontab / scrontab lines that tick the campaign's monitor")
    add_job_selection_arguments(parser)
    parser.add_argument("--every", type=int, default=5, metavar="MINUTES",
                        help="minutes between ticks (default 5; 1 to 59)")
    parser.set_defaults(handler=handle_cron)


def tick_command(args: argparse.Namespace) -> str:
    """The shell line one tick runs: from the campaign's folder, this installation's orch, the same selection."""
    words = rerun_words(args, "--once", "--yes")
    log = campaign_state_dir(args.config) / "ticks.log"
    return (f"cd {shlex.quote(os.getcwd())} && {' '.join(shlex.quote(word) for word in words)} "
            f">> {shlex.quote(str(log.absolute()))} 2>&1")


def handle_cron(args: argparse.Namespace) -> int:
    from orchestrator.errors import UserError

    if not 1 <= args.every <= 59:
        raise UserError(f"--every {args.every}: give minutes from 1 to 59")
    schedule = "*" if args.every == 1 else f"*/{args.every}"
    command = tick_command(args)
    name = campaign_state_dir(args.config).name
    print(f"# crontab -e  (a login node's cron: ticks stop while that node is down)\n"
          f"{schedule} * * * * {command}\n"
          f"# scrontab -e  (Slurm's cron, where ScronParameters=enable: runs on a compute node, survives login-node "
          f"reboots)\n"
          f"#SCRON --job-name=orch-{name} --time=00:30:00 --cpus-per-task=1\n"
          f"{schedule} * * * * {command}")
    return 0
