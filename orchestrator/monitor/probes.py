"""Facts about a job the scheduler does not know: what its output file says.

`OutputWatcher` reads only the bytes appended since its last look (training logs grow to gigabytes
over weeks) and answers, in one pass: did `termination_str` match, where did the job's own output end
(Slurm's own `slurmstepd: ... ***` lines do not count), the last `progress_regex` value and the last
`fail_regex` line. Offsets let the decision judge a run on what was written since that run began.
Start and termination commands run elsewhere (`probe_runner`), never here.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass

from orchestrator.jobs import Job


@dataclass(frozen=True)
class SaveMarks:
    """Megatron's own lines about saving and exiting, with their offsets (-1: none yet). Megatron-LM, Megatron-DeepSpeed
    and the examples here print them (megatron/training/checkpointing.py `save_checkpoint`, training.py
    `checkpoint_and_decide_exit`): `saving checkpoint at iteration N ...`, then, once every rank has written,
    `successfully saved checkpoint from iteration N ...`; `[exiting program after receiving SIGTERM.]`,
    `[exiting program after M minutes]` or `[exiting program at iteration N]` when it stops early on purpose."""

    started: int | None = None
    started_at: int = -1
    finished: int | None = None
    finished_at: int = -1
    exit_reason: str = ""
    exit_at: int = -1


@dataclass(frozen=True)
class IterationLine:
    """Megatron's training log line (megatron/training/training.py `training_log`, Megatron-LM d98e8a64):
    ` iteration {:8d}/{:8d} |` ... ` elapsed time per iteration (ms): {:.1f} |`; Megatron-DeepSpeed and the examples
    here print the same. What a segment's remaining time is estimated from (`prequeue: auto`)."""

    iteration: int
    total: int
    ms_per_iteration: float | None
    at: int
    """Offset of the line."""


_ITERATION_LINE = re.compile(rb"\biteration\s+(\d+)\s*/\s*(\d+)\s*\|")
_MS_PER_ITERATION = re.compile(rb"elapsed time per iteration \(ms\):\s*([0-9.]+)")


def iteration_line(line: bytes, offset: int) -> IterationLine | None:
    found = _ITERATION_LINE.search(line)
    if found is None:
        return None
    speed = _MS_PER_ITERATION.search(line, found.end())
    return IterationLine(int(found[1]), int(found[2]), float(speed[1]) if speed else None, offset)


_SAVE_STARTED = re.compile(rb"saving checkpoint at iteration\s+(\d+)")
_SAVE_FINISHED = re.compile(rb"successfully saved checkpoint from iteration\s+(\d+)")
_EXITING = re.compile(rb"\[(exiting program [^\]]*)\]")


@dataclass(frozen=True)
class OutputFacts:
    """The job's output file as seen this cycle."""

    fingerprint: str | None = None
    """Size and modification time; None when the file does not exist."""
    size: int = 0
    termination_matched: bool = False
    content_end: int = 0
    """Where the job's own output ends: the file's size less trailing lines Slurm wrote itself."""
    progress: str | None = None
    """The last `progress_regex` match (its first group, else the whole match)."""
    progress_at: int = -1
    """Offset of the line holding that match (-1: none yet)."""
    fail_at: int = -1
    """Offset of the last line matching `fail_regex` (-1: none)."""
    fail_line: str = ""
    fault_at: int = -1
    """Offset of the last line matching `node_fault_regex` (-1: none)."""
    fault_line: str = ""
    saves: SaveMarks = SaveMarks()
    """The last checkpoint save begun and finished, and the last graceful exit, as Megatron logs them."""
    iterations: IterationLine | None = None
    """The last Megatron training log line (iteration N/T, time per iteration)."""


# What Slurm's step daemon writes into a job's output when it kills the job, e.g. (seen here)
# `slurmstepd-vm: error: *** JOB 5 ON vm CANCELLED AT 2026-11-23T20:31:31 DUE TO PREEMPTION ***`;
# the same shape for TIME LIMIT, NODE FAILURE and plain cancellation, and for a STEP instead of a JOB.
SLURM_OWN_LINE = re.compile(rb"^slurmstepd(?:-[^:\s]*)?: error: \*\*\* (?:JOB|STEP) .*\*\*\*\s*$")


