"""`orch run CONFIG` (and `orch build-and-run CONFIG`): the monitor, until every job is done, failed or abandoned.

Exit 0 when every job is done (or cancelled by the user), 1 when some failed or were abandoned, 2 on bad
input (including a second monitor on the same campaign, on this host or another), 3 when this monitor lost
the campaign's lease to another one, 128+signal when stopped by SIGINT/SIGTERM (jobs keep running).
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
from orchestrator.errors import UserError
from orchestrator.jobs import Job

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
    parser.add_argument("--retry-cancelled", action="store_true",
                        help="run the jobs `orch cancel` cancelled again (otherwise they stay cancelled)")
    parser.add_argument("--filter-cmd", metavar="CMD",
                        help="keep only the jobs for which CMD, formatted with the job's values ({name}, {lr}), "
                             "exits 0 (AutoExperiment's --filter-cmd; run once per job at start-up)")


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
    _put_own_bin_dir_on_path()
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
        return dry_run(jobs, make_scheduler(args.scheduler, directory), args.max_jobs, directory,
                       args.retry_cancelled, args.probe_workers)
    if missing:
        raise UserError(f"{len(missing)} sbatch script(s) not built, first {missing[0]}: "
                        f"run `orch build {args.config}` first, or use `orch build-and-run`")
    if not args.no_check:  # what will be submitted: the scripts as built
        check_rendered(args, [(job, Path(job.sbatch_script).read_text(errors="replace")) for job in jobs])

    from orchestrator.state.lock import acquire_writer

    try:
        lock, lease = acquire_writer(directory)
    except UserError as held:
        if not args.once:
            raise
        print(f"orch: tick skipped: {held}", file=sys.stderr)  # cron's next tick tries again
        return 0
    with lock:
        if lease.took_over:
            print(f"orch: took over the monitor lease of {lease.took_over}", file=sys.stderr)
        try:
            return _monitor(args, jobs, directory, lease)
        finally:
            lease.release()


def _monitor(args: argparse.Namespace, jobs: list[Job], directory: Path, lease: MonitorLease) -> int:
    """The monitor proper, once the campaign's lease is held."""
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
    options = MonitorOptions(
        poll_secs=args.poll_secs or default_poll_secs(jobs),
        probe_wait_secs=max(job.probe_timeout_secs for job in jobs) + 1 if args.once else None,
        reevaluate_finished=not args.once,
        max_jobs=args.max_jobs,
        max_start_attempts=args.max_start_attempts,
        probe_workers=args.probe_workers,
        budget_gpu_hours=args.budget,
        retry_cancelled=args.retry_cancelled,
        node_gpus=node_gpus,
    )
    provenance = campaign_provenance(args.config, args.fixes, args.typed_fixes, args.filters, args.filter_cmd)
    alerts = Alerts(settings, args.config) if settings.sends or settings.no_progress_secs is not None else None
    monitor = Monitor(jobs, scheduler, store, options, provenance=provenance, lease=lease, alerts=alerts)
    previous = {sig: signal.signal(sig, lambda signum, frame: monitor.stop(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return monitor.tick() if args.once else monitor.run()
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


def _flags(jobs: list[Job], what: str, workers: int) -> dict:
    """{job name: FlagResult} of each job's `what` command, on the monitor's own probe runner (`workers` at a time,
    each bounded by the job's probe_timeout_secs)."""
    from orchestrator.monitor.probe_runner import ProbeRunner

    runner = ProbeRunner(workers)
    try:
        launched = [job for job in jobs if getattr(job, what) and
                    runner.launch(job.name, getattr(job, what), job.probe_timeout_secs, 0.0)]
        if launched:
            runner.wait(max(job.probe_timeout_secs for job in launched) + 1)
        return {job.name: outcome.result for job in launched if (outcome := runner.take(job.name)) is not None}
    finally:
        runner.close()


def dry_run(jobs: list[Job], scheduler, max_jobs: int | None, directory: Path, retry_cancelled: bool = False,
            probe_workers: int = 16) -> int:
    """What the first cycle would do, with no submission, no cancel and no store write."""
    from orchestrator.job_state import JobState
    from orchestrator.monitor.ownership import is_campaign_submission
    from orchestrator.monitor.probes import OutputWatcher
    from orchestrator.scheduler.base import SchedulerUnavailable
    from orchestrator.state import StateStore

    by_name = {job.name: job for job in jobs}
    try:
        in_queue = {o.name: o for o in scheduler.query([], list(by_name)).values()
                    if o.state.is_active and is_campaign_submission(o, by_name[o.name])}
    except SchedulerUnavailable as error:
        print(f"scheduler unavailable ({error}): the queue was not checked")
        in_queue = {}
    store = StateStore.open_existing(directory)
    try:
        records = store.jobs(list(by_name)) if store is not None else {}
    finally:
        if store is not None:
            store.close()
    unbuilt = {job.name for job in jobs if not Path(job.sbatch_script).exists()}
    if unbuilt:
        print(f"{len(unbuilt)} of {len(jobs)} script(s) not built yet: `orch build` first (or `orch build-and-run`); "
              "below, 'would submit' means after that build")
    watcher = OutputWatcher()
    cancelled = {job.name for job in jobs if not retry_cancelled and job.name in records
                 and records[job.name].state == JobState.CANCELLED}
    open_jobs = [job for job in jobs if job.name not in cancelled
                 and not watcher.facts(job.output_file, job.termination_str).termination_matched]
    # The probes of many jobs run side by side, as the monitor runs them (16 at a time): first the done checks,
    # then the start conditions of the jobs that are neither done nor in the queue.
    finished = _flags(open_jobs, "termination_cmd", probe_workers)
    starts = _flags([job for job in open_jobs if not finished.get(job.name) and job.name not in in_queue],
                    "start_condition_cmd", probe_workers)
    open_names = {job.name for job in open_jobs}
    would_submit = unbuilt_submit = 0
    for job in jobs:
        record = records.get(job.name)
        start = starts.get(job.name)
        if job.name in cancelled:
            verdict = f"cancelled ({record.reason}): stays cancelled (--retry-cancelled runs it again)"
        elif job.name not in open_names:
            verdict = "done (termination_str found in output)"
        elif finished.get(job.name):
            verdict = "done (termination_cmd printed 1)"
        elif job.name in in_queue:
            found = in_queue[job.name]
            verdict = f"in the queue as {found.scheduler_id} ({found.state.value}): would adopt"
        elif start is not None and not start.flag:
            verdict = f"waiting: start condition not met ({start.detail})"
        elif max_jobs is not None and len(in_queue) + would_submit >= max_jobs:
            verdict = f"ready, waits for a free slot (--max-jobs {max_jobs})"
        else:
            verdict = ("would submit after `orch build`: " if job.name in unbuilt else "would submit: ") + job.cmd
            would_submit += 1
            unbuilt_submit += job.name in unbuilt
        print(f"{job.name}: {verdict}")
    print(f"dry run: {would_submit} of {len(jobs)} jobs would be submitted now"
          + (f" ({unbuilt_submit} of them once built)" if unbuilt_submit else "") + "; nothing was submitted")
    return 0


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
