"""One monitor per campaign: `monitor.lock` in the campaign's state folder, held for the monitor's whole life.

Two monitors on the same store would both submit the same jobs. filelock's OS-level lock is released
by the kernel when the holder dies (even by SIGKILL), so a crashed monitor never blocks the next one.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import UserError

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


def acquire_monitor_lock(directory: str | Path) -> MonitorLock:
    """Take the campaign's monitor lock (in its state folder) at once, or raise UserError naming the lock file."""
    import filelock

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    lock = filelock.FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise UserError(f"another `orch run` is already monitoring this campaign (lock {path} is held); "
                        "stop it first or wait for it to finish") from None
    return MonitorLock(lock)
