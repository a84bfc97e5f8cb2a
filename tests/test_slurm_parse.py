"""The Slurm output parsers, fed outputs recorded from the real test cluster (tests/fixtures/slurm/record.sh)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.scheduler import slurm_parse
from orchestrator.scheduler.base import SchedulerState as S

FIXTURES = Path(__file__).parent / "fixtures" / "slurm"


def recorded(name: str) -> str:
    return (FIXTURES / name).read_text()


def recorded_ids() -> dict[str, str]:
    """Which job of the recording is which (ok, fail, sleeper, timeout, held, odd, requeue, signal)."""
    return dict(line.split("=", 1) for line in recorded("ids.txt").split())


IDS = recorded_ids()


def test_sbatch_outputs_give_the_job_id() -> None:
    assert slurm_parse.parse_sbatch(recorded("sbatch_plain.txt")) == IDS["ok"]
    assert slurm_parse.parse_sbatch(recorded("sbatch_parsable.txt")) == IDS["fail"]
    assert slurm_parse.parse_sbatch("4711;cluster-a\n") == "4711"
    # A wrapper command that prints more around sbatch's line still yields the id.
    assert slurm_parse.parse_sbatch("submitting...\nSubmitted batch job 99 on cluster x\n") == "99"


@pytest.mark.parametrize("fixture", ["sbatch_bad_option.txt", "sbatch_missing_script.txt", "sbatch_controller_down.txt"])
def test_failed_sbatch_has_no_id(fixture: str) -> None:
    assert (FIXTURES / fixture.replace(".txt", ".rc")).read_text().strip() != "0"
    assert slurm_parse.parse_sbatch(recorded(fixture)) is None


def test_controller_down_texts_are_recognised() -> None:
    for command in ("squeue", "sbatch", "scancel"):
        assert recorded(f"{command}_controller_down.rc").strip() != "0"
        assert slurm_parse.is_controller_unreachable(recorded(f"{command}_controller_down.err"))
    # Refusals that are not about reaching the controller.
    assert not slurm_parse.is_controller_unreachable(recorded("sbatch_bad_option.err"))
    assert not slurm_parse.is_controller_unreachable(recorded("sbatch_missing_script.err"))
    assert not slurm_parse.is_controller_unreachable(recorded("sacct_disabled.err"))
    for refusal in ("assoc_submit_limit", "qos_submit_limit", "bad_partition", "bad_account"):
        assert not slurm_parse.is_controller_unreachable(recorded(f"sbatch_{refusal}.err"))


@pytest.mark.parametrize(("fixture", "limit"), [
    ("sbatch_assoc_submit_limit", True),  # sacctmgr modify user ... set MaxSubmitJobs=1
    ("sbatch_qos_submit_limit", True),  # sacctmgr modify qos normal set MaxSubmitJobsPerUser=1
    ("sbatch_bad_partition", False),
    ("sbatch_bad_account", False),
    ("sbatch_bad_option", False),
    ("sbatch_missing_script", False),
])
def test_queue_limit_refusals_are_told_from_refusals_that_never_clear(fixture: str, limit: bool) -> None:
    assert recorded(fixture + ".rc").strip() != "0" and slurm_parse.parse_sbatch(recorded(fixture + ".txt")) is None
    assert slurm_parse.is_queue_limit_refusal(recorded(fixture + ".err")) is limit


# The other job-count reasons, spelled as Slurm's reason table has them (src/common/job_state_reason.c).
@pytest.mark.parametrize("reason", ["AssocGrpSubmitJobsLimit", "MaxSubmitJobsPerAccount", "MaxJobsPerAccount",
                                    "QOSGrpSubmitJobsLimit", "QOSGrpJobsLimit", "AssocGrpJobsLimit",
                                    "QOSMaxJobsPerUserLimit", "AssocMaxJobsLimit"])
def test_other_job_count_limit_reason_words(reason: str) -> None:
    assert slurm_parse.is_queue_limit_refusal(f"sbatch: error: {reason}\nsbatch: error: Batch job submission failed")


@pytest.mark.parametrize("reason", ["QOSMaxWallDurationPerJobLimit", "AssocMaxCpuPerJobLimit", "QOSMinGRES",
                                    "MaxCpuPerAccount", "MaxBillingRunMinsPerAccount"])
def test_size_and_time_limits_are_not_queue_limits(reason: str) -> None:
    generic = "Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)"
    assert not slurm_parse.is_queue_limit_refusal(f"sbatch: error: {reason}\nsbatch: error: {generic}")


def test_squeue_while_running() -> None:
    jobs = slurm_parse.parse_squeue(recorded("squeue_running.txt"))
    assert jobs[IDS["sleeper"]].state is S.RUNNING
    assert jobs[IDS["sleeper"]].name == "orchfix-sleeper"
    assert jobs[IDS["sleeper"]].exit_code is None  # no exit code before the end
    held = jobs[IDS["held"]]
    assert (held.state, held.reason) == (S.PENDING, "JobHeldUser")
    # A name containing `|` and spaces survives (fields are separated by 0x1f, the name is the last).
    assert jobs[IDS["odd"]].name == "orchfix-odd name|with pipe"
    # What tells this campaign's submissions from another's: the batch script and working directory.
    assert (jobs[IDS["sleeper"]].script, jobs[IDS["sleeper"]].work_dir) == ("/WORK/sleeper.sh", "/WORK")
    assert jobs[IDS["sleeper"]].start_time.startswith("20")
    assert held.start_time == ""  # a pending job's StartTime is only a forecast


def test_squeue_submitted_jobs_are_pending() -> None:
    jobs = slurm_parse.parse_squeue(recorded("squeue_submitted.txt"))
    mine = [jobs[IDS[key]] for key in ("sleeper", "timeout", "requeue")]  # the long ones: surely not ended
    assert all(obs.state.is_active for obs in mine)
    assert {obs.state for obs in mine} <= {S.PENDING, S.RUNNING}


def test_squeue_final_states_and_exit_codes() -> None:
    jobs = slurm_parse.parse_squeue(recorded("squeue_final.txt"))
    expected = {
        "ok": (S.COMPLETED, 0),
        "fail": (S.FAILED, 3),  # squeue prints the wait status 768 = exit 3
        "signal": (S.FAILED, 137),  # killed by signal 9
        "timeout": (S.TIMEOUT, 143),  # SIGTERM at the time limit
        "sleeper": (S.CANCELLED, 143),
        "held": (S.CANCELLED, 0),
        "nodir": (S.FAILED, 181),  # --output in a missing folder: launch failure, wait status 4021 = signal 53
        "preemptcancel": (S.PREEMPTED, 143),  # PreemptMode=CANCEL: final
        "nodefail": (S.NODE_FAIL, 0),  # slurmd stopped past SlurmdTimeout, --no-requeue
    }
    for key, (state, code) in expected.items():
        assert (jobs[IDS[key]].state, jobs[IDS[key]].exit_code) == (state, code), key
    assert jobs[IDS["fail"]].reason == "NonZeroExitCode"
    assert jobs[IDS["timeout"]].reason == "TimeLimit"
    assert jobs[IDS["ok"]].reason == ""  # Slurm's "None"


def test_squeue_transient_states() -> None:
    just_cancelled = slurm_parse.parse_squeue(recorded("squeue_cancel_just_after.txt"))
    assert just_cancelled[IDS["sleeper"]].state is S.COMPLETING
    assert just_cancelled[IDS["sleeper"]].state.is_active
    # Right after `scontrol requeue` the job winds down, then waits in the queue again.
    requeued = slurm_parse.parse_squeue(recorded("squeue_requeued.txt"))[IDS["requeue"]]
    assert requeued.state in (S.COMPLETING, S.PENDING)


def test_preempted_with_requeue_is_the_same_id_pending_then_running_with_a_new_start() -> None:
    """PreemptMode=REQUEUE: never a final state in squeue, so never resubmitted; a new StartTime per run."""
    during = slurm_parse.parse_squeue(recorded("squeue_preempted_requeue.txt"))[IDS["preempted"]]
    assert (during.state, during.reason, during.start_time) == (S.PENDING, "BeginTime", "")
    again = slurm_parse.parse_squeue(recorded("squeue_preempted_running_again.txt"))[IDS["preempted"]]
    assert again.state is S.RUNNING
    runs = recorded("sacct_duplicates_requeued.txt").splitlines()  # sacct -D: one row per run
    first_start = runs[0].split(slurm_parse.FIELD_SEPARATOR)[4]
    assert len(runs) == 2 and "PREEMPTED" in runs[0] and again.start_time != first_start
    # Without -D sacct reports the newest run only.
    assert slurm_parse.parse_sacct(recorded("sacct_duplicates_requeued.txt"))[IDS["preempted"]].state is S.RUNNING
    # The output keeps the first run's lines and Slurm's own line before the second run's.
    text = recorded("preempted_output.txt")
    assert f"*** JOB {IDS['preempted']} ON" in text and "DUE TO PREEMPTION ***" in text


def test_classic_squeue_format_has_the_same_states() -> None:
    """`-o '%i|%j|%T|%r'` (no exit code) agrees with the -O format on every state."""
    final = slurm_parse.parse_squeue(recorded("squeue_final.txt"))
    for line in recorded("squeue_classic.txt").splitlines():
        job_id, rest = line.split("|", 1)
        _name, state, _reason = rest.rsplit("|", 2)  # the name may hold a `|`
        assert slurm_parse.map_state(state) is final[job_id].state


def test_jobcomp_file_lines() -> None:
    jobs = slurm_parse.parse_jobcomp(recorded("jobcomp.txt"))
    assert (jobs[IDS["fail"]].state, jobs[IDS["fail"]].exit_code) == (S.FAILED, 3)
    assert (jobs[IDS["signal"]].state, jobs[IDS["signal"]].exit_code) == (S.FAILED, 137)
    assert jobs[IDS["timeout"]].state is S.TIMEOUT
    assert (jobs[IDS["ok"]].state, jobs[IDS["ok"]].exit_code) == (S.COMPLETED, 0)
    assert jobs[IDS["odd"]].name == "orchfix-odd name|with pipe"
    # squeue's wait status and jobcomp's exit:signal agree.
    assert (jobs[IDS["nodir"]].state, jobs[IDS["nodir"]].exit_code) == (S.FAILED, 181)
    # The requeued job ended CANCELLED (scancel after the requeue): the last line of an id wins.
    assert jobs[IDS["requeue"]].state is S.CANCELLED
    twice = recorded("jobcomp.txt") + recorded("jobcomp.txt").replace("JobState=CANCELLED", "JobState=COMPLETED")
    assert slurm_parse.parse_jobcomp(twice)[IDS["requeue"]].state is S.COMPLETED
    only = slurm_parse.parse_jobcomp(recorded("jobcomp.txt"), wanted=[IDS["ok"]])
    assert list(only) == [IDS["ok"]]


def test_scontrol_show_config() -> None:
    config = slurm_parse.parse_key_values(recorded("scontrol_show_config.txt"))
    assert config["AccountingStorageType"] == "accounting_storage/slurmdbd"
    assert config["PreemptType"] == "preempt/partition_prio"
    assert config["JobCompType"] == "jobcomp/filetxt"
    assert config["JobCompLoc"].startswith("/")


@pytest.mark.parametrize(
    ("slurm", "ours"),
    [
        ("CANCELLED by 0", S.CANCELLED),
        ("CANCELLED+", S.CANCELLED),
        ("COMPLETING", S.COMPLETING),
        ("OUT_OF_MEMORY", S.OUT_OF_MEMORY),
        ("NODE_FAIL", S.NODE_FAIL),
        ("PREEMPTED", S.PREEMPTED),
        ("TIMEOUT", S.TIMEOUT),
        ("DEADLINE", S.TIMEOUT),
        ("FAILED", S.FAILED),
        ("BOOT_FAIL", S.FAILED),
        ("REQUEUED", S.PENDING),
        ("REQUEUE_HOLD", S.PENDING),
        ("SUSPENDED", S.RUNNING),
        ("CONFIGURING", S.PENDING),
        ("SOMETHING_NEW", S.RUNNING),  # unknown: still known to Slurm, never resubmit
    ],
)
def test_state_names(slurm: str, ours: S) -> None:
    assert slurm_parse.map_state(slurm) is ours


def test_sacct_rows() -> None:
    jobs = slurm_parse.parse_sacct(recorded("sacct_final.txt"))
    expected = {
        "ok": (S.COMPLETED, 0), "fail": (S.FAILED, 3), "signal": (S.FAILED, 137), "nodir": (S.FAILED, 181),
        "sleeper": (S.CANCELLED, 0),  # "CANCELLED by 0", and sacct's ExitCode of a cancelled job is 0:0
        "timeout": (S.TIMEOUT, 0), "preemptcancel": (S.PREEMPTED, 0), "nodefail": (S.NODE_FAIL, 0),
    }
    for key, (state, code) in expected.items():
        assert (jobs[IDS[key]].state, jobs[IDS[key]].exit_code) == (state, code), key
    assert jobs[IDS["odd"]].name == "orchfix-odd name|with pipe"
    assert jobs[IDS["held"]].start_time == ""  # never started: sacct prints "None"
    assert jobs[IDS["ok"]].work_dir == "/WORK"
    # A cluster without accounting (recorded from one) answers with an error, never an empty list.
    assert recorded("sacct_disabled.err").strip() == "Slurm accounting storage is disabled"


def test_sacct_out_of_memory_row() -> None:
    """OUT_OF_MEMORY needs cgroup memory enforcement, which the test cluster lacks (TaskPlugin=task/none):
    this row is written in sacct's layout by hand, not recorded."""
    separator = slurm_parse.FIELD_SEPARATOR
    row = separator.join(["31", "OUT_OF_MEMORY", "0:125", "None", "2026-01-01T00:00:00", "/w", "3600",
                          "billing=8,cpu=8,gres/gpu=4,gres/gpu:a100=4,node=1", "train"]) + "\n"
    job = slurm_parse.parse_sacct(row)["31"]
    assert (job.state, job.name) == (S.OUT_OF_MEMORY, "train") and job.state.is_failure
    assert (job.elapsed_secs, job.gpus) == (3600.0, 4)  # the untyped total, not typed + untyped