def activity(output: OutputFacts, run_offset: int, progress_regex: str) -> str | None:
    """A token that changes whenever the current run shows life; None when it has written nothing yet.

    With a `progress_regex` that has matched in this run, only a new progress value is life (a job that
    keeps printing warnings but no longer advances is frozen). Otherwise any output of the job's own.
    """
    if progress_regex and output.progress_at >= run_offset and output.progress is not None:
        return f"progress:{output.progress}"
    if output.content_end > run_offset:
        return f"bytes:{output.content_end}"
    return None


def run_progress(output: OutputFacts, run_offset: int) -> str | None:
    """The last progress mark the current run printed (None: none in this run)."""
    return output.progress if output.progress is not None and output.progress_at >= run_offset else None


def is_frozen(current_activity: str | None, changed_at: float | None, now: float, freeze_secs: float) -> bool:
    """Frozen: the current run has shown life once, then none for `freeze_secs` by the monitor's clock.

    `changed_at` is the monitor's own time of the last change it saw (not the file's mtime, which
    comes from another machine's clock on a shared file system). A run that has written nothing is
    never frozen (AutoExperiment's rule): its time limit ends it.
    """
    if current_activity is None or changed_at is None:
        return False
    return now - changed_at >= freeze_secs


_LOG_PATTERN = re.compile(r"%(\d*)([jxuA%])")


def resolve_output_path(pattern: str, scheduler_id: str | None, name: str) -> str | None:
    """An `output_file` with sbatch's filename patterns (%j job id, %x name, %u user, %A, %%) made concrete.

    None when the pattern needs a job id and the job has none yet: there is no file to look at.
    """
    if "%" not in pattern:
        return pattern
    if scheduler_id is None and has_job_id_pattern(pattern):
        return None
    values = {"j": scheduler_id or "", "A": scheduler_id or "", "x": name, "%": "%",
              "u": os.environ.get("USER") or str(os.getuid())}
    return _LOG_PATTERN.sub(lambda m: values[m[2]].zfill(int(m[1] or 0)), pattern)


def has_job_id_pattern(pattern: str) -> bool:
    """Does every submission write its own file (`%j`/`%A` in the name)?"""
    return re.search(r"%\d*[jA]", pattern.replace("%%", "")) is not None


# A termination match may straddle two reads: each read goes back this far into what was already searched.
SEARCH_OVERLAP_BYTES = 64 * 1024


@dataclass(frozen=True)
class Patterns:
    termination: str = ""
    progress: str = ""
    fail: str = ""
    node_fault: str = ""


@dataclass
class _Scan:
    fingerprint: str = ""
    scanned: int = 0  # bytes of the file already read
    lines_done: int = 0  # offset of the first byte not yet read as part of a complete line
    matched: bool = False
    content_end: int = 0
    progress: str | None = None
    progress_at: int = -1
    fail_at: int = -1
    fail_line: str = ""
    fault_at: int = -1
    fault_line: str = ""
    saves: SaveMarks = SaveMarks()
    iterations: IterationLine | None = None
    in_long_line: bool = False  # the bytes up to the next newline belong to an over-long line already passed


# A line still being written is read again once complete, unless it is longer than this: then it is passed
# over (no progress or failure text is that long), so a log without newlines is never re-read whole.
MAX_PARTIAL_LINE_BYTES = SEARCH_OVERLAP_BYTES


def save_marks(line: bytes, offset: int, marks: SaveMarks) -> SaveMarks:
    """`marks` updated with one output line that starts at `offset`."""
    if (found := _SAVE_FINISHED.search(line)) is not None:
        return dataclasses.replace(marks, finished=int(found[1]), finished_at=offset)
    if (found := _SAVE_STARTED.search(line)) is not None:
        return dataclasses.replace(marks, started=int(found[1]), started_at=offset)
    if (found := _EXITING.search(line)) is not None:
        return dataclasses.replace(marks, exit_reason=found[1].decode(errors="replace").rstrip(". "), exit_at=offset)
    return marks


