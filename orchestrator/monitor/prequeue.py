"""Pre-queued continuations: the pure rules for a job's next segment waiting in the queue behind its running one.

A job whose work outlasts one time limit runs as segments, each resuming from the previous one's save. With
`prequeue` set, the next segment is submitted while the current one runs, with `sbatch --dependency=afterany:ID`:
Slurm starts it the moment the current one ends, whether or not a monitor is running, and the monitor only
reconciles. Exactly once holds as for any submission: its intent is stored before sbatch runs, and an intent
without an id is resolved by name and script (`monitor.ownership`) before anything is submitted again.

The pre-queued segment ("standby") is
- promoted to the job's current attempt when the current one leaves the queue and the job must go on;
- cancelled when the job is done (seen while the current one still runs, or when it ends), when the job is
  given up, and when the current one's node failed it before the standby started (it is resubmitted
  with the node excluded instead);
- closed when it leaves the queue on its own before it was needed (someone cancelled it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.job_state import JobState
from orchestrator.jobs import PREQUEUE_ALWAYS, PREQUEUE_AUTO, Job
from orchestrator.monitor.actions import (
    Action,
    AdoptStandby,
    Cancel,
    CancelStandby,
    EndStandby,
    PromoteStandby,
    StandbyAction,
    SubmitStandby,
    Transition,
)
from orchestrator.monitor.probes import OutputFacts
from orchestrator.scheduler.base import Observation, SchedulerState, job_id_order

if TYPE_CHECKING:
    from orchestrator.monitor.lifecycle import Facts, JobView

# `prequeue: auto` queues the next segment once the run's own log says the rest of the work needs more than
# this share of the time left before its limit: the remainder is a save and the graceful exit before the limit.
AUTO_TIME_SHARE = 0.9
STANDBY_NOT_NEEDED = "the job is done: its pre-queued segment is not needed"


def remaining_secs(output: OutputFacts, run_offset: int) -> float | None:
    """Seconds of training left by the current run's last Megatron log line; None before this run printed one
    with a time per iteration."""
    line = output.iterations
    if line is None or line.at < run_offset or line.ms_per_iteration is None:
        return None
    return max(0, line.total - line.iteration) * line.ms_per_iteration / 1000.0


def standby_reason(job: Job, observation: Observation, output: OutputFacts, run_offset: int,
                   limit_secs: float | None, signal_lead_secs: float = 0.0) -> str | None:
    """Why the next segment should be queued now behind `observation` (the current attempt, in the queue);
    None: not (yet). `signal_lead_secs`: the script's `--signal` lead, when a trainer saves and stops (Megatron's
    `--exit-signal-handler`): the time it can train ends there, not at the limit."""
    if job.prequeue == PREQUEUE_ALWAYS:
        return "prequeue: always"
    if job.prequeue != PREQUEUE_AUTO or observation.state != SchedulerState.RUNNING:
        return None
    needed = remaining_secs(output, run_offset)
    elapsed = observation.elapsed_secs
    if needed is None or limit_secs is None or elapsed is None:
        return None
    left = max(0.0, limit_secs - signal_lead_secs - elapsed)
    if needed <= AUTO_TIME_SHARE * left:
        return None
    before = "before its --signal" if signal_lead_secs else "before the time limit"
    return (f"prequeue: auto: about {_hours(needed)} of training left, {_hours(left)} {before} "
            f"(iteration {output.iterations.iteration}/{output.iterations.total})")


def _hours(secs: float) -> str:
    return f"{secs / 3600:.2f} h" if secs >= 360 else f"{secs:.0f} s"


def reconcile_standby(standby_id: str | None, standby_intent: bool, current_active: bool,
                      observation: Observation | None, found: Sequence[Observation]) -> tuple[list[StandbyAction], bool]:
    """The pre-queued segment's bookkeeping before the job's own decision. Returns the actions and whether a
    standby remains in play.

    - An intent without an id: the submission found by name and script is it (adopt the newest); none found
      means sbatch never ran: forget the intent.
    - A standby that left the queue while the current attempt still runs was not needed after all: close it.
    """
    if standby_intent:
        if found:
            newest = max(found, key=lambda o: job_id_order(o.scheduler_id))
            return [AdoptStandby(newest)], True
        return [EndStandby("NOT_SUBMITTED", None, "the pre-queued segment's intent has no job id and no submission "
                                                  "of it is in the queue: it was never submitted")], False
    if standby_id is None:
        return [], False
    state = observation.state if observation is not None else SchedulerState.GONE
    if current_active and not state.is_active:
        return [EndStandby(state.value, observation.exit_code if observation else None,
                           f"the pre-queued segment {standby_id} left the queue ({state.value}) before it was needed")], False
    return [], True


def with_standby_in_queue(job: Job, view: JobView, facts: Facts, observation: Observation,
                           actions: list[Action]) -> list[Action]:
    """The in-queue decision, with the pre-queued segment cancelled when the job is done or about to be given up,
    or queued now when the job wants one."""
    if view.standby_id is not None:
        if any(isinstance(a, Transition) and a.to == JobState.DONE for a in actions):
            return [*cancel_standby(view.standby_id, STANDBY_NOT_NEEDED, facts), *actions]
        last_failure = view.consecutive_failures + 1 >= job.max_failures
        if last_failure and any(isinstance(a, Cancel) for a in actions):
            return [*actions, *cancel_standby(view.standby_id, "its predecessor is cancelled as the job's last "
                                                               "allowed failure: nothing continues it", facts)]
        return actions
    stopping = any(isinstance(a, Cancel) or (isinstance(a, Transition) and a.to.is_terminal) for a in actions)
    if stopping or view.cancelled_for is not None or not facts.can_chain or not facts.can_submit:
        return actions
    reason = standby_reason(job, observation, facts.output, view.run_output_offset, view.limit_secs,
                            facts.signal_lead_secs)
    return actions + [SubmitStandby(observation.scheduler_id, reason)] if reason else actions


def cancel_standby(standby_id: str | None, reason: str, facts: Facts) -> list[Action]:
    return [CancelStandby(standby_id, reason, facts.standby_observation)] if standby_id is not None else []


def standby_waits(facts: Facts) -> bool:
    """The pre-queued segment has not started yet."""
    return facts.standby_observation is not None and facts.standby_observation.state == SchedulerState.PENDING


def promote_standby(job: Job, standby_id: str, facts: Facts, state: JobState, ending: str) -> list[Action]:
    """The current attempt ended and the job goes on: the pre-queued segment becomes the current attempt. With
    `prequeue: always` the one after it is queued at once: waiting a poll for it could let a short segment end first."""
    actions: list[Action] = [PromoteStandby(standby_id, f"{ending} without termination: continued by the pre-queued "
                                                        f"{standby_id}")]
    observation = facts.standby_observation
    standby_state = observation.state if observation is not None else SchedulerState.GONE
    if not standby_state.is_active:
        return actions  # it ended too: the next cycle judges it as the current attempt
    if state_for(standby_state) != state:
        actions.append(Transition(state_for(standby_state), f"{ending}; the pre-queued {standby_id} is "
                                                            f"{standby_state.value}"))
    if job.prequeue == PREQUEUE_ALWAYS and facts.can_chain and facts.can_submit:
        actions.append(SubmitStandby(standby_id, "prequeue: always"))
    return actions


def state_for(state: SchedulerState) -> JobState:
    """The job's state while this submission of it is in the queue."""
    return JobState.QUEUED if state == SchedulerState.PENDING else JobState.RUNNING
