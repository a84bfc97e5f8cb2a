"""The records a campaign's store hands out (`state.store`): plain values, read in one query per table."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from orchestrator.job_state import JobState


@dataclass(frozen=True)
class AttemptRecord:
    id: int
    job: str
    scheduler_id: str | None
    intent_at: float
    submitted_at: float | None
    started_at: float | None
    ended_at: float | None
    final_state: str | None
    exit_code: int | None
    adopted: bool
    cancel_reason: str | None = None
    """Why the monitor cancelled this attempt ("frozen", "fail_regex"); such an ending is a failure."""
    elapsed_secs: float | None = None
    """How long it ran, by the scheduler's record (sacct, squeue, the local wrapper); None if unknown."""
    gpus: int | None = None
    """GPUs the scheduler allocated to it; None if unknown (then `estimate_gpus` counts)."""
    estimate_gpus: int | None = None
    """GPUs its script asked for, read when it was submitted."""
    estimate_hours: float | None = None
    """Its time limit in hours, read when it was submitted; None: no limit."""
    provenance: dict[str, Any] | None = None
    """What it was submitted with: config and script hashes, fixes, filters, versions (`accounting.provenance`)."""
    standby: bool = False
    """A pre-queued next segment still waiting behind the current attempt (`--dependency=afterany:after_id`)."""
    after_id: str | None = None
    """The submission it was queued behind (pre-queued segments only; kept after it became the current one)."""
    array_script: str | None = None
    """The array driver script it was submitted as a task of (`scheduler.array_driver`); None: a job of its own."""
    array_index: int | None = None
    """Its task index in that array (its scheduler id is `<array id>_<index>`)."""


@dataclass(frozen=True)
class JobRecord:
    name: str
    state: JobState
    consecutive_failures: int
    start_attempts: int
    start_ready: bool
    output_fingerprint: str | None
    output_changed_at: float | None
    last_termination_probe: float | None
    last_start_probe: float | None
    reason: str
    updated_at: float
    current: AttemptRecord | None
    """The unfinished attempt, if any (intent recorded, not yet seen to end), pre-queued segments aside."""
    attempts: int
    last_scheduler_id: str | None = None
    """Id of the newest submission with a known id, finished or not (pre-queued ones once promoted)."""
    run_start: str | None = None
    """The scheduler's start time of the current attempt's current run; None until it is seen running."""
    run_output_offset: int = 0
    """Size of the output file when the current run began: what lies before it is not this run's."""
    end_progress: str | None = None
    """The progress mark the job's previous attempt ended at (a resubmission must get further)."""
    standby: AttemptRecord | None = None
    """The next segment, pre-queued behind `current` (intent recorded, not yet promoted or ended)."""


def attempt_from_row(row: sqlite3.Row) -> AttemptRecord:
    return AttemptRecord(
        id=row["id"], job=row["job"], scheduler_id=row["scheduler_id"], intent_at=row["intent_at"],
        submitted_at=row["submitted_at"], started_at=row["started_at"], ended_at=row["ended_at"],
        final_state=row["final_state"], exit_code=row["exit_code"], adopted=bool(row["adopted"]),
        cancel_reason=row["cancel_reason"], elapsed_secs=row["elapsed_secs"], gpus=row["gpus"],
        estimate_gpus=row["estimate_gpus"], estimate_hours=row["estimate_hours"],
        provenance=json.loads(row["provenance"]) if row["provenance"] else None,
        standby=bool(row["standby"]), after_id=row["after_id"], array_script=row["array_script"],
        array_index=row["array_index"],
    )
