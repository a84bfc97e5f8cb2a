"""`orch run CONFIG --as-slurm-job`: the campaign's monitor as a chain of Slurm jobs (`monitor.slurm_job`).

On the login node it checks what `orch run` checks, asks about the cost, writes `monitor.sbatch` in the
campaign's state folder and submits the first generation, unless the chain is already queued or running.
Each generation runs `orch run ... --in-slurm-job`: it takes the lease, queues its successor, monitors until
shortly before its time limit and hands over, or cancels its successor when the campaign is finished.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import UserError

if TYPE_CHECKING:
    from orchestrator.monitor.slurm_job import MonitorChain

DEFAULT_MONITOR_TIME = "24:00:00"
DEFAULT_HANDOVER_SECS = 300.0
LEASE_RETRY_SECS = 10.0  # how often a generation looks again for its predecessor's lease to go


def add_monitor_job_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the monitor as a Slurm job (no process on a login node)")
    group.add_argument("--as-slurm-job", action="store_true",
                       help="submit the monitor itself as a chain of CPU jobs that hand over to each other "
                            "(--dependency=singleton); `orch status` shows where it runs")
    group.add_argument("--monitor-time", default=DEFAULT_MONITOR_TIME, metavar="TIME",
                       help="time limit of each generation (sbatch --time; default %(default)s)")
    group.add_argument("--monitor-partition", metavar="PARTITION", help="partition for the monitor job")
    group.add_argument("--monitor-handover-secs", type=float, default=DEFAULT_HANDOVER_SECS, metavar="S",
                       help="a generation hands over this long before its time limit (default %(default)g)")
    group.add_argument("--monitor-sbatch-arg", action="append", default=[], metavar="ARG",
                       help="another sbatch option for the monitor job, e.g. --account=proj (repeatable)")
    group.add_argument("--in-slurm-job", action="store_true", help=argparse.SUPPRESS)  # what a generation runs


def check_monitor_job_arguments(args: argparse.Namespace) -> float:
    """Refuse combinations that make no sense for a monitor job; returns the generation's time limit in seconds."""
    from orchestrator.scheduler.sbatch_script import parse_time_limit

    for flag, given in (("--once", args.once), ("--dry", args.dry), ("--retry-cancelled", args.retry_cancelled)):
        if given:
            extra = (": every generation would run the cancelled jobs again; run `orch run --once --retry-cancelled` "
                     "first" if flag == "--retry-cancelled" else "")
            raise UserError(f"--as-slurm-job cannot be combined with {flag}{extra}")
    if args.scheduler == "local":
        raise UserError("--as-slurm-job submits the monitor to Slurm; it cannot run the jobs with --scheduler local")
    try:
        limit = parse_time_limit(args.monitor_time)
    except ValueError as error:
        raise UserError(f"--monitor-time: {error}") from None
    if limit is None:
        raise UserError("--monitor-time: give a time limit (a generation hands over before it)")
    if not 0 < args.monitor_handover_secs < limit:
        raise UserError(f"--monitor-handover-secs {args.monitor_handover_secs:g}: give more than 0 and less than "
                        f"--monitor-time ({limit:g} s)")
    return limit


def job_ended_check() -> Callable[[str], bool]:
    """Has a Slurm job left the queue? (Asked only about a lease holder that ran in one.) Unknown: no."""
    from orchestrator.scheduler.base import SchedulerUnavailable
    from orchestrator.scheduler.select import select_scheduler

    def ended(job_id: str) -> bool:
        try:
            found = select_scheduler("slurm").query([job_id], []).get(job_id)
        except (SchedulerUnavailable, UserError):
            return False
        return found is None or not found.state.is_active
    return ended


def _chain(directory: Path, scheduler):
    from orchestrator.monitor.slurm_job import SCRIPT_NAME, MonitorChain, chain_name

    return MonitorChain(scheduler, chain_name(directory), directory / SCRIPT_NAME)


