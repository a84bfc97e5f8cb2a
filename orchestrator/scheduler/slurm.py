"""The Slurm backend: sbatch through the job's own `cmd`, squeue (+ sacct or jobcomp) to observe, scancel.

Every command goes through one runner (`run_command`, injectable for tests), so this module is the only
place orch talks to Slurm. A query costs at most 3 commands whatever the number of jobs: one squeue for
all of this user's jobs, one `scontrol show config` the first time a job has ended (to learn whether
accounting works, cached), and one sacct for all ended jobs when it does.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from orchestrator import process
from orchestrator.jobs import Job
from orchestrator.process import CommandResult
from orchestrator.scheduler import array_driver, slurm_parse
from orchestrator.scheduler.base import (
    NodeGpus,
    Observation,
    SchedulerState,
    SchedulerUnavailable,
    SubmitError,
    SubmitExcludedAll,
    SubmitLimited,
    job_id_order,
)

DEFAULT_TIMEOUT_SECS = 60.0  # an unreachable controller makes squeue/sbatch fail after ~9 s here
JOBCOMP_TAIL_BYTES = 8 * 1024 * 1024  # the newest finished jobs are at the end of the jobcomp file


def run_command(argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None) -> CommandResult:
    """The subprocess edge: a command that cannot start or overruns means "Slurm's state is unknown"."""
    try:
        return process.run_command(argv, timeout, env)
    except (OSError, process.CommandTimeout) as error:
        raise SchedulerUnavailable(f"cannot run {argv[0]}: {error}") from error


class CommandRunner(Protocol):
    def __call__(self, argv: Sequence[str], timeout: float) -> CommandResult:
        """Run argv; raise SchedulerUnavailable if it cannot be started or exceeds timeout."""
        ...


@dataclass(frozen=True)
class ClusterFeatures:
    """What `scontrol show config` says about where finished jobs can be looked up."""

    accounting: bool
    jobcomp_file: str | None  # set when JobCompType=jobcomp/filetxt
    max_array_tasks: int = 1001

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> ClusterFeatures:
        storage = config.get("AccountingStorageType", "accounting_storage/none")
        jobcomp_type = config.get("JobCompType", "jobcomp/none")
        location = config.get("JobCompLoc", "")
        return cls(
            accounting=storage not in ("", "(null)", "accounting_storage/none"),
            jobcomp_file=location if jobcomp_type == "jobcomp/filetxt" and location.startswith("/") else None,
            max_array_tasks=array_driver.max_array_tasks(config),
        )


class SlurmScheduler:
    name = "slurm"

    def __init__(
        self,
        runner: CommandRunner | None = None,
        timeout_secs: float = DEFAULT_TIMEOUT_SECS,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._runner: CommandRunner = runner or (lambda argv, timeout: run_command(argv, timeout, env))
        self._timeout = timeout_secs
        self._features: ClusterFeatures | None = None

    # -- commands -------------------------------------------------------------------------------

    def _run(self, argv: Sequence[str]) -> CommandResult:
        return self._runner(argv, self._timeout)

    def _run_checked(self, argv: Sequence[str]) -> CommandResult:
        result = self._run(argv)
        if result.returncode != 0:
            raise SchedulerUnavailable(f"{argv[0]} failed (exit {result.returncode}): {result.output[:500]}")
        return result

    # -- the interface --------------------------------------------------------------------------

    def can_chain(self, job: Job) -> bool:
        """Can a submission of `job` be queued behind another? Only when orch can pass sbatch `--dependency`:
        a `cmd` that runs sbatch out of sight (a wrapper script) cannot be told."""
        return _SBATCH_WORD.search(submit_command(job)) is not None

    def submit(self, job: Job, exclude: Sequence[str] = (), after: str | None = None) -> str:
        if exclude:
            # sbatch's command line wins over the script: keep the script's own --exclude in the list.
            exclude = [*_script_exclusion(job.sbatch_script), *exclude]
        command = with_excluded_nodes(submit_command(job), exclude)
        if after is not None:
            chained = with_sbatch_option(command, f"--dependency=afterany:{after}")
            if chained == command:  # never submit a next segment that could run beside the current one
                raise SubmitError(f"cannot queue {job.name} behind {after}: its cmd has no sbatch word to pass "
                                  f"--dependency to: {command}")
            command = chained
        return self._sbatch(command, bool(exclude))

    def array_command(self, job: Job, driver: str) -> str | None:
        """The job's submit command run on an array's `driver` script (before `--array`); None when it cannot be."""
        return array_command(job, driver)

    def max_array_tasks(self) -> int:
        """Most tasks one array may hold here (MaxArraySize, SchedulerParameters' max_array_tasks)."""
        return self._cluster_features().max_array_tasks

    def submit_array(self, job: Job, driver: str, count: int, exclude: Sequence[str] = ()) -> str:
        """Submit the array driver script `driver` of `count` tasks with `job`'s submit command; return the array's id
        (task i is `<id>_i`). Raises as `submit` does."""
        command = array_command(job, driver)
        if command is None:
            raise SubmitError(f"cannot submit {job.name} as an array task: its cmd does not run sbatch on its script")
        if exclude:
            exclude = [*_script_exclusion(job.sbatch_script), *exclude]
        command = with_excluded_nodes(with_sbatch_option(command, array_driver.array_option(count)), exclude)
        return self._sbatch(command, bool(exclude))

    def _sbatch(self, command: str, excluding: bool) -> str:
        """Run a submit command; its job id, or the exception that says what became of it."""
        result = self._run(["/bin/sh", "-c", command])
        job_id = slurm_parse.parse_sbatch(result.stdout) if result.returncode == 0 else None
        if job_id is not None:
            return job_id
        if slurm_parse.is_controller_unreachable(result.output):
            raise SchedulerUnavailable(f"{command}: {result.output[:500]}")
        if result.returncode != 0 and slurm_parse.is_queue_limit_refusal(result.output):
            raise SubmitLimited(f"{command}: {result.output[:500]}")
        if result.returncode != 0 and excluding and slurm_parse.is_no_node_available(result.output):
            raise SubmitExcludedAll(f"{command}: {result.output[:500]}")
        if result.returncode != 0:
            raise SubmitError(f"{command} failed (exit {result.returncode}): {result.output[:500]}")
        raise SubmitError(f"{command} printed no job id: {result.output[:500]!r}")

    def nodes_of(self, scheduler_id: str) -> list[str]:
        """The hostnames a submission ran on (sacct's NodeList, else squeue's while the controller remembers it),
        expanded by Slurm's own `scontrol show hostnames`; [] when it never got a node."""
        if self._cluster_features().accounting:
            listed = self._run_checked(["sacct", "-n", "-X", "-P", "-j", scheduler_id, "-o", "NodeList"]).stdout
        else:
            listed = self._run_checked(["squeue", "-h", "-t", "all", "-j", scheduler_id, "-o", "%N"]).stdout
        hostlist = slurm_parse.parse_node_list(listed)
        if not hostlist:
            return []
        return self._run_checked(["scontrol", "show", "hostnames", hostlist]).stdout.split()

    def node_gpus(self) -> NodeGpus:
        """GPUs per node of each partition, as the cluster defines its nodes (`sinfo`)."""
        per_partition, default = slurm_parse.parse_sinfo_gpus(self._run_checked(["sinfo", "-h", "-o", "%P|%G"]).stdout)
        return NodeGpus(per_partition, default)

    def query(self, scheduler_ids: Collection[str], names: Collection[str]) -> Mapping[str, Observation]:
        wanted_ids = {str(i) for i in scheduler_ids}
        wanted_names = set(names)
        listed = slurm_parse.parse_squeue(
            # -r: one line per array task, pending ones included (else `N_[0-7]` stands for all of them)
            self._run_checked(["squeue", "--me", "-r", "-h", "-t", "all", "-O", slurm_parse.SQUEUE_FORMAT]).stdout
        )
        found = {
            job_id: obs
            for job_id, obs in listed.items()
            if job_id in wanted_ids or (obs.state.is_active and obs.name in wanted_names)
        }
        ended = sorted((i for i in wanted_ids if i not in found or not found[i].state.is_active), key=job_id_order)
        if ended:
            found.update(self._finished(ended, found))
        return found

    def cancel(self, scheduler_ids: Collection[str]) -> None:
        ids = sorted({str(i) for i in scheduler_ids}, key=job_id_order)
        if not ids:
            return
        result = self._run(["scancel", *ids])
        if result.returncode != 0 and not _only_already_gone(result.stderr):
            raise SchedulerUnavailable(f"scancel failed (exit {result.returncode}): {result.output[:500]}")

    # -- finished jobs ----------------------------------------------------------------------------

    def _cluster_features(self) -> ClusterFeatures:
        if self._features is None:
            config = slurm_parse.parse_key_values(self._run_checked(["scontrol", "show", "config"]).stdout)
            self._features = ClusterFeatures.from_config(config)
        return self._features

    def _finished(self, job_ids: Sequence[str], listed: Mapping[str, Observation]) -> dict[str, Observation]:
        """Final states of jobs that ended or left squeue, from the most authoritative record there is."""
        features = self._cluster_features()
        accounted: dict[str, Observation] = {}
        if features.accounting:
            result = self._run_checked(["sacct", "-n", "-P", "-X", "--delimiter", slurm_parse.FIELD_SEPARATOR,
                                        "-j", ",".join(job_ids), "-o", slurm_parse.SACCT_FIELDS])
            accounted = slurm_parse.parse_sacct(result.stdout)
        unknown = [i for i in job_ids if i not in accounted and i not in listed]
        from_jobcomp = (slurm_parse.parse_jobcomp(_read_tail(features.jobcomp_file), unknown)
                        if unknown and features.jobcomp_file else {})
        return {job_id: final_observation(job_id, listed.get(job_id), accounted.get(job_id), from_jobcomp.get(job_id))
                for job_id in job_ids}


def final_observation(job_id: str, queue: Observation | None, accounting: Observation | None,
                      jobcomp: Observation | None = None) -> Observation:
    """How a job that is not active in squeue ended.

    The accounting record wins when it is final: it outlives MinJobAge and names the run that counts.
    While slurmdbd lags behind the controller it may still say RUNNING for a job squeue already shows
    ended: squeue's ending is taken then. A job the controller no longer lists at all is not running,
    whatever a stale accounting row says (the controller knows every active job): GONE, never active.
    """
    if accounting is not None and not accounting.state.is_active:
        if queue is not None:  # keep what only squeue reports: the batch script, and a reason sacct leaves out
            return replace(accounting, script=queue.script, work_dir=accounting.work_dir or queue.work_dir,
                           reason=accounting.reason or queue.reason)
        return accounting
    if queue is not None:
        return queue
    if jobcomp is not None:
        return jobcomp
    reason = "accounting still lists it as active, the controller does not" if accounting is not None else ""
    return Observation(scheduler_id=job_id, name=accounting.name if accounting else "", state=SchedulerState.GONE,
                       reason=reason)


def _script_exclusion(script: str) -> list[str]:
    """The script's own `#SBATCH --exclude` (a hostlist expression), if any."""
    from orchestrator.scheduler.sbatch_script import script_options

    try:
        with open(script, encoding="utf-8", errors="replace") as handle:
            own = script_options(handle.read()).get("exclude", "")
    except OSError:
        return []  # sbatch reports a missing script in its own words
    return [own] if own else []


def with_excluded_nodes(command: str, nodes: Sequence[str]) -> str:
    """`--exclude=NODES` right after the command's first `sbatch` word (sbatch has no input environment variable for
    it). A command that runs sbatch out of sight (a wrapper script) is left as it is: it cannot be told."""
    if not nodes:
        return command
    return with_sbatch_option(command, f"--exclude={shlex.quote(','.join(nodes))}")


def with_sbatch_option(command: str, option: str) -> str:
    """`option` right after the command's first `sbatch` word (where it beats the script's `#SBATCH` lines);
    the command unchanged when it has no such word."""
    found = _SBATCH_WORD.search(command)
    if found is None:
        return command
    return f"{command[:found.end()]} {option}{command[found.end():]}"


_SBATCH_WORD = re.compile(r"(?:^|(?<=[\s;&|(]))(?:\S*/)?sbatch(?=\s)")


def array_command(job: Job, driver: str) -> str | None:
    """The job's submit command run on `driver` instead of its own script; None when it names its script other than
    once, or runs sbatch out of sight (a wrapper could not be told `--array`)."""
    if "{sbatch_script}" in job.cmd:
        command = submit_command(replace(job, cmd=job.cmd.replace("{sbatch_script}", driver)))
    elif submit_command(job).count(job.sbatch_script) == 1:
        command = submit_command(job).replace(job.sbatch_script, driver)
    else:
        return None
    return command if _SBATCH_WORD.search(command) else None


def submit_command(job: Job) -> str:
    """The job's submit command; AutoExperiment's `{sbatch_script}` placeholder if still unresolved.

    The config's `notify.mail_type` / `notify.mail_user` reach sbatch as SBATCH_MAIL_TYPE / SBATCH_MAIL_USER
    (sbatch's input environment variables for --mail-type / --mail-user): Slurm's own mail for every job."""
    command = job.cmd.replace("{sbatch_script}", job.sbatch_script)
    notify = job.params.get("notify")
    if isinstance(notify, dict):
        exports = [f"export SBATCH_MAIL_{name.upper()}={shlex.quote(str(notify[f'mail_{name}']))}; "
                   for name in ("type", "user") if notify.get(f"mail_{name}")]
        command = "".join(exports) + command
    return command


def _read_tail(path: str) -> str:
    """The end of a (possibly large) file; '' when it cannot be read (e.g. on another host)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - JOBCOMP_TAIL_BYTES))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    # Drop a partial first line when the read started mid-file.
    return text if size <= JOBCOMP_TAIL_BYTES else text.partition("\n")[2]


def _only_already_gone(stderr: str) -> bool:
    """scancel errors that only say a job is already finished or unknown: nothing left to cancel."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    harmless = ("Invalid job id specified", "already completing or completed")
    return bool(lines) and all(any(text in line for text in harmless) for line in lines)
