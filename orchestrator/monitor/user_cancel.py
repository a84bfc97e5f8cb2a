"""A user's cancel (`orch cancel`), carried out by whoever holds the campaign's lease: the cancel command
itself when no monitor runs, else the monitor, from a request (`state.requests`).

The jobs are marked cancelled in the store first, so a monitor that sees their submissions leave the queue
never resubmits them; then their active submissions (recorded ids, and those found by name that run the
job's own script: `monitor.ownership`) are cancelled with one command.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from orchestrator.job_state import JobState
from orchestrator.monitor.ownership import (array_intents, array_task_of, is_submission_of, recorded_submission_of,
                                            submitted_as)
from orchestrator.scheduler.array_driver import array_name_of
from orchestrator.scheduler.base import Observation, Scheduler, SchedulerUnavailable, job_id_order
from orchestrator.state.store import StateStore


@dataclass(frozen=True)
class CancelOutcome:
    marked: int
    cancelled: list[str]
    unanswered: str = ""
    """The scheduler's error when it did not answer (the jobs are marked, their submissions not cancelled)."""

    def describe(self, total: int, scheduler_name: str) -> str:
        if self.unanswered:
            return (f"{self.marked} of {total} jobs marked cancelled; {scheduler_name} did not answer "
                    f"({self.unanswered}): run `orch cancel` again to cancel their submissions")
        return (f"{self.marked} of {total} jobs marked cancelled (done ones stay done); {len(self.cancelled)} "
                f"submissions cancelled" + (f" in {scheduler_name}: {' '.join(self.cancelled)}" if self.cancelled else "")
                + "; `orch run --retry-cancelled` runs them again")


def cancel_jobs(store: StateStore, scheduler: Scheduler, scripts: Mapping[str, str], reason: str) -> CancelOutcome:
    """Mark the jobs (name -> batch script) cancelled and cancel their active submissions."""
    names = list(scripts)
    store.ensure_jobs(names)
    records = store.jobs(names)
    marked = 0
    for name, record in records.items():
        if record.state not in (JobState.DONE, JobState.CANCELLED):
            store.set_state(name, JobState.CANCELLED, reason)
            store.log_event(name, "cancelled", reason)
            marked += 1
    # As the scheduler shows each recorded submission: its job's name and script, or its array's (an array task).
    recorded = {attempt.scheduler_id: submitted_as(attempt, scripts[r.name]) for r in records.values()
                for attempt in (r.current, r.standby) if attempt and attempt.scheduler_id}
    intents = array_intents(records.values())
    try:
        found = scheduler.query(list(recorded), names + sorted({array_name_of(d) for d, _ in intents}))
        active = sorted(campaign_submissions(found.values(), recorded, scripts, intents), key=job_id_order)
        scheduler.cancel(active)
    except SchedulerUnavailable as error:
        return CancelOutcome(marked, [], str(error) or "no answer")
    return CancelOutcome(marked, active)


def campaign_submissions(observations: Iterable[Observation], recorded: Mapping[str, tuple[str, str]],
                         scripts: Mapping[str, str], array_intents: Mapping[tuple[str, int], str]) -> set[str]:
    """Ids of the active submissions that are this campaign's: recorded ones (id -> the name and script the scheduler
    shows for it), found ones with its scripts, and array tasks its intents name (`ownership.array_task_of`)."""
    ids = set()
    for observation in observations:
        if not observation.state.is_active:
            continue
        if observation.scheduler_id in recorded:
            if recorded_submission_of(observation, *recorded[observation.scheduler_id]).state.is_active:
                ids.add(observation.scheduler_id)
        elif observation.name in scripts and is_submission_of(observation, observation.name, scripts[observation.name]):
            ids.add(observation.scheduler_id)
        elif array_task_of(observation, array_intents) is not None:
            ids.add(observation.scheduler_id)
    return ids