def test_usage_figures_recorded_from_the_cluster() -> None:
    """Elapsed time and allocated GPUs, as sacct (ElapsedRaw, AllocTRES) and squeue (TimeUsed, tres-alloc) print them."""
    accounted = slurm_parse.parse_sacct(recorded("sacct_final.txt"))
    ok, timeout, fail = accounted[IDS["ok"]], accounted[IDS["timeout"]], accounted[IDS["fail"]]
    assert ok.gpus == 2 and ok.elapsed_secs is not None and 2 <= ok.elapsed_secs <= 4  # `sleep 2`, --gres=gpu:2
    assert timeout.gpus == 1 and timeout.elapsed_secs is not None and timeout.elapsed_secs >= 60  # --gpus=1, --time=0:01
    assert fail.gpus is None and fail.elapsed_secs is not None and fail.elapsed_secs < 2
    listed = slurm_parse.parse_squeue(recorded("squeue_final.txt"))
    assert listed[IDS["ok"]].gpus == 2 and listed[IDS["ok"]].elapsed_secs == ok.elapsed_secs
    pending = [o for o in slurm_parse.parse_squeue(recorded("squeue_submitted.txt")).values() if o.state == S.PENDING]
    assert pending and all(o.elapsed_secs is None for o in pending)


@pytest.mark.parametrize(("text", "secs"), [("0:03", 3.0), ("1:00", 60.0), ("2:03:04", 7384.0), ("1-02:03:04", 93784.0),
                                            ("INVALID", None), ("", None)])
