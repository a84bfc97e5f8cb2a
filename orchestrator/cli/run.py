"""`orch run CONFIG` (and `orch build-and-run CONFIG`): the monitor, until every job is done, failed or abandoned.

Exit 0 when every job is done (or cancelled by the user), 1 when some failed or were abandoned, 2 on bad
input (including a second monitor on the same campaign, on this host or another), 3 when this monitor lost
the campaign's lease to another one, 128+signal when stopped by SIGINT/SIGTERM (jobs keep running).
With --as-slurm-job it submits the monitor as a Slurm job instead (`cli.run_as_job`); a generation of that
job exits 0 when it hands over to its successor.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.cli.check import add_check_arguments, check_rendered
from orchestrator.cli.common import add_job_selection_arguments, campaign_state_dir, selected_jobs
from orchestrator.cli.run_as_job import add_monitor_job_arguments
from orchestrator.errors import UserError
from orchestrator.jobs import Job
from orchestrator.state.bad_nodes import DEFAULT_HOURS as DEFAULT_BAD_NODE_HOURS
from orchestrator.state.bad_nodes import DEFAULT_LIMIT as DEFAULT_MAX_BAD_NODES

if TYPE_CHECKING:
    from orchestrator.state.lease import MonitorLease

LOG_FORMAT = "%(asctime)s %(message)s"
DEFAULT_CONFIRM_ABOVE = 100.0


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="submit the campaign's jobs and watch them until all are done")
    add_job_selection_arguments(run)
    add_run_arguments(run)
    add_check_arguments(run)
    run.set_defaults(handler=handle_run)

    build_and_run = subparsers.add_parser("build-and-run", help="`orch build`, then `orch run`")
    add_job_selection_arguments(build_and_run)
    add_run_arguments(build_and_run)
    add_check_arguments(build_and_run)
    build_and_run.set_defaults(handler=handle_build_and_run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value:g}")
    return value


def add_scheduler_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", choices=("auto", "slurm", "local"), default=None,
                        help="where jobs run (default: where this campaign's jobs were submitted before, else auto: "
                             "slurm when sbatch is on PATH, else local)")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-jobs", type=_positive_int, metavar="N",
                        help="never more than N of the campaign's jobs in the queue at once")
    parser.add_argument("--dry", "--dry-run", dest="dry", action="store_true",
                        help="evaluate termination and start conditions, print what would be submitted, submit nothing")
    add_scheduler_argument(parser)
    parser.add_argument("--max-start-attempts", type=_positive_int, metavar="N",
                        help="abandon a job whose start condition was not met after N checks")
    parser.add_argument("--poll-secs", type=_positive_float, metavar="S",
                        help="seconds between cycles (default: the shortest check_interval_secs, at most 60)")
    parser.add_argument("--probe-workers", type=_positive_int, metavar="N", default=16,
                        help="start and termination commands run at most N at a time (default 16); "
                             "each is bounded by the job's probe_timeout_secs (default 300)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also log every probe result")
    parser.add_argument("--budget", type=_positive_float, metavar="GPU_HOURS",
                        help="submit nothing that could take the campaign past this many GPU-hours "
                             "(spent so far + the time limits of queued jobs + the new job's)")
    parser.add_argument("--confirm-above", type=float, metavar="GPU_HOURS", default=DEFAULT_CONFIRM_ABOVE,
                        help=f"ask before submitting when the estimate exceeds this (default {DEFAULT_CONFIRM_ABOVE:g})")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask (for scripts and cron)")
    parser.add_argument("--once", action="store_true",
                        help="run one monitor cycle and exit (a tick, for cron or scrontab: `orch cron CONFIG` prints "
                             "the lines); a tick that finds another monitor or tick at work exits 0 doing nothing")
    parser.add_argument("--bad-node-hours", type=float, default=DEFAULT_BAD_NODE_HOURS, metavar="H",
                        help="a node that failed an attempt (NODE_FAIL, or node_fault_regex in its output) is excluded "
                             f"from the campaign's submissions for H hours (default {DEFAULT_BAD_NODE_HOURS:g})")
    parser.add_argument("--max-bad-nodes", type=int, default=DEFAULT_MAX_BAD_NODES, metavar="N",
                        help=f"exclude at most N nodes at once, the most recently marked (default {DEFAULT_MAX_BAD_NODES}; "
                             "0: mark, never exclude)")
    parser.add_argument("--retry-cancelled", action="store_true",
                        help="run the jobs `orch cancel` cancelled again (otherwise they stay cancelled)")
    parser.add_argument("--filter-cmd", metavar="CMD",
                        help="keep only the jobs for which CMD, formatted with the job's values ({name}, {lr}), "
                             "exits 0 (AutoExperiment's --filter-cmd; run once per job at start-up)")
    add_monitor_job_arguments(parser)


def make_scheduler(choice: str | None, directory: Path | None = None):
    """The backend for `--scheduler`; without one, the backend the campaign (state in `directory`) was
    submitted to, else `auto` (the selection rules live in orchestrator.scheduler.select)."""
    from orchestrator.scheduler.select import select_scheduler

    return select_scheduler(choice or remembered_scheduler(directory) or "auto")


def remembered_scheduler(directory: Path | None) -> str | None:
    """The backend this campaign's monitor last submitted to (kept in its store), if any."""
    from orchestrator.state import StateStore

    store = StateStore.open_existing(directory) if directory is not None else None
    if store is None:
        return None
    try:
        return store.campaign_value("scheduler")
    finally:
        store.close()


