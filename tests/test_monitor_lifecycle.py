"""The pure per-job decision, table-driven with a fake clock, plus invariants checked over every combination."""

from __future__ import annotations

import itertools

import pytest

from orchestrator.jobs import Job
from orchestrator.job_state import ALLOWED_TRANSITIONS, JobState, TransitionError, check_transition
from orchestrator.monitor.lifecycle import (
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
    is_failed_ending,
    start_probe_due,
    termination_probe_due,
)
from orchestrator.monitor.actions import AdoptStandby, CancelStandby, EndStandby, PromoteStandby, SubmitStandby
from orchestrator.monitor.probes import OutputFacts
from orchestrator.scheduler.base import Observation, SchedulerState as S

NOW = 10_000.0
OUT = OutputFacts(fingerprint="120:1", size=120, content_end=120)


def make_job(**overrides) -> Job:
    fields = dict(name="j", template="t.sbatch", sbatch_script="j.sbatch", output_file="j.out", cmd="sbatch j.sbatch",
                  check_interval_secs=10.0, freeze_secs=10.0, max_failures=3)
    fields.update(overrides)
    return Job(**fields)


def obs(state: S, exit_code: int | None = None, sid: str = "100", start: str = "T0") -> Observation:
    return Observation(sid, "j", state, exit_code, start_time=start if state != S.PENDING else "")


def kinds(actions) -> list[str]:
    """Compact spelling of an action list for the tables (RecordOutput is bookkeeping, left out)."""
    spelled = []
    for action in actions:
        if isinstance(action, RecordOutput):
            continue
        if isinstance(action, Transition):
            spelled.append(f"->{action.to.value}")
        elif isinstance(action, EndAttempt):
            spelled.append(f"end:{action.final_state}{'!' if action.failure else ''}")
        elif isinstance(action, Adopt):
            spelled.append(f"adopt:{action.observation.scheduler_id}")
        elif isinstance(action, Cancel):
            spelled.append(f"cancel:{action.scheduler_id}:{action.why}")
        elif isinstance(action, StartRun):
            spelled.append(f"run@{action.output_offset}")
        elif isinstance(action, Log):
            spelled.append(f"log:{action.kind}")
        elif isinstance(action, SubmitStandby):
            spelled.append(f"prequeue-behind:{action.after_id}")
        elif isinstance(action, (CancelStandby, PromoteStandby)):
            spelled.append(f"{'cancel-standby' if isinstance(action, CancelStandby) else 'promote'}:{action.scheduler_id}")
        elif isinstance(action, AdoptStandby):
            spelled.append(f"adopt-standby:{action.observation.scheduler_id}")
        elif isinstance(action, EndStandby):
            spelled.append(f"end-standby:{action.final_state}")
        else:
            spelled.append(type(action).__name__)
    return spelled


RUNNING_VIEW = JobView("j", JobState.RUNNING, scheduler_id="100", output_fingerprint="bytes:120",
                       output_changed_at=NOW - 5, run_start="T0")

