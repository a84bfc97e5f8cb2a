"""Pure parsers for the outputs of Slurm's commands (sbatch, squeue, sacct, scontrol, jobcomp/filetxt).

No subprocess here: `slurm.py` runs the commands, these functions read what they printed. The tests
feed them outputs recorded from a real Slurm 22.05 cluster with accounting (tests/fixtures/slurm/).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from orchestrator.scheduler.base import Observation, SchedulerState

# Fields are separated by ASCII unit separators (0x1f), which no job name, path or state contains: a `|`
# in a job name or a script path cannot shift the columns. The name goes last all the same.
FIELD_SEPARATOR = "\x1f"
# squeue -O: `:0` = no padding, then the separator as the field's suffix (squeue prints it verbatim).
# JobArrayID: a job's id, an array task's `N_i` (JobID would print each pending task as N, every running one as its
# own number): the ids sbatch's answer leads to and sacct and scancel take.
_SQUEUE_FIELDS = ("JobArrayID", "State", "exit_code", "Reason", "StartTime", "WorkDir", "Command", "TimeUsed", "tres-alloc",
                  "Name")
SQUEUE_FORMAT = ",".join(f"{field}:0{FIELD_SEPARATOR}" for field in _SQUEUE_FIELDS[:-1]) + f",{_SQUEUE_FIELDS[-1]}:0"
# sacct -n -P --delimiter=FIELD_SEPARATOR -o SACCT_FIELDS: the same layout (sacct has no batch script field).
# ElapsedRaw: the run's seconds; AllocTRES: what it held (`billing=1,cpu=1,gres/gpu=2,node=1`). JobID: an array
# task as `N_i` (JobIDRaw is its own number), a heterogeneous job's first component as `N+0` (read as N).
SACCT_FIELDS = "JobID,State,ExitCode,Reason,Start,WorkDir,ElapsedRaw,AllocTRES,JobName"

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


def _clean_time(text: str) -> str:
    text = text.strip()
    return "" if text in ("N/A", "Unknown", "None", "(null)") else text


_DURATION = re.compile(r"^(?:(?P<days>\d+)-)?(?:(?P<hours>\d+):)?(?P<minutes>\d+):(?P<seconds>\d+)$")


def parse_duration(text: str) -> float | None:
    """A duration as squeue's TimeUsed and sacct's Elapsed print it (`M:SS`, `H:MM:SS`, `D-HH:MM:SS`)."""
    match = _DURATION.match(text.strip())
    if not match:
        return None
    return float(int(match["days"] or 0) * 86400 + int(match["hours"] or 0) * 3600 + int(match["minutes"]) * 60
                 + int(match["seconds"]))


def parse_tres_gpus(text: str) -> int | None:
    """GPUs in a TRES list (`cpu=1,gres/gpu=2,node=1`; typed ones as `gres/gpu:a100=2`); None if it has none."""
    untyped, typed = None, 0
    for item in text.split(","):
        key, _, value = item.strip().partition("=")
        if not value.isdigit():
            continue
        if key == "gres/gpu":
            untyped = int(value)
        elif key.startswith("gres/gpu:"):
            typed += int(value)
    return untyped if untyped is not None else (typed or None)


def _seconds(text: str) -> float | None:
    text = text.strip()
    return float(text) if text.isdigit() else parse_duration(text)


def _observation(job_id: str, name: str, state: str, exit_code: str, reason: str, start_time: str = "",
                 work_dir: str = "", script: str = "", elapsed: str = "", tres: str = "") -> Observation:
    mapped = map_state(state)
    # The exit code means nothing until the job has ended (squeue prints 0 for pending jobs), and a
    # pending job's StartTime is only the scheduler's forecast.
    code = None if mapped.is_active else parse_exit_code(exit_code)
    started = "" if mapped == _S.PENDING else _clean_time(start_time)
    script = script.strip()
    return Observation(scheduler_id=job_id, name=name, state=mapped, exit_code=code, reason=_clean_reason(reason),
                       start_time=started, script="" if script == "(null)" else script,
                       work_dir=_clean_time(work_dir),
                       elapsed_secs=None if mapped == _S.PENDING else _seconds(elapsed), gpus=parse_tres_gpus(tres))


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
        parts = line.split(FIELD_SEPARATOR, fields - 1)
        if len(parts) == fields:
            yield parts


def parse_squeue(output: str) -> dict[str, Observation]:
    """Rows of `squeue -h -t all -O SQUEUE_FORMAT`, keyed by job id."""
    observations: dict[str, Observation] = {}
    for job_id, state, exit_code, reason, start, work_dir, command, used, tres, name in _split_rows(output, 10):
        job_id = job_id.strip()
        observations[job_id] = _observation(job_id, name, state, exit_code, reason, start, work_dir, command, used, tres)
    return observations


def parse_sacct(output: str) -> dict[str, Observation]:
    """Rows of `sacct -n -P -X --delimiter=FIELD_SEPARATOR -o SACCT_FIELDS`, keyed by job id.

    Without -D sacct prints one row per job, its newest run (a requeued job's current run).
    """
    observations: dict[str, Observation] = {}
    for job_id, state, exit_code, reason, start, work_dir, elapsed, tres, name in _split_rows(output, 9):
        job_id = job_id.strip().removesuffix("+0")
        observations[job_id] = _observation(job_id, name, state, exit_code, reason, start, work_dir, "", elapsed, tres)
    return observations


# Slurm's reason words for a submission refused by a job-count limit, as its reason table spells them
# (SchedMD/slurm src/common/job_state_reason.c, commit 68c0e92e): AssocMaxSubmitJobLimit,
# AssocGrpSubmitJobsLimit, QOSMaxSubmitJobPerUserLimit, QOSGrpSubmitJobsLimit, MaxSubmitJobsPerAccount, and
# the running-job counts AssocMaxJobsLimit, AssocGrpJobsLimit, QOSMaxJobsPerUserLimit, QOSGrpJobsLimit,
# MaxJobsPerAccount (refused rather than held under a QOS with DenyOnLimit). Each clears when jobs leave the
# queue. Size and time limits (e.g. QOSMaxWallDurationPerJobLimit) share sbatch's generic "violates
# accounting/QOS policy" line but never clear by waiting, so the reason word, not that line, decides.
_QUEUE_LIMIT = re.compile(
    r"\b(?:(?:Assoc|QOS)(?:Max|Grp)(?:Submit)?Jobs?(?:PerUser)?Limit|Max(?:Submit)?JobsPerAccount)\b")


def is_queue_limit_refusal(output: str) -> bool:
    """True when sbatch refused a job because a job-count limit is reached (it clears by waiting)."""
    return bool(_QUEUE_LIMIT.search(output))


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
        times = _JOBCOMP_TIMES.search(line)
        tres = _JOBCOMP_TRES.search(line)
        observations[match["id"]] = _observation(
            match["id"], match["name"], match["state"], match["exit"] or "", "",
            elapsed=_elapsed_between(times["start"], times["end"]) if times else "", tres=tres[1] if tres else "")
    return observations


_JOBCOMP_TIMES = re.compile(r"\bStartTime=(?P<start>\S+) EndTime=(?P<end>\S+)")
_JOBCOMP_TRES = re.compile(r"\bTres=(\S*)")


def _elapsed_between(start: str, end: str) -> str:
    """Seconds between two of Slurm's timestamps (`2026-11-23T20:40:00`), as text; '' if unreadable."""
    from datetime import datetime

    try:
        return str(max(0, int((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())))
    except ValueError:
        return ""


def parse_sinfo_gpus(output: str) -> tuple[dict[str, int], str]:
    """`sinfo -h -o '%P|%G'` -> ({partition: GPUs per node}, default partition). A partition with nodes of several
    kinds has a line per kind: the largest count is kept (an upper bound on what a node costs)."""
    per_partition: dict[str, int] = {}
    default = ""
    for line in output.splitlines():
        partition, separator, gres = line.strip().partition("|")
        if not separator:
            continue
        if partition.endswith("*"):
            partition = default = partition[:-1]
        per_partition[partition] = max(per_partition.get(partition, 0), gres_gpus(gres))
    return per_partition, default


def gres_gpus(gres: str) -> int:
    """GPUs in a gres list: `gpu:4`, `gpu:a100:4`, `gpu:a100:2(S:0-1),mps:100`, `(null)` (= 0)."""
    total = 0
    for item in re.sub(r"\([^)]*\)", "", gres).split(","):
        fields = item.strip().split(":")
        if fields[0] not in ("gpu", "gres/gpu"):
            continue
        total += int(fields[-1]) if len(fields) > 1 and fields[-1].isdigit() else 1
    return total


def parse_node_list(output: str) -> str:
    """The hostlist expression of `sacct -n -X -P -o NodeList` or `squeue -h -o %N` for one job ('' when it never
    got a node: sacct prints `None assigned`, squeue an empty line)."""
    for line in output.splitlines():
        text = line.strip()
        if text and text not in ("None assigned", "(null)"):
            return text
    return ""


# sbatch's refusal when no node of the partition can take the job (recorded: `sbatch --exclude=<every node>`, and
# the same text for a request no node can meet).
_NO_NODE = re.compile(r"Requested node configuration is not available")


def is_no_node_available(output: str) -> bool:
    return bool(_NO_NODE.search(output))
