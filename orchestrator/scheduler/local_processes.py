"""A local job's processes, found the way Slurm's cgroup would hold them: every process carrying the job's token
in its environment.

The job's process group is not enough: torchrun (torch.distributed.elastic) starts each rank in a session of its
own, so killing the group leaves the ranks running, and once the script has ended they are orphans no parent
chain leads back to. Every process the script starts inherits its environment, token included (unless a program
clears it on purpose).
"""

from __future__ import annotations

import os

JOB_TOKEN_VARIABLE = "ORCH_LOCAL_JOB_TOKEN"


def job_token(state_dir: str, job_id: str) -> str:
    return f"{os.path.abspath(state_dir)}#{job_id}"


def job_processes(token: str) -> list[int]:
    """Pids of the live processes whose environment holds `token` (this process excluded)."""
    needle = b"\0" + f"{JOB_TOKEN_VARIABLE}={token}".encode() + b"\0"  # the whole entry, not a tail of another
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                if needle in b"\0" + handle.read() + b"\0":
                    found.append(int(name))
        except OSError:  # gone, or another user's
            continue
    return found


def signal_job(pgid: int | None, token: str, sig: int) -> None:
    """Send `sig` to the job's process group and to every other process of the job."""
    if pgid:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in job_processes(token):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
