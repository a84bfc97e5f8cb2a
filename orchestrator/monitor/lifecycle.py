"""A job's life cycle: the pure decision for one job.

`decide` takes what the monitor knows about one job (its record in the store and this cycle's
observations) and returns actions. It never runs a command, reads a file or writes the store:
the loop (`orchestrator.monitor.loop`) does that, in one place, so every rule here can be tested
with plain values and a fake clock. The states and their transitions live in `orchestrator.job_state`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from orchestrator.job_state import JobState
from orchestrator.jobs import Job
from orchestrator.monitor.node_faults import node_fault
from orchestrator.monitor.actions import (  # noqa: F401 - the actions are part of this module's interface
    Abandon,
    Action,
    Adopt,
    AdoptStandby,
    Cancel,
    DropIntent,
    EndAttempt,
    Log,
    MarkBadNodes,
    MarkDone,
    MarkFailed,
    PromoteStandby,
    RecordOutput,
    StartReady,
    StartRefused,
    StartRun,
    Submit,
    Transition,
)
from orchestrator.monitor.prequeue import (
    STANDBY_NOT_NEEDED,
    cancel_standby,
    promote_standby,
    reconcile_standby,
    standby_waits,
    state_for,
    with_standby_in_queue,
)
from orchestrator.monitor.probes import OutputFacts, activity, is_frozen, run_progress
from orchestrator.monitor.segment_end import save_ending
from orchestrator.scheduler.base import Observation, SchedulerState, job_id_order
from orchestrator.state.store import JobRecord

# Endings that are not the job's fault: the job is resubmitted without counting a failure, whatever
# exit code the scheduler reports for the kill.
_NOT_FAILURE_ENDINGS = frozenset({SchedulerState.TIMEOUT, SchedulerState.PREEMPTED, SchedulerState.CANCELLED})

# Why the monitor itself cancels a running attempt; such an attempt's ending counts as a failure.
CANCELLED_FROZEN = "frozen"
CANCELLED_FAIL_REGEX = "fail_regex"


def is_failed_ending(observation: Observation) -> bool:
    """Does this ending count towards the crash loop?"""
    if observation.state.is_failure:
        return True
    if observation.state in _NOT_FAILURE_ENDINGS:
        return False
    return observation.exit_code not in (None, 0)


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class JobView:
    """What the store remembers about one job, as the decision needs it."""

    name: str
    state: JobState = JobState.WAITING
    consecutive_failures: int = 0
    start_attempts: int = 0
    start_ready: bool = False
    """The start condition said go and the job has not been submitted since."""
    scheduler_id: str | None = None
    """Id of the current (unfinished) attempt, when known."""
    pending_intent: bool = False
    """The current attempt was recorded as an intent to submit but its id never was."""
    output_fingerprint: str | None = None
    """The current run's activity token (see `probes.activity`) when last seen."""
    output_changed_at: float | None = None
    """Monitor time at which that token was first seen."""
    run_start: str | None = None
    """The scheduler's start time of the current run; None until the attempt is seen running."""
    run_output_offset: int = 0
    """Output size when the current run began: earlier text (other attempts, Slurm's lines) is not its own."""
    cancelled_for: str | None = None
    """The monitor cancelled the current attempt: `CANCELLED_FROZEN` or `CANCELLED_FAIL_REGEX`."""
    end_progress: str | None = None
    """The progress mark (see `Job.progress_mark_regex`) the previous attempt ended at."""
    standby_id: str | None = None
    """Id of the next segment pre-queued behind the current attempt (`monitor.prequeue`)."""
    standby_intent: bool = False
    """A pre-queued segment was recorded as an intent to submit but its id never was."""
    limit_secs: float | None = None
    """The current attempt's time limit, read from its script when it was submitted."""


