"""One monitor cycle (`CycleRunner.cycle`): what a tick does, and what the loop repeats.

ONE scheduler query for every job of the campaign; for each job, its output file and the start and
termination probes that are due, launched on the probe runner (never waited on one by one); then, with
whatever probe results have arrived, the pure `lifecycle.decide` for each job, and its actions applied
(`monitor.effects`). The store is read afresh every cycle, so it is the single source of truth and a
restarted monitor picks up exactly where the last one stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Callable

from orchestrator.accounting.ledger import committed_gpu_hours
from orchestrator.accounting.provenance import CampaignProvenance
from orchestrator.job_state import JobState
from orchestrator.jobs import PREQUEUE_AUTO, PREQUEUE_OFF, Job
from orchestrator.monitor.actions import CancelStandby
from orchestrator.monitor.alerts import Alerts
from orchestrator.monitor.array_effects import HeldSubmit
from orchestrator.monitor.effects import Effects, read_script
from orchestrator.monitor.lifecycle import Facts, Transition, decide, start_probe_due, termination_probe_due, view_of
from orchestrator.monitor.options import (
    MAX_PROBE_WAIT_SECS,
    CycleReport,
    Fence,
    MonitorOptions,
    Prepared,
    QueueLimit,
)
from orchestrator.monitor.ownership import (array_intents, array_task_of, is_campaign_submission, recorded_submission_of,
                                            submitted_as)
from orchestrator.monitor.probe_runner import ProbeFunction, ProbeOutcome, ProbeRunner
from orchestrator.monitor.probes import OutputFacts, OutputWatcher, has_job_id_pattern, resolve_output_path
from orchestrator.scheduler.array_driver import array_name_of
from orchestrator.scheduler.base import Observation, Scheduler, SchedulerUnavailable
from orchestrator.scheduler.sbatch_script import script_options, signal_lead_secs
from orchestrator.state.store import JobRecord, StateStore

LOGGER = logging.getLogger("orch.monitor")


class CycleRunner(Effects):
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
        self._queue_limit: QueueLimit | None = None
        self._limit_trial_used = False
        self._logged_once: set[tuple[str, str]] = set()
        self._provenance = provenance
        self._committed_gpu_hours = 0.0
        # Per job, the node exclusion its partition could not meet: not tried again (each refusal is an sbatch call).
        self._exclusion_refused: dict[str, tuple[str, ...]] = {}
        self._chain_refused: set[str] = set()
        self._script_facts: dict[str, tuple[float, bool]] = {}
        self._held: list[HeldSubmit] = []
        self._array_refused: dict[str, str] = {}
        self._lease = lease
        self._alerts = alerts
        self.fenced = False
        """The campaign's lease went to another monitor: this one did nothing more and stopped."""

    def cycle(self) -> CycleReport:
        if not self._may_act(renew=True):
            return CycleReport(False, 0, False)
        self._apply_requests()
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
            (item.in_queue or item.view.pending_intent) + (item.standby_in_queue or item.view.standby_intent)
            for item in prepared)
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
            if applied.submitted or applied.held:
                active += 1
                submitted += applied.submitted
            if not applied.scheduler_answered:
                known = False  # the scheduler stopped answering mid-cycle: decide nothing more this cycle
                self._unavailable_cycles += 1
        if known:
            submitted += self._submit_held(active - len(self._held))
        self._held = []  # not submitted: decided afresh next cycle

        after = self.store.jobs([job.name for job in self.jobs])
        self._watch_progress(after, self._clock())
        self.store.write_snapshot()  # what `orch status` on any host reads
        finished = all(r.state.is_terminal for r in after.values())
        return CycleReport(known, submitted, finished)

    def _query(self, records: dict[str, JobRecord], live: list[Job]) -> tuple[dict[str, Observation], bool]:
        """One scheduler query for the campaign; recorded ids now used by another job read GONE."""
        attempts = {attempt.scheduler_id: attempt for r in records.values() for attempt in (r.current, r.standby)
                    if attempt and attempt.scheduler_id}
        # An array task's intent is found again by its array's name (its driver's), a job's by its own.
        names = [job.name for job in live] + sorted({array_name_of(d) for d, _ in array_intents(records.values())})
        try:
            observations = dict(self.scheduler.query(list(attempts), names))
        except SchedulerUnavailable as error:
            self._unavailable_cycles += 1
            self._log(None, "scheduler-unavailable", f"scheduler query failed ({error}): job states unknown, "
                                                     "nothing is resubmitted")
            return {}, False
        if self._unavailable_cycles:
            self._log(None, "scheduler-back", "scheduler answers again")
        self._unavailable_cycles = 0
        for scheduler_id, attempt in attempts.items():
            name = attempt.job
            if scheduler_id in observations and name in self._by_name:
                observation = recorded_submission_of(observations[scheduler_id], *submitted_as(
                    attempts[scheduler_id], self._by_name[name].sbatch_script))
                if observation is not observations[scheduler_id]:
                    self._log_once(name, f"reused:{scheduler_id}", "id-reused",
                                   f"{scheduler_id} is now another job ({observations[scheduler_id].name}): "
                                   "taken as gone, never cancelled")
                observations[scheduler_id] = observation
        return observations, True

    def _close_lingering(self, records: dict[str, JobRecord]) -> None:
        """Before the monitor ends: close the attempts of finished jobs that have left the queue meanwhile,
        with the scheduler's time for them (the ledger); those still winding down stay open."""
        if any(attempt and attempt.scheduler_id for r in records.values() for attempt in (r.current, r.standby)):
            observations, known = self._query(records, [])
            if known:
                self._lingering_active(records, observations, known)

    def _campaign_submissions_by_name(self, observations: dict[str, Observation],
                                      records: dict[str, JobRecord]) -> dict[str, list[Observation]]:
        """Active submissions of this campaign's jobs that the store does not know (to adopt, never resubmit)."""
        known_ids = self.store.scheduler_ids()
        found: dict[str, list[Observation]] = {}
        intents = array_intents(records.values())
        for observation in observations.values():
            if not observation.state.is_active or observation.scheduler_id in known_ids:
                continue
            task = array_task_of(observation, intents)
            if task is not None:
                found.setdefault(task, []).append(observation)
                continue
            job = self._by_name.get(observation.name)
            if job is None:
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
            if record.state.is_terminal and record.standby is not None:
                active += self._close_standby_of_finished(record, observations)
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

    def _close_standby_of_finished(self, record: JobRecord, observations: dict[str, Observation]) -> int:
        """A finished job's pre-queued segment (left by a monitor killed between its two steps, or by `orch cancel`
        with the scheduler away) must not run: cancelled and closed as any pre-queued segment is. Returns 1 while it
        is still in the queue because the scheduler did not answer."""
        standby_id = record.standby.scheduler_id if record.standby else None
        seen = observations.get(standby_id) if standby_id else None
        action = CancelStandby(standby_id, f"the job is {record.state.value}", seen)
        if self._apply_standby(self._by_name[record.name], action, 0, 0) is None:
            return int(seen is not None and seen.state.is_active)
        return 0

    def _prepare(self, job: Job, record: JobRecord, observations: dict[str, Observation],
                 by_name: dict[str, list[Observation]], known: bool, now: float) -> Prepared:
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
        output = (self._watcher.facts(path, job.termination_str, job.progress_mark_regex, job.fail_regex,
                                      job.node_fault_regex)
                  if path else OutputFacts())
        if known and not output.termination_matched:
            if termination_probe_due(job, view, record.last_termination_probe, now, self._needs_fresh_check(job.name)):
                if self._probes.launch((job.name, "termination_cmd"), job.termination_cmd, job.probe_timeout_secs, now):
                    self.store.update_job(job.name, last_termination_probe=now)
            if start_probe_due(job, view, record.last_start_probe, now):
                if self._probes.launch((job.name, "start_condition_cmd"), job.start_condition_cmd,
                                       job.probe_timeout_secs, now):
                    self.store.update_job(job.name, last_start_probe=now)
        standby = observations.get(view.standby_id) if view.standby_id else None
        return Prepared(job, record, view, observation, output, in_queue, standby,
                        standby is not None and standby.state.is_active)

    def _needs_fresh_check(self, name: str) -> bool:
        return name in self._out_since and name not in self._checked_since_out

    def _facts(self, item: Prepared, by_name: dict[str, list[Observation]], known: bool, active: int,
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
            found_by_name=(tuple(by_name.get(job.name, ())) if not item.view.scheduler_id or item.view.standby_intent
                           else ()),
            standby_observation=item.standby_observation,
            can_chain=self._can_chain(job),
            signal_lead_secs=self._signal_lead(job),
            output=item.output,
            termination_probe=termination_flag,
            termination_pending=(bool(job.termination_cmd) and not item.output.termination_matched
                                 and self._needs_fresh_check(job.name)),
            start_probe=start.result.flag if start is not None else None,
            can_submit=self._can_submit(active, now),
            max_start_attempts=self.options.max_start_attempts,
        )

    def _can_chain(self, job: Job) -> bool:
        """May the job's next segment be pre-queued (`prequeue`), with this scheduler, `cmd` and log?"""
        if job.prequeue == PREQUEUE_OFF or job.name in self._chain_refused:
            return False
        can_chain = getattr(self.scheduler, "can_chain", None)
        if can_chain is None or not can_chain(job):
            why = ("its cmd runs sbatch out of sight, so --dependency cannot be passed" if can_chain is not None
                   else f"the {self.scheduler.name} scheduler cannot queue a job behind another")
        elif not self._script_facts_of(job)[1]:
            # Slurm truncates --output when a job starts (sbatch --open-mode's default): the successor, started the
            # moment its predecessor ends, would wipe the log the monitor judges that ending on.
            why = ("its segments share one log that each truncates when it starts; give output_file a %j, or the "
                   "script #SBATCH --open-mode=append")
        else:
            return True
        self._log_once(job.name, "prequeue-unsupported", "prequeue", f"prequeue: {job.prequeue} is ignored: {why}; "
                                                                     "each segment is submitted when the previous one ends")
        return False

    def _signal_lead(self, job: Job) -> float:
        return self._script_facts_of(job)[0] if job.prequeue == PREQUEUE_AUTO else 0.0

    def _script_facts_of(self, job: Job) -> tuple[float, bool]:
        """What pre-queuing reads in the job's script, once per monitor: its `#SBATCH --signal` lead, and whether each
        segment keeps its predecessor's log (its own file by %j, or `--open-mode=append`)."""
        if job.name not in self._script_facts:
            content = read_script(job)
            options = script_options(content.decode(errors="replace")) if content is not None else {}
            log = options.get("output") or job.output_file
            kept = has_job_id_pattern(log) or options.get("open-mode", "").startswith("a")
            self._script_facts[job.name] = (signal_lead_secs(options.get("signal", "")), kept)
        return self._script_facts[job.name]

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
