"""The local backend: real bash processes, real signals, state in a folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.jobs import Job
from orchestrator.scheduler.base import Observation, SchedulerState as S, SubmitError
from orchestrator.scheduler.local import (
    LocalScheduler,
    expand_log_path,
)
from orchestrator.scheduler.sbatch_script import script_options
from orchestrator.scheduler.select import resolve_choice, select_scheduler


def make_job(tmp_path: Path, name: str, body: str, *sbatch: str, job_name: str | None = None) -> Job:
    script = tmp_path / f"{name}.sbatch"
    lines = ["#!/bin/bash", *(f"#SBATCH {s}" for s in sbatch), body]
    if job_name is not None:
        lines.insert(1, f"#SBATCH --job-name={job_name}")
    script.write_text("\n".join(lines) + "\n")
    return Job(name=name, template="", sbatch_script=str(script), output_file=str(tmp_path / f"{name}.log"),
               cmd="sbatch {sbatch_script}")


def wait_for(scheduler: LocalScheduler, job_id: str, done: Callable[[Observation], bool], timeout: float = 60) -> Observation:
    deadline = time.monotonic() + timeout
    while True:
        observation = scheduler.query([job_id], [])[job_id]
        if done(observation) or time.monotonic() > deadline:
            return observation
        time.sleep(0.1)


def ended(observation: Observation) -> bool:
    return not observation.state.is_active


@pytest.fixture
def scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalScheduler:
    monkeypatch.chdir(tmp_path)
    return LocalScheduler(tmp_path / "state")


def test_completed_job_with_env_and_output_pattern(scheduler: LocalScheduler, tmp_path: Path) -> None:
    job = make_job(tmp_path, "ok", 'echo "id=$SLURM_JOB_ID name=$SLURM_JOB_NAME pwd=$PWD"; echo oops >&2',
                   "--output=logs/%x-%j.out", job_name="\"hello world\"")
    job_id = scheduler.submit(job)
    assert scheduler.query([job_id], [])[job_id].name == "hello world"
    final = wait_for(scheduler, job_id, ended)
    assert (final.state, final.exit_code) == (S.COMPLETED, 0)
    log = tmp_path / "logs" / f"hello world-{job_id}.out"
    assert log.read_text() == f"id={job_id} name=hello world pwd={tmp_path}\noops\n"
    assert not Path(job.output_file).exists()  # the #SBATCH --output path wins


def test_failed_job_and_output_file_fallback(scheduler: LocalScheduler, tmp_path: Path) -> None:
    job = make_job(tmp_path, "fail", "echo before; exit 3")
    job_id = scheduler.submit(job)
    final = wait_for(scheduler, job_id, ended)
    assert (final.state, final.exit_code) == (S.FAILED, 3)
    assert Path(job.output_file).read_text() == "before\n"  # no --output: the job's output_file
    assert final.name == "fail"  # no --job-name: the job's name


def test_ids_are_unique_increasing_and_persisted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    job = make_job(tmp_path, "quick", "true")
    first = [LocalScheduler(tmp_path / "state").submit(job) for _ in range(3)]
    later = LocalScheduler(tmp_path / "state").submit(job)
    assert [int(i) for i in first + [later]] == sorted({int(i) for i in first + [later]})
    assert int(later) > int(first[-1])


def test_timeout_kills_the_whole_process_group(scheduler: LocalScheduler, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # The script leaves a background child: it must die with the job.
    job = make_job(tmp_path, "slow", f"sleep 300 & echo $! > {pid_file}; wait", "--time=0:02")
    started = time.monotonic()
    job_id = scheduler.submit(job)
    final = wait_for(scheduler, job_id, ended, timeout=60)
    elapsed = time.monotonic() - started
    assert (final.state, final.reason) == (S.TIMEOUT, "TimeLimit")
    assert 1.5 <= elapsed < 30
    child = int(pid_file.read_text())
    assert _gone_soon(child)


@pytest.mark.parametrize("ending", ["cancel", "timeout", "script ends"])
def test_processes_in_sessions_of_their_own_end_with_the_job(scheduler: LocalScheduler, tmp_path: Path,
                                                              ending: str) -> None:
    """torchrun starts each rank with setsid: out of the job's process group, and an orphan once the script is
    gone. They end with the job all the same, as in Slurm's cgroup."""
    pid_file = tmp_path / "rank.pid"
    body = f"setsid sleep 300 & echo $! > {pid_file}\n" + ("exit 0" if ending == "script ends" else "sleep 300")
    job = make_job(tmp_path, "ranks", body, *(["--time=0:02"] if ending == "timeout" else []))
    job_id = scheduler.submit(job)
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    rank = int(pid_file.read_text())
    assert os.getsid(rank) != os.getsid(0)  # in a session of its own
    if ending == "cancel":
        assert wait_for(scheduler, job_id, lambda o: o.state is S.RUNNING).state is S.RUNNING
        scheduler.cancel([job_id])
    final = wait_for(scheduler, job_id, ended, timeout=60)
    assert final.state is {"cancel": S.CANCELLED, "timeout": S.TIMEOUT, "script ends": S.COMPLETED}[ending]
    assert _gone_soon(rank)


def test_a_job_is_its_token_entry_not_a_variable_ending_in_it() -> None:
    from orchestrator.scheduler.local_processes import JOB_TOKEN_VARIABLE, job_processes

    token = f"/state#{os.getpid()}"
    ours = subprocess.Popen(["sleep", "30"], env={JOB_TOKEN_VARIABLE: token})
    other = subprocess.Popen(["sleep", "30"], env={f"X_{JOB_TOKEN_VARIABLE}": token, "A": "1"})
    try:
        deadline = time.monotonic() + 10
        while ours.pid not in job_processes(token) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job_processes(token) == [ours.pid]
    finally:
        for process in (ours, other):
            process.kill()
            process.wait()