def _check_auto_scheduler_answers(scheduler, choice: str | None, remembered: str | None) -> None:
    """`auto` picked Slurm because sbatch is on PATH: if Slurm does not answer at all, say so and stop, instead
    of backing off forever (a chosen or remembered Slurm is waited for: it may be down for maintenance)."""
    from orchestrator.scheduler.base import SchedulerUnavailable

    if scheduler.name != "slurm" or choice not in (None, "auto") or remembered is not None:
        return
    try:
        scheduler.query([], [])
    except SchedulerUnavailable as error:
        raise UserError(f"--scheduler auto chose slurm (sbatch is on PATH) but it does not answer: "
                        f"{str(error).splitlines()[0][:200]}; run with --scheduler local to run the jobs on this "
                        "machine, or --scheduler slurm to wait for Slurm") from None


def handle_build_and_run(args: argparse.Namespace) -> int:
    if not args.dry:  # a dry run writes nothing
        from orchestrator.cli.build import build_campaign

        code = build_campaign(args)
        if code:
            return code
        args.no_check = True  # the build just checked these very scripts
    return handle_run(args)


def _put_own_bin_dir_on_path() -> None:
    """Start conditions and job scripts call `orch` and `python`: make them this installation's, as
    an activated virtualenv would, even when the monitor was started as `.venv/bin/orch run ...`."""
    bin_dir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + path if path else bin_dir


