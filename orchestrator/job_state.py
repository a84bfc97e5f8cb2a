"""A job's states in a campaign and the transitions between them.

Defined below both the state store (which persists a state) and the monitor (which decides on one):
neither layer owns the other's vocabulary.
"""

from __future__ import annotations

import enum


class JobState(enum.Enum):
    WAITING = "waiting"  # not in the queue: waiting for its start condition or a free slot
    QUEUED = "queued"  # submitted (or about to be): pending in the scheduler
    RUNNING = "running"
    DONE = "done"  # termination rule met
    FAILED = "failed"  # crash loop: max_failures consecutive failed attempts
    ABANDONED = "abandoned"  # start condition never met (--max-start-attempts)
    CANCELLED = "cancelled"  # by the user (`orch cancel`): stays so across restarts until `orch run --retry-cancelled`

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.ABANDONED, JobState.CANCELLED})
# Terminal states a new `orch run` re-evaluates from scratch (a done job is found done again); a user's cancel
# is never undone by a restart.
RE_EVALUATED_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.ABANDONED})

_ACTIVE_TARGETS = frozenset({JobState.DONE, JobState.FAILED, JobState.ABANDONED, JobState.CANCELLED})
ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.WAITING: frozenset({JobState.QUEUED, JobState.RUNNING}) | _ACTIVE_TARGETS,
    JobState.QUEUED: frozenset({JobState.WAITING, JobState.RUNNING}) | _ACTIVE_TARGETS,
    JobState.RUNNING: frozenset({JobState.WAITING, JobState.QUEUED}) | _ACTIVE_TARGETS,
    # A terminal job only moves again when a new `orch run` re-evaluates it from scratch, or the user cancels it.
    JobState.DONE: frozenset({JobState.WAITING, JobState.CANCELLED}),
    JobState.FAILED: frozenset({JobState.WAITING, JobState.CANCELLED}),
    JobState.ABANDONED: frozenset({JobState.WAITING, JobState.CANCELLED}),
    # Only the user undoes a cancel (`orch run --retry-cancelled`).
    JobState.CANCELLED: frozenset({JobState.WAITING}),
}


def can_transition(old: JobState, new: JobState) -> bool:
    return old == new or new in ALLOWED_TRANSITIONS[old]


class TransitionError(ValueError):
    """A state change the life cycle does not allow (a bug, never user input)."""


def check_transition(old: JobState, new: JobState) -> None:
    if not can_transition(old, new):
        raise TransitionError(f"job state {old.value} -> {new.value} is not allowed")
