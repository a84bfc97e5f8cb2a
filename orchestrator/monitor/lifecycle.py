"""A job's life cycle: the states, the allowed transitions, and the pure decision for one job.

`decide` takes what the monitor knows about one job (its record in the store and this cycle's
observations) and returns actions. It never runs a command, reads a file or writes the store:
the loop (`orchestrator.monitor.loop`) does that, in one place, so every rule here can be tested
with plain values and a fake clock.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.jobs import Job
from orchestrator.monitor.probes import OutputFacts, is_frozen
from orchestrator.scheduler.base import Observation, SchedulerState


class JobState(enum.Enum):
    WAITING = "waiting"  # not in the queue: waiting for its start condition or a free slot
    QUEUED = "queued"  # submitted (or about to be): pending in the scheduler
    RUNNING = "running"
    DONE = "done"  # termination rule met
    FAILED = "failed"  # crash loop: max_failures consecutive failed attempts
    ABANDONED = "abandoned"  # start condition never met, or cancelled by the user

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.ABANDONED})

ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.WAITING: frozenset({JobState.QUEUED, JobState.RUNNING, JobState.DONE, JobState.FAILED, JobState.ABANDONED}),
    JobState.QUEUED: frozenset({JobState.WAITING, JobState.RUNNING, JobState.DONE, JobState.FAILED, JobState.ABANDONED}),
    JobState.RUNNING: frozenset({JobState.WAITING, JobState.QUEUED, JobState.DONE, JobState.FAILED, JobState.ABANDONED}),
    # A terminal job only moves again when a new `orch run` re-evaluates it from scratch.
    JobState.DONE: frozenset({JobState.WAITING}),
    JobState.FAILED: frozenset({JobState.WAITING}),
    JobState.ABANDONED: frozenset({JobState.WAITING}),
}


def can_transition(old: JobState, new: JobState) -> bool:
    return old == new or new in ALLOWED_TRANSITIONS[old]


class TransitionError(ValueError):
    """A state change the life cycle does not allow (a bug, never user input)."""


def check_transition(old: JobState, new: JobState) -> None:
    if not can_transition(old, new):
        raise TransitionError(f"job state {old.value} -> {new.value} is not allowed")


# Endings that are not the job's fault: the job is resubmitted without counting a failure, whatever
# exit code the scheduler reports for the kill.
_NOT_FAILURE_ENDINGS = frozenset({SchedulerState.TIMEOUT, SchedulerState.PREEMPTED, SchedulerState.CANCELLED})


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
    output_changed_at: float | None = None
    """Monitor time at which the output was first seen with its current fingerprint."""


@dataclass(frozen=True)
class Facts:
    """What this cycle observed about one job."""

    now: float
    scheduler_known: bool
    """False when the scheduler query failed: every job's state is unknown, not gone."""
    observation: Observation | None = None
    """The current attempt as the scheduler sees it (None: no current id, or not reported)."""
    found_by_name: Sequence[Observation] = ()
    """Active submissions with this job's name other than the current id."""
    output: OutputFacts = field(default_factory=OutputFacts)
    termination_probe: bool | None = None
    """`termination_cmd` result when it ran this cycle, else None."""
    start_probe: bool | None = None
    """`start_condition_cmd` result when it ran this cycle, else None."""
    can_submit: bool = True
    """A slot is free under `--max-jobs`."""
    max_start_attempts: int | None = None


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class Transition:
    to: JobState
    reason: str


@dataclass(frozen=True)
class Submit:
    reason: str
    resubmit: bool = False
    """The job's previous submission left the queue without finishing."""


@dataclass(frozen=True)
class Cancel:
    scheduler_id: str
    reason: str


@dataclass(frozen=True)
class Adopt:
    """Record an active submission found by name as the job's current attempt."""

    observation: Observation
    reason: str


@dataclass(frozen=True)
class EndAttempt:
    """The current attempt left the queue (or the job is done while it is still there)."""

    final_state: str
    exit_code: int | None
    failure: bool


@dataclass(frozen=True)
class DropIntent:
    """An intent to submit whose submission is not in the queue: nothing was submitted, forget it."""


@dataclass(frozen=True)
class RecordOutput:
    fingerprint: str | None
    seen_at: float


@dataclass(frozen=True)
class StartRefused:
    """The start condition did not say go: one more start attempt."""


@dataclass(frozen=True)
class StartReady:
    """The start condition said go; remember it until the job is submitted."""


@dataclass(frozen=True)
class Log:
    kind: str
    message: str


Action = Transition | Submit | Cancel | Adopt | EndAttempt | DropIntent | RecordOutput | StartRefused | StartReady | Log


def MarkDone(reason: str) -> Transition:  # noqa: N802 - reads as the action it builds
    return Transition(JobState.DONE, reason)


def MarkFailed(reason: str) -> Transition:  # noqa: N802
    return Transition(JobState.FAILED, reason)


def Abandon(reason: str) -> Transition:  # noqa: N802
    return Transition(JobState.ABANDONED, reason)


# ---------------------------------------------------------------- probes due


def termination_probe_due(job: Job, view: JobView, last_probe_at: float | None, now: float,
                          left_queue: bool) -> bool:
    """Run `termination_cmd` now? At most once per check interval, and always when the job left the queue
    (the done check must be fresh before a resubmission)."""
    if not job.termination_cmd or view.state.is_terminal:
        return False
    if left_queue or last_probe_at is None:
        return True
    return now - last_probe_at >= job.check_interval_secs


