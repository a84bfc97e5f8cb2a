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


_LOG_PATTERN = re.compile(r"%(\d*)([jxuA%])")


def resolve_output_path(pattern: str, scheduler_id: str | None, name: str) -> str | None:
    """An `output_file` with sbatch's filename patterns (%j job id, %x name, %u user, %A, %%) made concrete.

    None when the pattern needs a job id and the job has none yet: there is no file to look at.
    """
    if "%" not in pattern:
        return pattern
    if scheduler_id is None and re.search(r"%\d*[jA]", pattern):
        return None
    values = {"j": scheduler_id or "", "A": scheduler_id or "", "x": name, "%": "%",
              "u": os.environ.get("USER") or str(os.getuid())}
    return _LOG_PATTERN.sub(lambda m: values[m[2]].zfill(int(m[1] or 0)), pattern)


# A match may straddle two reads: each read goes back this far into what was already searched.
SEARCH_OVERLAP_BYTES = 64 * 1024


@dataclass
class _Scan:
    fingerprint: str
    scanned: int  # bytes of the file already searched
    matched: bool


class OutputWatcher:
    """Stats output files every cycle; searches only what was appended since the last search.

    Training logs grow to gigabytes over weeks: re-reading whole files every poll would cost more
    than the monitor's every other work. A file that shrank (rewritten) is searched again from 0.
    """

    def __init__(self) -> None:
        self._scans: dict[tuple[str, str], _Scan] = {}

    def facts(self, path: str, termination_str: str) -> OutputFacts:
        try:
            stat = os.stat(path)
        except OSError:
            return OutputFacts()
        fingerprint = f"{stat.st_size}:{stat.st_mtime_ns}"
        if not termination_str:
            return OutputFacts(fingerprint, stat.st_size)
        key = (path, termination_str)
        scan = self._scans.get(key)
        if scan is None or stat.st_size < scan.scanned:
            scan = self._scans[key] = _Scan("", 0, False)
        if scan.fingerprint != fingerprint and not scan.matched:
            start = max(0, scan.scanned - SEARCH_OVERLAP_BYTES)
            found, end = _search_from(path, termination_str, start)
            scan.matched, scan.scanned = found, max(end, scan.scanned)
        scan.fingerprint = fingerprint
        return OutputFacts(fingerprint, stat.st_size, scan.matched)


def _search_from(path: str, pattern: str, offset: int) -> tuple[bool, int]:
    """Search the file from `offset` to its end; returns (matched, bytes read up to)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return False, offset
    return re.search(pattern, data.decode(errors="ignore")) is not None, offset + len(data)


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
