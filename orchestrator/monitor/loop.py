"""The monitor loop: the one place where decisions become side effects.

Each cycle: ONE scheduler query for every job of the campaign; for each job, its output file and the
start/termination probes that are due, launched on the probe runner (never waited on one by one);
then, with whatever probe results have arrived, the pure `decide` for each job, and its actions
applied (store writes, submit, cancel, log lines). The store is read afresh every cycle, so it is the
single source of truth and a restarted monitor picks up exactly where the last one stopped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Protocol

from orchestrator.accounting.estimate import JobEstimate, estimate_job
from orchestrator.accounting.ledger import committed_gpu_hours
from orchestrator.accounting.provenance import CampaignProvenance, keep_script
from orchestrator.job_state import RE_EVALUATED_STATES, JobState
from orchestrator.jobs import Job
from orchestrator.monitor.alerts import LOGGED_ALERTS, Alerts
from orchestrator.monitor.heartbeat import write_heartbeat
from orchestrator.monitor.lifecycle import (
    Action,
    Adopt,
    Cancel,
    DropIntent,
    EndAttempt,
    Facts,
    JobView,
    Log,
    RecordOutput,
    StartReady,
    StartRefused,
    StartRun,
    Submit,
    Transition,
    decide,
    start_probe_due,
    termination_probe_due,
    view_of,
)
from orchestrator.monitor.ownership import is_campaign_submission, recorded_submission
from orchestrator.monitor.probe_runner import DEFAULT_PROBE_WORKERS, ProbeFunction, ProbeOutcome, ProbeRunner
from orchestrator.monitor.probes import OutputFacts, OutputWatcher, has_job_id_pattern, resolve_output_path
from orchestrator.render.write import content_digest
from orchestrator.scheduler.base import NodeGpus, Observation, Scheduler, SchedulerUnavailable, SubmitError, SubmitLimited
from orchestrator.state.store import JobRecord, StateConflict, StateStore

LOGGER = logging.getLogger("orch.monitor")

MAX_DEFAULT_POLL_SECS = 60.0
MAX_BACKOFF_SECS = 300.0
# How long a cycle waits for the probes it launched before deciding with the results in hand: fast
# probes are used in the same cycle, slow ones in a later one, and no probe holds back the others.
MAX_PROBE_WAIT_SECS = 2.0
# Past a queue limit, how often one submission beyond the campaign's own queued jobs is tried again
# (other users' or campaigns' jobs may have left the queue meanwhile).
DEFAULT_LIMIT_RETRY_SECS = 60.0
LINGER_WAIT_SECS = 30.0  # at most this long, at the end, for finished jobs' submissions to leave the queue
FENCED_EXIT = 3  # `orch run`'s exit code when the monitor lost its lease to another one


class Fence(Protocol):
    """The campaign's monitor lease as the loop uses it (`state.lease.MonitorLease`)."""

    def still_held(self) -> bool: ...

    def heartbeat(self) -> bool: ...


def default_poll_secs(jobs: Sequence[Job]) -> float:
    """The shortest check interval of the campaign, capped so a long interval still notices ends promptly."""
    if not jobs:
        return MAX_DEFAULT_POLL_SECS
    return max(1.0, min(MAX_DEFAULT_POLL_SECS, min(job.check_interval_secs for job in jobs)))


@dataclass(frozen=True)
class MonitorOptions:
    poll_secs: float
    max_jobs: int | None = None
    max_start_attempts: int | None = None
    probe_workers: int = DEFAULT_PROBE_WORKERS
    limit_retry_secs: float = DEFAULT_LIMIT_RETRY_SECS
    budget_gpu_hours: float | None = None
    """Submit nothing that could take the campaign's GPU-hours (spent + open attempts' limits) past this."""
    retry_cancelled: bool = False
    """Jobs the user cancelled are run again (otherwise a cancel outlives every restart)."""
    node_gpus: NodeGpus | None = None
    """The cluster's GPUs per node, for jobs that ask for nodes and name no GPUs (the budget counts them)."""
    probe_wait_secs: float | None = None
    """How long a cycle waits for the probes it launched (default: at most MAX_PROBE_WAIT_SECS). A tick, which
    ends after its one cycle, waits for all of them."""
    reevaluate_finished: bool = True
    """Done, failed and abandoned jobs are looked at afresh at start (a restart); a tick leaves them be."""


