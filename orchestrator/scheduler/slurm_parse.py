"""Pure parsers for the outputs of Slurm's commands (sbatch, squeue, sacct, scontrol, jobcomp/filetxt).

No subprocess here: `slurm.py` runs the commands, these functions read what they printed. The tests
feed them outputs recorded from a real Slurm 22.05 cluster (tests/fixtures/slurm/).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from orchestrator.scheduler.base import Observation, SchedulerState

# The squeue -O format `slurm.py` asks for and `parse_squeue` reads. `:0` = no padding, `|` = separator.
# The name goes last because it is the only field that may itself contain a `|`.
SQUEUE_FORMAT = "JobID:0|,State:0|,exit_code:0|,Reason:0|,Name:0"
# The sacct fields `parse_sacct` reads (with -n -P: no header, `|`-separated); name last, as above.
SACCT_FIELDS = "JobIDRaw,State,ExitCode,Reason,JobName"

_S = SchedulerState
# Every job state Slurm 22.05 reports (squeue/sacct/scontrol long names) -> ours.
SLURM_STATES: Mapping[str, SchedulerState] = {
    "PENDING": _S.PENDING,
    "CONFIGURING": _S.PENDING,  # resources allocated, nodes still booting: not running yet
    "REQUEUED": _S.PENDING,  # back in the queue, will run again
    "REQUEUE_HOLD": _S.PENDING,
    "REQUEUE_FED": _S.PENDING,
    "RESV_DEL_HOLD": _S.PENDING,
    "RUNNING": _S.RUNNING,
    "SUSPENDED": _S.RUNNING,  # still owns its allocation and will resume
    "STOPPED": _S.RUNNING,
    "RESIZING": _S.RUNNING,
    "SIGNALING": _S.RUNNING,
    "STAGE_OUT": _S.RUNNING,
    "COMPLETING": _S.COMPLETING,
    "COMPLETED": _S.COMPLETED,
    "FAILED": _S.FAILED,
    "BOOT_FAIL": _S.FAILED,
    "SPECIAL_EXIT": _S.FAILED,
    "TIMEOUT": _S.TIMEOUT,
    "DEADLINE": _S.TIMEOUT,  # killed at its --deadline: a time limit too
    "CANCELLED": _S.CANCELLED,
    "OUT_OF_MEMORY": _S.OUT_OF_MEMORY,
    "NODE_FAIL": _S.NODE_FAIL,
    "PREEMPTED": _S.PREEMPTED,
    "REVOKED": _S.GONE,  # federation: the job ran on a sibling cluster instead
}

# Texts Slurm's client commands print when the controller could not be asked. Seen here:
# "Unable to contact slurm controller (connect failure)" (slurmctld stopped, after ~9 s).
# The others are Slurm's messages for timeouts and a controller in failover.
_UNREACHABLE = re.compile(
    r"Unable to contact slurm controller"
    r"|Socket timed out on send/recv"
    r"|Zero Bytes were transmitted or received"
    r"|Communication connection failure"
    r"|Connection refused"
    r"|backup controller in standby mode"
    r"|Slurm temporarily unable to accept job",
    re.IGNORECASE,
)

_SUBMITTED = re.compile(r"^Submitted batch job (\d+)\b", re.MULTILINE)
_PARSABLE = re.compile(r"^(\d+)(?:;\S+)?\s*$", re.MULTILINE)


def map_state(slurm_state: str) -> SchedulerState:
    """Map a Slurm state (`CANCELLED by 0`, `CANCELLED+`, `FAILED`, ...) to ours.

    An unknown state is reported as RUNNING: the scheduler still knows the job, and treating it as
    active is the side that never submits a job twice.
    """
    word = slurm_state.strip().split(" ", 1)[0].rstrip("+").upper()
    return SLURM_STATES.get(word, _S.RUNNING)


def parse_exit_code(text: str) -> int | None:
    """A Slurm exit code as a shell would report it, or None when there is none.

    sacct, scontrol and jobcomp print `exit:signal` (`3:0` -> 3; `0:9`, killed by signal 9 -> 137).
    squeue's `exit_code` field prints the raw wait status instead (`768` -> 3; `9` -> 137; a launch
    failure's `4021` -> signal 53 -> 181, as scontrol's `0:53`).
    """
    text = text.strip()
    if not text:
        return None
    try:
        if ":" in text:
            code, _, signal = text.partition(":")
            exit_code, signal_number = int(code), int(signal or 0)
        else:  # a wait status: signalled when its low 7 bits hold a signal number
            status = int(text)
            signal_number = status & 0x7F
            exit_code = 0 if signal_number else (status >> 8) & 0xFF
    except ValueError:
        return None
    if exit_code == 0 and signal_number:
        return 128 + signal_number
    return exit_code


def _clean_reason(reason: str) -> str:
    reason = reason.strip()
    return "" if reason in ("None", "(null)") else reason


def _observation(job_id: str, name: str, state: str, exit_code: str, reason: str) -> Observation:
    mapped = map_state(state)
    # The exit code means nothing until the job has ended (squeue prints 0 for pending jobs).
    code = None if mapped.is_active else parse_exit_code(exit_code)
    return Observation(scheduler_id=job_id, name=name, state=mapped, exit_code=code, reason=_clean_reason(reason))


def parse_sbatch(stdout: str) -> str | None:
    """The job id in sbatch's output (`Submitted batch job N`, or `N` / `N;cluster` with --parsable)."""
    match = _SUBMITTED.search(stdout) or _PARSABLE.search(stdout)
    return match.group(1) if match else None


