"""The monitor loop against a fake Scheduler (the Protocol boundary) with a fake clock.

The fake keeps a queue in memory the way Slurm does: `query` answers for the ids asked and for the
active jobs whose names are asked; `down = True` makes every command raise SchedulerUnavailable.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Collection, Mapping
from pathlib import Path

import pytest

from orchestrator.jobs import Job
from orchestrator.job_state import JobState
from orchestrator.monitor.loop import Monitor, MonitorOptions, default_poll_secs
from orchestrator.monitor.probe_runner import FlagResult
from orchestrator.scheduler.base import Observation, SchedulerState as S, SchedulerUnavailable, SubmitError, SubmitLimited
from orchestrator.state import StateStore


class FakeScheduler:
    name = "fake"

    def __init__(self) -> None:
        self.jobs: dict[str, Observation] = {}
        self._ids = itertools.count(1000)
        self.down = False
        self.submits: list[str] = []
        self.cancels: list[str] = []
        self.queries = 0
        self.lose_submit_reply = False  # submit goes through, but the caller never hears the id
        self.refuse = False
        self.submit_limit: int | None = None  # MaxSubmitJobs: refuse while this many are active
        self.refused_for_limit = 0

    def submit(self, job: Job, exclude=()) -> str:
        if self.down:
            raise SchedulerUnavailable("sbatch: Unable to contact slurm controller")
        if self.refuse:
            raise SubmitError("sbatch: error: invalid partition")
        if self.submit_limit is not None and len(self.active()) >= self.submit_limit:
            self.refused_for_limit += 1
            raise SubmitLimited("sbatch: error: AssocMaxSubmitJobLimit")
        scheduler_id = str(next(self._ids))
        self.jobs[scheduler_id] = Observation(scheduler_id, job.name, S.PENDING, script=os.path.abspath(job.sbatch_script))
        self.submits.append(job.name)
        if self.lose_submit_reply:
            raise SchedulerUnavailable("sbatch timed out")
        return scheduler_id

    def query(self, scheduler_ids: Collection[str], names: Collection[str]) -> Mapping[str, Observation]:
        self.queries += 1
        if self.down:
            raise SchedulerUnavailable("squeue: Unable to contact slurm controller")
        found = {sid: self.jobs.get(sid, Observation(sid, "?", S.GONE)) for sid in scheduler_ids}
        found.update({sid: o for sid, o in self.jobs.items() if o.name in names and o.state.is_active})
        return found

    def cancel(self, scheduler_ids: Collection[str]) -> None:
        if self.down:
            raise SchedulerUnavailable("scancel failed")
        for sid in scheduler_ids:
            self.cancels.append(sid)
            self.set(sid, S.CANCELLED, 0)

    # test controls
    def set(self, scheduler_id: str, state: S, exit_code: int | None = None) -> None:
        self.jobs[scheduler_id] = dataclasses.replace(self.jobs[scheduler_id], state=state, exit_code=exit_code)

    def active(self, name: str | None = None) -> list[Observation]:
        return [o for o in self.jobs.values() if o.state.is_active and (name is None or o.name == name)]

    def set_all(self, name: str, state: S, exit_code: int | None = None) -> None:
        for o in self.active(name):
            self.set(o.scheduler_id, state, exit_code)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make_jobs(tmp_path: Path, count: int, **overrides) -> list[Job]:
    jobs = []
    for index in range(count):
        name = f"job{index}"
        fields = dict(name=name, template="t", sbatch_script=f"{name}.sbatch", output_file=str(tmp_path / f"{name}.out"),
                      cmd=f"sbatch {name}.sbatch", check_interval_secs=10.0, termination_str="TRAINING DONE")
        fields.update(overrides)
        jobs.append(Job(**fields))
    return jobs


def make_monitor(tmp_path, jobs, scheduler, clock, probe=None, **options) -> Monitor:
    store = StateStore.open(tmp_path, clock=clock)
    monitor = Monitor(jobs, scheduler, store, MonitorOptions(poll_secs=1.0, **options), clock=clock,
                      probe=probe or (lambda command, timeout: FlagResult(False, "fake")))
    monitor.start()
    return monitor


def states(monitor: Monitor) -> dict[str, str]:
    return {name: record.state.value for name, record in monitor.store.jobs().items()}


def finish(job: Job) -> None:
    Path(job.output_file).write_text("step 100\nTRAINING DONE\n")


def test_small_campaign_end_to_end_one_query_per_cycle(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    jobs = make_jobs(tmp_path, 3)
    monitor = make_monitor(tmp_path, jobs, scheduler, clock)
    report = monitor.cycle()
    assert report.submitted == 3 and scheduler.queries == 1
    assert set(states(monitor).values()) == {"queued"}
    for o in scheduler.active():
        scheduler.set(o.scheduler_id, S.RUNNING)
    clock.now += 1
    monitor.cycle()
    assert set(states(monitor).values()) == {"running"} and scheduler.queries == 2
    for job in jobs:
        finish(job)
    for o in scheduler.active():
        scheduler.set(o.scheduler_id, S.COMPLETED, 0)
    clock.now += 1
    assert monitor.cycle().finished
    assert scheduler.queries == 3
    assert set(states(monitor).values()) == {"done"}
    assert monitor.summary() == 0
    assert scheduler.submits == ["job0", "job1", "job2"]


def test_already_done_jobs_are_never_submitted(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    jobs = make_jobs(tmp_path, 2)
    finish(jobs[0])
    monitor = make_monitor(tmp_path, jobs, scheduler, clock)
    monitor.cycle()
    assert scheduler.submits == ["job1"]
    assert states(monitor)["job0"] == "done"


def test_scheduler_failure_resubmits_nothing_and_backs_off(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    jobs = make_jobs(tmp_path, 2)
    monitor = make_monitor(tmp_path, jobs, scheduler, clock)
    monitor.cycle()
    for o in scheduler.active():
        scheduler.set(o.scheduler_id, S.RUNNING)
    monitor.cycle()
    scheduler.down = True
    delays = []
    for _ in range(5):
        clock.now += 100  # long enough to look frozen, too
        report = monitor.cycle()
        assert not report.scheduler_known
        delays.append(monitor._sleep_secs(report))
    assert scheduler.submits == ["job0", "job1"] and scheduler.cancels == []
    assert set(states(monitor).values()) == {"running"}
    assert delays == [2.0, 4.0, 8.0, 8.0, 8.0]  # doubling, capped at 8 x poll
    assert monitor.store.events(kind="scheduler-unavailable")
    scheduler.down = False
    for job in jobs:
        Path(job.output_file).write_text("step 2\n")
    clock.now += 1
    assert monitor.cycle().scheduler_known
    assert scheduler.submits == ["job0", "job1"]
    assert monitor._unavailable_cycles == 0


def test_crash_loop_stops_at_max_failures_and_others_go_on(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    crasher, healthy = make_jobs(tmp_path, 2, max_failures=3)
    monitor = make_monitor(tmp_path, [crasher, healthy], scheduler, clock)
    for _ in range(10):
        monitor.cycle()
        scheduler.set_all("job0", S.FAILED, 1)
        clock.now += 1
    assert scheduler.submits.count("job0") == 3
    assert states(monitor)["job0"] == "failed"
    assert monitor.store.job("job0").consecutive_failures == 3
    assert "3 failed attempts in a row" in monitor.store.job("job0").reason
    assert scheduler.submits.count("job1") == 1 and states(monitor)["job1"] == "queued"
    finish(healthy)
    scheduler.set_all("job1", S.COMPLETED, 0)
    assert monitor.cycle().finished
    assert monitor.summary() == 1


def test_a_success_in_between_resets_the_failure_count(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    jobs = make_jobs(tmp_path, 1, max_failures=2)
    monitor = make_monitor(tmp_path, jobs, scheduler, clock)
    for ending in (S.FAILED, S.TIMEOUT, S.FAILED, S.TIMEOUT, S.FAILED):
        monitor.cycle()
        scheduler.set_all("job0", ending, 1)
        clock.now += 1
    monitor.cycle()
    assert states(monitor)["job0"] == "queued"
    assert len(scheduler.submits) == 6


def test_max_jobs_is_never_exceeded(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    jobs = make_jobs(tmp_path, 7)
    monitor = make_monitor(tmp_path, jobs, scheduler, clock, max_jobs=2)
    peak = 0
    for round_ in range(40):
        report = monitor.cycle()
        peak = max(peak, len(scheduler.active()))
        if report.finished:
            break
        # Each cycle: pending jobs start; running ones finish.
        for o in scheduler.active():
            if o.state == S.RUNNING:
                finish(next(j for j in jobs if j.name == o.name))
                scheduler.set(o.scheduler_id, S.COMPLETED, 0)
            else:
                scheduler.set(o.scheduler_id, S.RUNNING)
        clock.now += 1
    assert report.finished and monitor.summary() == 0
    assert peak == 2
    assert sorted(scheduler.submits) == sorted(job.name for job in jobs)


def test_frozen_job_is_cancelled_and_resubmitted(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    (job,) = make_jobs(tmp_path, 1, freeze_secs=30.0)
    monitor = make_monitor(tmp_path, [job], scheduler, clock)
    monitor.cycle()
    scheduler.set_all("job0", S.RUNNING)
    Path(job.output_file).write_text("step 1\n")
    monitor.cycle()
    for _ in range(5):  # output moves: not frozen
        clock.now += 10
        Path(job.output_file).write_text(Path(job.output_file).read_text() + "step\n")
        monitor.cycle()
    assert scheduler.cancels == []
    clock.now += 29
    monitor.cycle()
    assert scheduler.cancels == []
    clock.now += 1
    monitor.cycle()
    assert scheduler.cancels == ["1000"]
    assert monitor.store.events(job="job0", kind="frozen")
    clock.now += 1
    monitor.cycle()  # the cancelled submission left the queue: resubmitted, and the freeze counts as a failure
    assert scheduler.submits == ["job0", "job0"]
    (resubmitted,) = monitor.store.events(job="job0", kind="resubmitted")
    assert "after 1000 ended CANCELLED (cancelled by orch: frozen)" in resubmitted[3]
    assert monitor.store.job("job0").consecutive_failures == 1
    assert [a.final_state for a in monitor.store.attempts("job0")] == ["CANCELLED", None]


def test_restart_after_kill_between_submit_and_id_adopts_instead_of_resubmitting(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    jobs = make_jobs(tmp_path, 2)
    store = StateStore.open(tmp_path, clock=clock)
    store.ensure_jobs([j.name for j in jobs])
    # The first monitor recorded its intent and ran the submit command, then died before writing the id.
    store.record_intent("job0")
    store.set_state("job0", JobState.QUEUED)
    scheduler.submit(jobs[0])
    store.record_intent("job1")  # ... and for job1 it died before the submit command ran
    store.set_state("job1", JobState.QUEUED)
    store.close()
    monitor = make_monitor(tmp_path, jobs, scheduler, clock)
    monitor.cycle()
    assert scheduler.submits == ["job0", "job1"]  # job0 once (adopted), job1 once (intent lost, submitted)
    assert monitor.store.events(job="job0", kind="adopted")
    assert monitor.store.events(job="job1", kind="intent-lost")
    assert [a.scheduler_id for a in monitor.store.attempts("job0")] == ["1000"]
    monitor.cycle()
    assert len(scheduler.submits) == 2


def test_lost_submit_reply_is_found_by_name_next_cycle(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    jobs = make_jobs(tmp_path, 2)
    monitor = make_monitor(tmp_path, jobs, scheduler, clock)
    scheduler.lose_submit_reply = True
    report = monitor.cycle()
    assert not report.scheduler_known and scheduler.submits == ["job0"]  # stops submitting at the first unknown
    scheduler.lose_submit_reply = False
    monitor.cycle()
    monitor.cycle()
    assert scheduler.submits == ["job0", "job1"]
    assert [a.scheduler_id for a in monitor.store.attempts("job0")] == ["1000"]


def test_jobs_submitted_by_an_earlier_run_without_state_are_adopted(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    jobs = make_jobs(tmp_path, 2)
    scheduler.submit(jobs[0])  # e.g. by AutoExperiment
    scheduler.set_all("job0", S.RUNNING)
    monitor = make_monitor(tmp_path, jobs, scheduler, clock)
    monitor.cycle()
    assert scheduler.submits == ["job0", "job1"]
    assert states(monitor) == {"job0": "running", "job1": "queued"}


def test_start_condition_and_max_start_attempts(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    gated, never = make_jobs(tmp_path, 2, start_condition_cmd="placeholder")
    gated = Job(**{**gated.__dict__, "start_condition_cmd": "test -e ready"})
    never = Job(**{**never.__dict__, "start_condition_cmd": "false"})
    ready = {"flag": False}
    calls: list[str] = []

    def probe(command: str, timeout: float) -> FlagResult:
        calls.append(command)
        return FlagResult(command == "test -e ready" and ready["flag"], "fake")

    monitor = make_monitor(tmp_path, [gated, never], scheduler, clock, probe=probe, max_start_attempts=3)
    monitor.cycle()
    monitor.cycle()  # same instant: probes not due again
    assert len(calls) == 2 and scheduler.submits == []
    clock.now += 10
    ready["flag"] = True
    monitor.cycle()
    assert scheduler.submits == ["job0"]
    clock.now += 10
    monitor.cycle()
    assert states(monitor)["job1"] == "abandoned"
    assert monitor.store.job("job1").start_attempts == 3
    assert calls.count("false") == 3


def test_termination_cmd_runs_at_most_once_per_check_interval(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    (job,) = make_jobs(tmp_path, 1, termination_str="", termination_cmd="check-done")
    calls: list[str] = []
    monitor = make_monitor(tmp_path, [job], scheduler, clock, probe=lambda c, timeout: calls.append(c) or FlagResult(False))
    for _ in range(5):
        monitor.cycle()
        clock.now += 3
    assert len(calls) == 2  # t=0 and t=12 (interval 10)
    scheduler.set_all("job0", S.TIMEOUT)
    monitor.cycle()  # left the queue: checked at once before resubmitting
    assert len(calls) == 3 and scheduler.submits == ["job0", "job0"]


def test_submit_refused_counts_towards_failure(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    jobs = make_jobs(tmp_path, 1, max_failures=2)
    monitor = make_monitor(tmp_path, jobs, scheduler, clock)
    scheduler.refuse = True
    monitor.cycle()
    assert states(monitor)["job0"] == "waiting"
    monitor.cycle()
    assert states(monitor)["job0"] == "failed"
    assert [a.final_state for a in monitor.store.attempts("job0")] == ["SUBMIT_ERROR", "SUBMIT_ERROR"]


def test_new_run_re_evaluates_terminal_jobs(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    jobs = make_jobs(tmp_path, 1, max_failures=1)
    monitor = make_monitor(tmp_path, jobs, scheduler, clock)
    monitor.cycle()
    scheduler.set_all("job0", S.FAILED, 1)
    monitor.cycle()
    assert states(monitor)["job0"] == "failed"
    monitor.store.close()  # that monitor ended
    again = make_monitor(tmp_path, jobs, scheduler, clock)
    again.cycle()
    assert states(again)["job0"] == "queued" and len(scheduler.submits) == 2


def test_run_stops_on_request_and_leaves_jobs_running(tmp_path):
    scheduler = FakeScheduler()
    jobs = make_jobs(tmp_path, 1)
    store = StateStore.open(tmp_path)
    monitor = Monitor(jobs, scheduler, store, MonitorOptions(poll_secs=0.01), probe=lambda c, timeout: FlagResult(False))
    original_cycle = monitor.cycle

    def cycle_then_stop():
        report = original_cycle()
        if len(scheduler.submits) == 1:
            monitor.stop(15)
        return report

    monitor.cycle = cycle_then_stop
    assert monitor.run() == 128 + 15
    assert scheduler.cancels == [] and len(scheduler.active()) == 1


def test_run_returns_zero_when_all_done(tmp_path):
    scheduler = FakeScheduler()
    jobs = make_jobs(tmp_path, 2)
    finish(jobs[0])
    finish(jobs[1])
    monitor = Monitor(jobs, scheduler, StateStore.open(tmp_path), MonitorOptions(poll_secs=0.01))
    assert monitor.run() == 0 and scheduler.submits == []


@pytest.mark.parametrize("intervals, expected", [((900.0,), 60.0), ((2.0, 30.0), 2.0), ((0.1,), 1.0)])
def test_default_poll_secs(tmp_path, intervals, expected):
    jobs = [make_jobs(tmp_path, 1, check_interval_secs=i)[0] for i in intervals]
    assert default_poll_secs(jobs) == expected


def test_done_job_still_winding_down_keeps_its_slot(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    jobs = make_jobs(tmp_path, 2)
    monitor = make_monitor(tmp_path, jobs, scheduler, clock, max_jobs=1)
    monitor.cycle()
    scheduler.set_all("job0", S.RUNNING)
    finish(jobs[0])  # termination printed, process still saving its checkpoint
    monitor.cycle()
    assert states(monitor)["job0"] == "done"
    monitor.cycle()
    assert scheduler.submits == ["job0"]  # job0 still holds the only slot
    scheduler.set_all("job0", S.COMPLETED, 0)
    monitor.cycle()
    assert scheduler.submits == ["job0", "job1"]
    assert [a.final_state for a in monitor.store.attempts("job0")] == ["COMPLETED"]


def test_cancel_by_another_command_is_respected(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    jobs = make_jobs(tmp_path, 1)
    monitor = make_monitor(tmp_path, jobs, scheduler, clock)
    monitor.cycle()
    # `orch cancel` between this monitor's read of the store and its query: marks abandoned, then scancels.
    original_query = scheduler.query

    def query_after_cancel(ids, names):
        # (the store's one writer; a cancel from another process comes as a request, test_monitor_local)
        monitor.store.set_state("job0", JobState.ABANDONED, "cancelled by `orch cancel`")
        scheduler.set_all("job0", S.CANCELLED, 0)
        return original_query(ids, names)

    scheduler.query = query_after_cancel
    monitor.cycle()
    assert scheduler.submits == ["job0"]
    assert states(monitor)["job0"] == "abandoned"
    assert monitor.store.events(job="job0", kind="conflict")


def test_output_file_with_job_id_pattern_follows_the_current_attempt(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    (job,) = make_jobs(tmp_path, 1, output_file=str(tmp_path / "%x-%j.out"))
    monitor = make_monitor(tmp_path, [job], scheduler, clock)
    monitor.cycle()
    scheduler.set_all("job0", S.TIMEOUT)
    (tmp_path / "job0-1000.out").write_text("TRAINING DONE\n")  # the first attempt's log, read after it left
    monitor.cycle()
    assert states(monitor)["job0"] == "done" and scheduler.submits == ["job0"]


def test_a_job_frozen_every_time_is_given_up(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    (job,) = make_jobs(tmp_path, 1, freeze_secs=5.0, max_failures=2)
    monitor = make_monitor(tmp_path, [job], scheduler, clock)
    for attempt in range(2):
        monitor.cycle()
        scheduler.set_all("job0", S.RUNNING)
        clock.now += 1
        monitor.cycle()  # starts running; its output is appended to the same file every attempt
        with open(job.output_file, "a") as handle:
            handle.write(f"attempt {attempt} hangs at start-up\n")
        clock.now += 1
        monitor.cycle()
        clock.now += 5
        monitor.cycle()  # frozen: cancelled
        assert len(scheduler.cancels) == attempt + 1
        clock.now += 1
    monitor.cycle()
    assert states(monitor) == {"job0": "failed"} and scheduler.submits == ["job0", "job0"]
    assert "2 failed attempts in a row" in monitor.store.job("job0").reason


def test_old_text_in_an_appended_log_does_not_freeze_a_new_attempt(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    (job,) = make_jobs(tmp_path, 1, freeze_secs=5.0)
    Path(job.output_file).write_text("an earlier attempt's output\n" * 10)
    monitor = make_monitor(tmp_path, [job], scheduler, clock)
    monitor.cycle()
    scheduler.set_all("job0", S.RUNNING)
    for _ in range(10):  # the new attempt runs, silent: it has written nothing, so it is not frozen
        clock.now += 5
        monitor.cycle()
    assert scheduler.cancels == [] and states(monitor) == {"job0": "running"}


def test_a_queue_limit_holds_the_campaign_without_failures(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    scheduler.submit_limit = 2
    jobs = make_jobs(tmp_path, 5, max_failures=1)
    monitor = make_monitor(tmp_path, jobs, scheduler, clock)
    monitor.cycle()
    assert scheduler.submits == ["job0", "job1"] and scheduler.refused_for_limit == 1  # stopped at the first refusal
    assert states(monitor) == {"job0": "queued", "job1": "queued", "job2": "waiting", "job3": "waiting",
                               "job4": "waiting"}
    assert len(monitor.store.events(kind="queue-limit")) == 1
    for _ in range(3):  # nothing left the queue: no submission, no refusal, no failure
        clock.now += 1
        monitor.cycle()
    assert scheduler.refused_for_limit == 1 and all(r.consecutive_failures == 0 for r in monitor.store.jobs().values())
    assert [a.scheduler_id for a in monitor.store.attempts("job2")] == []  # the refused intent was forgotten
    while not monitor.cycle().finished:
        for observation in scheduler.active():  # one job of ours finishes per cycle
            finish(next(j for j in jobs if j.name == observation.name))
            scheduler.set(observation.scheduler_id, S.COMPLETED, 0)
            break
        clock.now += 1
    assert set(states(monitor).values()) == {"done"}
    assert sorted(scheduler.submits) == [f"job{i}" for i in range(5)]  # each submitted once
    assert scheduler.refused_for_limit == 1  # slots freed by our own jobs were used without a refusal
    assert len(monitor.store.events(kind="queue-limit")) == 1


def test_past_a_queue_limit_one_trial_per_retry_interval(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    scheduler.submit_limit = 1
    jobs = make_jobs(tmp_path, 3)
    monitor = make_monitor(tmp_path, jobs, scheduler, clock, limit_retry_secs=60.0)
    monitor.cycle()
    assert scheduler.refused_for_limit == 1
    clock.now += 30
    monitor.cycle()
    assert scheduler.refused_for_limit == 1  # not yet
    clock.now += 30
    monitor.cycle()
    assert scheduler.refused_for_limit == 2 and scheduler.submits == ["job0"]  # one trial, refused again
    scheduler.submit_limit = None  # the limit is lifted
    clock.now += 60
    monitor.cycle()
    # The trial is accepted, so the limit has moved: the rest goes on as normal, in the same cycle.
    assert scheduler.submits == ["job0", "job1", "job2"] and scheduler.refused_for_limit == 2
    assert monitor.store.events(kind="queue-limit-cleared")


def test_another_campaigns_job_of_the_same_name_is_not_adopted(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    (job,) = make_jobs(tmp_path, 1)
    other_script = tmp_path / "other-campaign" / "job0.sbatch"
    scheduler.jobs["77"] = Observation("77", "job0", S.RUNNING, script=str(other_script))
    by_hand = Observation("78", "job1", S.RUNNING, script=os.path.abspath("job1.sbatch"))
    scheduler.jobs["78"] = by_hand
    jobs = [job, make_jobs(tmp_path, 2)[1]]
    monitor = make_monitor(tmp_path, jobs, scheduler, clock)
    monitor.cycle()
    assert scheduler.submits == ["job0"]  # job0 submitted anew; the other campaign's 77 left alone
    assert [a.scheduler_id for a in monitor.store.attempts("job1")] == ["78"]  # this campaign's script: adopted
    assert monitor.store.events(kind="foreign") and "77" in monitor.store.events(kind="foreign")[0][3]
    monitor.cycle()
    assert len(monitor.store.events(kind="foreign")) == 1  # logged once
    assert scheduler.cancels == []


def test_a_slow_probe_does_not_hold_back_other_jobs(tmp_path):
    import threading

    scheduler, clock = FakeScheduler(), Clock()
    slow, fast = make_jobs(tmp_path, 2, start_condition_cmd="placeholder")
    slow = Job(**{**slow.__dict__, "start_condition_cmd": "slow"})
    fast = Job(**{**fast.__dict__, "start_condition_cmd": "fast"})
    release = threading.Event()
    calls: list[str] = []

    def probe(command: str, timeout: float) -> FlagResult:
        calls.append(command)
        if command == "slow":
            release.wait(30)
        return FlagResult(True)

    monitor = make_monitor(tmp_path, [slow, fast], scheduler, clock, probe=probe)
    monitor.cycle()
    assert scheduler.submits == ["job1"]  # the fast one went on while the slow probe still runs
    clock.now += 20  # its next check is due, but it is still running: not started twice
    monitor.cycle()
    assert calls.count("slow") == 1
    release.set()
    monitor._probes.wait(5)
    clock.now += 1
    monitor.cycle()
    assert scheduler.submits == ["job1", "job0"]
    monitor.close()


def test_termination_cmd_answers_afresh_before_a_resubmission(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    (job,) = make_jobs(tmp_path, 1, termination_str="", termination_cmd="check-done")
    done = {"flag": False}
    monitor = make_monitor(tmp_path, [job], scheduler, clock,
                           probe=lambda command, timeout: FlagResult(done["flag"]))
    monitor.cycle()
    assert scheduler.submits == ["job0"]
    scheduler.set_all("job0", S.RUNNING)
    clock.now += 1
    monitor.cycle()
    done["flag"] = True  # the job finished its work and exits
    scheduler.set_all("job0", S.COMPLETED, 0)
    clock.now += 1
    monitor.cycle()
    assert states(monitor) == {"job0": "done"} and scheduler.submits == ["job0"]


def test_a_requeued_job_keeps_its_id_and_is_not_resubmitted(tmp_path):
    scheduler, clock = FakeScheduler(), Clock()
    (job,) = make_jobs(tmp_path, 1, freeze_secs=5.0)
    monitor = make_monitor(tmp_path, [job], scheduler, clock)
    monitor.cycle()
    (sid,) = [o.scheduler_id for o in scheduler.active()]
    scheduler.jobs[sid] = dataclasses.replace(scheduler.jobs[sid], state=S.RUNNING, start_time="T0")
    Path(job.output_file).write_text("iteration 1\n")
    clock.now += 1
    monitor.cycle()
    # Preempted and requeued between two polls: Slurm's line lands in the output, the same id runs again.
    with open(job.output_file, "a") as handle:
        handle.write("slurmstepd-vm: error: *** JOB 1000 ON vm CANCELLED AT 2026-11-23T20:31:31 DUE TO PREEMPTION ***\n")
    scheduler.jobs[sid] = dataclasses.replace(scheduler.jobs[sid], start_time="T1")
    for _ in range(4):
        clock.now += 5
        monitor.cycle()
    assert scheduler.submits == ["job0"] and scheduler.cancels == []  # no resubmission, no freeze
    assert monitor.store.events(kind="requeued")
    assert monitor.store.job("job0").consecutive_failures == 0


class NodedScheduler(FakeScheduler):
    """Jobs run on node `n1` unless it is excluded; with `only_n1` (a one-node partition), excluding it is refused."""

    def __init__(self, only_n1: bool = False) -> None:
        super().__init__()
        self.only_n1 = only_n1
        self.excludes: list[tuple[str, ...]] = []

    def submit(self, job: Job, exclude=()) -> str:
        from orchestrator.scheduler.base import SubmitExcludedAll

        self.excludes.append(tuple(exclude))
        if self.only_n1 and "n1" in exclude:
            raise SubmitExcludedAll("sbatch: error: Batch job submission failed: Requested node configuration is not "
                                    "available")
        return super().submit(job)

    def nodes_of(self, scheduler_id: str) -> list[str]:
        return ["n1"]


@pytest.mark.parametrize("only_n1", [False, True])
def test_a_node_failure_excludes_the_node_and_a_partition_without_others_is_tried_once(tmp_path, only_n1):
    scheduler, clock = NodedScheduler(only_n1), Clock()
    jobs = make_jobs(tmp_path, 1, max_failures=5)
    monitor = make_monitor(tmp_path, jobs, scheduler, clock)
    monitor.cycle()
    for _ in range(3):  # the node fails the job three times running
        [running] = scheduler.active("job0")
        scheduler.set(running.scheduler_id, S.RUNNING)
        clock.now += 1
        monitor.cycle()
        scheduler.set(running.scheduler_id, S.NODE_FAIL)
        clock.now += 1
        monitor.cycle()
    if only_n1:
        # One refused try with the exclusion (and at once the same submission without it), then never again for
        # this job: every later sbatch goes without it.
        assert scheduler.excludes == [(), ("n1",), (), (), ()]
    else:
        assert scheduler.excludes == [(), ("n1",), ("n1",), ("n1",)]
    assert len(scheduler.submits) == 4


class ChainingScheduler(FakeScheduler):
    """Queues a submission behind another (`after`) and starts it when that one ends, as Slurm's afterany does."""

    def __init__(self) -> None:
        super().__init__()
        self.after: dict[str, str] = {}

    def can_chain(self, job: Job) -> bool:
        return True

    def submit(self, job: Job, exclude=(), after: str | None = None) -> str:
        scheduler_id = super().submit(job)
        if after is not None:
            self.after[scheduler_id] = after
        return scheduler_id

    def end(self, scheduler_id: str, state: S, exit_code: int | None = 0) -> None:
        self.set(scheduler_id, state, exit_code)
        for waiting, before in self.after.items():
            if before == scheduler_id and self.jobs[waiting].state == S.PENDING:
                self.set(waiting, S.RUNNING)


