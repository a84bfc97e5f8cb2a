"""The monitor loop: cycles (`monitor.cycle`) until the campaign is finished, the monitor is stopped or fenced.

`Monitor.run` is the long-lived monitor of `orch run`; `Monitor.tick` one cycle of `orch run --once`.
Decisions are pure (`monitor.lifecycle`), their side effects live in `monitor.effects`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from orchestrator.job_state import RE_EVALUATED_STATES, JobState
from orchestrator.monitor.cycle import CycleRunner
from orchestrator.monitor.effects import read_script
from orchestrator.monitor.options import (
    FENCED_EXIT,
    LINGER_WAIT_SECS,
    MAX_BACKOFF_SECS,
    CycleReport,
    MonitorOptions,
    default_poll_secs,
)
from orchestrator.render.write import content_digest
from orchestrator.scheduler.base import SchedulerUnavailable, SubmitError
from orchestrator.state.lease import LeaseLost
from orchestrator.state.requests import has_pending_requests
from orchestrator.state.store import JobRecord

LOGGER = logging.getLogger("orch.monitor")
REQUEST_POLL_SECS = 1.0  # how soon a posted request (`orch cancel` while the monitor runs) is picked up

__all__ = ["FENCED_EXIT", "Monitor", "MonitorOptions", "default_poll_secs"]


class Monitor(CycleRunner):
    def __init__(self, *args, hand_over: Callable[[], str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._hand_over = hand_over
        """Called past `options.hand_over_at`: makes sure a successor will go on, returns what it is ("" if none)."""
        self.finished = False
        """The campaign is finished (every job done, failed or abandoned)."""
        self.handed_over = False

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
            content = read_script(self._by_name[name])
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
                report = self._fenced_cycle()
                if self.fenced:
                    return FENCED_EXIT
                if report.finished:
                    self.finished = True
                    self._wait_for_lingering()
                    return self.summary()
                if self._handed_over():
                    return 0
                if self._sleep(self._sleep_secs(report)):
                    active = sum(1 for r in self.store.jobs([j.name for j in self.jobs]).values()
                                 if r.state in (JobState.QUEUED, JobState.RUNNING))
                    self._log(None, "stop", f"monitor stopped; {active} jobs stay in the queue and are re-adopted by "
                                            "the next `orch run`")
                    return 128 + (self.stop_signal or 2)
        finally:
            self.close()

    def _handed_over(self) -> bool:
        """Past the hand-over time with a successor in place: log it and stop (the successor goes on)."""
        if self.options.hand_over_at is None or time.monotonic() < self.options.hand_over_at:
            return False
        if not self._may_act():  # a fenced monitor queues no successor either
            return False
        try:
            successor = self._hand_over() if self._hand_over is not None else ""
        except (SchedulerUnavailable, SubmitError) as error:  # keep monitoring, try again next cycle
            self._log_once(None, "hand-over-failed", "hand-over",
                           f"could not make sure a successor is queued ({error}): monitoring on, trying again")
            return False
        if not successor:
            return False
        self.handed_over = True
        self._log(None, "hand-over", f"handing over to {successor} before this monitor's time limit")
        return True

    def tick(self) -> int:
        """One cycle and out (`orch run --once`): 0 while the campaign goes on, its summary's code once it is
        finished, FENCED_EXIT when the lease went to another monitor."""
        self.start()
        try:
            report = self._fenced_cycle()
            if self.fenced:
                return FENCED_EXIT
            return self.summary() if report.finished else 0
        finally:
            self.close()

    def _fenced_cycle(self) -> CycleReport:
        """One cycle; a store write refused because the lease was lost (`LeaseLost`) fences the monitor."""
        try:
            return self.cycle()
        except LeaseLost as lost:
            self.fenced = True
            self._stop.set()
            LOGGER.error("this monitor lost the campaign's lease (%s): it writes, submits and cancels nothing more, "
                         "and stops", lost)
            return CycleReport(False, 0, False)

    def _sleep(self, seconds: float) -> bool:
        """Wait between cycles; True when stopped. A request posted meanwhile (`orch cancel`) ends the wait."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(left, REQUEST_POLL_SECS)):
                return True
            if has_pending_requests(self.store.path.parent):
                return False
        return self._stop.is_set()

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