class OutputWatcher:
    """Stats output files every cycle; reads only what was appended since the last read.

    A file that shrank (rewritten) is read again from 0.
    """

    def __init__(self) -> None:
        self._scans: dict[tuple[str, Patterns], _Scan] = {}
        self._compiled: dict[str, re.Pattern[bytes]] = {}

    def facts(self, path: str, termination_str: str = "", progress_regex: str = "", fail_regex: str = "",
              node_fault_regex: str = "") -> OutputFacts:
        try:
            stat = os.stat(path)
        except OSError:
            return OutputFacts()
        fingerprint = f"{stat.st_size}:{stat.st_mtime_ns}"
        key = (path, Patterns(termination_str, progress_regex, fail_regex, node_fault_regex))
        scan = self._scans.get(key)
        if scan is None or stat.st_size < scan.scanned:
            scan = self._scans[key] = _Scan()
        if scan.fingerprint != fingerprint:
            self._read(path, key[1], scan)
            scan.fingerprint = fingerprint
        return OutputFacts(fingerprint, stat.st_size, scan.matched, scan.content_end, scan.progress,
                           scan.progress_at, scan.fail_at, scan.fail_line, scan.fault_at, scan.fault_line, scan.saves,
                           scan.iterations)

    def _pattern(self, text: str) -> re.Pattern[bytes]:
        if text not in self._compiled:
            self._compiled[text] = re.compile(text.encode())
        return self._compiled[text]

    def _read(self, path: str, patterns: Patterns, scan: _Scan) -> None:
        start = scan.lines_done
        if patterns.termination and not scan.matched:
            start = min(start, max(0, scan.scanned - SEARCH_OVERLAP_BYTES))
        try:
            with open(path, "rb") as handle:
                handle.seek(start)
                data = handle.read()
        except OSError:
            return
        end = start + len(data)
        if patterns.termination and not scan.matched:
            scan.matched = re.search(patterns.termination, data.decode(errors="ignore")) is not None
        scan.scanned = max(scan.scanned, end)
        self._read_lines(data[scan.lines_done - start:], scan.lines_done, end, patterns, scan)

    def _read_lines(self, data: bytes, offset: int, end: int, patterns: Patterns, scan: _Scan) -> None:
        progress = self._pattern(patterns.progress) if patterns.progress else None
        fail = self._pattern(patterns.fail) if patterns.fail else None
        fault = self._pattern(patterns.node_fault) if patterns.node_fault else None
        if scan.in_long_line:  # the rest of a line passed over earlier
            newline = data.find(b"\n")
            skipped = len(data) if newline < 0 else newline + 1
            data, offset, scan.in_long_line = data[skipped:], offset + skipped, newline < 0
            scan.lines_done, scan.content_end = offset, offset
            if not data:
                return
        complete = data.rfind(b"\n") + 1  # a partial last line is read again once it is complete
        position = offset
        for line in data[:complete].splitlines(keepends=True):
            line_start, position = position, position + len(line)
            if line.startswith(b"slurmstepd") and SLURM_OWN_LINE.match(line):
                continue
            scan.content_end = position
            if progress is not None:
                for match in progress.finditer(line):
                    value = (match.group(1) if match.re.groups else None) or match.group(0)
                    scan.progress, scan.progress_at = value.decode(errors="replace"), line_start
            if fail is not None and fail.search(line):
                scan.fail_at, scan.fail_line = line_start, line.decode(errors="replace").strip()[:200]
            if fault is not None and fault.search(line):
                scan.fault_at, scan.fault_line = line_start, line.decode(errors="replace").strip()[:200]
            if b"checkpoint" in line or b"exiting program" in line:
                scan.saves = save_marks(line, line_start, scan.saves)
            if b"iteration" in line and b"/" in line:
                scan.iterations = iteration_line(line, line_start) or scan.iterations
        scan.lines_done = offset + complete
        if complete < len(data):  # the job is writing a line (a progress bar without newline): that is life
            scan.content_end = end
            if len(data) - complete > MAX_PARTIAL_LINE_BYTES:
                scan.lines_done, scan.in_long_line = end, True


def new_run_offset(job: Job, output: OutputFacts) -> int:
    """Where a new attempt's output begins: a per-submission log (%j) is new, an appended one keeps its earlier
    attempts' text."""
    return 0 if has_job_id_pattern(job.output_file) else output.size


def make_output_dir(job: Job) -> None:
    """Slurm does not create the directory of `--output`: a job whose log folder is missing dies at launch."""
    parent = os.path.dirname(job.output_file)
    if parent and "%" not in parent:
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError:
            pass  # the submission reports the problem with the scheduler's own words