def test_pre_queued_segments_count_against_max_jobs_and_continue_the_job(tmp_path):
    scheduler, clock = ChainingScheduler(), Clock()
    jobs = make_jobs(tmp_path, 2, prequeue="always", output_file=str(tmp_path / "%x-%j.out"))
    monitor = make_monitor(tmp_path, jobs, scheduler, clock, max_jobs=3)
    monitor.cycle()  # both submitted
    assert scheduler.submits == ["job0", "job1"]
    for sid in ("1000", "1001"):
        scheduler.set(sid, S.RUNNING)
    clock.now += 1
    monitor.cycle()  # one slot left under --max-jobs 3: one pre-queued segment, not two
    assert scheduler.after == {"1002": "1000"}
    assert monitor.store.job("job0").standby.scheduler_id == "1002"
    scheduler.end("1000", S.TIMEOUT, None)  # Slurm starts the pre-queued one by itself
    clock.now += 1
    monitor.cycle()
    record = monitor.store.job("job0")
    assert record.current.scheduler_id == "1002" and record.state == JobState.RUNNING
    assert scheduler.after["1003"] == "1002"  # the next one at once, behind the promoted one
    assert scheduler.submits.count("job0") == 3 and scheduler.cancels == []


def running_with_a_successor(tmp_path: Path, sbatch_script: str | None = None, output_file: str = "%x-%j.out"):
    """One `prequeue: always` job whose first segment (1000) runs: the monitor has queued 1001 behind it, if it may."""
    scheduler, clock = ChainingScheduler(), Clock()
    [job] = make_jobs(tmp_path, 1, prequeue="always", output_file=str(tmp_path / output_file),
                      **({"sbatch_script": sbatch_script} if sbatch_script else {}))
    monitor = make_monitor(tmp_path, [job], scheduler, clock)
    monitor.cycle()
    scheduler.set("1000", S.RUNNING)
    clock.now += 1
    monitor.cycle()
    return scheduler, clock, job, monitor