def view_of(record: JobRecord) -> JobView:
    current = record.current
    return JobView(
        name=record.name,
        state=record.state,
        consecutive_failures=record.consecutive_failures,
        start_attempts=record.start_attempts,
        start_ready=record.start_ready,
        scheduler_id=current.scheduler_id if current else None,
        pending_intent=current is not None and current.scheduler_id is None,
        output_fingerprint=record.output_fingerprint,
        output_changed_at=record.output_changed_at,
        run_start=record.run_start,
        run_output_offset=record.run_output_offset,
        cancelled_for=current.cancel_reason if current else None,
        end_progress=record.end_progress,
        standby_id=record.standby.scheduler_id if record.standby else None,
        standby_intent=record.standby is not None and record.standby.scheduler_id is None,
        limit_secs=current.estimate_hours * 3600 if current and current.estimate_hours else None,
    )


@dataclass(frozen=True)
class Facts:
    """What this cycle observed about one job."""

    now: float
    scheduler_known: bool
    """False when the scheduler query failed: every job's state is unknown, not gone."""
    observation: Observation | None = None
    """The current attempt as the scheduler sees it (None: no current id, or not reported)."""
    found_by_name: Sequence[Observation] = ()
    """This campaign's active submissions of this job whose ids the store does not know (name and script match)."""
    standby_observation: Observation | None = None
    """The pre-queued segment as the scheduler sees it (None: none, or not reported)."""
    can_chain: bool = False
    """The scheduler can queue a submission behind another (`--dependency`), for this job's `cmd`."""
    signal_lead_secs: float = 0.0
    """How long before its time limit the job's script asks to be signalled (`#SBATCH --signal`)."""
    output: OutputFacts = field(default_factory=OutputFacts)
    termination_probe: bool | None = None
    """A `termination_cmd` result that arrived this cycle, else None."""
    termination_pending: bool = False
    """The job is out of the queue and `termination_cmd` has not answered since: nothing may be
    submitted or ended before it has (an out-of-date "not done" would resubmit a finished job)."""
    start_probe: bool | None = None
    """A `start_condition_cmd` result that arrived this cycle, else None."""
    can_submit: bool = True
    """A slot is free under `--max-jobs` and under the cluster's queue limits."""
    max_start_attempts: int | None = None


# ---------------------------------------------------------------- probes due


def termination_probe_due(job: Job, view: JobView, last_probe_at: float | None, now: float, needs_fresh: bool) -> bool:
    """Start `termination_cmd` now? At most once per check interval, and at once when the job is out of the
    queue and has no answer since (the done check must be fresh before a submission or resubmission)."""
    if not job.termination_cmd or view.state.is_terminal:
        return False
    if needs_fresh or last_probe_at is None:
        return True
    return now - last_probe_at >= job.check_interval_secs


def start_probe_due(job: Job, view: JobView, last_probe_at: float | None, now: float) -> bool:
    """Start `start_condition_cmd` now? Only for a waiting job that has not been told go, once per check interval."""
    if not job.start_condition_cmd or view.state != JobState.WAITING or view.start_ready:
        return False
    if view.scheduler_id is not None or view.pending_intent:
        return False
    return last_probe_at is None or now - last_probe_at >= job.check_interval_secs


# ---------------------------------------------------------------- the decision


def decide(job: Job, view: JobView, facts: Facts) -> list[Action]:
    """Everything the monitor should do about one job this cycle, in order."""
    if view.state.is_terminal:
        return []
    actions: list[Action] = []
    changed_at = view.output_changed_at
    current_activity = activity(facts.output, view.run_output_offset, job.progress_regex)
    if current_activity != view.output_fingerprint:
        actions.append(RecordOutput(current_activity, facts.now))
        changed_at = facts.now
    done = facts.output.termination_matched or facts.termination_probe is True
    done_reason = "termination_str found in output" if facts.output.termination_matched else "termination_cmd printed 1"

    if not facts.scheduler_known:
        # Unknown is not gone: nothing is submitted, cancelled or ended until the scheduler answers.
        return actions

    if view.scheduler_id is None and view.standby_id is not None and not view.pending_intent:
        # Killed between closing the current attempt and promoting its pre-queued successor: finish that step.
        return actions + [PromoteStandby(view.standby_id, "its predecessor's attempt is closed")]
    if view.scheduler_id is None:
        return actions + _decide_not_in_queue(job, view, facts, done, done_reason)

    observation = facts.observation or Observation(view.scheduler_id, job.name, SchedulerState.GONE)
    standby_actions, in_play = reconcile_standby(view.standby_id, view.standby_intent, observation.state.is_active,
                                                 facts.standby_observation, facts.found_by_name)
    actions += standby_actions
    adopted = next((a.observation for a in standby_actions if isinstance(a, AdoptStandby)), None)
    view = replace(view, standby_id=(adopted.scheduler_id if adopted else view.standby_id) if in_play else None,
                   standby_intent=False)
    if adopted is not None:
        facts = replace(facts, standby_observation=adopted)
    if observation.state.is_active:
        in_queue = _decide_in_queue(job, view, facts, observation, done, done_reason, current_activity, changed_at)
        return actions + with_standby_in_queue(job, view, facts, observation, in_queue)
    if facts.termination_pending and not done:
        return actions  # ended: the attempt is closed once the done check has answered
    return actions + _decide_left_queue(job, view, facts, observation, done, done_reason)


