"""Pre-queued continuations (`prequeue`): the pure decision, the store's two open attempts, and the log line that
`prequeue: auto` estimates from."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import UserError
from orchestrator.config.jobs_from_params import job_from_params
from orchestrator.job_state import JobState
from orchestrator.jobs import Job
from orchestrator.monitor.actions import CancelStandby, PromoteStandby, Submit, SubmitStandby
from test_monitor_lifecycle import kinds  # one spelling of actions for both decision tables
from orchestrator.monitor.lifecycle import Facts, JobView, decide
from orchestrator.monitor.prequeue import remaining_secs, standby_reason
from orchestrator.monitor.probes import IterationLine, OutputFacts, OutputWatcher
from orchestrator.scheduler.base import Observation, SchedulerState as S
from orchestrator.state.store import StateStore

NOW = 10_000.0
OUT = OutputFacts(fingerprint="120:1", size=120, content_end=120)


def make_job(**overrides) -> Job:
    fields = dict(name="j", template="t", sbatch_script="j.sbatch", output_file="j-%j.out", cmd="sbatch j.sbatch",
                  check_interval_secs=10.0, freeze_secs=60.0, max_failures=3, prequeue="always",
                  termination_str="DONE")
    fields.update(overrides)
    return Job(**fields)


def obs(state: S, sid: str = "100", exit_code: int | None = None, elapsed: float | None = None) -> Observation:
    return Observation(sid, "j", state, exit_code, start_time="T0" if state != S.PENDING else "", elapsed_secs=elapsed)


RUNNING = JobView("j", JobState.RUNNING, scheduler_id="100", output_fingerprint="bytes:120", output_changed_at=NOW - 5,
                  run_start="T0")
WITH_STANDBY = JobView(**{**RUNNING.__dict__, "standby_id": "101"})
LINE = IterationLine(iteration=400, total=1000, ms_per_iteration=1000.0, at=50)  # 600 s of training left


def facts(**overrides) -> Facts:
    fields = dict(now=NOW, scheduler_known=True, output=OUT, can_chain=True, observation=obs(S.RUNNING))
    fields.update(overrides)
    return Facts(**fields)


CASES = [
    # (id, job overrides, view, facts overrides, expected)
    ("always: queued behind the running segment", {}, RUNNING, {}, ["prequeue-behind:100"]),
    ("always: queued behind a pending one too", {}, JobView("j", JobState.QUEUED, scheduler_id="100"),
     {"observation": obs(S.PENDING)}, ["prequeue-behind:100"]),
    ("off: never", {"prequeue": "off"}, RUNNING, {}, []),
    ("scheduler cannot chain: never", {}, RUNNING, {"can_chain": False}, []),
    ("no free slot under --max-jobs: not now", {}, RUNNING, {"can_submit": False}, []),
    ("one is queued already: no second", {}, WITH_STANDBY, {"standby_observation": obs(S.PENDING, "101")}, []),
    ("auto: 600 s of work, 500 s left: queued", {"prequeue": "auto"}, JobView(**{**RUNNING.__dict__, "limit_secs": 1000}),
     {"observation": obs(S.RUNNING, elapsed=500), "output": OutputFacts("120:1", 120, content_end=120, iterations=LINE)},
     ["prequeue-behind:100"]),
    ("auto: 600 s of work, 700 s left: fits (600 <= 0.9 x 700)", {"prequeue": "auto"},
     JobView(**{**RUNNING.__dict__, "limit_secs": 1000}),
     {"observation": obs(S.RUNNING, elapsed=300), "output": OutputFacts("120:1", 120, content_end=120, iterations=LINE)},
     []),
    ("auto: the only log line is an earlier run's: wait for this run's", {"prequeue": "auto"},
     JobView(**{**RUNNING.__dict__, "limit_secs": 1000, "run_output_offset": 60}),
     {"observation": obs(S.RUNNING, elapsed=500), "output": OutputFacts("120:1", 120, content_end=120, iterations=LINE)},
     []),
    ("auto: no time limit known: never", {"prequeue": "auto"}, RUNNING,
     {"observation": obs(S.RUNNING, elapsed=500), "output": OutputFacts("120:1", 120, content_end=120, iterations=LINE)},
     []),
    ("done while running: the standby is cancelled first", {}, WITH_STANDBY,
     {"standby_observation": obs(S.PENDING, "101"), "output": OutputFacts("130:1", 130, True, 130)},
     ["cancel-standby:101", "->done"]),
    ("frozen, not the last failure: the standby continues it", {}, WITH_STANDBY,
     {"standby_observation": obs(S.PENDING, "101"), "now": NOW + 60}, ["cancel:100:frozen"]),
    ("frozen as the last allowed failure: the standby goes too", {}, JobView(**{**WITH_STANDBY.__dict__,
                                                                               "consecutive_failures": 2}),
     {"standby_observation": obs(S.PENDING, "101"), "now": NOW + 60}, ["cancel:100:frozen", "cancel-standby:101"]),
    ("segment saved and exited: the pending standby is promoted", {}, WITH_STANDBY,
     {"observation": obs(S.COMPLETED, exit_code=0), "standby_observation": obs(S.PENDING, "101"),
      "output": OutputFacts("130:1", 130, content_end=130, progress="400", progress_at=60)},
     ["end:COMPLETED", "promote:101", "->queued", "prequeue-behind:101"]),  # the next one at once: no poll's delay
    ("time limit: the standby already runs", {}, WITH_STANDBY,
     {"observation": obs(S.TIMEOUT), "standby_observation": obs(S.RUNNING, "101")},
     ["end:TIMEOUT", "promote:101", "prequeue-behind:101"]),
    ("auto: the promoted one is judged on its own log, next cycle", {"prequeue": "auto"}, WITH_STANDBY,
     {"observation": obs(S.TIMEOUT), "standby_observation": obs(S.RUNNING, "101")}, ["end:TIMEOUT", "promote:101"]),
    ("the standby ended as well (monitor away): promoted, judged next cycle", {}, WITH_STANDBY,
     {"observation": obs(S.TIMEOUT), "standby_observation": obs(S.COMPLETED, "101", exit_code=0)},
     ["end:TIMEOUT", "promote:101"]),
    ("crash, failures left: the standby is the retry", {}, WITH_STANDBY,
     {"observation": obs(S.FAILED, exit_code=1), "standby_observation": obs(S.RUNNING, "101")},
     ["end:FAILED!", "promote:101", "prequeue-behind:101"]),
    ("ended done: the standby is cancelled", {}, WITH_STANDBY,
     {"observation": obs(S.COMPLETED, exit_code=0), "standby_observation": obs(S.RUNNING, "101"),
      "output": OutputFacts("130:1", 130, True, 130)},
     ["end:COMPLETED", "cancel-standby:101", "->done"]),
    ("the last allowed crash: given up, the standby cancelled", {}, JobView(**{**WITH_STANDBY.__dict__,
                                                                              "consecutive_failures": 2}),
     {"observation": obs(S.FAILED, exit_code=1), "standby_observation": obs(S.PENDING, "101")},
     ["end:FAILED!", "cancel-standby:101", "->failed"]),
    ("its node failed it: the pending standby is replaced by a submission that excludes the node", {}, WITH_STANDBY,
     {"observation": obs(S.NODE_FAIL), "standby_observation": obs(S.PENDING, "101")},
     ["end:NODE_FAIL!", "MarkBadNodes", "cancel-standby:101", "->waiting", "Submit"]),
    ("termination_cmd not asked since it ended: wait, the standby stays", {"termination_cmd": "t",
                                                                          "termination_str": ""}, WITH_STANDBY,
     {"observation": obs(S.COMPLETED, exit_code=0), "standby_observation": obs(S.PENDING, "101"),
      "termination_pending": True}, []),
    ("monitor killed during the standby's sbatch: found by name, adopted", {},
     JobView(**{**RUNNING.__dict__, "standby_intent": True}), {"found_by_name": (obs(S.PENDING, "101"),)},
     ["adopt-standby:101"]),
    ("standby intent, nothing in the queue: never submitted, forgotten (and queued now)", {},
     JobView(**{**RUNNING.__dict__, "standby_intent": True}), {}, ["end-standby:NOT_SUBMITTED", "prequeue-behind:100"]),
    ("standby cancelled by someone while the current runs: closed", {"prequeue": "auto"}, WITH_STANDBY,
     {"standby_observation": obs(S.CANCELLED, "101")}, ["end-standby:CANCELLED"]),
    ("killed between closing the current attempt and promoting: promoted now", {},
     JobView("j", JobState.RUNNING, standby_id="101"), {"standby_observation": obs(S.RUNNING, "101")},
     ["promote:101"]),
    ("scheduler unknown: nothing", {}, WITH_STANDBY, {"scheduler_known": False, "observation": None}, []),
]


@pytest.mark.parametrize("case_id, job_overrides, view, fact_overrides, expected", CASES, ids=[c[0] for c in CASES])
def test_decision(case_id, job_overrides, view, fact_overrides, expected):
    assert kinds(decide(make_job(**job_overrides), view, facts(**fact_overrides))) == expected


def test_every_pre_queued_submission_waits_on_the_current_attempt():
    """Behind the current attempt in the queue, or behind the pre-queued one just promoted to it."""
    for _, job_overrides, view, fact_overrides, _ in CASES:
        observed = facts(**fact_overrides).observation
        actions = decide(make_job(**job_overrides), view, facts(**fact_overrides))
        promoted = [a.scheduler_id for a in actions if isinstance(a, PromoteStandby)]
        for action in actions:
            if isinstance(action, SubmitStandby):
                current = promoted[-1] if promoted else view.scheduler_id
                assert action.after_id == current and (promoted or observed.scheduler_id == current)


def test_never_a_second_submission_while_a_standby_is_in_play():
    """At most one submission waits behind another: a new one only once the old one is promoted or cancelled."""
    for _, job_overrides, view, fact_overrides, _ in CASES:
        actions = decide(make_job(**job_overrides), view, facts(**fact_overrides))
        if view.standby_id is not None and not any(isinstance(a, (CancelStandby, PromoteStandby)) for a in actions):
            assert not any(isinstance(a, (Submit, SubmitStandby)) for a in actions), actions
        assert sum(isinstance(a, (Submit, SubmitStandby)) for a in actions) <= 1


def test_remaining_time_comes_from_the_run_s_own_megatron_line(tmp_path: Path):
    log = tmp_path / "run.out"
    # As Megatron-LM's training_log writes it (megatron/training/training.py, d98e8a64), trimmed.
    log.write_text(" iteration      300/    1000 | consumed samples:        76800 | elapsed time per iteration (ms): "
                   "812.4 | learning rate: 2.9E-04 | global batch size:   256 | lm loss: 3.2E+00 |\n"
                   "saving checkpoint at iteration     300 to /ckpt in torch format\n")
    output = OutputWatcher().facts(str(log))
    assert output.iterations == IterationLine(300, 1000, 812.4, 0)
    assert remaining_secs(output, 0) == pytest.approx(700 * 0.8124)
    assert remaining_secs(output, 1) is None  # the line belongs to an earlier run
    job = make_job(prequeue="auto")
    assert standby_reason(job, obs(S.RUNNING, elapsed=100), output, 0, 600) is not None  # 569 s > 0.9 x 500
    assert standby_reason(job, obs(S.RUNNING, elapsed=100), output, 0, 800) is None  # 569 s <= 0.9 x 700
    assert standby_reason(job, obs(S.PENDING, elapsed=0), output, 0, 600) is None


@pytest.mark.parametrize("value, mode", [(None, "off"), (False, "off"), (True, "auto"), ("AUTO", "auto"),
                                         ("always", "always"), ("off", "off")])
def test_prequeue_key(value, mode):
    params = dict(name="j", template="t", output_file="o", cmd="sbatch s", sbatch_script="s", prequeue=value)
    assert job_from_params(params, 0).prequeue == mode


def test_prequeue_key_refuses_other_values():
    params = dict(name="j", template="t", output_file="o", cmd="sbatch s", sbatch_script="s", prequeue="sometimes")
    with pytest.raises(UserError, match="job j: key 'prequeue' must be one of off, auto, always"):
        job_from_params(params, 0)


def test_store_keeps_the_standby_apart_from_the_current_attempt(tmp_path: Path):
    store = StateStore.open(tmp_path)
    store.ensure_jobs(["j"])
    first = store.record_intent("j", output_offset=0)
    store.record_submitted(first, "100")
    store.start_run("j", "T0", 0)
    second = store.record_intent("j", after_id="100", estimate_hours=1.0)
    record = store.job("j")
    assert record.current.scheduler_id == "100" and record.run_start == "T0"  # the current run goes on
    assert record.standby.id == second and record.standby.scheduler_id is None and record.standby.after_id == "100"
    store.record_adopted("j", "101", standby=True)
    store.mark_cancelled("j", "frozen")
    record = store.job("j")
    assert record.standby.scheduler_id == "101" and record.standby.cancel_reason is None
    assert record.current.cancel_reason == "frozen"
    with pytest.raises(Exception, match="current attempt is still open"):
        store.promote_standby("j", 0)
    store.end_attempt("j", "TIMEOUT")
    assert store.job("j").standby.scheduler_id == "101"  # ending the current one leaves the standby open
    store.promote_standby("j", 0)
    record = store.job("j")
    assert record.current.scheduler_id == "101" and record.standby is None and record.run_start is None
    assert [a.final_state for a in store.attempts("j")] == ["TIMEOUT", None]
    store.close()


def test_a_standby_can_be_closed_alone(tmp_path: Path):
    store = StateStore.open(tmp_path)
    store.ensure_jobs(["j"])
    store.record_submitted(store.record_intent("j"), "100")
    store.record_submitted(store.record_intent("j", after_id="100"), "101")
    store.end_attempt("j", "CANCELLED", standby=True)
    record = store.job("j")
    assert record.current.scheduler_id == "100" and record.standby is None
    store.close()