def handle_run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    _put_own_bin_dir_on_path()
    monitor_job_secs = None
    if args.as_slurm_job or args.in_slurm_job:
        from orchestrator.cli.run_as_job import check_monitor_job_arguments

        monitor_job_secs = check_monitor_job_arguments(args)
    jobs = selected_jobs(args)
    if args.filter_cmd:
        from orchestrator.job_commands import filter_by_command

        jobs = filter_by_command(jobs, args.filter_cmd)
    if not jobs:
        criteria = " ".join([*args.filters, *([f"--filter-cmd {args.filter_cmd!r}"] if args.filter_cmd else [])])
        raise UserError(f"{args.config}: no job matches the filters {criteria}")
    directory = campaign_state_dir(args.config, jobs)
    missing = [job.sbatch_script for job in jobs if not Path(job.sbatch_script).exists()]
    if args.dry:
        if not missing:
            print(f"orch: {cost_line(jobs, directory)[0]}")  # the node definition is not asked for a dry run
        from orchestrator.cli.run_dry import dry_run

        return dry_run(jobs, make_scheduler(args.scheduler, directory), args.max_jobs, directory,
                       args.retry_cancelled, args.probe_workers)
    if missing:
        raise UserError(f"{len(missing)} sbatch script(s) not built, first {missing[0]}: "
                        f"run `orch build {args.config}` first, or use `orch build-and-run`")
    if not args.no_check:  # what will be submitted: the scripts as built
        check_rendered(args, [(job, Path(job.sbatch_script).read_text(errors="replace")) for job in jobs])
    if args.as_slurm_job:
        from orchestrator.cli.common import cluster_node_gpus
        from orchestrator.cli.run_as_job import submit_monitor_job

        scheduler = make_scheduler(args.scheduler, directory)
        confirm_cost(jobs, args, directory, cluster_node_gpus(scheduler))
        return submit_monitor_job(args, directory, scheduler)

    from orchestrator.cli.run_as_job import acquire_in_job, job_ended_check
    from orchestrator.state.lock import acquire_writer

    try:
        if args.in_slurm_job:
            lock, lease = acquire_in_job(directory, monitor_job_secs)
        else:
            lock, lease = acquire_writer(directory, job_ended=job_ended_check())
    except UserError as held:
        if not args.once:
            raise
        print(f"orch: tick skipped: {held}", file=sys.stderr)  # cron's next tick tries again
        return 0
    with lock:
        if lease.took_over:
            print(f"orch: took over the monitor lease of {lease.took_over}", file=sys.stderr)
        try:
            hand_over_at = (started + monitor_job_secs - args.monitor_handover_secs) if args.in_slurm_job else None
            return _monitor(args, jobs, directory, lease, hand_over_at)
        finally:
            lease.release()


