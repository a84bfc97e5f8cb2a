"""`orch cancel CONFIG [filters]`: cancel the selected jobs' submissions and stop the monitor from resubmitting them.

Finds the submissions by the ids in the store and, in the queue, by job name AND batch script (so jobs
submitted by an earlier AutoExperiment or orch run without a store are found too, and another campaign's
jobs of the same names never are: see orchestrator/monitor/ownership.py), cancels them with one command,
and marks the jobs `abandoned`, which a running monitor respects. A later `orch run` starts them again.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping

from orchestrator.cli.common import add_job_selection_arguments, selected_jobs
from orchestrator.cli.run import add_scheduler_argument, make_scheduler
from orchestrator.jobs import Job
from orchestrator.scheduler.base import Observation


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cancel", help="cancel the selected jobs in the scheduler; the monitor leaves them be")
    add_job_selection_arguments(parser)
    add_scheduler_argument(parser)
    parser.set_defaults(handler=handle_cancel)


def handle_cancel(args: argparse.Namespace) -> int:
    from orchestrator.job_state import JobState
    from orchestrator.scheduler.base import SchedulerUnavailable
    from orchestrator.state import StateStore

    jobs = selected_jobs(args)
    names = [job.name for job in jobs]
    scheduler = make_scheduler(args.scheduler)
    store = StateStore.open(".")
    try:
        store.ensure_jobs(names)
        records = store.jobs(names)
        # Abandon first: a monitor that sees the cancelled submissions leave the queue must not resubmit them.
        for name, record in records.items():
            if not record.state.is_terminal:
                store.set_state(name, JobState.ABANDONED, "cancelled by `orch cancel`")
                store.log_event(name, "cancelled", "cancelled by `orch cancel`")
        recorded = {r.current.scheduler_id: r.name for r in records.values() if r.current and r.current.scheduler_id}
        try:
            found = scheduler.query(list(recorded), names)
            active = sorted(campaign_submissions(found.values(), recorded, {job.name: job for job in jobs}))
            scheduler.cancel(active)
        except SchedulerUnavailable as error:
            print(f"orch: the scheduler did not answer ({error}); the jobs are marked abandoned, "
                  "run `orch cancel` again to cancel their submissions")
            return 1
    finally:
        store.close()
    print(f"{len(jobs)} jobs marked abandoned; {len(active)} submissions cancelled"
          + (f": {' '.join(active)}" if active else ""))
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