def test_cancel_running_and_pending(scheduler: LocalScheduler, tmp_path: Path) -> None:
    job = make_job(tmp_path, "sleeper", "sleep 300")
    job_id = scheduler.submit(job)
    assert wait_for(scheduler, job_id, lambda o: o.state is S.RUNNING).state is S.RUNNING
    scheduler.cancel([job_id])
    final = wait_for(scheduler, job_id, ended, timeout=30)
    assert final.state is S.CANCELLED
    # Cancelling an ended or unknown job is harmless.
    scheduler.cancel([job_id, "999"])
    assert scheduler.query([job_id], [])[job_id].state is S.CANCELLED


def test_cancel_right_after_submit(scheduler: LocalScheduler, tmp_path: Path) -> None:
    marker = tmp_path / "ran-to-the-end"
    job_id = scheduler.submit(make_job(tmp_path, "early", f"sleep 5; touch {marker}"))
    scheduler.cancel([job_id])  # usually before the wrapper started the script
    assert wait_for(scheduler, job_id, ended, timeout=30).state is S.CANCELLED
    time.sleep(6)
    assert not marker.exists()


def test_restart_readopts_running_job_by_id_and_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    release = tmp_path / "release"
    job = make_job(tmp_path, "long", f"while [ ! -e {release} ]; do sleep 0.1; done; exit 7", job_name="long-run")
    job_id = LocalScheduler(tmp_path / "state").submit(job)
    # A new backend instance (a restarted monitor) that knows only the name.
    again = LocalScheduler(tmp_path / "state")
    assert wait_for(again, job_id, lambda o: o.state is S.RUNNING).state is S.RUNNING
    assert list(again.query([], ["long-run"])) == [job_id]
    release.touch()
    final = wait_for(again, job_id, ended)
    assert (final.state, final.exit_code) == (S.FAILED, 7)
    assert again.query([], ["long-run"]) == {}  # ended jobs are not returned by name


def test_lost_wrapper_running_job_stays_running_then_gone(scheduler: LocalScheduler, tmp_path: Path) -> None:
    release = tmp_path / "release"
    job = make_job(tmp_path, "orphan", f"while [ ! -e {release} ]; do sleep 0.1; done")
    job_id = scheduler.submit(job)
    wait_for(scheduler, job_id, lambda o: o.state is S.RUNNING)
    record = json.loads((scheduler.state_dir / f"{job_id}.json").read_text())
    os.kill(record["wrapper_pid"], signal.SIGKILL)
    assert _gone_soon(record["wrapper_pid"], reap=scheduler)
    observed = scheduler.query([job_id], [])[job_id]
    assert (observed.state, observed.reason) == (S.RUNNING, "wrapper lost")
    release.touch()
    assert wait_for(scheduler, job_id, ended).state is S.GONE


def test_unknown_id_is_gone(scheduler: LocalScheduler) -> None:
    assert scheduler.query(["12345"], [])["12345"].state is S.GONE


def test_bad_time_limit_is_a_submit_error(scheduler: LocalScheduler, tmp_path: Path) -> None:
    with pytest.raises(SubmitError, match="--time=soon"):
        scheduler.submit(make_job(tmp_path, "bad", "true", "--time=soon"))


def test_directives_are_read_like_sbatch() -> None:
    text = "\n".join([
        "#!/bin/bash",
        "#SBATCH -J short --time 1:00",
        '#SBATCH --output="logs/a b-%j.out"  # a comment',
        "#SBATCH --exclusive",
        "# a plain comment",
        "#SBATCH -ologs/%x.log",
        "echo start",
        "#SBATCH --job-name=ignored-after-a-command",
    ])
    assert script_options(text) == {"job-name": "short", "time": "1:00", "output": "logs/%x.log", "exclusive": ""}
    assert expand_log_path("x/%x-%j-%%-%5j", "42", "run") == "x/run-42-%-00042"


def test_select_backend() -> None:
    assert resolve_choice("auto", which=lambda _: "/usr/bin/sbatch") == "slurm"
    assert resolve_choice("auto", which=lambda _: None) == "local"
    assert resolve_choice("local", which=lambda _: "/usr/bin/sbatch") == "local"
    with pytest.raises(ValueError):
        resolve_choice("pbs")
    assert select_scheduler("local", state_dir="/tmp/x").name == "local"
    assert select_scheduler("slurm").name == "slurm"


def _gone_soon(pid: int, reap: LocalScheduler | None = None, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if reap is not None:
            reap._reap()  # our own child turns into a zombie until reaped
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def test_job_recorded_before_its_wrapper_starts_is_found_by_name(
    scheduler: LocalScheduler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submitter killed between writing the record and starting the wrapper (or noting its pid)."""
    import orchestrator.scheduler.local as local

    def killed_here(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # stands for SIGKILL at this line: nothing after it runs

    job = make_job(tmp_path, "early", "sleep 1", job_name="early")
    monkeypatch.setattr(local.subprocess, "Popen", killed_here)
    with pytest.raises(KeyboardInterrupt):
        scheduler.submit(job)
    monkeypatch.undo()
    restarted = LocalScheduler(tmp_path / "state")
    found = restarted.query([], ["early"])
    assert [o.state for o in found.values()] == [S.PENDING]  # adopted, so not submitted again
    job_id = next(iter(found))
    record_path = tmp_path / "state" / f"{job_id}.json"
    record = json.loads(record_path.read_text())
    record["submitted_at"] -= local._START_GRACE_SECS + 1  # it never started: after the grace period, gone
    record_path.write_text(json.dumps(record))
    assert restarted.query([job_id], [])[job_id].state == S.GONE
    assert restarted.query([], ["early"]) == {}
