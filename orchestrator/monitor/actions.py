"""What the monitor's decision for one job can ask for (`lifecycle.decide`, `prequeue`): plain values, carried out by
`monitor.effects` in the order given."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.job_state import JobState
from orchestrator.scheduler.base import Observation


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
    why: str
    """`CANCELLED_FROZEN` or `CANCELLED_FAIL_REGEX`: recorded, and the attempt's end counts as a failure."""


@dataclass(frozen=True)
class Adopt:
    """Record an active submission of this campaign found by name as the job's current attempt."""

    observation: Observation
    reason: str


@dataclass(frozen=True)
class EndAttempt:
    """The current attempt left the queue (or the job is done while it is still there)."""

    final_state: str
    exit_code: int | None
    failure: bool
    elapsed_secs: float | None = None
    """The scheduler's figure for how long it ran (the spend ledger)."""
    gpus: int | None = None
    progress: str | None = None
    """The progress mark the run ended at (kept: the next ending is compared with it)."""


@dataclass(frozen=True)
class DropIntent:
    """An intent to submit whose submission is not in the queue: nothing was submitted, forget it."""


@dataclass(frozen=True)
class RecordOutput:
    fingerprint: str | None
    seen_at: float


@dataclass(frozen=True)
class StartRun:
    """The current attempt began a run: its first, or another under the same id after a requeue."""

    start_key: str
    output_offset: int


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


@dataclass(frozen=True)
class MarkBadNodes:
    """The nodes this ended attempt ran on failed it: exclude them from later submissions."""

    scheduler_id: str
    why: str


# The next segment, pre-queued behind the current attempt (`monitor.prequeue`).


@dataclass(frozen=True)
class SubmitStandby:
    """Submit the next segment now, to start when `after_id` ends."""

    after_id: str
    reason: str


@dataclass(frozen=True)
class CancelStandby:
    """Cancel the pre-queued segment (if it has an id and is still in the queue) and close its attempt."""

    scheduler_id: str | None
    reason: str
    observation: Observation | None = None
    """It as the scheduler sees it this cycle: one that already ran and ended is closed with its own ending."""


@dataclass(frozen=True)
class PromoteStandby:
    """The current attempt is closed: the pre-queued segment becomes the job's current attempt."""

    scheduler_id: str
    reason: str


@dataclass(frozen=True)
class AdoptStandby:
    """The pre-queued segment's intent has no id (the monitor died during its sbatch): it is this submission."""

    observation: Observation


@dataclass(frozen=True)
class EndStandby:
    """The pre-queued segment is gone before it was needed (or was never submitted): close its attempt."""

    final_state: str
    exit_code: int | None
    reason: str


StandbyAction = SubmitStandby | CancelStandby | PromoteStandby | AdoptStandby | EndStandby


Action = (Transition | Submit | Cancel | Adopt | EndAttempt | DropIntent | RecordOutput | StartRun | StartRefused
          | StartReady | Log | MarkBadNodes | StandbyAction)


def MarkDone(reason: str) -> Transition:  # noqa: N802 - reads as the action it builds
    return Transition(JobState.DONE, reason)


def MarkFailed(reason: str) -> Transition:  # noqa: N802
    return Transition(JobState.FAILED, reason)


def Abandon(reason: str) -> Transition:  # noqa: N802
    return Transition(JobState.ABANDONED, reason)
