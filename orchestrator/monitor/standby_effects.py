"""The side effects of pre-queued continuations (`monitor.prequeue` decides them): submit the next segment behind the
current one, cancel it, promote it, adopt it, close it. Part of the monitor's `Effects`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from orchestrator.accounting.estimate import JobEstimate
from orchestrator.jobs import Job
from orchestrator.monitor.events import EventLog
from orchestrator.monitor.options import MonitorOptions
from orchestrator.monitor.actions import (
    AdoptStandby,
    CancelStandby,
    EndStandby,
    PromoteStandby,
    StandbyAction,
    SubmitStandby,
)
from orchestrator.scheduler.base import Scheduler, SchedulerUnavailable, SubmitError, SubmitLimited


class StandbyEffects(EventLog):
    scheduler: Scheduler
    options: MonitorOptions
    _chain_refused: set[str]
    """Jobs whose pre-queued submission the scheduler refused: this monitor resubmits their segments itself."""

    _committed_gpu_hours: float

    if TYPE_CHECKING:  # provided by `Effects`
        def _may_act(self, renew: bool = False) -> bool: ...
        def _submission_facts(self, job: Job) -> tuple[JobEstimate | None, dict]: ...
        def _submit_excluding(self, job: Job, after: str | None = None) -> tuple[str, list[str]]: ...
        def _limit_reached(self, name: str, active: int, error: SubmitError) -> None: ...
        def _over_budget(self, estimate: JobEstimate | None) -> str | None: ...

    def _apply_standby(self, job: Job, action: StandbyAction, active: int, run_offset: int) -> bool | None:
        """Carry out one standby action. True: a submission was made; False: none; None: the scheduler did not
        answer (stop this job's actions for this cycle)."""
        name = job.name
        if isinstance(action, SubmitStandby):
            return self._submit_standby(job, action, active)
        if isinstance(action, CancelStandby):
            seen = action.observation
            if action.scheduler_id is not None and (seen is None or seen.state.is_active):
                if not self._may_act():
                    return None
                try:
                    self.scheduler.cancel([action.scheduler_id])
                except SchedulerUnavailable as error:
                    self._log(name, "cancel-failed", f"cancel the pre-queued {action.scheduler_id}: {error}; "
                                                     "will retry", logging.WARNING)
                    return None
            ended = seen is not None and not seen.state.is_active  # Slurm started it before the monitor could cancel it
            self.store.end_attempt(name, seen.state.value if ended else "CANCELLED", seen.exit_code if ended else None,
                                   seen.elapsed_secs if seen else None, seen.gpus if seen else None, standby=True)
            self._log(name, "prequeue-cancelled", f"{'closed' if ended else 'cancelled'} the pre-queued "
                                                  f"{action.scheduler_id}" + (f" (it had run already: {seen.state.value})"
                                                                             if ended else "")
                      + f": {action.reason}")
        elif isinstance(action, PromoteStandby):
            self.store.promote_standby(name, run_offset)
            self._log(name, "continued", action.reason)
        elif isinstance(action, AdoptStandby):
            self.store.record_adopted(name, action.observation.scheduler_id, standby=True)
            self._log(name, "adopted", f"adopted {action.observation.scheduler_id} "
                                       f"({action.observation.state.value}) as its pre-queued segment: its sbatch "
                                       "ran, its id was never stored")
        elif isinstance(action, EndStandby):
            self.store.end_attempt(name, action.final_state, action.exit_code, standby=True)
            self._log(name, "prequeue-ended", action.reason, logging.WARNING)
        return False

    def _submit_standby(self, job: Job, action: SubmitStandby, active: int) -> bool | None:
        """Queue the next segment behind `action.after_id`; the intent is durable before sbatch runs, as for any
        submission, so a monitor killed between the two adopts it by name instead of queuing another."""
        name = job.name
        if not self._may_act():
            return None
        estimate, provenance = self._submission_facts(job)
        if self._over_budget(estimate) is not None:
            self._log_once(name, "prequeue-budget", "budget", "next segment not pre-queued: it would pass the "
                                                              "budget (it is submitted when its turn comes, if it fits)")
            return False
        attempt = self.store.record_intent(name, estimate_gpus=estimate.gpus if estimate else None,
                                           estimate_hours=estimate.hours if estimate else None,
                                           provenance=provenance, after_id=action.after_id)
        self.store.write_snapshot()
        try:
            scheduler_id, exclude = self._submit_excluding(job, after=action.after_id)
        except SchedulerUnavailable as error:
            self._log(name, "submit-unknown", f"pre-queuing did not answer ({error}); the intent is kept and the "
                                              "submission is looked for by name before anything is queued again",
                      logging.WARNING)
            return None
        except SubmitLimited as error:
            self.store.discard_intent(attempt)
            self._limit_reached(name, active, error)
            return False
        except SubmitError as error:
            # Not the job's failure: the segment is resubmitted when the current one ends, as without prequeue.
            self.store.end_attempt(name, "SUBMIT_ERROR", standby=True)
            self._chain_refused.add(name)
            self._log(name, "submit-error", f"pre-queuing refused ({error}); this monitor submits its next segments "
                                            "when the current one ends", logging.ERROR)
            return False
        self.store.record_submitted(attempt, scheduler_id)
        if estimate is not None:
            self._committed_gpu_hours += estimate.gpu_hours
        self._log(name, "prequeued", f"pre-queued {scheduler_id} behind {action.after_id} ({action.reason})"
                  + (f", excluding {','.join(exclude)}" if exclude else ""))
        return True