def _decide_not_in_queue(job: Job, view: JobView, facts: Facts, done: bool, done_reason: str) -> list[Action]:
    actions: list[Action] = []
    if facts.found_by_name:
        # Ours from before a crash (intent recorded, id not), or submitted by an earlier run: adopt, never resubmit.
        newest = max(facts.found_by_name, key=lambda o: job_id_order(o.scheduler_id))
        if len(facts.found_by_name) > 1:
            others = ", ".join(o.scheduler_id for o in facts.found_by_name if o is not newest)
            actions.append(Log("duplicate", f"several active submissions named {job.name}; adopting {newest.scheduler_id}, "
                                            f"leaving {others} alone"))
        actions.append(Adopt(newest, "found in the queue by name and script (an array task: its array's, and its index)"))
        if done:
            actions.append(MarkDone(done_reason))  # the submission still counts against --max-jobs until it leaves
        elif state_for(newest.state) != view.state:
            actions.append(Transition(state_for(newest.state), f"adopted {newest.scheduler_id}"))
        return actions
    if view.pending_intent:
        actions += [
            DropIntent(),
            Log("intent-lost", "an intent to submit has no job id and nothing named "
                               f"{job.name} is in the queue: it was never submitted, safe to submit again"),
        ]
    if done:
        return actions + [MarkDone(done_reason)]
    if view.state != JobState.WAITING:
        actions.append(Transition(JobState.WAITING, "not in the queue"))
    return actions + _decide_waiting(job, view, facts)


def _decide_waiting(job: Job, view: JobView, facts: Facts, resubmit_after: str = "") -> list[Action]:
    actions: list[Action] = []
    ready = view.start_ready or not job.start_condition_cmd
    if not ready:
        if facts.start_probe is None:
            return actions  # not due yet, or still running: wait
        if not facts.start_probe:
            attempts = view.start_attempts + 1
            actions.append(StartRefused())
            if facts.max_start_attempts is not None and attempts >= facts.max_start_attempts:
                actions.append(Abandon(f"start condition not met after {attempts} tries"))
            return actions
        actions.append(StartReady())
    if not facts.can_submit or facts.termination_pending:
        return actions  # --max-jobs or a queue limit: wait for a free slot; or for the done check
    if resubmit_after:
        return actions + [Submit(f"after {resubmit_after}", resubmit=True)]
    return actions + [Submit("start condition met" if job.start_condition_cmd else "ready")]


