"""The monitor's side effects: one job's actions carried out in order (store writes, submit, cancel)."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from orchestrator.accounting.estimate import JobEstimate, estimate_job
from orchestrator.accounting.provenance import CampaignProvenance, keep_script
from orchestrator.job_state import JobState
from orchestrator.jobs import Job
from orchestrator.monitor.array_effects import ArrayEffects, HeldSubmit
from orchestrator.monitor.lifecycle import (
    Action,
    Adopt,
    Cancel,
    DropIntent,
    EndAttempt,
    Log,
    MarkBadNodes,
    RecordOutput,
    StartReady,
    StartRefused,
    StartRun,
    Submit,
    Transition,
)
from orchestrator.monitor.options import Applied, Fence, MonitorOptions, QueueLimit
from orchestrator.monitor.actions import AdoptStandby, CancelStandby, EndStandby, PromoteStandby, SubmitStandby
from orchestrator.monitor.probes import OutputFacts, make_output_dir, new_run_offset
from orchestrator.monitor.standby_effects import StandbyEffects
from orchestrator.scheduler.base import Scheduler, SchedulerUnavailable, SubmitError, SubmitExcludedAll, SubmitLimited
from orchestrator.monitor.user_cancel import cancel_jobs
from orchestrator.state.bad_nodes import excluded, mark_bad, read_bad_nodes
from orchestrator.state.requests import answer_request, pending_requests
from orchestrator.state.store import StateConflict


class Effects(StandbyEffects, ArrayEffects):
    """Carries out the actions `lifecycle.decide` chose; the only code that submits or cancels."""

    scheduler: Scheduler
    options: MonitorOptions
    _clock: Callable[[], float]
    _provenance: CampaignProvenance | None
    _committed_gpu_hours: float
    _exclusion_refused: dict[str, tuple[str, ...]]
    _queue_limit: QueueLimit | None
    _limit_trial_used: bool
    _lease: Fence | None
    _stop: threading.Event
    fenced: bool

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

    def _apply_requests(self) -> None:
        """Carry out what other commands posted (`orch cancel` while this monitor runs), and answer them."""
        for request in pending_requests(self.store.path.parent):
            if request.kind != "cancel":
                answer_request(request, f"orch: this monitor does not know the request {request.kind!r}", ok=False)
                continue
            if not self._may_act():
                return  # fenced: the request stays for the lease's new holder
            outcome = cancel_jobs(self.store, self.scheduler, request.jobs, request.by)
            text = outcome.describe(len(request.jobs), self.scheduler.name)
            self._log(None, "cancel-request", f"{request.by}: {text}")
            answer_request(request, text, ok=not outcome.unanswered)

    def _apply(self, job: Job, state: JobState, actions: list[Action], output: OutputFacts, active: int) -> Applied:
        """Carry out one job's actions in order."""
        try:
            return self._apply_all(job, state, actions, output, active)
        except StateConflict as conflict:
            # `orch cancel` (or another writer) moved the job after this cycle read it: its facts are stale.
            self._log(job.name, "conflict", f"state changed meanwhile ({conflict}); decision dropped", logging.WARNING)
            return Applied()

    def _apply_all(self, job: Job, state: JobState, actions: list[Action], output: OutputFacts, active: int) -> Applied:
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
                if action is actions[-1] and self._defer_to_array(HeldSubmit(job, state, action, output)):
                    return Applied(held=True)  # submitted with its array-mates once every job is decided
                if not self._may_act():
                    return Applied(scheduler_answered=False)
                self.store.set_state(name, JobState.QUEUED, f"submitting ({action.reason})", expected=state)
                state = JobState.QUEUED
                outcome = self._submit(job, action, output, active)
                if outcome is None:
                    return Applied(scheduler_answered=False)
                submitted = outcome
                if not outcome:
                    return Applied()  # refused: the job is waiting again, nothing more to do this cycle
            elif isinstance(action, Cancel):
                if not self._may_act():
                    return Applied(scheduler_answered=False)
                self._log(name, action.why.replace("_", "-"), action.reason, logging.WARNING)
                try:
                    self.scheduler.cancel([action.scheduler_id])
                except SchedulerUnavailable as error:
                    self._log(name, "cancel-failed", f"cancel {action.scheduler_id}: {error}; will retry", logging.WARNING)
                    return Applied(scheduler_answered=False)
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
            elif isinstance(action, MarkBadNodes):
                self._mark_bad_nodes(name, action)
            elif isinstance(action, (SubmitStandby, CancelStandby, PromoteStandby, AdoptStandby, EndStandby)):
                outcome = self._apply_standby(job, action, active, new_run_offset(job, output))
                if outcome is None:
                    return Applied(scheduler_answered=False, submitted=submitted)
                submitted |= outcome
        return Applied(submitted=submitted)

    def _mark_bad_nodes(self, name: str, action: MarkBadNodes) -> None:
        """Record the nodes the attempt ran on; a backend that cannot tell them (or does not answer) marks none."""
        nodes_of = getattr(self.scheduler, "nodes_of", None)
        try:
            nodes = nodes_of(action.scheduler_id) if nodes_of is not None else []
        except SchedulerUnavailable as error:
            self._log(name, "bad-node", f"{action.scheduler_id} {action.why}, but its nodes could not be learned "
                                        f"({error}): none excluded", logging.WARNING)
            return
        if not nodes:
            return
        mark_bad(self.store.path.parent, nodes, name, action.why, self._clock(), action.scheduler_id)
        self._log(name, "bad-node", f"{action.scheduler_id} {action.why}: excluding {','.join(nodes)} from later "
                                    f"submissions for {self.options.bad_node_hours:g} h (`orch nodes` lists, "
                                    "`--clear` forgets)", logging.WARNING)

    def _excluded_nodes(self) -> list[str]:
        marks = excluded(read_bad_nodes(self.store.path.parent), self._clock(), self.options.bad_node_hours,
                         self.options.max_bad_nodes)
        return sorted(mark.node for mark in marks)

    def _submit(self, job: Job, action: Submit, output: OutputFacts, active: int) -> bool | None:
        """Submit once. True: submitted; False: refused (the job waits again); None: no answer (state unknown)."""
        name, reason = job.name, action.reason
        trial = self._queue_limit is not None and active >= self._queue_limit.cap
        self._limit_trial_used |= trial
        # The intent is durable BEFORE the submit command runs: a monitor killed in between finds the
        # submission again by name instead of submitting twice. It also fixes where this attempt's output
        # begins: a per-submission log (%j) is new, an appended one keeps its earlier attempts' text.
        estimate, provenance = self._submission_facts(job)
        if not self._within_budget(job, estimate):
            return False
        attempt = self.store.record_intent(name, output_offset=new_run_offset(job, output),
                                           estimate_gpus=estimate.gpus if estimate else None,
                                           estimate_hours=estimate.hours if estimate else None, provenance=provenance)
        self.store.update_job(name, start_ready=0)
        self.store.write_snapshot()  # readers see the intent even if this monitor dies during the submit
        make_output_dir(job)
        try:
            scheduler_id, exclude = self._submit_excluding(job)
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
        self._log(name, kind, f"{kind} {scheduler_id} ({reason})" + (f", excluding {','.join(exclude)}" if exclude else ""))
        if trial:
            self._queue_limit = None  # accepted past the old cap: the limit moved (raised, or other jobs left)
            self._log(None, "queue-limit-cleared", f"the cluster accepts submissions again ({active + 1} in the queue)")
        return True

    def _submission_facts(self, job: Job) -> tuple[JobEstimate | None, dict]:
        """What a submission of `job` is recorded with: its cost estimate, and its provenance (script kept by hash)."""
        content = read_script(job)
        estimate = (estimate_job(job, content.decode(errors="replace"), self.options.node_gpus)
                    if content is not None else None)
        digest = keep_script(self.store.path.parent, content) if content is not None else None
        provenance = (self._provenance.for_submission(digest) if self._provenance is not None
                      else {"script_sha256": digest})
        return estimate, provenance

    def _submit_excluding(self, job: Job, after: str | None = None) -> tuple[str, list[str]]:
        """Submit with the campaign's bad nodes excluded; the scheduler's exceptions pass through. Returns the id and
        the nodes excluded."""
        chained = {"after": after} if after is not None else {}  # a backend that cannot chain takes no `after`
        return self._excluding(job.name, job.name, "it",
                               lambda exclude: self.scheduler.submit(job, exclude=exclude, **chained))

    def _excluding(self, key: str, log_as: str | None, what: str,
                   submit: Callable[[list[str]], str]) -> tuple[str, list[str]]:
        """`submit(exclude)` with the campaign's bad nodes excluded, and once more without them when they leave no node
        (remembered under `key`); other exceptions pass through. Returns the id and the nodes excluded."""
        exclude = self._excluded_nodes()
        if tuple(exclude) == self._exclusion_refused.get(key):
            exclude = []  # refused before for want of nodes: not worth another refused sbatch
        try:
            return submit(exclude), exclude
        except SubmitExcludedAll as error:
            # A small partition with its bad nodes excluded has none left: running on a suspect node beats
            # never running. Nothing was submitted, so submitting again is safe.
            self._log(log_as, "bad-node", f"no node is left for {what} once {','.join(exclude)} are excluded "
                                          f"({str(error).splitlines()[0][-200:]}): submitting without the exclusion",
                      logging.WARNING)
            self._exclusion_refused[key] = tuple(exclude)
            return submit([]), []

    def _within_budget(self, job: Job, estimate: JobEstimate | None) -> bool:
        """Under `budget_gpu_hours`, a job is submitted only if its estimate fits; else it waits (not a failure)."""
        why = self._over_budget(estimate)
        if why is None:
            return True
        self.store.set_state(job.name, JobState.WAITING, f"budget: {why}")
        self.store.update_job(job.name, start_ready=1)
        self._log_once(job.name, "budget", "budget", f"not submitted: {why}")
        return False

    def _over_budget(self, estimate: JobEstimate | None) -> str | None:
        """Why a submission with this estimate would not fit `budget_gpu_hours`; None when it fits."""
        budget = self.options.budget_gpu_hours
        if budget is None or estimate is None or not (estimate.gpus or estimate.gpus_unknown):
            return None
        if estimate.gpus_unknown:
            why = ("it asks for nodes but names no GPUs and the cluster's node definition is unknown, so its cost is "
                   "unknown (set estimate_gpus or a GPU option)")
        elif estimate.hours is None:
            why = "it asks for GPUs without a time limit, so its cost is unbounded (set --time or estimate_hours)"
        elif self._committed_gpu_hours + estimate.gpu_hours > budget:
            why = (f"its {estimate.gpu_hours:g} GPU-hours on top of {self._committed_gpu_hours:.1f} spent or reserved "
                   f"would pass the budget of {budget:g}")
        else:
            return None
        return why

    def _limit_reached(self, name: str, active: int, error: SubmitError) -> None:
        retry_at = self._clock() + self.options.limit_retry_secs
        if self._queue_limit is None:
            self._log(name, "queue-limit", f"the cluster refused a submission for a queue limit with {active} of the "
                                           f"campaign's jobs in the queue; holding at that until one leaves (trying "
                                           f"once more every {self.options.limit_retry_secs:g}s); not a failure: "
                                           f"{str(error).splitlines()[0][:300]}", logging.WARNING)
        self._queue_limit = QueueLimit(cap=active, retry_at=retry_at)


def read_script(job: Job) -> bytes | None:
    try:
        with open(job.sbatch_script, "rb") as handle:
            return handle.read()
    except OSError:
        return None  # the submit command reports it in its own words
