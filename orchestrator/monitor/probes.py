"""Facts about a job the scheduler does not know: its output file, its start and termination commands.

`is_frozen` is pure. The readers (`OutputWatcher`, `run_flag_command`) touch the file system or run
a shell command; only the loop calls them.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

# A probe that hangs must not stall the monitor of a whole campaign.
PROBE_TIMEOUT_SECS = 120.0


@dataclass(frozen=True)
class OutputFacts:
    """The job's output file as seen this cycle."""

    fingerprint: str | None = None
    """Size and modification time; None when the file does not exist."""
    size: int = 0
    termination_matched: bool = False


def is_frozen(output: OutputFacts, changed_at: float | None, now: float, freeze_secs: float) -> bool:
    """A running job is frozen when its non-empty output has not changed for `freeze_secs`.

    `changed_at` is the monitor's own time of the last change it saw (not the file's mtime, which
    comes from another machine's clock on a shared file system).
    """
    if output.fingerprint is None or output.size == 0 or changed_at is None:
        return False
    return now - changed_at >= freeze_secs


class OutputWatcher:
    """Stats output files every cycle; re-reads one for `termination_str` only when it changed."""

    def __init__(self) -> None:
        self._matched: dict[str, tuple[str, bool]] = {}  # path -> (fingerprint, matched)

    def facts(self, path: str, termination_str: str) -> OutputFacts:
        try:
            stat = os.stat(path)
        except OSError:
            return OutputFacts()
        fingerprint = f"{stat.st_size}:{stat.st_mtime_ns}"
        matched = False
        if termination_str:
            cached = self._matched.get(path)
            if cached is not None and cached[0] == fingerprint:
                matched = cached[1]
            else:
                matched = _file_matches(path, termination_str)
                self._matched[path] = (fingerprint, matched)
        return OutputFacts(fingerprint, stat.st_size, matched)


def _file_matches(path: str, pattern: str) -> bool:
    try:
        with open(path, errors="ignore") as handle:
            return re.search(pattern, handle.read()) is not None
    except OSError:
        return False


@dataclass(frozen=True)
class FlagResult:
    """A start/termination command's verdict: `flag` is True only when it printed `1`."""

    flag: bool
    detail: str = ""
    error: bool = False
    """The command failed, timed out or printed no number (worth a log line)."""


def run_flag_command(command: str, cwd: str | None = None, timeout: float = PROBE_TIMEOUT_SECS) -> FlagResult:
    """Run a shell command that answers by printing `1` (yes) or anything else (no).

    AutoExperiment's convention. A command that fails, times out or prints something that is not a
    number is a "no" (with a detail to log), never a crash of the monitor.
    """
    try:
        completed = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return FlagResult(False, f"timed out after {timeout:g}s", error=True)
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
