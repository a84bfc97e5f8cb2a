"""`orch cancel CONFIG [filters]`: cancel the selected jobs' submissions and stop the monitor from resubmitting them.

Finds the submissions by the ids in the store and, in the queue, by job name AND batch script (so jobs
submitted by an earlier AutoExperiment or orch run without a store are found too, and another campaign's
jobs of the same names never are: see orchestrator/monitor/ownership.py), cancels them with one command,
and marks the jobs `cancelled`, with who cancelled them and when; every later `orch run` respects that (a
login-node reboot undoes nothing) until `orch run --retry-cancelled`. Without `--scheduler`, the backend the
campaign's monitor submitted to is used. Only the campaign's lease holder writes its store: while a monitor
runs (on any host), the cancel is posted to it as a request and the monitor carries it out and answers
(`--wait` seconds are waited for the answer).
"""

from __future__ import annotations

import argparse
import getpass
import socket
import time
import sys

from orchestrator.cli.common import add_job_selection_arguments, campaign_state_dir, selected_jobs
from orchestrator.cli.run import add_scheduler_argument, make_scheduler
from orchestrator.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cancel", help="cancel the selected jobs in the scheduler; the monitor leaves them be")
    add_job_selection_arguments(parser)
    add_scheduler_argument(parser)
    parser.add_argument("--wait", type=float, default=120.0, metavar="SECS",
                        help="while a monitor runs, how long to wait for it to carry out the cancel (default 120)")
    parser.set_defaults(handler=handle_cancel)


def cancelled_by() -> str:
    """`user@host at time`: who cancelled, shown by `orch status`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown user"
    return f"{user}@{socket.gethostname()} at {time.strftime('%Y-%m-%d %H:%M:%S')}"


def handle_cancel(args: argparse.Namespace) -> int:
    jobs = selected_jobs(args)
    return cancel_campaign_jobs(args.config, jobs, args.scheduler, f"cancelled by {cancelled_by()} (`orch cancel`)",
                                args.wait)


def cancel_campaign_jobs(config: str, jobs: list, scheduler_name: str | None, reason: str, wait_secs: float) -> int:
    """Cancel these jobs of the campaign with `reason` (shown by `orch status`): directly when no monitor holds the
    campaign, else by a request its monitor carries out. Prints the outcome; 1 when it was not carried out in full."""
    from orchestrator.monitor.user_cancel import cancel_jobs
    from orchestrator.state import StateStore
    from orchestrator.state.lock import acquire_writer

    scripts = {job.name: job.sbatch_script for job in jobs}
    directory = campaign_state_dir(config, jobs)
    try:
        lock, lease = acquire_writer(directory)
    except UserError as held:
        return _ask_the_monitor(directory, scripts, reason, str(held), wait_secs)
    with lock:
        try:
            scheduler = make_scheduler(scheduler_name, directory)
            store = StateStore.open(directory, guard=lease.confirm)
            try:
                outcome = cancel_jobs(store, scheduler, scripts, reason)
            finally:
                store.close()
        finally:
            lease.release()
    print(outcome.describe(len(jobs), scheduler.name)
          + ("" if not outcome.unanswered or scheduler_name else " (--scheduler names the backend if this is the wrong one)"))
    return 1 if outcome.unanswered else 0


def _ask_the_monitor(directory, scripts: dict[str, str], reason: str, holder: str, wait_secs: float) -> int:
    """A monitor holds the campaign: it carries out the cancel (it alone writes the store) and answers."""
    from orchestrator.state.requests import post_request, wait_for_answer

    request = post_request(directory, "cancel", scripts, reason)
    print(f"orch: a monitor runs this campaign; the cancel is posted to it ({holder.split(': ', 1)[-1]})",
          file=sys.stderr, flush=True)
    answer = wait_for_answer(request, wait_secs)
    if answer is None:
        print(f"the monitor did not answer within {wait_secs:g}s: the cancel stays posted ({request.name}) and is "
              "carried out at its next cycle")
        return 0
    print(answer.text)
    return 0 if answer.ok else 1