CASES = [
    # (id, job overrides, view, facts overrides, expected)
    ("fresh job is submitted", {}, JobView("j"), {}, ["Submit"]),
    ("max-jobs full: waits", {}, JobView("j"), {"can_submit": False}, []),
    ("start condition not probed yet: waits", {"start_condition_cmd": "c"}, JobView("j"), {}, []),
    ("start condition says no", {"start_condition_cmd": "c"}, JobView("j"), {"start_probe": False}, ["StartRefused"]),
    ("start condition no, tries left", {"start_condition_cmd": "c"}, JobView("j", start_attempts=1),
     {"start_probe": False, "max_start_attempts": 3}, ["StartRefused"]),
    ("start condition no, last try: abandoned", {"start_condition_cmd": "c"}, JobView("j", start_attempts=2),
     {"start_probe": False, "max_start_attempts": 3}, ["StartRefused", "->abandoned"]),
    ("start condition yes: submitted", {"start_condition_cmd": "c"}, JobView("j"), {"start_probe": True},
     ["StartReady", "Submit"]),
    ("start condition yes but no slot: remembered", {"start_condition_cmd": "c"}, JobView("j"),
     {"start_probe": True, "can_submit": False}, ["StartReady"]),
    ("told go earlier, slot free now", {"start_condition_cmd": "c"}, JobView("j", start_ready=True), {}, ["Submit"]),
    ("already done before first submission (termination_str)", {"termination_str": "END"}, JobView("j"),
     {"output": OutputFacts("5:1", 5, termination_matched=True)}, ["->done"]),
    ("already done before first submission (termination_cmd)", {"termination_cmd": "c"}, JobView("j"),
     {"termination_probe": True}, ["->done"]),
    ("done wins over a start condition", {"start_condition_cmd": "c", "termination_cmd": "t"}, JobView("j"),
     {"termination_probe": True, "start_probe": True}, ["->done"]),
    ("scheduler unknown: a waiting job is not submitted", {}, JobView("j"), {"scheduler_known": False}, []),
    ("scheduler unknown: a running job is not resubmitted", {}, RUNNING_VIEW, {"scheduler_known": False}, []),
    ("scheduler unknown: frozen job is not cancelled", {}, RUNNING_VIEW,
     {"scheduler_known": False, "now": NOW + 1000}, []),
    ("pending stays queued", {}, JobView("j", JobState.QUEUED, scheduler_id="100"), {"observation": obs(S.PENDING)}, []),
    ("pending -> running: the run starts at the offset recorded at submission", {},
     JobView("j", JobState.QUEUED, scheduler_id="100", run_output_offset=40), {"observation": obs(S.RUNNING)},
     ["->running", "run@40"]),
    ("requeued run under the same id: a new run after all earlier text", {},
     JobView("j", JobState.QUEUED, scheduler_id="100", run_start="T0", run_output_offset=40),
     {"observation": obs(S.RUNNING, start="T1")}, ["->running", "run@120", "log:requeued"]),
    ("requeued and restarted between two polls: the new start time tells", {}, RUNNING_VIEW,
     {"observation": obs(S.RUNNING, start="T1"), "now": NOW + 1000}, ["run@120", "log:requeued"]),
    ("requeued (running -> pending)", {}, RUNNING_VIEW, {"observation": obs(S.PENDING)}, ["->queued"]),
    ("running, output moving", {}, RUNNING_VIEW,
     {"observation": obs(S.RUNNING), "output": OutputFacts("130:2", 130, content_end=130)}, []),
    ("running, output still for less than freeze_secs", {}, RUNNING_VIEW,
     {"observation": obs(S.RUNNING), "now": NOW + 4.9}, []),
    ("running, output still for freeze_secs: frozen", {}, RUNNING_VIEW,
     {"observation": obs(S.RUNNING), "now": NOW + 5}, ["cancel:100:frozen"]),
    ("frozen once already cancelled: not cancelled again", {}, JobView(**{**RUNNING_VIEW.__dict__, "cancelled_for": "frozen"}),
     {"observation": obs(S.RUNNING), "now": NOW + 500}, []),
    ("only Slurm's preemption line and earlier attempts' text since the run began: not frozen", {},
     JobView("j", JobState.RUNNING, scheduler_id="100", output_fingerprint=None, output_changed_at=NOW - 500,
             run_start="T1", run_output_offset=120),
     {"observation": obs(S.RUNNING, start="T1"), "output": OutputFacts("180:1", 180, content_end=120)}, []),
    ("output grows but progress stalled: frozen", {"progress_regex": "iteration (\\d+)"},
     JobView("j", JobState.RUNNING, scheduler_id="100", output_fingerprint="progress:7", output_changed_at=NOW - 11,
             run_start="T0"),
     {"observation": obs(S.RUNNING), "output": OutputFacts("900:5", 900, content_end=900, progress="7", progress_at=100)},
     ["cancel:100:frozen"]),
    ("progress advanced: not frozen", {"progress_regex": "iteration (\\d+)"},
     JobView("j", JobState.RUNNING, scheduler_id="100", output_fingerprint="progress:7", output_changed_at=NOW - 11,
             run_start="T0"),
     {"observation": obs(S.RUNNING), "output": OutputFacts("900:5", 900, content_end=900, progress="8", progress_at=800)},
     []),
    ("fail_regex in this run: cancelled", {"fail_regex": "loss: nan"}, RUNNING_VIEW,
     {"observation": obs(S.RUNNING), "output": OutputFacts("200:3", 200, content_end=200, fail_at=150,
                                                           fail_line="loss: nan")},
     ["cancel:100:fail_regex"]),
    ("fail_regex only in an earlier run's text: ignored", {"fail_regex": "loss: nan"},
     JobView(**{**RUNNING_VIEW.__dict__, "run_output_offset": 160}),
     {"observation": obs(S.RUNNING), "output": OutputFacts("200:3", 200, content_end=200, fail_at=150,
                                                           fail_line="loss: nan")}, []),
    ("cancelled by orch as frozen: its end is a failure", {}, JobView(**{**RUNNING_VIEW.__dict__, "cancelled_for": "frozen"}),
     {"observation": obs(S.CANCELLED, 0)}, ["end:CANCELLED!", "->waiting", "Submit"]),
    ("frozen every time: given up after max_failures", {},
     JobView(**{**RUNNING_VIEW.__dict__, "cancelled_for": "frozen", "consecutive_failures": 2}),
     {"observation": obs(S.CANCELLED, 0)}, ["end:CANCELLED!", "->failed"]),
    ("exited 0 after printing fail_regex: a failure", {"fail_regex": "CUDA error"}, RUNNING_VIEW,
     {"observation": obs(S.COMPLETED, 0), "output": OutputFacts("200:3", 200, content_end=200, fail_at=130)},
     ["end:COMPLETED!", "->waiting", "Submit"]),
    ("freeze_secs overrides check interval", {"freeze_secs": 100.0}, RUNNING_VIEW,
     {"observation": obs(S.RUNNING), "now": NOW + 50}, []),
    ("empty output is never frozen", {}, JobView("j", JobState.RUNNING, scheduler_id="100",
                                                output_changed_at=NOW - 500, run_start="T0"),
     {"observation": obs(S.RUNNING), "output": OutputFacts("0:1", 0)}, []),
    ("no output file yet is never frozen", {}, JobView("j", JobState.RUNNING, scheduler_id="100",
                                                       output_changed_at=NOW - 500, run_start="T0"),
     {"observation": obs(S.RUNNING), "output": OutputFacts()}, []),
    ("completing is not frozen", {}, RUNNING_VIEW, {"observation": obs(S.COMPLETING), "now": NOW + 100}, []),
    ("done while still in the queue: not cancelled", {"termination_str": "END"}, RUNNING_VIEW,
     {"observation": obs(S.RUNNING), "output": OutputFacts("120:1", 120, termination_matched=True)},
     ["->done"]),
    ("clean exit without termination, no progress line: resubmitted, counted", {}, RUNNING_VIEW,
     {"observation": obs(S.COMPLETED, 0)}, ["end:COMPLETED!", "->waiting", "Submit"]),
    ("clean exit further than the previous attempt: a segment, not counted", {},
     JobView(**{**RUNNING_VIEW.__dict__, "end_progress": "100", "consecutive_failures": 2}),
     {"observation": obs(S.COMPLETED, 0), "output": OutputFacts("120:1", 120, content_end=120, progress="200",
                                                                 progress_at=60)},
     ["end:COMPLETED", "->waiting", "Submit"]),
    ("clean exit at the previous attempt's progress: counted", {},
     JobView(**{**RUNNING_VIEW.__dict__, "end_progress": "200"}),
     {"observation": obs(S.COMPLETED, 0), "output": OutputFacts("120:1", 120, content_end=120, progress="200",
                                                                 progress_at=60)},
     ["end:COMPLETED!", "->waiting", "Submit"]),
    ("progress printed only by an earlier attempt: counted", {},
     JobView(**{**RUNNING_VIEW.__dict__, "run_output_offset": 100}),
     {"observation": obs(S.COMPLETED, 0), "output": OutputFacts("120:1", 120, content_end=120, progress="200",
                                                                 progress_at=60)},
     ["end:COMPLETED!", "->waiting", "Submit"]),
    ("done without termination again and again: given up like a crash loop", {},
     JobView(**{**RUNNING_VIEW.__dict__, "consecutive_failures": 2}), {"observation": obs(S.COMPLETED, 0)},
     ["end:COMPLETED!", "->failed"]),
    ("timeout: resubmitted, not a failure", {}, RUNNING_VIEW, {"observation": obs(S.TIMEOUT, 1)},
     ["end:TIMEOUT", "->waiting", "Submit"]),
    ("preempted: resubmitted", {}, RUNNING_VIEW, {"observation": obs(S.PREEMPTED)},
     ["end:PREEMPTED", "->waiting", "Submit"]),
    ("cancelled by someone: resubmitted", {}, RUNNING_VIEW, {"observation": obs(S.CANCELLED, 0)},
     ["end:CANCELLED", "->waiting", "Submit"]),
    ("gone without a word: resubmitted", {}, RUNNING_VIEW, {"observation": None}, ["end:GONE", "->waiting", "Submit"]),
    ("gone with non-zero exit counts as failure", {}, RUNNING_VIEW, {"observation": obs(S.GONE, 2)},
     ["end:GONE!", "->waiting", "Submit"]),
    ("first crash: resubmitted", {}, RUNNING_VIEW, {"observation": obs(S.FAILED, 1)},
     ["end:FAILED!", "->waiting", "Submit"]),
    ("OOM counts", {}, JobView("j", JobState.RUNNING, scheduler_id="100", consecutive_failures=1),
     {"observation": obs(S.OUT_OF_MEMORY)}, ["end:OUT_OF_MEMORY!", "->waiting", "Submit"]),
    ("crash loop: third failure in a row gives up", {},
     JobView("j", JobState.RUNNING, scheduler_id="100", consecutive_failures=2),
     {"observation": obs(S.NODE_FAIL)}, ["end:NODE_FAIL!", "MarkBadNodes", "->failed"]),
    ("max_failures=1 gives up at once", {"max_failures": 1}, RUNNING_VIEW, {"observation": obs(S.FAILED, 3)},
     ["end:FAILED!", "->failed"]),
    ("left the queue but finished: done", {"termination_str": "END"}, RUNNING_VIEW,
     {"observation": obs(S.FAILED, 1), "output": OutputFacts("9:9", 9, termination_matched=True)},
     ["end:FAILED", "->done"]),
    ("left the queue, termination_cmd says done", {"termination_cmd": "t"}, RUNNING_VIEW,
     {"observation": obs(S.COMPLETED, 0), "termination_probe": True}, ["end:COMPLETED", "->done"]),
    ("left the queue, termination_cmd not answered yet: nothing ended or resubmitted", {"termination_cmd": "t"},
     RUNNING_VIEW, {"observation": obs(S.COMPLETED, 0), "termination_pending": True}, []),
    ("never submitted, termination_cmd not answered yet: not submitted", {"termination_cmd": "t"}, JobView("j"),
     {"termination_pending": True}, []),
    ("left the queue, no slot: waits", {}, RUNNING_VIEW, {"observation": obs(S.TIMEOUT), "can_submit": False},
     ["end:TIMEOUT", "->waiting"]),
    ("left the queue, start condition asked again next cycle", {"start_condition_cmd": "c"},
     JobView("j", JobState.RUNNING, scheduler_id="100", start_ready=True),
     {"observation": obs(S.COMPLETED, 0)}, ["end:COMPLETED!", "->waiting"]),
    ("intent without id, found by name: adopted", {}, JobView("j", JobState.QUEUED, pending_intent=True),
     {"found_by_name": (obs(S.PENDING, sid="7"),)}, ["adopt:7"]),
    ("intent without id, found running: adopted as running", {}, JobView("j", JobState.QUEUED, pending_intent=True),
     {"found_by_name": (obs(S.RUNNING, sid="7"),)}, ["adopt:7", "->running"]),
    ("intent without id, nothing in queue: submitted again", {}, JobView("j", JobState.QUEUED, pending_intent=True), {},
     ["DropIntent", "log:intent-lost", "->waiting", "Submit"]),
    ("intent without id, unknown scheduler: nothing", {}, JobView("j", JobState.QUEUED, pending_intent=True),
     {"scheduler_known": False}, []),
    ("submitted by an earlier run: adopted, not submitted", {}, JobView("j"),
     {"found_by_name": (obs(S.RUNNING, sid="55"),)}, ["adopt:55", "->running"]),
    ("duplicates by name: newest adopted, others logged", {}, JobView("j"),
     {"found_by_name": (obs(S.RUNNING, sid="9"), obs(S.PENDING, sid="10"))}, ["log:duplicate", "adopt:10", "->queued"]),
    ("found by name but already done", {"termination_str": "END"}, JobView("j"),
     {"found_by_name": (obs(S.RUNNING, sid="9"),), "output": OutputFacts("1:1", 1, termination_matched=True)},
     ["adopt:9", "->done"]),
    ("done stays done", {}, JobView("j", JobState.DONE), {"observation": obs(S.FAILED, 1)}, []),
    ("failed stays failed", {}, JobView("j", JobState.FAILED), {}, []),
    ("abandoned stays abandoned", {}, JobView("j", JobState.ABANDONED), {}, []),
    ("cancelled by the user stays cancelled, even when its submission ends", {}, JobView("j", JobState.CANCELLED,
                                                                                         scheduler_id="100"),
     {"observation": obs(S.CANCELLED, 0)}, []),
]