def _monitor(args: argparse.Namespace, jobs: list[Job], directory: Path, lease: MonitorLease,
             hand_over_at: float | None = None) -> int:
    """The monitor proper, once the campaign's lease is held; `hand_over_at`: a monitor job's generation."""
    from orchestrator.accounting.provenance import campaign_provenance
    from orchestrator.cli.common import cluster_node_gpus
    from orchestrator.monitor.alerts import Alerts, campaign_settings
    from orchestrator.monitor.loop import Monitor, MonitorOptions, default_poll_secs
    from orchestrator.state import StateStore

    settings = campaign_settings(jobs)  # a bad `notify` section is refused before anything runs
    remembered = remembered_scheduler(directory)
    scheduler = make_scheduler(args.scheduler or remembered)
    _check_auto_scheduler_answers(scheduler, args.scheduler, remembered)
    node_gpus = cluster_node_gpus(scheduler)
    confirm_cost(jobs, args, directory, node_gpus)
    log_handlers = _start_logging(directory / "monitor.log", args.verbose)
    store = StateStore.open(directory, guard=lease.confirm)  # only the lease holder writes it
    if remembered is not None and remembered != scheduler.name:
        print(f"orch: this campaign's jobs were submitted to {remembered} before; now to {scheduler.name} "
              "(--scheduler): jobs still in the other one are not seen", file=sys.stderr)
    store.set_campaign_value("scheduler", scheduler.name)  # cancel, status and the next run use it
    generation = None
    if args.in_slurm_job:
        from orchestrator.cli.run_as_job import Generation

        generation = Generation.begin(directory, scheduler, store)
    options = MonitorOptions(
        poll_secs=args.poll_secs or default_poll_secs(jobs),
        probe_wait_secs=max(job.probe_timeout_secs for job in jobs) + 1 if args.once else None,
        reevaluate_finished=not args.once and (generation is None or generation.fresh),
        max_jobs=args.max_jobs,
        max_start_attempts=args.max_start_attempts,
        probe_workers=args.probe_workers,
        budget_gpu_hours=args.budget,
        retry_cancelled=args.retry_cancelled,
        bad_node_hours=args.bad_node_hours,
        max_bad_nodes=args.max_bad_nodes,
        node_gpus=node_gpus,
        hand_over_at=hand_over_at,
    )
    provenance = campaign_provenance(args.config, args.fixes, args.typed_fixes, args.filters, args.filter_cmd)
    alerts = Alerts(settings, args.config) if settings.sends or settings.no_progress_secs is not None else None
    monitor = Monitor(jobs, scheduler, store, options, provenance=provenance, lease=lease, alerts=alerts,
                      hand_over=generation.hand_over if generation is not None else None)
    previous = {sig: signal.signal(sig, lambda signum, frame: monitor.stop(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = monitor.tick() if args.once else monitor.run()
        if generation is not None:
            generation.end(monitor, store)
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        store.close()
        _stop_logging(log_handlers)


def cost_line(jobs: list[Job], directory: Path, node_gpus=None) -> tuple[str, float, int]:
    """One line on what the jobs not yet done may cost and what was spent, the GPU-hours to come and the
    number of jobs whose GPUs are unknown."""
    from orchestrator.accounting.estimate import estimate_job
    from orchestrator.accounting.ledger import attempt_gpu_hours
    from orchestrator.job_state import JobState
    from orchestrator.state import StateStore

    store = StateStore.open_existing(directory)
    try:
        records = store.jobs([job.name for job in jobs]) if store else {}
        spent = sum(attempt_gpu_hours(a, time.time()) for a in store.attempts()) if store else 0.0
    finally:
        if store is not None:
            store.close()
    finished = (JobState.DONE, JobState.CANCELLED)
    to_run = [job for job in jobs if not (job.name in records and records[job.name].state in finished)]
    estimates = [estimate_job(job, Path(job.sbatch_script).read_text(errors="replace"), node_gpus) for job in to_run]
    estimate = sum(e.gpu_hours for e in estimates)
    unbounded = sum(e.unbounded for e in estimates)
    unknown = sum(e.gpus_unknown for e in estimates)
    line = (f"estimate: {len(to_run)} job(s) to run, up to {estimate:,.1f} GPU-hours (one time limit each)"
            + (f", {unbounded} unbounded (GPUs without a time limit)" if unbounded else "")
            + (f", {unknown} with unknown GPUs (nodes without a GPU option, no node definition)" if unknown else "")
            + f"; spent so far: {spent:,.1f} GPU-hours")
    return line, estimate, unknown


def confirm_cost(jobs: list[Job], args: argparse.Namespace, directory: Path | None = None, node_gpus=None) -> None:
    """Print the estimate; above --confirm-above, or with jobs whose GPUs are unknown, ask on a terminal and
    refuse without one (unless --yes)."""
    line, estimate, unknown = cost_line(jobs, directory or campaign_state_dir(args.config), node_gpus)
    print(f"orch: {line}", flush=True)
    if args.yes or (estimate <= args.confirm_above and not unknown):
        return
    what = (f"{unknown} job(s) of unknown GPU-hours" if estimate <= args.confirm_above else
            f"jobs worth up to {estimate:,.1f} GPU-hours (above --confirm-above {args.confirm_above:g})"
            + (f" and {unknown} of unknown GPU-hours" if unknown else ""))
    question = f"submit {what}? [y/N] "
    if not sys.stdin.isatty():
        raise UserError(f"orch would submit {what} and there is no terminal to ask: run with --yes"
                        + ("" if unknown else " (or a higher --confirm-above)")
                        + (" (or set estimate_gpus / a GPU option)" if unknown else ""))
    answer = input(question).strip().lower()
    if answer not in ("y", "yes"):
        raise UserError("not confirmed: nothing submitted")


def _start_logging(log_file: Path, verbose: bool) -> list[logging.Handler]:
    logger = logging.getLogger("orch.monitor")
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [logging.FileHandler(log_file), logging.StreamHandler(sys.stdout)]
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
    return handlers


def _stop_logging(handlers: list[logging.Handler]) -> None:
    logger = logging.getLogger("orch.monitor")
    for handler in handlers:
        logger.removeHandler(handler)
        handler.close()
