"""One monitor per campaign directory: `.orch/monitor.lock`, held for the monitor's whole life.

Two monitors on the same store would both submit the same jobs. filelock's OS-level lock is released
by the kernel when the holder dies (even by SIGKILL), so a crashed monitor never blocks the next one.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import UserError
from orchestrator.state.store import state_dir

LOCK_NAME = "monitor.lock"


class MonitorLock:
    def __init__(self, lock) -> None:  # filelock.FileLock, imported lazily
        self._lock = lock

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> MonitorLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def acquire_monitor_lock(workdir: str | Path = ".") -> MonitorLock:
    """Take the campaign's monitor lock at once, or raise UserError naming the lock file."""
    import filelock

    directory = state_dir(workdir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    lock = filelock.FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise UserError(f"another `orch run` is already monitoring this campaign (lock {path} is held); "
                        "stop it first or wait for it to finish") from None
    return MonitorLock(lock)