@pytest.mark.parametrize("job_overrides, view, fact_overrides, expected",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_decide_table(job_overrides, view, fact_overrides, expected):
    facts = Facts(**{"now": NOW, "scheduler_known": True, "output": OUT, **fact_overrides})
    assert kinds(decide(make_job(**job_overrides), view, facts)) == expected


def test_output_change_is_recorded_with_the_monitor_clock():
    grown = OutputFacts("130:2", 130, content_end=130)
    actions = decide(make_job(), RUNNING_VIEW, Facts(now=NOW, scheduler_known=True, observation=obs(S.RUNNING),
                                                     output=grown))
    assert RecordOutput("bytes:130", NOW) in actions
    # Ten seconds later with the same output, the clock that matters is the recorded one.
    later = JobView("j", JobState.RUNNING, scheduler_id="100", output_fingerprint="bytes:130", output_changed_at=NOW,
                    run_start="T0")
    assert not any(isinstance(a, Cancel) for a in decide(make_job(), later, Facts(
        now=NOW + 9.99, scheduler_known=True, observation=obs(S.RUNNING), output=grown)))
    assert any(isinstance(a, Cancel) for a in decide(make_job(), later, Facts(
        now=NOW + 10, scheduler_known=True, observation=obs(S.RUNNING), output=grown)))


def test_default_freeze_window_outlasts_silent_phases():
    """Without freeze_secs, a job silent for 30 minutes (a checkpoint save, an index build) is not frozen;
    AutoExperiment's one-interval rule is `freeze_secs: "{check_interval_secs}"`."""
    job = Job(name="j", template="t", sbatch_script="j.sbatch", output_file="j.out", cmd="c", check_interval_secs=10.0)
    assert job.effective_freeze_secs == 3600.0
    assert Job(**{**job.__dict__, "check_interval_secs": 7200.0}).effective_freeze_secs == 7200.0
    silent = JobView("j", JobState.RUNNING, scheduler_id="100", output_fingerprint="bytes:120",
                     output_changed_at=NOW - 1800, run_start="T0")
    facts = Facts(now=NOW, scheduler_known=True, observation=obs(S.RUNNING), output=OUT)
    assert not any(isinstance(a, Cancel) for a in decide(job, silent, facts))
    assert any(isinstance(a, Cancel) for a in decide(job, silent, Facts(**{**facts.__dict__, "now": NOW + 1800})))


def test_freeze_clock_restarts_when_the_job_starts():
    """An output file left by the previous attempt must not make a just-started job look frozen."""
    view = JobView("j", JobState.QUEUED, scheduler_id="100", output_fingerprint="bytes:120",
                   output_changed_at=NOW - 9999, run_output_offset=120)
    actions = decide(make_job(), view, Facts(now=NOW, scheduler_known=True, observation=obs(S.RUNNING), output=OUT))
    assert Transition(JobState.RUNNING, "100 is RUNNING") in actions
    assert StartRun("T0", 120) in actions and actions[-1] == RecordOutput(None, NOW)  # nothing of its own yet
    assert not any(isinstance(a, Cancel) for a in actions)


@pytest.mark.parametrize("state, exit_code, failure", [
    (S.COMPLETED, 0, False), (S.COMPLETED, None, False), (S.FAILED, 1, True), (S.FAILED, None, True),
    (S.OUT_OF_MEMORY, None, True), (S.NODE_FAIL, 0, True), (S.TIMEOUT, 15, False), (S.CANCELLED, 15, False),
    (S.PREEMPTED, 1, False), (S.GONE, None, False), (S.GONE, 3, True),
])
def test_failed_ending(state, exit_code, failure):
    assert is_failed_ending(obs(state, exit_code)) is failure


def test_transition_table():
    for terminal in (JobState.DONE, JobState.FAILED, JobState.ABANDONED):
        assert ALLOWED_TRANSITIONS[terminal] == {JobState.WAITING, JobState.CANCELLED}
        with pytest.raises(TransitionError):
            check_transition(terminal, JobState.RUNNING)
    assert ALLOWED_TRANSITIONS[JobState.CANCELLED] == {JobState.WAITING}  # only --retry-cancelled undoes a cancel
    with pytest.raises(TransitionError):
        check_transition(JobState.CANCELLED, JobState.QUEUED)
    check_transition(JobState.RUNNING, JobState.WAITING)
    check_transition(JobState.QUEUED, JobState.QUEUED)


def test_probes_due_at_most_once_per_check_interval():
    job = make_job(termination_cmd="t", start_condition_cmd="c")
    waiting = JobView("j")
    assert termination_probe_due(job, waiting, None, NOW, needs_fresh=False)
    assert not termination_probe_due(job, waiting, NOW - 9, NOW, needs_fresh=False)
    assert termination_probe_due(job, waiting, NOW - 10, NOW, needs_fresh=False)
    assert termination_probe_due(job, RUNNING_VIEW, NOW - 1, NOW, needs_fresh=True)  # fresh before a resubmission
    assert not termination_probe_due(make_job(), waiting, None, NOW, needs_fresh=True)  # no command
    assert start_probe_due(job, waiting, None, NOW)
    assert not start_probe_due(job, waiting, NOW - 9, NOW)
    assert start_probe_due(job, waiting, NOW - 10, NOW)
    assert not start_probe_due(job, JobView("j", start_ready=True), None, NOW)
    assert not start_probe_due(job, RUNNING_VIEW, None, NOW)
    assert not start_probe_due(job, JobView("j", JobState.QUEUED, pending_intent=True), None, NOW)


def _all_combinations():
    views = [
        JobView("j", state, scheduler_id=sid, pending_intent=intent, consecutive_failures=failures,
                start_ready=ready, output_fingerprint="bytes:120", output_changed_at=NOW - 100, run_start=run,
                cancelled_for=cancelled)
        for state in JobState
        for sid, intent in ((None, False), (None, True), ("100", False))
        for failures in (0, 2)
        for ready in (False, True)
        for run, cancelled in ((None, None), ("T0", None), ("T0", "frozen"))
    ]
    observations = [None] + [obs(state, code) for state in S for code in (None, 1)]
    outputs = [OUT, OutputFacts("120:1", 120, termination_matched=True), OutputFacts()]
    for view, observation, output, known, (term, pending), start, slot, found in itertools.product(
            views, observations, outputs, (True, False), ((None, False), (None, True), (True, False), (False, False)),
            (None, True, False), (True, False), ((), (obs(S.RUNNING, sid="55"),))):
        facts = Facts(now=NOW, scheduler_known=known, observation=observation, output=output, termination_probe=term,
                      termination_pending=pending, start_probe=start, can_submit=slot, found_by_name=found,
                      max_start_attempts=2)
        for job in (make_job(), make_job(start_condition_cmd="c")):
            yield job, view, facts


def test_invariants_over_every_combination():
    checked = 0
    for job, view, facts in _all_combinations():
        actions = decide(job, view, facts)
        checked += 1
        submits = [a for a in actions if isinstance(a, Submit)]
        done = facts.output.termination_matched or facts.termination_probe is True
        if not facts.scheduler_known:
            assert all(isinstance(a, RecordOutput) for a in actions), (view, facts, actions)
        if submits:
            assert len(submits) == 1
            assert facts.can_submit and not done and not view.state.is_terminal and not facts.termination_pending
            assert not facts.found_by_name or view.scheduler_id is not None
            assert view.scheduler_id is None or facts.observation is None or not facts.observation.state.is_active
        if view.state.is_terminal:
            assert actions == []
        # Every chain of transitions is allowed by the life cycle.
        state = view.state
        for action in actions:
            if isinstance(action, Transition):
                check_transition(state, action.to)
                state = action.to
        if done and not view.state.is_terminal and facts.scheduler_known:
            assert state == JobState.DONE
        if any(isinstance(a, Adopt) for a in actions):
            assert view.scheduler_id is None
        if any(isinstance(a, DropIntent) for a in actions):
            assert view.pending_intent and not facts.found_by_name
        if any(isinstance(a, (StartRefused, StartReady)) for a in actions):
            assert job.start_condition_cmd and facts.start_probe is not None
        if any(isinstance(a, Cancel) for a in actions):  # never twice, never a job that is not running
            assert view.cancelled_for is None and facts.observation.state == S.RUNNING and not done
        if any(isinstance(a, EndAttempt) for a in actions):  # an ending waits for a fresh done check
            assert not facts.termination_pending or done
    assert checked > 10_000