def is_controller_unreachable(output: str) -> bool:
    """True when a command's output says the controller could not be asked (state unknown)."""
    return bool(_UNREACHABLE.search(output))


def _split_rows(output: str, fields: int) -> Iterable[list[str]]:
    for line in output.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", fields - 1)
        if len(parts) == fields:
            yield parts


def _parse_id_state_exit_reason_name(output: str) -> dict[str, Observation]:
    """`id|state|exit code|reason|name` rows keyed by job id; a later row of the same id wins."""
    observations: dict[str, Observation] = {}
    for job_id, state, exit_code, reason, name in _split_rows(output, 5):
        job_id = job_id.strip()
        observations[job_id] = _observation(job_id, name, state, exit_code, reason)
    return observations


def parse_squeue(output: str) -> dict[str, Observation]:
    """Rows of `squeue -h -t all -O SQUEUE_FORMAT`, keyed by job id."""
    return _parse_id_state_exit_reason_name(output)


def parse_sacct(output: str) -> dict[str, Observation]:
    """Rows of `sacct -n -P -X -o SACCT_FIELDS`, keyed by job id; the last row of an id wins (requeues)."""
    return _parse_id_state_exit_reason_name(output)


def parse_key_values(text: str) -> dict[str, str]:
    """`scontrol show config` lines (`Key      = value`) -> {Key: value}."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and " " not in key.strip():
            values[key.strip()] = value.strip()
    return values


# One jobcomp/filetxt line: `JobId=N UserId=... Name=<may hold spaces> JobState=S ... ExitCode=E:S ...`
_JOBCOMP = re.compile(
    r"^JobId=(?P<id>\d+) .*?\bName=(?P<name>.*?) JobState=(?P<state>\S+)(?:.*?\bExitCode=(?P<exit>\d+:\d+))?"
)


def parse_jobcomp(text: str, wanted: Iterable[str] | None = None) -> dict[str, Observation]:
    """Lines of a jobcomp/filetxt file (one per finished job); the last line of an id wins."""
    wanted_ids = set(wanted) if wanted is not None else None
    observations: dict[str, Observation] = {}
    for line in text.splitlines():
        match = _JOBCOMP.match(line)
        if not match or (wanted_ids is not None and match["id"] not in wanted_ids):
            continue
        observations[match["id"]] = _observation(match["id"], match["name"], match["state"], match["exit"] or "", "")
    return observations
