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


def test_squeue_while_running() -> None:
    jobs = slurm_parse.parse_squeue(recorded("squeue_running.txt"))
    assert jobs[IDS["sleeper"]].state is S.RUNNING
    assert jobs[IDS["sleeper"]].name == "orchfix-sleeper"
    assert jobs[IDS["sleeper"]].exit_code is None  # no exit code before the end
    held = jobs[IDS["held"]]
    assert (held.state, held.reason) == (S.PENDING, "JobHeldUser")
    # A name containing `|` and spaces survives (the name is the last field).
    assert jobs[IDS["odd"]].name == "orchfix-odd name|with pipe"


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
    # The requeued job has two lines (PENDING at the requeue, then CANCELLED): the last one wins.
    assert recorded("jobcomp.txt").count(f"JobId={IDS['requeue']} ") == 2
    assert jobs[IDS["requeue"]].state is S.CANCELLED
    only = slurm_parse.parse_jobcomp(recorded("jobcomp.txt"), wanted=[IDS["ok"]])
    assert list(only) == [IDS["ok"]]


def test_scontrol_show_config() -> None:
    config = slurm_parse.parse_key_values(recorded("scontrol_show_config.txt"))
    assert config["AccountingStorageType"] == "accounting_storage/none"
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
    # sacct is disabled on the test cluster (recorded); these rows follow sacct -n -P -o SACCT_FIELDS.
    assert recorded("sacct_disabled.err").strip() == "Slurm accounting storage is disabled"
    rows = "7|CANCELLED by 0|0:15|None|a\n8|OUT_OF_MEMORY|0:125|OutOfMemory|b|c\n8|NODE_FAIL|1:0|None|b|c\n"
    jobs = slurm_parse.parse_sacct(rows)
    assert (jobs["7"].state, jobs["7"].exit_code) == (S.CANCELLED, 143)
    assert (jobs["8"].state, jobs["8"].name, jobs["8"].exit_code) == (S.NODE_FAIL, "b|c", 1)


@pytest.mark.parametrize(("text", "code"), [("3:0", 3), ("0:9", 137), ("768", 3), ("9", 137), ("4021", 181), ("0:53", 181), ("0", 0), ("", None), ("x", None)])
def test_exit_codes(text: str, code: int | None) -> None:
    assert slurm_parse.parse_exit_code(text) == code