def test_a_pre_queued_segment_that_already_ran_is_closed_with_its_own_ending(tmp_path):
    scheduler, clock, job, monitor = running_with_a_successor(tmp_path)
    assert scheduler.after == {"1001": "1000"}
    # The last segment wrote its done line and ended; the successor started and ended before a poll.
    (tmp_path / "job0-1000.out").write_text("step 100\nTRAINING DONE\n")
    scheduler.end("1000", S.COMPLETED)
    scheduler.end("1001", S.COMPLETED)
    clock.now += 1
    monitor.cycle()
    assert states(monitor) == {"job0": "done"}
    assert scheduler.cancels == []  # nothing left to cancel
    assert [(a.scheduler_id, a.final_state) for a in monitor.store.attempts("job0")] == [("1000", "COMPLETED"),
                                                                                          ("1001", "COMPLETED")]


def test_orch_cancel_cancels_the_pre_queued_segment_too(tmp_path):
    from orchestrator.monitor.user_cancel import cancel_jobs

    scheduler, clock, job, monitor = running_with_a_successor(tmp_path)
    outcome = cancel_jobs(monitor.store, scheduler, {"job0": job.sbatch_script}, "cancelled by `orch cancel`")
    assert sorted(outcome.cancelled) == ["1000", "1001"] and sorted(scheduler.cancels) == ["1000", "1001"]
    clock.now += 1
    monitor.cycle()  # the cancelled job's attempts close as their submissions leave the queue
    assert all(a.ended_at is not None for a in monitor.store.attempts("job0"))