def submit_monitor_job(args: argparse.Namespace, directory: Path, scheduler) -> int:
    """The login node's part: write the generation's script and submit the first one, unless the chain runs."""
    from orchestrator.cli.common import rerun_words
    from orchestrator.monitor.slurm_job import render_script, write_script
    from orchestrator.scheduler.base import SchedulerUnavailable, SubmitError
    from orchestrator.state.lease import refuse_if_held

    if scheduler.name != "slurm":
        raise UserError("--as-slurm-job needs Slurm (sbatch on PATH, or --scheduler slurm)")
    chain = _chain(directory, scheduler)
    try:
        members = chain.members()
    except SchedulerUnavailable as error:
        raise UserError(f"Slurm does not answer, nothing submitted: {str(error).splitlines()[0][:300]}") from None
    if members:
        listed = ", ".join(f"{o.scheduler_id} ({o.state.value.lower()})" for o in members)
        print(f"orch: this campaign's monitor job {chain.name} is already in the queue: {listed}; nothing submitted "
              f"(to change its options: `scancel --name={chain.name}`, then run this again)")
        return 0
    refuse_if_held(directory, job_ended_check())  # a monitor elsewhere: the monitor job would wait for it
    words = rerun_words(args, "--in-slurm-job", "--yes", "--no-check", "--scheduler", "slurm",
                        "--monitor-time", args.monitor_time,
                        "--monitor-handover-secs", f"{args.monitor_handover_secs:g}", *_run_flags(args))
    text = render_script(chain.name, directory, os.getcwd(), words, args.monitor_time, args.monitor_partition,
                         args.monitor_sbatch_arg)
    write_script(directory, text)
    try:
        job_id = chain.submit(fresh=True)
    except (SubmitError, SchedulerUnavailable) as error:
        raise UserError(f"the monitor job was not accepted: {str(error).splitlines()[0][:300]}") from None
    print(f"orch: submitted the campaign's monitor as Slurm job {job_id} ({chain.name}, {args.monitor_time} per "
          f"generation); `orch status {args.config}` shows where it runs; its output: "
          f"{directory / 'monitor-job-<id>.out'}; stop it (all generations): `scancel --name={chain.name}`")
    return 0


def _run_flags(args: argparse.Namespace) -> list[str]:
    """The `orch run` options a generation keeps (the login node asked about the cost, so no question)."""
    flags = []
    for flag, value in (("--max-jobs", args.max_jobs), ("--max-start-attempts", args.max_start_attempts),
                        ("--poll-secs", args.poll_secs), ("--probe-workers", args.probe_workers),
                        ("--budget", args.budget), ("--filter-cmd", args.filter_cmd),
                        ("--bad-node-hours", args.bad_node_hours), ("--max-bad-nodes", args.max_bad_nodes)):
        if value is not None:
            flags += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return flags + (["--verbose"] if args.verbose else [])


def acquire_in_job(directory: Path, limit_secs: float):
    """A generation's lease: its predecessor's is released at hand-over, or left by a job that ended (taken over
    at once); while that job is still ending, look again for a while. A monitor outside the chain: refused."""
    from orchestrator.state.lease import DEFAULT_TTL_SECS, LEASE_NAME, read_holder
    from orchestrator.state.lock import acquire_writer

    deadline = time.monotonic() + min(DEFAULT_TTL_SECS + 60, limit_secs / 2)
    ended = job_ended_check()
    while True:
        try:
            return acquire_writer(directory, job_ended=ended)
        except UserError:
            holder = read_holder(directory / LEASE_NAME)
            if (holder is not None and not holder.slurm_job) or time.monotonic() > deadline:
                raise
            time.sleep(LEASE_RETRY_SECS if holder is not None else 1.0)  # None: released meanwhile


@dataclass
class Generation:
    """One generation of the monitor job, once it holds the lease."""

    chain: MonitorChain
    own_id: str
    number: int
    fresh: bool

    @classmethod
    def begin(cls, directory: Path, scheduler, store) -> Generation:
        from orchestrator.monitor.slurm_job import FRESH_VARIABLE

        own_id = os.environ.get("SLURM_JOB_ID", "")
        if not own_id:
            raise UserError("--in-slurm-job is what the monitor job's script runs: use --as-slurm-job")
        generation = cls(_chain(directory, scheduler), own_id,
                         int(store.campaign_value("monitor_generation") or 0) + 1,
                         os.environ.get(FRESH_VARIABLE) == "1")
        store.set_campaign_value("monitor_generation", str(generation.number))
        store.set_campaign_value("monitor_job", own_id)
        from orchestrator.scheduler.base import SchedulerUnavailable, SubmitError

        try:  # the successor is queued from the start: a kill at any moment leaves the chain going
            generation.hand_over()
        except (SchedulerUnavailable, SubmitError) as error:
            print(f"could not queue the next generation yet ({error}): tried again before the time limit", flush=True)
        return generation

    def hand_over(self) -> str:
        """Make sure the next generation is queued (submitting it if not); says which it is."""
        successor, submitted = self.chain.ensure_successor(self.own_id)
        if submitted:
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} queued the next generation of the monitor job: "
                  f"{successor}", flush=True)
        return f"the next generation, Slurm job {successor}"

    def end(self, monitor, store) -> None:
        """After the monitor stopped: a finished campaign needs no successor."""
        if monitor.finished and not monitor.fenced:
            cancelled = self.chain.cancel_successors(self.own_id)
            if cancelled:
                print(f"campaign finished: cancelled the queued next generation {', '.join(cancelled)}", flush=True)
            store.set_campaign_value("monitor_job", "")