@dataclass(frozen=True)
class CycleReport:
    scheduler_known: bool
    submitted: int
    finished: bool


@dataclass
class _QueueLimit:
    """The cluster refused a submission for a queue limit: hold the campaign at what it accepted."""

    cap: int
    """The campaign's jobs in the queue when the refusal came."""
    retry_at: float


@dataclass(frozen=True)
class _Prepared:
    job: Job
    record: JobRecord
    view: JobView
    observation: Observation | None
    output: OutputFacts
    in_queue: bool
    """An active submission of this job is in the queue (its current id, or one of this campaign's found by name)."""


@dataclass(frozen=True)
class _Applied:
    scheduler_answered: bool = True
    submitted: bool = False


class Monitor:
    def __init__(
        self,
        jobs: Sequence[Job],
        scheduler: Scheduler,
        store: StateStore,
        options: MonitorOptions,
        clock: Callable[[], float] = time.time,
        probe: ProbeFunction | None = None,
        provenance: CampaignProvenance | None = None,
        lease: Fence | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        self.jobs = list(jobs)
        self._by_name = {job.name: job for job in self.jobs}
        self.scheduler = scheduler
        self.store = store
        self.options = options
        self._clock = clock
        self._probes = ProbeRunner(options.probe_workers, probe) if probe else ProbeRunner(options.probe_workers)
        self._watcher = OutputWatcher()
        self._stop = threading.Event()
        self.stop_signal: int | None = None
        self._unavailable_cycles = 0
        # Jobs out of the queue since (monitor time), and those whose termination_cmd answered since then.
        self._out_since: dict[str, float] = {}
        self._checked_since_out: set[str] = set()
        self._queue_limit: _QueueLimit | None = None
        self._limit_trial_used = False
        self._logged_once: set[tuple[str, str]] = set()
        self._provenance = provenance
        self._committed_gpu_hours = 0.0
        self._lease = lease
        self._alerts = alerts
        self.fenced = False
        """The campaign's lease went to another monitor: this one did nothing more and stopped."""

    # ------------------------------------------------------------ running

    def start(self) -> None:
        """Register the jobs; terminal jobs of an earlier run are re-evaluated (done ones are found done again)."""
        names = [job.name for job in self.jobs]
        self.store.ensure_jobs(names)
        records = self.store.jobs(names)
        retry = (RE_EVALUATED_STATES if self.options.reevaluate_finished else set()) | (
            {JobState.CANCELLED} if self.options.retry_cancelled else set())
        cancelled = 0
        for name, record in records.items():
            if record.state in retry:
                self.store.set_state(name, JobState.WAITING, f"re-evaluated (was {record.state.value})")
                self.store.update_job(name, consecutive_failures=0, start_attempts=0, start_ready=0)
            elif record.state == JobState.CANCELLED:
                cancelled += 1
        if cancelled:
            self._log(None, "cancelled", f"{cancelled} job(s) cancelled by the user stay cancelled "
                                         "(`orch run --retry-cancelled` runs them again)")
        self._log(None, "start", f"monitoring {len(names)} jobs with {self.scheduler.name} "
                                 f"(poll {self.options.poll_secs:g}s, max jobs {self.options.max_jobs or 'unlimited'}, "
                                 f"{self.options.probe_workers} probe workers"
                                 + (f", budget {self.options.budget_gpu_hours:g} GPU-hours" if self.options.budget_gpu_hours
                                    is not None else "") + ")")
        self._warn_scripts_changed_under_running_jobs(records)  # re-evaluation leaves current attempts as they are

    def _warn_scripts_changed_under_running_jobs(self, records: dict[str, JobRecord]) -> None:
        """A rebuilt script does not change a submission already in the queue: say so once, resubmit nothing."""
        for name, record in records.items():
            submitted = (record.current.provenance or {}).get("script_sha256") if record.current else None
            content = _read_script(self._by_name[name])
            if submitted and content is not None and content_digest(content) != submitted:
                submission = record.current.scheduler_id or "the submission"
                self._log_once(name, "script-changed", "script-changed",
                               f"{self._by_name[name].sbatch_script} changed since {submission} was submitted: it runs "
                               "the old script to its end (not resubmitted); the new one is used from the next submission")

    def run(self) -> int:
        """Cycle until every job is done, failed or abandoned (exit 0 only if all are done), or until stopped."""
        self.start()
        try:
            while True:
                report = self.cycle()
                if self.fenced:
                    return FENCED_EXIT
                if report.finished:
                    self._wait_for_lingering()
                    return self.summary()
                if self._stop.wait(self._sleep_secs(report)):
                    active = sum(1 for r in self.store.jobs([j.name for j in self.jobs]).values()
                                 if r.state in (JobState.QUEUED, JobState.RUNNING))
                    self._log(None, "stop", f"monitor stopped; {active} jobs stay in the queue and are re-adopted by "
                                            "the next `orch run`")
                    return 128 + (self.stop_signal or 2)
        finally:
            self.close()

    def tick(self) -> int:
        """One cycle and out (`orch run --once`): 0 while the campaign goes on, its summary's code once it is
        finished, FENCED_EXIT when the lease went to another monitor."""
        self.start()
        try:
            report = self.cycle()
            if self.fenced:
                return FENCED_EXIT
            return self.summary() if report.finished else 0
        finally:
            self.close()

    def _wait_for_lingering(self) -> None:
        """Jobs found done while their submission was still ending: give those a few polls to leave the
        queue, so their attempts close with the scheduler's own time (the ledger); never long."""
        deadline = self._clock() + min(LINGER_WAIT_SECS, 3 * self.options.poll_secs)
        while self._clock() < deadline and not self._stop.is_set():
            records = self.store.jobs([job.name for job in self.jobs])
            if not any(r.current and r.current.scheduler_id for r in records.values()):
                return
            self._stop.wait(min(self.options.poll_secs, max(0.0, deadline - self._clock())))
            self._close_lingering(records)  # only the scheduler's side changes while we wait

    def close(self) -> None:
        self._probes.close()

    def stop(self, signum: int | None = None) -> None:
        """Safe from a signal handler: the loop ends after the current cycle's step."""
        self.stop_signal = signum
        self._stop.set()

    def summary(self) -> int:
        records = self.store.jobs([job.name for job in self.jobs])
        counts = Counter(record.state for record in records.values())
        line = (f"{len(records)} jobs: {counts[JobState.DONE]} done, {counts[JobState.FAILED]} failed, "
                f"{counts[JobState.ABANDONED]} abandoned"
                + (f", {counts[JobState.CANCELLED]} cancelled by the user" if counts[JobState.CANCELLED] else ""))
        self._log(None, "summary", line)
        if self._alerts is not None:
            self._alert("done", None, line, once_for=line)
        # The user's own cancels are not a failure of the campaign.
        return 0 if counts[JobState.DONE] + counts[JobState.CANCELLED] == len(records) else 1

    def _sleep_secs(self, report: CycleReport) -> float:
        if report.scheduler_known:
            return self.options.poll_secs
        # Exponential backoff while the scheduler does not answer: 2, 4, 8... x poll, capped.
        cap = min(MAX_BACKOFF_SECS, self.options.poll_secs * 8)
        delay = min(cap, self.options.poll_secs * 2 ** self._unavailable_cycles)
        self._log(None, "backoff", f"scheduler unavailable: next try in {delay:g}s, submitting nothing meanwhile")
        return delay

    # ------------------------------------------------------------ one cycle

    def _may_act(self, renew: bool = False) -> bool:
        """Fencing: is the campaign's lease still ours? Checked before every submit and cancel, renewed each cycle."""
        if self._lease is None or self.fenced:
            return not self.fenced
        held = self._lease.heartbeat() if renew else self._lease.still_held()
        if not held:
            self.fenced = True
            self._stop.set()
            self._log(None, "fenced", "this monitor lost the campaign's lease (another monitor took it over, or "
                                      "`orch unlock` broke it): it submits and cancels nothing more, and stops",
                      logging.ERROR)
        return held

    def cycle(self) -> CycleReport:
        if not self._may_act(renew=True):
            return CycleReport(False, 0, False)
        now = self._clock()
        records = self.store.jobs([job.name for job in self.jobs])
        live = [job for job in self.jobs if not records[job.name].state.is_terminal]
        if not live:
            self._close_lingering(records)
            return CycleReport(True, 0, True)  # lingering submissions are not waited for

        observations, known = self._query(records, live)
        by_name = self._campaign_submissions_by_name(observations, records) if known else {}
        prepared = [self._prepare(job, records[job.name], observations, by_name, known, now) for job in live]
        # What --max-jobs and queue limits count: the campaign's submissions in the queue, intents included.
        active = self._lingering_active(records, observations, known) + sum(
            1 for item in prepared if item.in_queue or item.view.pending_intent)
        wait = self.options.probe_wait_secs
        self._probes.wait(wait if wait is not None else min(self.options.poll_secs / 2, MAX_PROBE_WAIT_SECS))

        submitted = 0
        self._limit_trial_used = False
        if self.options.budget_gpu_hours is not None:
            self._committed_gpu_hours = committed_gpu_hours(self.store.attempts(), now)
        for item in prepared:
            if self._stop.is_set():
                break
            facts = self._facts(item, by_name, known, active, now)
            actions = decide(item.job, item.view, facts)
            if item.observation is not None and item.observation.state.is_active and any(
                    isinstance(a, Transition) and a.to == JobState.DONE for a in actions):
                # Done while still in the queue: keep its time so far (the attempt may close after we stop).
                self.store.record_usage(item.job.name, item.observation.elapsed_secs, item.observation.gpus)
            applied = self._apply(item.job, item.view.state, actions, item.output, active)
            if applied.submitted:
                active += 1
                submitted += 1
            if not applied.scheduler_answered:
                known = False  # the scheduler stopped answering mid-cycle: decide nothing more this cycle
                self._unavailable_cycles += 1

        after = self.store.jobs([job.name for job in self.jobs])
        self._watch_progress(after, self._clock())
        finished = all(r.state.is_terminal for r in after.values())
        return CycleReport(known, submitted, finished)

    def _query(self, records: dict[str, JobRecord], live: list[Job]) -> tuple[dict[str, Observation], bool]:
        """One scheduler query for the campaign; recorded ids now used by another job read GONE."""
        current = {r.current.scheduler_id: r.name for r in records.values() if r.current and r.current.scheduler_id}
        try:
            observations = dict(self.scheduler.query(list(current), [job.name for job in live]))
        except SchedulerUnavailable as error:
            self._unavailable_cycles += 1
            self._log(None, "scheduler-unavailable", f"scheduler query failed ({error}): job states unknown, "
                                                     "nothing is resubmitted")
            return {}, False
        if self._unavailable_cycles:
            self._log(None, "scheduler-back", "scheduler answers again")
        self._unavailable_cycles = 0
        for scheduler_id, name in current.items():
            if scheduler_id in observations and name in self._by_name:
                observation = recorded_submission(observations[scheduler_id], self._by_name[name])
                if observation is not observations[scheduler_id]:
                    self._log_once(name, f"reused:{scheduler_id}", "id-reused",
                                   f"{scheduler_id} is now another job ({observations[scheduler_id].name}): "
                                   "taken as gone, never cancelled")
                observations[scheduler_id] = observation
        return observations, True

    def _close_lingering(self, records: dict[str, JobRecord]) -> None:
        """Before the monitor ends: close the attempts of finished jobs that have left the queue meanwhile,
        with the scheduler's time for them (the ledger); those still winding down stay open."""
        if any(r.current and r.current.scheduler_id for r in records.values()):
            observations, known = self._query(records, [])
            if known:
                self._lingering_active(records, observations, known)

    def _campaign_submissions_by_name(self, observations: dict[str, Observation],
                                      records: dict[str, JobRecord]) -> dict[str, list[Observation]]:
        """Active submissions of this campaign's jobs that the store does not know (to adopt, never resubmit)."""
        known_ids = self.store.scheduler_ids()
        found: dict[str, list[Observation]] = {}
        for observation in observations.values():
            job = self._by_name.get(observation.name)
            if job is None or not observation.state.is_active or observation.scheduler_id in known_ids:
                continue
            if is_campaign_submission(observation, job):
                found.setdefault(job.name, []).append(observation)
            else:
                self._log_once(job.name, f"foreign:{observation.scheduler_id}", "foreign",
                               f"{observation.scheduler_id} in the queue is named {job.name} but runs "
                               f"{observation.script or 'an unknown script'}, not {job.sbatch_script}: another "
                               "campaign's job, left alone")
        return found

    def _lingering_active(self, records: dict[str, JobRecord], observations: dict[str, Observation],
                          known: bool) -> int:
        """Submissions of finished (or cancelled) jobs still winding down in the queue, watched until they
        leave; the attempts of those that left are closed."""
        active = 0
        for record in records.values() if known else ():
            if not (record.state.is_terminal and record.current and record.current.scheduler_id):
                continue
            observation = observations.get(record.current.scheduler_id)
            if observation is not None and observation.state.is_active:
                active += 1
            else:
                self.store.end_attempt(record.name, observation.state.value if observation else "GONE",
                                       observation.exit_code if observation else None,
                                       observation.elapsed_secs if observation else None,
                                       observation.gpus if observation else None)
        return active

    def _prepare(self, job: Job, record: JobRecord, observations: dict[str, Observation],
                 by_name: dict[str, list[Observation]], known: bool, now: float) -> _Prepared:
        """Read the job's output and launch the probes that are due."""
        view = view_of(record)
        observation = observations.get(view.scheduler_id) if view.scheduler_id else None
        if observation is not None and observation.gpus and record.current and record.current.gpus is None:
            self.store.record_usage(job.name, None, observation.gpus)  # once: what the scheduler allocated
        in_queue = (observation is not None and observation.state.is_active) if view.scheduler_id \
            else bool(by_name.get(job.name))
        if known:
            if in_queue:
                self._out_since.pop(job.name, None)
                self._checked_since_out.discard(job.name)
            else:
                self._out_since.setdefault(job.name, now)
        path = resolve_output_path(job.output_file, view.scheduler_id or record.last_scheduler_id, job.name)
        output = (self._watcher.facts(path, job.termination_str, job.progress_mark_regex, job.fail_regex)
                  if path else OutputFacts())
        if known and not output.termination_matched:
            if termination_probe_due(job, view, record.last_termination_probe, now, self._needs_fresh_check(job.name)):
                if self._probes.launch((job.name, "termination_cmd"), job.termination_cmd, job.probe_timeout_secs, now):
                    self.store.update_job(job.name, last_termination_probe=now)
            if start_probe_due(job, view, record.last_start_probe, now):
                if self._probes.launch((job.name, "start_condition_cmd"), job.start_condition_cmd,
                                       job.probe_timeout_secs, now):
                    self.store.update_job(job.name, last_start_probe=now)
        return _Prepared(job, record, view, observation, output, in_queue)

    def _needs_fresh_check(self, name: str) -> bool:
        return name in self._out_since and name not in self._checked_since_out

    def _facts(self, item: _Prepared, by_name: dict[str, list[Observation]], known: bool, active: int,
               now: float) -> Facts:
        job = item.job
        termination = self._take_probe(job, "termination_cmd")
        termination_flag = None
        if termination is not None and termination.launched_at >= self._out_since.get(job.name, termination.launched_at):
            termination_flag = termination.result.flag
            if job.name in self._out_since:
                self._checked_since_out.add(job.name)
        # else: launched while the job was still in the queue; a fresh one starts next cycle.
        start = self._take_probe(job, "start_condition_cmd")
        return Facts(
            now=now,
            scheduler_known=known,
            observation=item.observation,
            found_by_name=tuple(by_name.get(job.name, ())) if not item.view.scheduler_id else (),
            output=item.output,
            termination_probe=termination_flag,
            termination_pending=(bool(job.termination_cmd) and not item.output.termination_matched
                                 and self._needs_fresh_check(job.name)),
            start_probe=start.result.flag if start is not None else None,
            can_submit=self._can_submit(active, now),
            max_start_attempts=self.options.max_start_attempts,
        )

    def _take_probe(self, job: Job, what: str) -> ProbeOutcome | None:
        outcome = self._probes.take((job.name, what))
        if outcome is None:
            return None
        result = outcome.result
        LOGGER.debug("%s: %s %s", job.name, what, result.detail)
        if result.timed_out:
            self._log_once(job.name, f"timeout:{what}", "probe-timeout",
                           f"{what} {result.detail}; taken as 'no' (logged once; probe_timeout_secs sets the limit)")
        elif result.error:
            self._log(job.name, "probe-error", f"{what} {result.detail}; taken as 'no'")
        return outcome

    def _can_submit(self, active: int, now: float) -> bool:
        if self.options.max_jobs is not None and active >= self.options.max_jobs:
            return False
        limit = self._queue_limit
        if limit is None:
            return True
        # Held at what the cluster accepted: below it when our own jobs left, or one trial past it now and then.
        return active < limit.cap or (now >= limit.retry_at and not self._limit_trial_used)

    def _log_once(self, job: str | None, key: str, kind: str, message: str) -> None:
        if (job or "", key) not in self._logged_once:
            self._logged_once.add((job or "", key))
            self._log(job, kind, message, logging.WARNING)

    # ------------------------------------------------------------ side effects

    def _apply(self, job: Job, state: JobState, actions: list[Action], output: OutputFacts, active: int) -> _Applied:
        """Carry out one job's actions in order."""
        try:
            return self._apply_all(job, state, actions, output, active)
        except StateConflict as conflict:
            # `orch cancel` (or another writer) moved the job after this cycle read it: its facts are stale.
            self._log(job.name, "conflict", f"state changed meanwhile ({conflict}); decision dropped", logging.WARNING)
            return _Applied()

    def _apply_all(self, job: Job, state: JobState, actions: list[Action], output: OutputFacts, active: int) -> _Applied:
        name = job.name
        submitted = False
        for action in actions:
            if isinstance(action, RecordOutput):
                self.store.update_job(name, output_fingerprint=action.fingerprint, output_changed_at=action.seen_at)
            elif isinstance(action, StartRun):
                self.store.start_run(name, action.start_key, action.output_offset)
            elif isinstance(action, Transition):
                old = self.store.set_state(name, action.to, action.reason, expected=state)
                state = action.to
                if old != action.to:
                    kind = {JobState.DONE: "done", JobState.FAILED: "gave-up", JobState.ABANDONED: "gave-up",
                            JobState.CANCELLED: "cancelled"}.get(
                        action.to, "state")
                    level = logging.WARNING if action.to in (JobState.FAILED, JobState.ABANDONED) else logging.INFO
                    self._log(name, kind, f"{old.value} -> {action.to.value}: {action.reason}", level)
            elif isinstance(action, Submit):
                if not self._may_act():
                    return _Applied(scheduler_answered=False)
                self.store.set_state(name, JobState.QUEUED, f"submitting ({action.reason})", expected=state)
                state = JobState.QUEUED
                outcome = self._submit(job, action, output, active)
                if outcome is None:
                    return _Applied(scheduler_answered=False)
                submitted = outcome
                if not outcome:
                    return _Applied()  # refused: the job is waiting again, nothing more to do this cycle
            elif isinstance(action, Cancel):
                if not self._may_act():
                    return _Applied(scheduler_answered=False)
                self._log(name, action.why.replace("_", "-"), action.reason, logging.WARNING)
                try:
                    self.scheduler.cancel([action.scheduler_id])
                except SchedulerUnavailable as error:
                    self._log(name, "cancel-failed", f"cancel {action.scheduler_id}: {error}; will retry", logging.WARNING)
                    return _Applied(scheduler_answered=False)
                self.store.mark_cancelled(name, action.why)
            elif isinstance(action, Adopt):
                self.store.record_adopted(name, action.observation.scheduler_id, output_offset=output.size)
                self._log(name, "adopted", f"adopted {action.observation.scheduler_id} "
                                           f"({action.observation.state.value}): {action.reason}")
            elif isinstance(action, EndAttempt):
                self.store.end_attempt(name, action.final_state, action.exit_code, action.elapsed_secs, action.gpus)
                self.store.update_job(name, end_progress=action.progress)
                if action.failure:
                    self.store.bump(name, "consecutive_failures")
                else:
                    self.store.update_job(name, consecutive_failures=0)
            elif isinstance(action, DropIntent):
                self.store.end_attempt(name, "NOT_SUBMITTED")
            elif isinstance(action, StartRefused):
                tries = self.store.bump(name, "start_attempts")
                self._log(name, "waiting", f"start condition not met (try {tries})", logging.DEBUG)
            elif isinstance(action, StartReady):
                self.store.update_job(name, start_ready=1)
                self._log(name, "start-ready", "start condition met")
            elif isinstance(action, Log):
                self._log(name, action.kind, action.message, logging.WARNING)
        return _Applied(submitted=submitted)

    def _submit(self, job: Job, action: Submit, output: OutputFacts, active: int) -> bool | None:
        """Submit once. True: submitted; False: refused (the job waits again); None: no answer (state unknown)."""
        name, reason = job.name, action.reason
        trial = self._queue_limit is not None and active >= self._queue_limit.cap
        self._limit_trial_used |= trial
        # The intent is durable BEFORE the submit command runs: a monitor killed in between finds the
        # submission again by name instead of submitting twice. It also fixes where this attempt's output
        # begins: a per-submission log (%j) is new, an appended one keeps its earlier attempts' text.
        content = _read_script(job)
        estimate = (estimate_job(job, content.decode(errors="replace"), self.options.node_gpus)
                    if content is not None else None)
        if not self._within_budget(job, estimate):
            return False
        digest = keep_script(self.store.path.parent, content) if content is not None else None
        provenance = (self._provenance.for_submission(digest) if self._provenance is not None
                      else {"script_sha256": digest})
        offset = 0 if has_job_id_pattern(job.output_file) else output.size
        attempt = self.store.record_intent(name, output_offset=offset,
                                           estimate_gpus=estimate.gpus if estimate else None,
                                           estimate_hours=estimate.hours if estimate else None, provenance=provenance)
        self.store.update_job(name, start_ready=0)
        _make_output_dir(job)
        try:
            scheduler_id = self.scheduler.submit(job)
        except SchedulerUnavailable as error:
            self._log(name, "submit-unknown", f"submit did not answer ({error}); the intent is kept and the job "
                                              "is looked for by name before anything is submitted again", logging.WARNING)
            return None
        except SubmitLimited as error:
            # Definitely not submitted, and not the job's fault: forget the intent, keep its "go", wait for a slot.
            self.store.discard_intent(attempt)
            self.store.update_job(name, start_ready=1)
            self.store.set_state(name, JobState.WAITING, "queue limit reached: waiting for a free slot")
            self._limit_reached(name, active, error)
            return False
        except SubmitError as error:
            self.store.end_attempt(name, "SUBMIT_ERROR")
            failures = self.store.bump(name, "consecutive_failures")
            if failures >= job.max_failures:
                self.store.set_state(name, JobState.FAILED, f"submit refused {failures} times: {error}")
                self._log(name, "gave-up", f"submit refused {failures} times in a row: {error}", logging.ERROR)
            else:
                self.store.set_state(name, JobState.WAITING, f"submit refused: {error}")
                self._log(name, "submit-error", f"submit refused ({failures}/{job.max_failures}): {error}", logging.ERROR)
            return False
        self.store.record_submitted(attempt, scheduler_id)
        if estimate is not None:
            self._committed_gpu_hours += estimate.gpu_hours
        kind = "resubmitted" if action.resubmit else "submitted"
        self._log(name, kind, f"{kind} {scheduler_id} ({reason})")
        if trial:
            self._queue_limit = None  # accepted past the old cap: the limit moved (raised, or other jobs left)
            self._log(None, "queue-limit-cleared", f"the cluster accepts submissions again ({active + 1} in the queue)")
        return True

    def _within_budget(self, job: Job, estimate: JobEstimate | None) -> bool:
        """Under `budget_gpu_hours`, a job is submitted only if its estimate fits; else it waits (not a failure)."""
        budget = self.options.budget_gpu_hours
        if budget is None or estimate is None or not (estimate.gpus or estimate.gpus_unknown):
            return True
        if estimate.gpus_unknown:
            why = ("it asks for nodes but names no GPUs and the cluster's node definition is unknown, so its cost is "
                   "unknown (set estimate_gpus or a GPU option)")
        elif estimate.hours is None:
            why = "it asks for GPUs without a time limit, so its cost is unbounded (set --time or estimate_hours)"
        elif self._committed_gpu_hours + estimate.gpu_hours > budget:
            why = (f"its {estimate.gpu_hours:g} GPU-hours on top of {self._committed_gpu_hours:.1f} spent or reserved "
                   f"would pass the budget of {budget:g}")
        else:
            return True
        self.store.set_state(job.name, JobState.WAITING, f"budget: {why}")
        self.store.update_job(job.name, start_ready=1)
        self._log_once(job.name, "budget", "budget", f"not submitted: {why}")
        return False

    def _limit_reached(self, name: str, active: int, error: SubmitError) -> None:
        retry_at = self._clock() + self.options.limit_retry_secs
        if self._queue_limit is None:
            self._log(name, "queue-limit", f"the cluster refused a submission for a queue limit with {active} of the "
                                           f"campaign's jobs in the queue; holding at that until one leaves (trying "
                                           f"once more every {self.options.limit_retry_secs:g}s); not a failure: "
                                           f"{str(error).splitlines()[0][:300]}", logging.WARNING)
        self._queue_limit = _QueueLimit(cap=active, retry_at=retry_at)

    def _log(self, job: str | None, kind: str, message: str, level: int = logging.INFO) -> None:
        LOGGER.log(level, "%s%s", f"{job}: " if job else "", message)
        if level > logging.DEBUG and kind not in ("backoff",):
            self.store.log_event(job, kind, message)
        if self._alerts is not None and kind in LOGGED_ALERTS:
            self._alert(kind, job, message)

    def _alert(self, kind: str, job: str | None, message: str, once_for: str | None = None) -> None:
        """Send an alert. With `once_for`, an alert of this kind already sent for the same thing (the same
        summary at every tick, the same stall) is not sent again, across restarts and ticks (the store keeps it)."""
        if once_for is not None:
            if self.store.campaign_value(f"alerted:{kind}") == once_for:
                return
            self.store.set_campaign_value(f"alerted:{kind}", once_for)
        problem = self._alerts.send(kind, job, message)
        if problem:
            LOGGER.warning("alert %s not sent: %s", kind, problem)
            self.store.log_event(job, "alert-failed", f"{kind}: {problem}")

    def _watch_progress(self, records: dict[str, JobRecord], now: float) -> None:
        """The heartbeat file external watchers read, and the no-progress alert."""
        states = Counter(record.state.value for record in records.values())
        write_heartbeat(self.store.path.parent, now, dict(states))
        limit = self._alerts.settings.no_progress_secs if self._alerts is not None else None
        if limit is None:
            return
        moved = max((max(r.updated_at, r.output_changed_at or 0.0) for r in records.values()), default=now)
        if now - moved > limit and self.store.campaign_value("alerted:no-progress") != repr(moved):
            message = (f"no job changed state or output for {now - moved:.0f}s (notify.no_progress_secs {limit:g}); "
                       f"last change at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(moved))}")
            self._log(None, "no-progress", message, logging.WARNING)
            self._alert("no-progress", None, message, once_for=repr(moved))


def _read_script(job: Job) -> bytes | None:
    try:
        with open(job.sbatch_script, "rb") as handle:
            return handle.read()
    except OSError:
        return None  # the submit command reports it in its own words


def _make_output_dir(job: Job) -> None:
    """Slurm does not create the directory of `--output`: a job whose log folder is missing dies at launch."""
    parent = os.path.dirname(job.output_file)
    if parent and "%" not in parent:
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError:
            pass  # the submission reports the problem with the scheduler's own words
