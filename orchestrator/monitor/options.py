"""What the monitor is told (options, the lease it fences on) and the small records one cycle passes around."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from orchestrator.jobs import Job
from orchestrator.monitor.lifecycle import JobView
from orchestrator.monitor.probe_runner import DEFAULT_PROBE_WORKERS
from orchestrator.monitor.probes import OutputFacts
from orchestrator.scheduler.base import NodeGpus, Observation
from orchestrator.state.bad_nodes import DEFAULT_HOURS as DEFAULT_BAD_NODE_HOURS
from orchestrator.state.bad_nodes import DEFAULT_LIMIT as DEFAULT_MAX_BAD_NODES
from orchestrator.state.store import JobRecord

MAX_DEFAULT_POLL_SECS = 60.0
MAX_BACKOFF_SECS = 300.0
# How long a cycle waits for the probes it launched before deciding with the results in hand: fast
# probes are used in the same cycle, slow ones in a later one, and no probe holds back the others.
MAX_PROBE_WAIT_SECS = 2.0
# Past a queue limit, how often one submission beyond the campaign's own queued jobs is tried again
# (other users' or campaigns' jobs may have left the queue meanwhile).
DEFAULT_LIMIT_RETRY_SECS = 60.0
LINGER_WAIT_SECS = 30.0  # at most this long, at the end, for finished jobs' submissions to leave the queue
FENCED_EXIT = 3  # `orch run`'s exit code when the monitor lost its lease to another one


class Fence(Protocol):
    """The campaign's monitor lease as the loop uses it (`state.lease.MonitorLease`)."""

    def still_held(self) -> bool: ...

    def heartbeat(self) -> bool: ...


def default_poll_secs(jobs: Sequence[Job]) -> float:
    """The shortest check interval of the campaign, capped so a long interval still notices ends promptly."""
    if not jobs:
        return MAX_DEFAULT_POLL_SECS
    return max(1.0, min(MAX_DEFAULT_POLL_SECS, min(job.check_interval_secs for job in jobs)))


@dataclass(frozen=True)
class MonitorOptions:
    poll_secs: float
    max_jobs: int | None = None
    max_start_attempts: int | None = None
    probe_workers: int = DEFAULT_PROBE_WORKERS
    limit_retry_secs: float = DEFAULT_LIMIT_RETRY_SECS
    budget_gpu_hours: float | None = None
    """Submit nothing that could take the campaign's GPU-hours (spent + open attempts' limits) past this."""
    retry_cancelled: bool = False
    """Jobs the user cancelled are run again (otherwise a cancel outlives every restart)."""
    node_gpus: NodeGpus | None = None
    """The cluster's GPUs per node, for jobs that ask for nodes and name no GPUs (the budget counts them)."""
    probe_wait_secs: float | None = None
    """How long a cycle waits for the probes it launched (default: at most MAX_PROBE_WAIT_SECS). A tick, which
    ends after its one cycle, waits for all of them."""
    bad_node_hours: float = DEFAULT_BAD_NODE_HOURS
    """How long a node that failed an attempt stays excluded from the campaign's submissions."""
    max_bad_nodes: int = DEFAULT_MAX_BAD_NODES
    """At most this many nodes excluded at once (the most recently marked): a campaign never starves itself."""
    reevaluate_finished: bool = True
    """Done, failed and abandoned jobs are looked at afresh at start (a restart); a tick leaves them be."""
    hand_over_at: float | None = None
    """time.monotonic() after which the monitor hands over to a successor and stops (a monitor job's generation
    before its time limit); None: run until the campaign is finished."""


@dataclass(frozen=True)
class CycleReport:
    scheduler_known: bool
    submitted: int
    finished: bool


@dataclass
class QueueLimit:
    """The cluster refused a submission for a queue limit: hold the campaign at what it accepted."""

    cap: int
    """The campaign's jobs in the queue when the refusal came."""
    retry_at: float


@dataclass(frozen=True)
class Prepared:
    job: Job
    record: JobRecord
    view: JobView
    observation: Observation | None
    output: OutputFacts
    in_queue: bool
    """An active submission of this job is in the queue (its current id, or one of this campaign's found by name)."""
    standby_observation: Observation | None = None
    """The pre-queued next segment as the scheduler sees it."""
    standby_in_queue: bool = False


@dataclass(frozen=True)
class Applied:
    scheduler_answered: bool = True
    submitted: bool = False
    held: bool = False
    """The submission waits for the cycle's job arrays (`monitor.array_effects`): it counts as in the queue."""
