"""Start conditions and termination commands, run concurrently and bounded, off the monitor's thread.

AutoExperiment's convention: a probe is a shell command that answers by printing `1` (yes) or anything
else (no). Campaigns have hundreds of them, each often a Python process (`orch ckpt pending`), some
slow: run one after another they would hold back every other job's observation and submission for
minutes. `ProbeRunner` runs them on a bounded pool of threads, each under a time limit that kills the
probe's whole process group, and never starts a second probe for a job while its first still runs.
The loop launches due probes and picks up finished results; it never waits on one probe.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from orchestrator.process import CommandTimeout, run_command

DEFAULT_PROBE_WORKERS = 16
DEFAULT_PROBE_TIMEOUT_SECS = 300.0


@dataclass(frozen=True)
class FlagResult:
    """A start/termination command's verdict: `flag` is True only when it printed `1`."""

    flag: bool
    detail: str = ""
    error: bool = False
    """The command failed, timed out or printed no number (worth a log line)."""
    timed_out: bool = False


def run_flag_command(command: str, timeout: float = DEFAULT_PROBE_TIMEOUT_SECS, cwd: str | None = None) -> FlagResult:
    """Run a shell command that answers by printing `1` (yes) or anything else (no).

    A command that fails, times out or prints something that is not a number is a "no" (with a detail
    to log), never a crash of the monitor.
    """
    try:
        completed = run_command(command, timeout, cwd=cwd)
    except CommandTimeout:
        return FlagResult(False, f"timed out after {timeout:g}s", error=True, timed_out=True)
    except OSError as error:
        return FlagResult(False, f"could not run: {error}", error=True)
    text = completed.stdout.strip()
    if completed.returncode != 0:
        stderr = completed.stderr.strip().splitlines()
        return FlagResult(False, f"exit {completed.returncode}" + (f": {stderr[-1]}" if stderr else ""), error=True)
    try:
        return FlagResult(int(text.split()[-1]) == 1 if text else False, f"printed {text[-40:]!r}")
    except ValueError:
        return FlagResult(False, f"printed {text[-40:]!r}, not a number", error=True)


ProbeFunction = Callable[[str, float], FlagResult]


@dataclass(frozen=True)
class ProbeOutcome:
    result: FlagResult
    launched_at: float
    """Monitor time at which the probe was started (results older than an event are stale for it)."""


class ProbeRunner:
    """At most one probe per key in flight; results are kept until taken."""

    def __init__(self, workers: int = DEFAULT_PROBE_WORKERS, probe: ProbeFunction = run_flag_command) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="orch-probe")
        self._probe = probe
        self._lock = threading.Lock()
        self._running: dict[Hashable, tuple[concurrent.futures.Future[FlagResult], float]] = {}

    def launch(self, key: Hashable, command: str, timeout: float, now: float) -> bool:
        """Start a probe unless one for `key` is still running or unread; True when started."""
        with self._lock:
            if key in self._running:
                return False
            self._running[key] = (self._pool.submit(self._safe_probe, command, timeout), now)
            return True

    def _safe_probe(self, command: str, timeout: float) -> FlagResult:
        try:
            return self._probe(command, timeout)
        except Exception as error:  # a probe must never take a worker thread (or the monitor) down
            return FlagResult(False, f"probe raised {type(error).__name__}: {error}", error=True)

    def busy(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._running

    def take(self, key: Hashable) -> ProbeOutcome | None:
        """The finished probe's outcome (removed), or None while it runs or when there is none."""
        with self._lock:
            entry = self._running.get(key)
            if entry is None or not entry[0].done():
                return None
            del self._running[key]
        return ProbeOutcome(entry[0].result(), entry[1])

    def wait(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the probes in flight to finish (returns early when all have)."""
        with self._lock:
            futures = [future for future, _ in self._running.values() if not future.done()]
        if futures and timeout > 0:
            concurrent.futures.wait(futures, timeout=timeout)

    def close(self) -> None:
        """Stop taking probes; running ones finish (each is bounded by its own time limit)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
