"""The monitor loop: the one place where decisions become side effects.

Each cycle: ONE scheduler query for every job of the campaign, then for each job gather facts
(output file, due probes), call the pure `decide`, and apply its actions (store writes, submit,
cancel, log lines). The store is read afresh every cycle, so it is the single source of truth and
a restarted monitor picks up exactly where the last one stopped.
"""

from __future__ import annotations

import os

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestrator.jobs import Job
from orchestrator.monitor.lifecycle import (
    Action,
    Adopt,
    Cancel,
    DropIntent,
    EndAttempt,
    Facts,
    JobState,
    Log,
    RecordOutput,
    StartReady,
    StartRefused,
    Submit,
    Transition,
    decide,
    start_probe_due,
    termination_probe_due,
)
from orchestrator.monitor.probes import FlagResult, OutputFacts, OutputWatcher, resolve_output_path, run_flag_command
from orchestrator.scheduler.base import Observation, Scheduler, SchedulerUnavailable, SubmitError
from orchestrator.state.store import StateConflict, StateStore

LOGGER = logging.getLogger("orch.monitor")

MAX_DEFAULT_POLL_SECS = 60.0
MAX_BACKOFF_SECS = 300.0


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


@dataclass(frozen=True)
class CycleReport:
    scheduler_known: bool
    queries: int
    submitted: int
    finished: bool


