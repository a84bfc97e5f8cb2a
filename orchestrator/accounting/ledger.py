"""The spend ledger: GPU-hours each attempt took (elapsed x allocated GPUs), read from the state store.

Elapsed time is the scheduler's own record, stored when the attempt ended (sacct's ElapsedRaw, squeue's
TimeUsed, the local wrapper's clock); an attempt still running counts from when the monitor saw it start.
GPUs are what the scheduler allocated (AllocTRES / tres-alloc), else what the script asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from orchestrator.accounting.estimate import JobEstimate
from orchestrator.state.store import AttemptRecord

# Endings that did not finish the work they were given (their GPU-hours are "wasted").
UNFINISHED_ENDINGS = frozenset({"FAILED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY"})


def attempt_seconds(attempt: AttemptRecord, now: float) -> float:
    if attempt.ended_at is None:
        if attempt.started_at is not None:
            return max(now - attempt.started_at, attempt.elapsed_secs or 0.0)
        return attempt.elapsed_secs or 0.0
    if attempt.elapsed_secs is not None:
        return attempt.elapsed_secs
    if attempt.started_at is not None:
        return max(0.0, attempt.ended_at - attempt.started_at)
    return 0.0


def attempt_gpus(attempt: AttemptRecord) -> int:
    return attempt.gpus if attempt.gpus is not None else (attempt.estimate_gpus or 0)


def attempt_gpu_hours(attempt: AttemptRecord, now: float) -> float:
    return attempt_gpus(attempt) * attempt_seconds(attempt, now) / 3600.0


def is_wasted(attempt: AttemptRecord) -> bool:
    """An attempt that ended without finishing: failed, timed out, preempted, lost its node, or was
    cancelled by the monitor (frozen, fail_regex)."""
    return attempt.ended_at is not None and (attempt.final_state in UNFINISHED_ENDINGS or attempt.cancel_reason is not None)


@dataclass(frozen=True)
class JobSpend:
    spent: float
    wasted: float
    running: bool


def job_spend(attempts: Iterable[AttemptRecord], now: float) -> JobSpend:
    spent = wasted = 0.0
    running = False
    for attempt in attempts:
        hours = attempt_gpu_hours(attempt, now)
        spent += hours
        if is_wasted(attempt):
            wasted += hours
        running = running or (attempt.ended_at is None and attempt.scheduler_id is not None)
    return JobSpend(spent, wasted, running)


def committed_gpu_hours(attempts: Iterable[AttemptRecord], now: float) -> float:
    """What the campaign has spent plus what its open attempts may still spend (each up to its limit).

    The budget guard's measure: submitting more is safe while this plus the new job's estimate fits.
    An open attempt without a time limit counts what it has spent so far.
    """
    total = 0.0
    for attempt in attempts:
        spent = attempt_gpu_hours(attempt, now)
        if attempt.ended_at is None and attempt.estimate_hours is not None:
            spent = max(spent, attempt_gpus(attempt) * attempt.estimate_hours)
        total += spent
    return total


def remaining_gpu_hours(estimate: JobEstimate, open_attempt: AttemptRecord | None, now: float) -> float:
    """A job that is not done yet: one more attempt's estimate, less what its running attempt already used."""
    if open_attempt is None:
        return estimate.gpu_hours
    return max(0.0, estimate.gpu_hours - attempt_gpu_hours(open_attempt, now))


def spend_by_job(attempts: Iterable[AttemptRecord], now: float) -> Mapping[str, JobSpend]:
    grouped: dict[str, list[AttemptRecord]] = {}
    for attempt in attempts:
        grouped.setdefault(attempt.job, []).append(attempt)
    return {job: job_spend(items, now) for job, items in grouped.items()}