def _decide_in_queue(job: Job, view: JobView, facts: Facts, observation: Observation, done: bool,
                     done_reason: str, current_activity: str | None, changed_at: float | None) -> list[Action]:
    if done:
        # The work is finished; the submission may still be winding down. Leave it alone: the loop keeps
        # watching it (it counts against --max-jobs) and closes the attempt when it leaves the queue.
        return [MarkDone(done_reason)]
    actions: list[Action] = []
    target = state_for(observation.state)
    if target != view.state:
        actions.append(Transition(target, f"{observation.scheduler_id} is {observation.state.value}"))
    if observation.state != SchedulerState.RUNNING:
        return actions
    new_run = view.run_start is None or (observation.start_time and observation.start_time != view.run_start)
    if new_run:
        # A first run starts at the offset recorded at submission; a requeued run (same id, new start time)
        # after everything written so far, Slurm's own preemption line included. The freeze clock starts now.
        offset = view.run_output_offset if view.run_start is None else facts.output.size
        actions += [StartRun(observation.start_time, offset),
                    RecordOutput(activity(facts.output, offset, job.progress_regex), facts.now)]
        if view.run_start is not None:
            actions.append(Log("requeued", f"{observation.scheduler_id} runs again under the same id "
                                           "(requeued by the scheduler): not resubmitted"))
        return actions
    if view.cancelled_for is not None:
        return actions  # already asked to stop
    if job.fail_regex and facts.output.fail_at >= view.run_output_offset:
        actions.append(Cancel(observation.scheduler_id, f"fail_regex matched: {facts.output.fail_line!r}; cancelling",
                              CANCELLED_FAIL_REGEX))
    elif is_frozen(current_activity, changed_at, facts.now, job.effective_freeze_secs):
        what = "progress" if current_activity and current_activity.startswith("progress:") else "output"
        actions.append(Cancel(observation.scheduler_id,
                              f"frozen: no new {what} for {job.effective_freeze_secs:g}s; cancelling to resubmit",
                              CANCELLED_FROZEN))
    return actions


def _decide_left_queue(job: Job, view: JobView, facts: Facts, observation: Observation, done: bool,
                       done_reason: str) -> list[Action]:
    failed_run = job.fail_regex and facts.output.fail_at >= view.run_output_offset
    failure = not done and (is_failed_ending(observation) or view.cancelled_for is not None or bool(failed_run))
    progress = run_progress(facts.output, view.run_output_offset)
    # A clean ending without the termination rule is a continuation (a segment that saved and exited) only if
    # the run got further than the previous one; otherwise the job would be resubmitted forever.
    idle = not done and not failure and observation.state == SchedulerState.COMPLETED and (
        progress is None or progress == view.end_progress)
    actions: list[Action] = [EndAttempt(observation.state.value, observation.exit_code, failure or idle,
                                        observation.elapsed_secs, observation.gpus,
                                        progress if progress is not None else view.end_progress)]
    fault = node_fault(observation, facts.output, view.run_output_offset)
    if fault:
        actions.append(MarkBadNodes(observation.scheduler_id, fault))
    standby = view.standby_id
    if done:
        return actions + cancel_standby(standby, STANDBY_NOT_NEEDED, facts) + [MarkDone(done_reason)]
    if fault and standby_waits(facts):
        actions += cancel_standby(standby, "it would start without excluding the node that failed its "
                                           "predecessor: resubmitting instead", facts)
        standby = None
    ending = f"{observation.scheduler_id} ended {observation.state.value}" + (
        f" (exit {observation.exit_code})" if observation.exit_code not in (None, 0) else "")
    saving = save_ending(facts.output.saves, view.run_output_offset)
    if saving:
        ending += f" ({saving})"
    if view.cancelled_for is not None:
        ending += f" (cancelled by orch: {view.cancelled_for})"
    elif failed_run:
        ending += f" (fail_regex matched: {facts.output.fail_line!r})"
    elif idle:
        ending += (" with no progress since the previous attempt (" + (
            f"still at {progress!r}" if progress is not None else "no progress line in its output") + ")")
        failure = True
    if failure:
        failures = view.consecutive_failures + 1
        if failures >= job.max_failures:
            actions += cancel_standby(standby, "the job is given up: nothing continues it", facts)
            return actions + [MarkFailed(f"{ending}; {failures} failed attempts in a row (max_failures={job.max_failures})")]
        ending += f"; failure {failures}/{job.max_failures}"
    if standby is not None:  # Slurm started (or is about to start) it itself: it is the continuation
        return actions + promote_standby(job, standby, facts, view.state, ending)
    actions.append(Transition(JobState.WAITING, f"{ending} without termination: resubmitting"))
    # A resubmission asks the start condition again, as a first submission does.
    resubmit_view = JobView(name=view.name, state=JobState.WAITING, consecutive_failures=view.consecutive_failures,
                            start_attempts=view.start_attempts, start_ready=False)
    return actions + _decide_waiting(job, resubmit_view, facts, resubmit_after=ending)