class Monitor:
    def __init__(
        self,
        jobs: Sequence[Job],
        scheduler: Scheduler,
        store: StateStore,
        options: MonitorOptions,
        clock: Callable[[], float] = time.time,
        probe: Callable[[str], FlagResult] = run_flag_command,
    ) -> None:
        self.jobs = list(jobs)
        self.scheduler = scheduler
        self.store = store
        self.options = options
        self._clock = clock
        self._probe = probe
        self._watcher = OutputWatcher()
        self._stop = threading.Event()
        self.stop_signal: int | None = None
        self._unavailable_cycles = 0

    # ------------------------------------------------------------ running

    def start(self) -> None:
        """Register the jobs; terminal jobs of an earlier run are re-evaluated (done ones are found done again)."""
        names = [job.name for job in self.jobs]
        self.store.ensure_jobs(names)
        for name, record in self.store.jobs(names).items():
            if record.state.is_terminal:
                self.store.set_state(name, JobState.WAITING, f"re-evaluated (was {record.state.value})")
                self.store.update_job(name, consecutive_failures=0, start_attempts=0, start_ready=0)
        self._log(None, "start", f"monitoring {len(names)} jobs with {self.scheduler.name} "
                                 f"(poll {self.options.poll_secs:g}s, max jobs {self.options.max_jobs or 'unlimited'})")

    def run(self) -> int:
        """Cycle until every job is done, failed or abandoned (exit 0 only if all are done), or until stopped."""
        self.start()
        while True:
            report = self.cycle()
            if report.finished:
                return self.summary()
            if self._stop.wait(self._sleep_secs(report)):
                active = sum(1 for r in self.store.jobs([j.name for j in self.jobs]).values()
                             if r.state in (JobState.QUEUED, JobState.RUNNING))
                self._log(None, "stop", f"monitor stopped; {active} jobs stay in the queue and are re-adopted by the "
                                        "next `orch run`")
                return 128 + (self.stop_signal or 2)

    def stop(self, signum: int | None = None) -> None:
        """Safe from a signal handler: the loop ends after the current cycle's step."""
        self.stop_signal = signum
        self._stop.set()

    def summary(self) -> int:
        records = self.store.jobs([job.name for job in self.jobs])
        counts = Counter(record.state for record in records.values())
        line = (f"{len(records)} jobs: {counts[JobState.DONE]} done, {counts[JobState.FAILED]} failed, "
                f"{counts[JobState.ABANDONED]} abandoned")
        self._log(None, "summary", line)
        return 0 if counts[JobState.DONE] == len(records) else 1

    def _sleep_secs(self, report: CycleReport) -> float:
        if report.scheduler_known:
            return self.options.poll_secs
        # Exponential backoff while the scheduler does not answer: 2, 4, 8... x poll, capped.
        cap = min(MAX_BACKOFF_SECS, self.options.poll_secs * 8)
        delay = min(cap, self.options.poll_secs * 2 ** self._unavailable_cycles)
        self._log(None, "backoff", f"scheduler unavailable: next try in {delay:g}s, submitting nothing meanwhile")
        return delay

    # ------------------------------------------------------------ one cycle

    def cycle(self) -> CycleReport:
        now = self._clock()
        records = self.store.jobs([job.name for job in self.jobs])
        live = [job for job in self.jobs if not records[job.name].state.is_terminal]
        if not live:
            return CycleReport(True, 0, 0, True)  # lingering submissions are not waited for

        known_ids = {a.scheduler_id for a in self.store.attempts() if a.scheduler_id}
        current_ids = [records[j.name].current.scheduler_id for j in live
                       if records[j.name].current and records[j.name].current.scheduler_id]
        # Submissions of finished (or cancelled) jobs still winding down in the queue: watched until they leave.
        lingering = {r.current.scheduler_id: r.name for r in records.values()
                     if r.state.is_terminal and r.current and r.current.scheduler_id}
        try:
            observations = self.scheduler.query([*current_ids, *lingering], [job.name for job in live])
            known = True
            if self._unavailable_cycles:
                self._log(None, "scheduler-back", "scheduler answers again")
            self._unavailable_cycles = 0
        except SchedulerUnavailable as error:
            observations, known = {}, False
            self._unavailable_cycles += 1
            self._log(None, "scheduler-unavailable", f"scheduler query failed ({error}): job states unknown, "
                                                     "nothing is resubmitted")

        by_name: dict[str, list[Observation]] = {}
        for observation in observations.values():
            if observation.state.is_active and observation.scheduler_id not in known_ids:
                by_name.setdefault(observation.name, []).append(observation)

        active = 0
        for scheduler_id, name in lingering.items() if known else ():
            observation = observations.get(scheduler_id)
            if observation is not None and observation.state.is_active:
                active += 1
            else:
                self.store.end_attempt(name, observation.state.value if observation else "GONE",
                                       observation.exit_code if observation else None)
        for job in live:
            view = records[job.name].view()
            observation = observations.get(view.scheduler_id) if view.scheduler_id else None
            if (view.scheduler_id and observation and observation.state.is_active) or view.pending_intent \
                    or (not view.scheduler_id and by_name.get(job.name)):
                active += 1

        submitted = 0
        for job in live:
            if self._stop.is_set():
                break
            record = records[job.name]
            view = record.view()
            observation = observations.get(view.scheduler_id) if view.scheduler_id else None
            left_queue = known and view.scheduler_id is not None and (observation is None or not observation.state.is_active)
            path = resolve_output_path(job.output_file, view.scheduler_id or record.last_scheduler_id, job.name)
            output = self._watcher.facts(path, job.termination_str) if path else OutputFacts()

            termination = None
            if known and not output.termination_matched and termination_probe_due(
                    job, view, record.last_termination_probe, now, left_queue):
                termination = self._run_probe(job, "termination_cmd", job.termination_cmd)
                self.store.update_job(job.name, last_termination_probe=now)
            start = None
            if known and not output.termination_matched and termination is not True and start_probe_due(
                    job, view, record.last_start_probe, now):
                start = self._run_probe(job, "start_condition_cmd", job.start_condition_cmd)
                self.store.update_job(job.name, last_start_probe=now)

            facts = Facts(
                now=now,
                scheduler_known=known,
                observation=observation,
                found_by_name=tuple(by_name.get(job.name, ())) if not view.scheduler_id else (),
                output=output,
                termination_probe=termination,
                start_probe=start,
                can_submit=self.options.max_jobs is None or active < self.options.max_jobs,
                max_start_attempts=self.options.max_start_attempts,
            )
            actions = decide(job, view, facts)
            if any(isinstance(action, Submit) for action in actions):
                active += 1
                submitted += 1
            if not self._apply(job, view.state, actions):
                known = False  # the scheduler stopped answering mid-cycle: decide nothing more this cycle
                self._unavailable_cycles += 1

        finished = all(r.state.is_terminal for r in self.store.jobs([job.name for job in self.jobs]).values())
        return CycleReport(known, 1, submitted, finished)

    def _run_probe(self, job: Job, what: str, command: str) -> bool:
        result = self._probe(command)
        LOGGER.debug("%s: %s %s", job.name, what, result.detail)
        if result.error:
            self._log(job.name, "probe-error", f"{what} {result.detail}; taken as 'no'")
        return result.flag

    # ------------------------------------------------------------ side effects

    def _apply(self, job: Job, state: JobState, actions: list[Action]) -> bool:
        """Carry out one job's actions in order. False when the scheduler became unavailable."""
        try:
            return self._apply_all(job, state, actions)
        except StateConflict as conflict:
            # `orch cancel` (or another writer) moved the job after this cycle read it: its facts are stale.
            self._log(job.name, "conflict", f"state changed meanwhile ({conflict}); decision dropped", logging.WARNING)
            return True

    def _apply_all(self, job: Job, state: JobState, actions: list[Action]) -> bool:
        name = job.name
        for action in actions:
            if isinstance(action, RecordOutput):
                self.store.update_job(name, output_fingerprint=action.fingerprint, output_changed_at=action.seen_at)
            elif isinstance(action, Transition):
                old = self.store.set_state(name, action.to, action.reason, expected=state)
                state = action.to
                if action.to == JobState.RUNNING:
                    self.store.mark_started(name)
                if old != action.to:
                    kind = {JobState.DONE: "done", JobState.FAILED: "gave-up", JobState.ABANDONED: "gave-up"}.get(
                        action.to, "state")
                    level = logging.WARNING if action.to in (JobState.FAILED, JobState.ABANDONED) else logging.INFO
                    self._log(name, kind, f"{old.value} -> {action.to.value}: {action.reason}", level)
            elif isinstance(action, Submit):
                self.store.set_state(name, JobState.QUEUED, f"submitting ({action.reason})", expected=state)
                state = JobState.QUEUED
                if not self._submit(job, action):
                    return False
            elif isinstance(action, Cancel):
                self._log(name, "frozen", action.reason, logging.WARNING)
                try:
                    self.scheduler.cancel([action.scheduler_id])
                except SchedulerUnavailable as error:
                    self._log(name, "cancel-failed", f"cancel {action.scheduler_id}: {error}; will retry", logging.WARNING)
                    return False
            elif isinstance(action, Adopt):
                self.store.record_adopted(name, action.observation.scheduler_id)
                self._log(name, "adopted", f"adopted {action.observation.scheduler_id} "
                                           f"({action.observation.state.value}): {action.reason}")
            elif isinstance(action, EndAttempt):
                self.store.end_attempt(name, action.final_state, action.exit_code)
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
        return True

    def _submit(self, job: Job, action: Submit) -> bool:
        name, reason = job.name, action.reason
        # The intent is durable BEFORE the submit command runs: a monitor killed in between finds the
        # submission again by name instead of submitting twice.
        attempt = self.store.record_intent(name)
        self.store.update_job(name, start_ready=0)
        _make_output_dir(job)
        try:
            scheduler_id = self.scheduler.submit(job)
        except SchedulerUnavailable as error:
            self._log(name, "submit-unknown", f"submit did not answer ({error}); the intent is kept and the job "
                                              "is looked for by name before anything is submitted again", logging.WARNING)
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
            return True
        self.store.record_submitted(attempt, scheduler_id)
        kind = "resubmitted" if action.resubmit else "submitted"
        self._log(name, kind, f"{kind} {scheduler_id} ({reason})")
        return True

    def _log(self, job: str | None, kind: str, message: str, level: int = logging.INFO) -> None:
        LOGGER.log(level, "%s%s", f"{job}: " if job else "", message)
        if level > logging.DEBUG and kind not in ("backoff",):
            self.store.log_event(job, kind, message)


def _make_output_dir(job: Job) -> None:
    """Slurm does not create the directory of `--output`: a job whose log folder is missing dies at launch."""
    parent = os.path.dirname(job.output_file)
    if parent and "%" not in parent:
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError:
            pass  # the submission reports the problem with the scheduler's own words
