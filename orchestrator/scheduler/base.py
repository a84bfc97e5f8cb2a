"""The scheduler boundary: submit, query many jobs at once, cancel. Nothing else crosses it.

Backends (slurm.py, local.py) are the only code that runs scheduler commands. The monitor talks to
them through `Scheduler` and never calls `subprocess` itself.

The one rule every backend keeps: a scheduler command that fails or times out raises
`SchedulerUnavailable`, meaning "state unknown". It never reports jobs as gone.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from orchestrator.jobs import Job


class SchedulerState(enum.Enum):
    """What the scheduler says about one submission (one attempt of a job)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"  # still in the queue, winding down
    COMPLETED = "COMPLETED"  # exit code 0
    FAILED = "FAILED"  # non-zero exit code
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    GONE = "GONE"  # left the queue; final state could not be learned (e.g. past MinJobAge, no accounting)

    @property
    def is_active(self) -> bool:
        """Still queued or running: the scheduler owns it, we must not submit it again."""
        return self in (SchedulerState.PENDING, SchedulerState.RUNNING, SchedulerState.COMPLETING)

    @property
    def is_failure(self) -> bool:
        """An ending that counts towards a job's crash loop."""
        return self in (SchedulerState.FAILED, SchedulerState.OUT_OF_MEMORY, SchedulerState.NODE_FAIL)


@dataclass(frozen=True)
class Observation:
    """One submission as the scheduler sees it."""

    scheduler_id: str
    name: str
    state: SchedulerState
    exit_code: int | None = None
    reason: str = ""
    start_time: str = ""
    """When the current run started, as the scheduler prints it ("" if unknown or not started). A job
    requeued under the same id (preemption, `scontrol requeue`) starts again with a new start time."""
    script: str = ""
    """The batch script the scheduler runs for this submission (absolute where the scheduler knows it)."""
    work_dir: str = ""
    """The submission's working directory (a relative `script` is relative to it)."""
    elapsed_secs: float | None = None
    """How long the current (or last) run has run, by the scheduler's own clock; None if unknown."""
    gpus: int | None = None
    """GPUs allocated to the submission (requested while pending); None if none or unknown."""


@dataclass(frozen=True)
class NodeGpus:
    """GPUs per node by partition, from the cluster's own node definition (a backend's `node_gpus()`, an
    optional capability beside the boundary: cost estimates use it, the monitor never needs it)."""

    per_partition: Mapping[str, int]
    default_partition: str = ""
    everywhere: int | None = None
    """The same count on every partition (the local backend: this machine's, none)."""

    def of(self, partition: str) -> int | None:
        if self.everywhere is not None:
            return self.everywhere
        return self.per_partition.get(partition or self.default_partition)


def job_id_order(job_id: str) -> tuple[int, str]:
    """Sort key in submission order: Slurm ids are numbers, an array task `N_M` or a step `N.S` sorts by its job N;
    other ids after them all."""
    head = job_id.split("_")[0].split(".")[0]
    return (int(head), job_id) if head.isdigit() else (1 << 62, job_id)


class SchedulerUnavailable(Exception):
    """A scheduler command failed or timed out: the state of every job is unknown, not gone."""


class SubmitError(Exception):
    """The submit command ran but did not submit (non-zero exit, no job id in its output)."""


class SubmitLimited(SubmitError):
    """The scheduler refused the submission because a queue limit is reached (e.g. MaxSubmitJobs).

    Nothing was submitted, and the same submission is accepted once jobs leave the queue: waiting
    is the cure, so it never counts as the job's failure.
    """


class SubmitExcludedAll(SubmitError):
    """The scheduler refused a submission that excluded nodes: no node that could run it is left. Nothing was
    submitted; the same submission without the exclusion may be accepted."""


class Scheduler(Protocol):
    name: str

    def submit(self, job: Job, exclude: Sequence[str] = (), after: str | None = None) -> str:
        """Submit the job's rendered script, on none of the `exclude` nodes; return the scheduler id. With `after`,
        the submission starts only once that one has ended (`--dependency=afterany`); a backend that can chain
        says so with an optional `can_chain(job) -> bool`, and refuses (`SubmitError`) when it cannot.

        Raises `SchedulerUnavailable` when the scheduler could not be reached (the job may or may
        not have been submitted: the caller reconciles by name), `SubmitLimited` when a queue limit
        refused it (retry later), `SubmitError` when it refused for any other reason.
        """
        ...

    def query(self, scheduler_ids: Collection[str], names: Collection[str]) -> Mapping[str, Observation]:
        """Observe many submissions at once, with a bounded number of scheduler commands.

        Returns observations keyed by scheduler id for: every id in `scheduler_ids` (with its final
        state, or GONE, if it left the queue), and every active job of this user whose name is in
        `names` (so a submission whose id was never recorded is found again), with its `script` and
        `work_dir` so the caller can tell its own submissions from another campaign's of the same name.
        Raises `SchedulerUnavailable` if the scheduler could not be asked.
        """
        ...

    def cancel(self, scheduler_ids: Collection[str]) -> None:
        """Cancel these submissions (one command). Raises `SchedulerUnavailable` on failure."""
        ...
