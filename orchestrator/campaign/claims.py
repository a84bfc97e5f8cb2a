"""Which checkpoints still need converting, and claiming them so no two converters take the same one.

A claim is a lock file `in_progress_checkpoints/iter_<N>.lock` created with O_EXCL and holding
`pid host time`. The pid is the claimer's *parent* (the converter job's shell), because `orch ckpt claim`
itself exits at once. A lock is stale, and may be taken over, when its owner is gone (same host, pid
dead) or it is older than `stale_secs` (owner on another host, or a crashed node). All claim decisions
are serialised by a `filelock` on `in_progress_checkpoints/.claims.lock`, so a stale lock is never taken
over twice and O_EXCL is a second guard for file systems where that lock is weak.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.campaign.checkpoints import RunLayout, inspect_checkpoints
from orchestrator.errors import UserError
from orchestrator.process import pid_alive

DEFAULT_STALE_SECS = 6 * 3600.0  # longer than any conversion + evaluation of one checkpoint
CLAIMS_LOCK_TIMEOUT_SECS = 120.0


@dataclass(frozen=True)
class LockInfo:
    pid: int
    host: str
    time: float


def read_lock(path: Path) -> LockInfo | None:
    """The owner written in a lock file; None when the file is gone. Unparsable content: owner unknown."""
    try:
        text = path.read_text()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    parts = text.split()
    try:
        return LockInfo(pid=int(parts[0]), host=parts[1], time=float(parts[2]))
    except (IndexError, ValueError):
        return LockInfo(pid=0, host="", time=mtime)  # half-written or foreign: judge by age only


def is_stale(info: LockInfo, stale_secs: float, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    if now - info.time >= stale_secs:
        return True
    return info.host == socket.gethostname() and info.pid > 0 and not pid_alive(info.pid)


def _live_lock(layout: RunLayout, iteration: int, stale_secs: float, now: float) -> bool:
    info = read_lock(layout.lock_file(iteration))
    return info is not None and not is_stale(info, stale_secs, now)


def explain_pending(
    run_dir: str | Path, min_iter: int = 0, stale_secs: float = DEFAULT_STALE_SECS
) -> list[tuple[int, bool, str]]:
    """(iteration, pending?, why) for every checkpoint folder of the run, in iteration order."""
    layout = RunLayout(Path(run_dir))
    now = time.time()
    verdicts: dict[int, tuple[bool, str]] = {}
    for checkpoint in inspect_checkpoints(layout.checkpoints):
        iteration = checkpoint.iteration
        if not checkpoint.complete:
            if iteration not in verdicts:
                verdicts[iteration] = (False, f"not complete ({checkpoint.layout}): {checkpoint.reason}")
            continue
        # Lock before marker: `mark_done` writes the marker before dropping the lock, so a conversion
        # that ends between the two checks is still seen (as a lock or as a marker), never as pending.
        if iteration < min_iter:
            verdicts[iteration] = (False, f"below --min-iter {min_iter}")
        elif _live_lock(layout, iteration, stale_secs, now):
            verdicts[iteration] = (False, f"claimed: {layout.lock_file(iteration)}")
        elif layout.done_marker(iteration).exists():
            verdicts[iteration] = (False, f"converted: {layout.done_marker(iteration)}")
        else:
            verdicts[iteration] = (True, f"pending: {checkpoint.layout}, {checkpoint.reason}")
    return [(iteration, *verdicts[iteration]) for iteration in sorted(verdicts)]


def pending_iterations(run_dir: str | Path, min_iter: int = 0, stale_secs: float = DEFAULT_STALE_SECS) -> list[int]:
    """Complete checkpoints at or above `min_iter` that are neither converted nor held by a live claim."""
    return [iteration for iteration, pending, _why in explain_pending(run_dir, min_iter, stale_secs) if pending]


def _create_lock(path: Path, owner_pid: int) -> bool:
    """Create the lock file atomically; False when it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{owner_pid} {socket.gethostname()} {time.time():.3f}\n")
    return True


def claim_next(
    run_dir: str | Path,
    min_iter: int = 0,
    stale_secs: float = DEFAULT_STALE_SECS,
    owner_pid: int | None = None,
) -> int | None:
    """Lock the lowest pending iteration and return it; None when nothing is pending."""
    from filelock import FileLock

    layout = RunLayout(Path(run_dir))
    if not layout.checkpoints.is_dir():
        return None
    owner_pid = os.getppid() if owner_pid is None else owner_pid
    layout.in_progress.mkdir(parents=True, exist_ok=True)
    with FileLock(str(layout.in_progress / ".claims.lock"), timeout=CLAIMS_LOCK_TIMEOUT_SECS):
        for iteration in pending_iterations(run_dir, min_iter, stale_secs):
            lock = layout.lock_file(iteration)
            if lock.exists():  # pending despite a lock: the lock is stale, take it over
                lock.unlink(missing_ok=True)
            if not _create_lock(lock, owner_pid):
                continue
            # `mark_done` writes the marker before it drops the lock, so a converter that finished this
            # iteration after our pending scan has its marker visible now: give the claim back.
            if layout.done_marker(iteration).exists():
                lock.unlink(missing_ok=True)
                continue
            return iteration
    return None


def mark_done(run_dir: str | Path, iteration: int) -> Path:
    """Write the converted marker (atomically) and release the claim. Safe to repeat.

    Only for a checkpoint that is there and complete: a marker for a typo'd or half-written iteration would
    make `pending` skip a checkpoint that was never converted (and the convert job's termination say done)."""
    layout = RunLayout(Path(run_dir))
    found = inspect_checkpoints(layout.checkpoints) if layout.checkpoints.is_dir() else []
    these = [checkpoint for checkpoint in found if checkpoint.iteration == iteration]
    if not these:
        known = ", ".join(str(i) for i in sorted({c.iteration for c in found})[-5:]) or "none"
        raise UserError(f"{layout.checkpoints}: no checkpoint of iteration {iteration} (the last ones: {known}); "
                        "nothing marked")
    if not any(checkpoint.complete for checkpoint in these):
        raise UserError(f"{layout.checkpoints}: the checkpoint of iteration {iteration} is not complete "
                        f"({these[0].reason}); nothing marked (`orch ckpt pending --explain` tells more)")
    layout.converted.mkdir(parents=True, exist_ok=True)
    marker = layout.done_marker(iteration)
    temporary = marker.with_name(f".{marker.name}.{os.getpid()}")
    temporary.write_text(f"{socket.gethostname()} {time.time():.3f}\n")
    os.replace(temporary, marker)
    layout.lock_file(iteration).unlink(missing_ok=True)
    return marker


def release(run_dir: str | Path, iteration: int) -> None:
    """Give a claim back without marking it converted (a failed conversion is retried later)."""
    RunLayout(Path(run_dir)).lock_file(iteration).unlink(missing_ok=True)
