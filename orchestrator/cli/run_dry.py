"""`orch run --dry`: what the first cycle would do, with no submission, no cancel and no store write."""

from __future__ import annotations

from pathlib import Path

from orchestrator.jobs import Job


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
    from orchestrator.monitor.ownership import is_campaign_submission, recorded_submission_of, submitted_as
    from orchestrator.monitor.probes import OutputWatcher
    from orchestrator.scheduler.base import SchedulerUnavailable
    from orchestrator.state import StateStore

    by_name = {job.name: job for job in jobs}
    store = StateStore.open_existing(directory)
    try:
        records = store.jobs(list(by_name)) if store is not None else {}
    finally:
        if store is not None:
            store.close()
    # The recorded submissions (an array task among them: it has its array's name, not the job's), and by name.
    recorded = {r.current.scheduler_id: r for r in records.values() if r.current and r.current.scheduler_id}
    try:
        listed = scheduler.query(list(recorded), list(by_name))
        in_queue = {o.name: o for o in listed.values()
                    if o.state.is_active and o.name in by_name and is_campaign_submission(o, by_name[o.name])}
        for scheduler_id, record in recorded.items():
            seen = listed.get(scheduler_id)
            if seen is not None and recorded_submission_of(seen, *submitted_as(
                    record.current, by_name[record.name].sbatch_script)).state.is_active:
                in_queue[record.name] = seen
    except SchedulerUnavailable as error:
        print(f"scheduler unavailable ({error}): the queue was not checked")
        in_queue = {}
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
            watched = found.scheduler_id in recorded
            verdict = f"in the queue as {found.scheduler_id} ({found.state.value}): " + ("watched" if watched
                                                                                       else "would adopt")
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