def test_durations(text: str, secs: float | None) -> None:
    assert slurm_parse.parse_duration(text) == secs


def test_jobcomp_gives_elapsed_from_start_and_end() -> None:
    finished = slurm_parse.parse_jobcomp(recorded("jobcomp.txt"))
    assert finished[IDS["ok"]].elapsed_secs is not None and 2 <= finished[IDS["ok"]].elapsed_secs <= 4


@pytest.mark.parametrize(("text", "code"), [("3:0", 3), ("0:9", 137), ("768", 3), ("9", 137), ("4021", 181), ("0:53", 181), ("0", 0), ("", None), ("x", None)])
def test_exit_codes(text: str, code: int | None) -> None:
    assert slurm_parse.parse_exit_code(text) == code


def test_sinfo_gpus_per_partition_from_the_recorded_node_definition() -> None:
    per_partition, default = slurm_parse.parse_sinfo_gpus(recorded("sinfo_gpus.txt"))
    assert default == "debug" and per_partition == {"debug": 8, "low": 8, "lowcancel": 8, "high": 8}
    mixed = slurm_parse.parse_sinfo_gpus("gpu*|gpu:a100:4(S:0-1)\ngpu*|gpu:a100:8(S:0-3)\ncpu|(null)\n")
    assert mixed == ({"gpu": 8, "cpu": 0}, "gpu")  # several node kinds: the dearest node
