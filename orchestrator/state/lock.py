"""One monitor per host and campaign, at once: `monitor.lock` in the campaign's state folder, flock()ed for the
monitor's whole life.

The kernel drops the lock when its holder dies (even by SIGKILL), so a crashed monitor never blocks the next
one, and two monitors started on one host at the same instant cannot both pass. Across hosts the lease
(`state.lease`) decides, since file locks there may be node-local or missing: where flock() fails for lack of
lock support (Lustre `noflock`: ENOSYS) this lock is skipped and the lease alone decides.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from orchestrator.errors import UserError
from orchestrator.state.lease import MonitorLease
from orchestrator.state.sqlite_files import NO_LOCK_ERRNOS

LOCK_NAME = "monitor.lock"


class MonitorLock:
    def __init__(self, descriptor: int | None) -> None:
        self._descriptor = descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing drops the flock
            self._descriptor = None

    def __enter__(self) -> MonitorLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def acquire_monitor_lock(directory: str | Path) -> MonitorLock:
    """Take the campaign's monitor lock (in its state folder) at once, or raise UserError naming the lock file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(descriptor)
        if error.errno in NO_LOCK_ERRNOS:
            return MonitorLock(None)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise UserError(f"another `orch run` is already monitoring this campaign (lock {path} is held); "
                            "stop it first or wait for it to finish") from None
        raise
    return MonitorLock(descriptor)


def acquire_writer(directory: str | Path,
                   job_ended: Callable[[str], bool] | None = None) -> tuple[MonitorLock, MonitorLease]:
    """The right to write the campaign's store: this host's lock, then the lease any host respects.
    Raises UserError naming the holder when a monitor (or a cancel) has it. `job_ended`: see `stale_reason`."""
    lock = acquire_monitor_lock(directory)
    try:
        return lock, MonitorLease.acquire(directory, job_ended=job_ended)
    except BaseException:
        lock.release()
        raise