@pytest.mark.parametrize("append", [False, True])
def test_segments_that_truncate_a_shared_log_are_never_pre_queued(tmp_path, append):
    # Slurm truncates --output when a job starts: a successor started the moment its predecessor ends would wipe the
    # text the monitor judges that ending on (an empty log reads as "no progress", a failure).
    script = tmp_path / "job0.sbatch"
    script.write_text("#!/bin/bash\n" + ("#SBATCH --open-mode=append\n" if append else "") + "true\n")
    scheduler, clock, job, monitor = running_with_a_successor(tmp_path, str(script), output_file="job0.out")
    assert scheduler.after == ({"1001": "1000"} if append else {})
    ignored = [message for _, _, kind, message in monitor.store.events(kind="prequeue")]
    assert ignored == ([] if append else ["prequeue: always is ignored: its segments share one log that each truncates "
                                          "when it starts; give output_file a %j, or the script #SBATCH "
                                          "--open-mode=append; each segment is submitted when the previous one ends"])


def test_a_cancelled_job_s_leftover_pre_queued_segment_is_cancelled_by_the_next_cycle(tmp_path):
    # `orch cancel` marked the job while the scheduler did not answer: its submissions are still queued.
    scheduler, clock, job, monitor = running_with_a_successor(tmp_path)
    monitor.store.set_state("job0", JobState.CANCELLED, "cancelled by `orch cancel`")
    clock.now += 1
    monitor.cycle()
    assert "1001" in scheduler.cancels  # the successor must never start
    standby = [a for a in monitor.store.attempts("job0") if a.scheduler_id == "1001"]
    assert standby[0].final_state == "CANCELLED" and monitor.store.job("job0").standby is None
