"""The monitor as a chain of Slurm jobs (`orch run --as-slurm-job`): a campaign with no process on a login node.

Each generation is one small CPU job running `orch run ... --in-slurm-job`. The chain's jobs share one name
and `--dependency=singleton`, which sbatch(1) defines as "This job can begin execution after any previously
launched jobs sharing the same job name and user have terminated": at most one generation runs at a time.

- A generation first holds the campaign's lease (`state.lease`), then makes sure exactly one successor waits
  in the queue: it looks for an active job with the chain's name that runs the chain's script
  (`monitor.sbatch` in the campaign's state folder) before it submits one, so a generation killed between
  its sbatch and anything else never leaves two behind. Surplus successors (the chain started twice at the
  same moment) are cancelled, the oldest kept.
- It hands over `handover` seconds before its time limit, once a successor is queued: it stops and releases
  the lease, and the successor starts as it ends. A generation killed by Slurm or with its node leaves a lease
  whose holder's Slurm job has ended; the successor takes that over at once (`lease.stale_reason`).
- When the campaign is finished, the generation cancels its queued successor.

The first generation (submitted by hand) looks at failed and abandoned jobs afresh, as any `orch run` does;
later ones leave them be, or every generation would give a given-up job another round of attempts.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Sequence
from pathlib import Path

from orchestrator.files import write_atomically
from orchestrator.jobs import Job
from orchestrator.monitor.ownership import is_submission_of
from orchestrator.scheduler.base import Observation, Scheduler, job_id_order

SCRIPT_NAME = "monitor.sbatch"
FRESH_VARIABLE = "ORCH_MONITOR_FRESH"
"""Set to 1 in the first generation's environment (sbatch exports the submitter's), 0 in its successors'."""
_JOB_NAME_LINE = re.compile(r"^#SBATCH --job-name=(\S+)$", re.MULTILINE)


def chain_name(directory: Path) -> str:
    """The chain's job name: kept in its script once written, so every host (whatever its mount point) and every
    later `--as-slurm-job` uses the same; a random part keeps two checkouts of one campaign apart (singleton
    would otherwise make one campaign's monitor wait for the other's)."""
    script = directory / SCRIPT_NAME
    if script.exists():
        found = _JOB_NAME_LINE.search(script.read_text(errors="replace"))
        if found:
            return found.group(1)
    return f"orch-monitor-{directory.name}-{secrets.token_hex(3)}"


def render_script(name: str, directory: Path, workdir: str, command: Sequence[str], time_limit: str,
                  partition: str | None, sbatch_args: Sequence[str]) -> str:
    """One generation's batch script: the chain's name, singleton, a time limit, one CPU, output in the state folder."""
    options = [f"--job-name={name}", "--dependency=singleton", f"--time={time_limit}", "--ntasks=1",
               "--cpus-per-task=1", f"--output={directory.absolute() / 'monitor-job-%j.out'}", "--open-mode=append",
               *([f"--partition={partition}"] if partition else []), *sbatch_args]
    lines = ["#!/bin/bash", *(f"#SBATCH {option}" for option in options),
             "# One generation of this campaign's monitor (`orch run --as-slurm-job`): it queues its successor,",
             "# hands over before its time limit, and cancels the successor once the campaign is finished.",
             f"cd {shlex.quote(workdir)} || exit 2",
             "exec " + " ".join(shlex.quote(word) for word in command), ""]
    return "\n".join(lines)


def write_script(directory: Path, text: str) -> Path:
    path = directory / SCRIPT_NAME
    write_atomically(path, text, executable=True)
    return path


class MonitorChain:
    """The generations of one campaign's monitor job in the queue, seen and changed through the scheduler boundary."""

    def __init__(self, scheduler: Scheduler, name: str, script: Path) -> None:
        self.scheduler = scheduler
        self.name = name
        self.script = script

    def members(self) -> list[Observation]:
        """The chain's active jobs (running or queued), oldest first: its name AND its script, as for any job."""
        found = self.scheduler.query([], [self.name]).values()
        active = [o for o in found if o.state.is_active and is_submission_of(o, self.name, str(self.script))]
        return sorted(active, key=lambda o: job_id_order(o.scheduler_id))

    def successors(self, own_id: str) -> list[Observation]:
        return [o for o in self.members() if o.scheduler_id != own_id]

    def submit(self, fresh: bool) -> str:
        """Queue one generation (sbatch through the scheduler boundary); returns its id."""
        command = f"{FRESH_VARIABLE}={int(fresh)} sbatch {shlex.quote(str(self.script))}"
        job = Job(name=self.name, template="", sbatch_script=str(self.script),
                  output_file=str(self.script.parent / "monitor-job.out"), cmd=command)
        return self.scheduler.submit(job)

    def ensure_successor(self, own_id: str) -> tuple[str, bool]:
        """Exactly one successor queued: (its id, whether it was submitted now). Extra ones are cancelled."""
        waiting = self.successors(own_id)
        if not waiting:
            return self.submit(fresh=False), True
        if len(waiting) > 1:
            self.scheduler.cancel([o.scheduler_id for o in waiting[1:]])
        return waiting[0].scheduler_id, False

    def cancel_successors(self, own_id: str) -> list[str]:
        ids = [o.scheduler_id for o in self.successors(own_id)]
        if ids:
            self.scheduler.cancel(ids)
        return ids
