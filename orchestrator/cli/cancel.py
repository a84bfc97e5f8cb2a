"""`orch cancel CONFIG [filters]`: cancel the selected jobs' submissions and stop the monitor from resubmitting them.

Finds the submissions by the ids in the store and, in the queue, by job name AND batch script (so jobs
submitted by an earlier AutoExperiment or orch run without a store are found too, and another campaign's
jobs of the same names never are: see orchestrator/monitor/ownership.py), cancels them with one command,
and marks the jobs `cancelled`, with who cancelled them and when. A running monitor respects that, and so does
every later `orch run` (a login-node reboot undoes nothing) until `orch run --retry-cancelled`. Without
`--scheduler`, the backend the campaign's monitor submitted to is used.
"""

from __future__ import annotations

import argparse
import getpass
import socket
import time
from collections.abc import Iterable, Mapping

from orchestrator.cli.common import add_job_selection_arguments, campaign_state_dir, selected_jobs
from orchestrator.cli.run import add_scheduler_argument, make_scheduler
from orchestrator.jobs import Job
from orchestrator.scheduler.base import Observation


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cancel", help="cancel the selected jobs in the scheduler; the monitor leaves them be")
    add_job_selection_arguments(parser)
    add_scheduler_argument(parser)
    parser.set_defaults(handler=handle_cancel)


def cancelled_by() -> str:
    """`user@host at time`: who cancelled, shown by `orch status`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown user"
    return f"{user}@{socket.gethostname()} at {time.strftime('%Y-%m-%d %H:%M:%S')}"


def handle_cancel(args: argparse.Namespace) -> int:
    from orchestrator.job_state import JobState
    from orchestrator.scheduler.base import SchedulerUnavailable
    from orchestrator.state import StateStore

    jobs = selected_jobs(args)
    names = [job.name for job in jobs]
    directory = campaign_state_dir(args.config, jobs)
    scheduler = make_scheduler(args.scheduler, directory)
    store = StateStore.open(directory)
    reason = f"cancelled by {cancelled_by()} (`orch cancel`)"
    try:
        store.ensure_jobs(names)
        records = store.jobs(names)
        # Cancel in the store first: a monitor that sees the submissions leave the queue must not resubmit them.
        marked = 0
        for name, record in records.items():
            if record.state not in (JobState.DONE, JobState.CANCELLED):
                store.set_state(name, JobState.CANCELLED, reason)
                store.log_event(name, "cancelled", reason)
                marked += 1
        recorded = {r.current.scheduler_id: r.name for r in records.values() if r.current and r.current.scheduler_id}
        try:
            found = scheduler.query(list(recorded), names)
            active = sorted(campaign_submissions(found.values(), recorded, {job.name: job for job in jobs}))
            scheduler.cancel(active)
        except SchedulerUnavailable as error:
            print(f"orch: {scheduler.name} did not answer ({error}); the jobs are marked cancelled, run `orch cancel` "
                  "again to cancel their submissions" + ("" if args.scheduler else
                                                         " (--scheduler names the backend if this is the wrong one)"))
            return 1
    finally:
        store.close()
    print(f"{marked} of {len(jobs)} jobs marked cancelled (done ones stay done); {len(active)} submissions cancelled"
          + (f" in {scheduler.name}: {' '.join(active)}" if active else "")
          + "; `orch run --retry-cancelled` runs them again")
    return 0


def campaign_submissions(observations: Iterable[Observation], recorded: Mapping[str, str],
                         jobs: Mapping[str, Job]) -> set[str]:
    """Ids of the active submissions that are this campaign's: recorded ones, and found ones with its scripts."""
    from orchestrator.monitor.ownership import is_campaign_submission, recorded_submission

    ids = set()
    for observation in observations:
        if not observation.state.is_active:
            continue
        if observation.scheduler_id in recorded:
            if recorded_submission(observation, jobs[recorded[observation.scheduler_id]]).state.is_active:
                ids.add(observation.scheduler_id)
        elif observation.name in jobs and is_campaign_submission(observation, jobs[observation.name]):
            ids.add(observation.scheduler_id)
    return ids