def start_probe_due(job: Job, view: JobView, last_probe_at: float | None, now: float) -> bool:
    """Run `start_condition_cmd` now? Only for a waiting job that has not been told go, once per check interval."""
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
    if facts.output.fingerprint != view.output_fingerprint:
        actions.append(RecordOutput(facts.output.fingerprint, facts.now))
        changed_at = facts.now
    done = facts.output.termination_matched or facts.termination_probe is True
    done_reason = "termination_str found in output" if facts.output.termination_matched else "termination_cmd printed 1"

    if not facts.scheduler_known:
        # Unknown is not gone: nothing is submitted, cancelled or ended until the scheduler answers.
        return actions

    if view.scheduler_id is None:
        return actions + _decide_not_in_queue(job, view, facts, done, done_reason)

    observation = facts.observation or Observation(view.scheduler_id, job.name, SchedulerState.GONE)
    if observation.state.is_active:
        return actions + _decide_in_queue(job, view, facts, observation, done, done_reason, changed_at)
    return actions + _decide_left_queue(job, view, facts, observation, done, done_reason)


def _decide_not_in_queue(job: Job, view: JobView, facts: Facts, done: bool, done_reason: str) -> list[Action]:
    actions: list[Action] = []
    if facts.found_by_name:
        # Ours from before a crash (intent recorded, id not), or submitted by an earlier run: adopt, never resubmit.
        newest = max(facts.found_by_name, key=lambda o: _id_order(o.scheduler_id))
        if len(facts.found_by_name) > 1:
            others = ", ".join(o.scheduler_id for o in facts.found_by_name if o is not newest)
            actions.append(Log("duplicate", f"several active submissions named {job.name}; adopting {newest.scheduler_id}, "
                                            f"leaving {others} alone"))
        actions.append(Adopt(newest, "found in the queue by name"))
        if done:
            actions.append(MarkDone(done_reason))  # the submission still counts against --max-jobs until it leaves
        elif _state_for(newest.state) != view.state:
            actions.append(Transition(_state_for(newest.state), f"adopted {newest.scheduler_id}"))
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
            return actions  # not due yet: wait
        if not facts.start_probe:
            attempts = view.start_attempts + 1
            actions.append(StartRefused())
            if facts.max_start_attempts is not None and attempts >= facts.max_start_attempts:
                actions.append(Abandon(f"start condition not met after {attempts} tries"))
            return actions
        actions.append(StartReady())
    if not facts.can_submit:
        return actions  # --max-jobs: wait for a free slot
    if resubmit_after:
        return actions + [Submit(f"after {resubmit_after}", resubmit=True)]
    return actions + [Submit("start condition met" if job.start_condition_cmd else "ready")]


def _decide_in_queue(job: Job, view: JobView, facts: Facts, observation: Observation, done: bool,
                     done_reason: str, changed_at: float | None) -> list[Action]:
    if done:
        # The work is finished; the submission may still be winding down. Leave it alone: the loop keeps
        # watching it (it counts against --max-jobs) and closes the attempt when it leaves the queue.
        return [MarkDone(done_reason)]
    actions: list[Action] = []
    target = _state_for(observation.state)
    if target != view.state:
        actions.append(Transition(target, f"{observation.scheduler_id} is {observation.state.value}"))
        if target == JobState.RUNNING:
            # The freeze clock starts when the job starts, not when an old output file last changed.
            actions.append(RecordOutput(facts.output.fingerprint, facts.now))
        return actions
    if target == JobState.RUNNING and observation.state == SchedulerState.RUNNING and is_frozen(
        facts.output, changed_at, facts.now, job.effective_freeze_secs
    ):
        actions.append(Cancel(observation.scheduler_id,
                              f"frozen: output unchanged for {job.effective_freeze_secs:g}s; cancelling to resubmit"))
    return actions


def _decide_left_queue(job: Job, view: JobView, facts: Facts, observation: Observation, done: bool,
                       done_reason: str) -> list[Action]:
    failure = is_failed_ending(observation) and not done
    actions: list[Action] = [EndAttempt(observation.state.value, observation.exit_code, failure)]
    if done:
        return actions + [MarkDone(done_reason)]
    ending = f"{observation.scheduler_id} ended {observation.state.value}" + (
        f" (exit {observation.exit_code})" if observation.exit_code not in (None, 0) else "")
    if failure:
        failures = view.consecutive_failures + 1
        if failures >= job.max_failures:
            return actions + [MarkFailed(f"{ending}; {failures} failed attempts in a row (max_failures={job.max_failures})")]
        ending += f"; failure {failures}/{job.max_failures}"
    actions.append(Transition(JobState.WAITING, f"{ending} without termination: resubmitting"))
    # A resubmission asks the start condition again, as a first submission does.
    resubmit_view = JobView(name=view.name, state=JobState.WAITING, consecutive_failures=view.consecutive_failures,
                            start_attempts=view.start_attempts, start_ready=False)
    return actions + _decide_waiting(job, resubmit_view, facts, resubmit_after=ending)


def _state_for(state: SchedulerState) -> JobState:
    return JobState.QUEUED if state == SchedulerState.PENDING else JobState.RUNNING


def _id_order(scheduler_id: str) -> tuple[int, str]:
    """Slurm ids are numbers (array ids `N_M`); newest = largest."""
    head = scheduler_id.split("_")[0].split(".")[0]
    return (int(head), scheduler_id) if head.isdigit() else (-1, scheduler_id)
