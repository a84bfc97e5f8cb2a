"""`orch run` against the states a production cluster produces, on the real test cluster with accounting.

Every test asserts what matters most: no duplicate submission (counted twice: by the submit command's
own log, and by the job ids Slurm's accounting holds per name), nothing lost (every job done or given up
for the right reason), and nothing foreign touched. Timings: TIMEOUT is enforced 30-60 s after a
one-minute limit, a requeued job waits cred_expire (10 s on the test cluster) before it runs again, and a
stopped slurmd takes its node down after SlurmdTimeout (10 s).
"""

from __future__ import annotations

import getpass
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor_campaign import campaign_state, console, run_orch, start_orch, status, submissions, wait_for, write_campaign

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

NAME = "{prefix}{idx}"
# A job that resumes from its checkpoint: the first attempt "saves" one and runs until something ends it.
RESUMABLE = """
    n=$(cat logs/{name}.count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > logs/{name}.count
    if [ $n -ge 2 ]; then echo "attempt $n resumes from the checkpoint"; echo "TRAINING DONE"; exit 0; fi
    echo "attempt $n"
    for i in $(seq 1 300); do echo "iteration $i"; sleep 1; done
    """
# A job that finishes when Slurm runs it again under the same id (requeue): silent for 8 s first, so a
# freeze rule that counted the first run's text or Slurm's preemption line would cancel it.
REQUEUE_AWARE = """
    if [ "${{SLURM_RESTART_COUNT:-0}}" -ge 1 ]; then sleep 8; echo "resumed after requeue"; echo "TRAINING DONE"; exit 0; fi
    echo "first run"
    for i in $(seq 1 300); do echo "iteration $i"; sleep 1; done
    """


@pytest.fixture
def prefix(slurm_job_prefix: str) -> str:
    return slurm_job_prefix


def run_slurm(root: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return run_orch(root, *args, "--scheduler", "slurm", "--poll-secs", "1", timeout=timeout)


def start_slurm(root: Path, *args: str) -> subprocess.Popen[str]:
    return start_orch(root, *args, "--scheduler", "slurm", "--poll-secs", "1")


def accepted_submissions(prefix: str) -> Counter[str]:
    """Distinct job ids per name that Slurm's accounting recorded (a requeued job keeps its one id). A submission
    sbatch refused is recorded too, FAILED on `None assigned` (seen here for "Requested node configuration is not
    available"): it was never accepted, so it is not counted."""
    result = subprocess.run(["sacct", "-X", "-n", "-P", "-S", "now-1days", "-o", "JobIDRaw,State,NodeList,JobName"],
                            capture_output=True, text=True, timeout=60, check=True)
    ids: dict[str, set[str]] = {}
    for line in result.stdout.splitlines():
        job_id, state, nodes, name = line.split("|", 3)
        if state == "FAILED" and nodes == "None assigned":
            continue
        if name.startswith(prefix) and "preemptor" not in name:
            ids.setdefault(name, set()).add(job_id)
    return Counter({name: len(found) for name, found in ids.items()})


def assert_accepted(prefix: str, expected: dict[str, int]) -> None:
    """Accounting records a job shortly after it ends (slurmdbd is asynchronous): wait for it, then compare."""
    try:
        wait_for(lambda: accepted_submissions(prefix) == expected, 30, interval=1, what="accounting")
    except AssertionError:
        assert accepted_submissions(prefix) == expected


def queue_state(job_id: str) -> str:
    result = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"], capture_output=True, text=True,
                            timeout=30)
    return result.stdout.strip()


def attempts(root: Path, name: str) -> list[tuple[str | None, str | None, int | None]]:
    """From the snapshot readers use (the live store is the running monitor's alone)."""
    db = sqlite3.connect(f"file:{campaign_state(root) / 'state.snapshot.db'}?mode=ro&immutable=1", uri=True)
    try:
        return list(db.execute("SELECT scheduler_id, final_state, exit_code FROM attempts WHERE job = ? ORDER BY id",
                               (name,)))
    finally:
        db.close()


def running_id(root: Path, name: str, timeout: float = 90) -> str:
    """The job's scheduler id once Slurm runs it."""
    def probe() -> str | None:
        rows = [row for row in attempts(root, name) if row[0]] if (campaign_state(root) / "state.snapshot.db").exists() else []
        return rows[-1][0] if rows and queue_state(rows[-1][0]) == "RUNNING" else None

    return wait_for(probe, timeout, interval=0.5, what=f"{name} to run")


def stop(monitor: subprocess.Popen[str]) -> None:
    if monitor.poll() is None:
        monitor.send_signal(signal.SIGTERM)
        try:
            monitor.wait(30)
        except subprocess.TimeoutExpired:
            monitor.kill()


def run_while(root: Path, prefix: str, act: Callable[[str], None], timeout: float = 150) -> str:
    """`orch run` the campaign's one job; once Slurm runs it, `act(job_id)`; the monitor must finish with 0."""
    assert run_orch(root, "build", "campaign.yaml").returncode == 0
    monitor = start_slurm(root, "run", "campaign.yaml")
    try:
        job_id = running_id(root, f"{prefix}0")
        act(job_id)
        assert monitor.wait(timeout) == 0, console(root)
    finally:
        stop(monitor)
    return job_id


def preempt(prefix: str, partition: str = "high") -> None:
    """A job in the higher-tier partition that needs the whole node: it preempts what runs in low/lowcancel."""
    subprocess.run(["sbatch", "-p", partition, "--exclusive", "-J", f"{prefix}preemptor", "-o", "/dev/null",
                    "--wrap", "sleep 3"], check=True, capture_output=True, timeout=60)


# ---------------------------------------------------------------- 1. campaign isolation


def test_another_campaigns_jobs_of_the_same_names_are_never_adopted_or_cancelled(slurm_cluster, prefix, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    write_campaign(first, prefix=prefix, name=NAME, grid="idx: [0, 1]", extra="freeze_secs: 600\n",
                   body="for i in $(seq 1 90); do echo \"iteration $i\"; sleep 1; done\necho 'TRAINING DONE'\n")
    write_campaign(second, prefix=prefix, name=NAME, grid="idx: [0, 1]", extra="freeze_secs: 600\n",
                   body="sleep 2\necho 'TRAINING DONE'\n")
    assert run_orch(first, "build", "campaign.yaml").returncode == 0
    assert run_orch(second, "build", "campaign.yaml").returncode == 0
    first_monitor = start_slurm(first, "run", "campaign.yaml")
    try:
        first_ids = {i: running_id(first, f"{prefix}{i}") for i in (0, 1)}
        # The second campaign's own script submitted by hand: that one is the second campaign's.
        by_hand = subprocess.run(["sbatch", "--parsable", f"scripts/{prefix}1.sbatch"], cwd=second, check=True,
                                 capture_output=True, text=True, timeout=60).stdout.strip()
        result = run_slurm(second, "run", "campaign.yaml")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{prefix}1: adopted {by_hand}" in result.stdout
        assert submissions(second) == {f"{prefix}0": 1}  # submitted its own, did not adopt the first's
        assert "another campaign's job, left alone" in result.stdout
        assert all(f"adopted {first_id}" not in result.stdout for first_id in first_ids.values())
        assert {row["scheduler_id"] for row in status(second).values()}.isdisjoint(first_ids.values())
        # `orch cancel` in the second folder touches nothing of the first campaign.
        cancelled = run_orch(second, "cancel", "campaign.yaml", "--scheduler", "slurm")
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        assert "0 submissions cancelled" in cancelled.stdout
        assert [queue_state(first_ids[i]) for i in (0, 1)] == ["RUNNING", "RUNNING"], result.stdout
    finally:
        stop(first_monitor)
    assert submissions(first) == {f"{prefix}0": 1, f"{prefix}1": 1}


# ---------------------------------------------------------------- 2. concurrent probes


def test_slow_start_conditions_run_concurrently_and_time_out_once(slurm_cluster, prefix, tmp_path):
    write_campaign(tmp_path, prefix=prefix, name=NAME, body="echo 'TRAINING DONE'\n",
                   grid="idx: [%s]" % ", ".join(str(i) for i in range(20)),
                   extra='start_condition_cmd: "sleep 3; echo 1"\n')
    # A job whose condition hangs: killed after probe_timeout_secs, taken as "no", logged once.
    stuck_dir = tmp_path / "stuck"
    stuck_dir.mkdir()
    write_campaign(stuck_dir, prefix=prefix, name="{prefix}stuck", body="echo 'TRAINING DONE'\n",
                   extra='start_condition_cmd: "sleep 60; echo 1"\nprobe_timeout_secs: 1\n')
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    started = time.monotonic()
    result = run_slurm(tmp_path, "run", "campaign.yaml", timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert submissions(tmp_path) == {f"{prefix}{i}": 1 for i in range(20)}
    # One after another, 20 conditions of 3 s take 60 s before the last submission; 16 at a time, two rounds.
    assert elapsed < 40, elapsed
    stuck = run_slurm(stuck_dir, "build-and-run", "campaign.yaml", "--max-start-attempts", "2", timeout=60)
    assert stuck.returncode == 1, stuck.stdout + stuck.stderr
    assert stuck.stdout.count("timed out after 1s") == 1  # logged once, although it timed out twice
    assert "start condition not met after 2 tries" in stuck.stdout


# ---------------------------------------------------------------- 3. queue limits


def test_a_submit_limit_holds_the_campaign_and_a_bad_partition_still_fails(slurm_cluster, prefix, tmp_path):
    write_campaign(tmp_path, prefix=prefix, name=NAME, body="""
        #SBATCH --partition={partition}
        sleep 2; echo 'TRAINING DONE'
        """, grid="""
        idx:
          - 0: {partition: debug}
          - 1: {partition: debug}
          - 2: {partition: debug}
          - 3: {partition: debug}
          - bad: {partition: no-such-partition}
        """, extra="max_failures: 2\nfreeze_secs: 600\n")
    slurm_cluster.sacctmgr("modify", "user", getpass.getuser(), "set", "MaxSubmitJobs=2")
    try:
        result = run_slurm(tmp_path, "build-and-run", "campaign.yaml", timeout=240)
    finally:
        slurm_cluster.sacctmgr("modify", "user", getpass.getuser(), "set", "MaxSubmitJobs=-1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "5 jobs: 4 done, 1 failed, 0 abandoned" in result.stdout
    assert_accepted(prefix, {f"{prefix}{i}": 1 for i in range(4)})  # each accepted exactly once
    assert result.stdout.count("refused a submission for a queue limit") == 1
    assert "AssocMaxSubmitJobLimit" in result.stdout
    rows = status(tmp_path)
    assert all(rows[f"{prefix}{i}"]["state"] == "done" for i in range(4))
    assert rows[f"{prefix}bad"]["state"] == "failed" and "Invalid partition" in rows[f"{prefix}bad"]["reason"]


# ---------------------------------------------------------------- 6. real scheduler states


def test_timeout_is_resubmitted_and_resumes(slurm_cluster, prefix, tmp_path):
    write_campaign(tmp_path, prefix=prefix, name=NAME, body="#SBATCH --time=1\n" + RESUMABLE,
                   extra="freeze_secs: 600\nmax_failures: 1\n")
    result = run_slurm(tmp_path, "build-and-run", "campaign.yaml", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    name = f"{prefix}0"
    assert submissions(tmp_path) == {name: 2}
    assert_accepted(prefix, {name: 2})
    first, second = attempts(tmp_path, name)
    assert (first[1], second[1]) == ("TIMEOUT", "COMPLETED")
    assert f"after {first[0]} ended TIMEOUT" in result.stdout  # not a failure: max_failures=1 did not give up


def test_preempted_and_requeued_keeps_its_id_and_is_not_frozen(slurm_cluster, prefix, tmp_path):
    write_campaign(tmp_path, prefix=prefix, name=NAME, body="#SBATCH --partition=low\n#SBATCH --exclusive\n"
                   + REQUEUE_AWARE, extra="freeze_secs: 3\nmax_failures: 1\n")
    job_id = run_while(tmp_path, prefix, lambda _: (time.sleep(2), preempt(prefix)))
    log = (tmp_path / "logs" / f"{prefix}0.out").read_text()
    assert f"*** JOB {job_id} ON" in log and "DUE TO PREEMPTION" in log and "resumed after requeue" in log
    assert submissions(tmp_path) == {f"{prefix}0": 1}
    assert_accepted(prefix, {f"{prefix}0": 1})
    assert f"{job_id} runs again under the same id" in console(tmp_path)
    assert "frozen" not in console(tmp_path)
    assert attempts(tmp_path, f"{prefix}0") == [(job_id, "COMPLETED", 0)]


def test_preempted_and_cancelled_is_resubmitted_without_a_failure(slurm_cluster, prefix, tmp_path):
    write_campaign(tmp_path, prefix=prefix, name=NAME, body="#SBATCH --partition=lowcancel\n#SBATCH --exclusive\n"
                   + RESUMABLE, extra="freeze_secs: 600\nmax_failures: 1\n")
    run_while(tmp_path, prefix, lambda _: (time.sleep(2), preempt(prefix)))
    name = f"{prefix}0"
    assert submissions(tmp_path) == {name: 2}
    assert_accepted(prefix, {name: 2})
    assert [row[1] for row in attempts(tmp_path, name)] == ["PREEMPTED", "COMPLETED"]


def test_scontrol_requeue_keeps_the_id(slurm_cluster, prefix, tmp_path):
    write_campaign(tmp_path, prefix=prefix, name=NAME, body=REQUEUE_AWARE, extra="freeze_secs: 3\nmax_failures: 1\n")

    def requeue(job_id: str) -> None:
        time.sleep(2)
        subprocess.run(["scontrol", "requeue", job_id], check=True, capture_output=True, timeout=30)

    job_id = run_while(tmp_path, prefix, requeue)
    assert submissions(tmp_path) == {f"{prefix}0": 1}
    assert_accepted(prefix, {f"{prefix}0": 1})
    assert attempts(tmp_path, f"{prefix}0") == [(job_id, "COMPLETED", 0)]
    assert "frozen" not in console(tmp_path)


def test_node_failure_is_resubmitted_once_the_node_is_back(slurm_cluster, prefix, tmp_path):
    write_campaign(tmp_path, prefix=prefix, name=NAME, body="#SBATCH --no-requeue\n" + RESUMABLE,
                   extra="freeze_secs: 600\n")

    def fail_the_node(job_id: str) -> None:
        slurm_cluster.control("stop-slurmd")
        try:
            wait_for(lambda: f"after {job_id} ended NODE_FAIL" in console(tmp_path), 120, interval=1,
                     what="the monitor to see NODE_FAIL")
        finally:
            slurm_cluster.control("start-slurmd")

    try:
        run_while(tmp_path, prefix, fail_the_node, timeout=120)
    finally:
        slurm_cluster.wait_until_up()
    name = f"{prefix}0"
    # NODE_FAIL marks the node bad; the resubmission excluding it is refused (the default partition has no other
    # node), so it is submitted again without the exclusion: 3 sbatch calls, 2 accepted.
    assert "no node is left for it once" in console(tmp_path) and "submitting without the exclusion" in console(tmp_path)
    assert submissions(tmp_path) == {name: 3}
    assert_accepted(prefix, {name: 2})
    assert [row[1] for row in attempts(tmp_path, name)] == ["NODE_FAIL", "COMPLETED"]


# ---------------------------------------------------------------- 7. freezes judged on the current run, bounded


def test_a_job_that_hangs_every_time_is_given_up(slurm_cluster, prefix, tmp_path):
    write_campaign(tmp_path, prefix=prefix, name=NAME, body="""
        n=$(cat logs/{name}.count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > logs/{name}.count
        echo "attempt $n: hangs at start-up"
        sleep 300
        """, extra="freeze_secs: 3\nmax_failures: 2\n")
    result = run_slurm(tmp_path, "build-and-run", "campaign.yaml", timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 jobs: 0 done, 1 failed" in result.stdout
    assert submissions(tmp_path) == {f"{prefix}0": 2}  # bounded: not resubmitted forever
    assert result.stdout.count("frozen: no new output for 3s") == 2
    assert "2 failed attempts in a row" in status(tmp_path)[f"{prefix}0"]["reason"]


def test_fail_regex_and_stalled_progress_cancel_and_count_as_failures(slurm_cluster, prefix, tmp_path):
    write_campaign(tmp_path, prefix=prefix, name="{prefix}{kind}", body="""
        echo "iteration 1 lm loss: 3.1"
        if [ "{kind}" = nan ]; then echo "iteration 2 lm loss: nan"; fi
        for i in $(seq 1 300); do echo "warning: data loader is slow"; sleep 0.5; done
        """, grid="kind: [nan, stalled]", extra="""
        freeze_secs: 4
        max_failures: 1
        progress_regex: 'iteration\\s+(\\d+)'
        fail_regex: 'lm loss: nan|CUDA error'
        """)
    result = run_slurm(tmp_path, "build-and-run", "campaign.yaml", timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 jobs: 0 done, 2 failed" in result.stdout
    assert "fail_regex matched: 'iteration 2 lm loss: nan'" in result.stdout
    assert f"{prefix}stalled: frozen: no new progress for 4s" in result.stdout  # the warnings were not progress
    assert submissions(tmp_path) == {f"{prefix}nan": 1, f"{prefix}stalled": 1}


# ---------------------------------------------------------------- 6. a large campaign


def test_a_1000_job_campaign_with_max_jobs_100(slurm_cluster, prefix, tmp_path, monkeypatch):
    """Driven in-process so each cycle's scheduler commands can be counted; they are the real commands."""
    from orchestrator.config import load_jobs
    from orchestrator.monitor.loop import Monitor, MonitorOptions
    from orchestrator.process import CommandResult
    from orchestrator.scheduler.slurm import SlurmScheduler, run_command
    from orchestrator.state import StateStore

    count = 1000
    write_campaign(tmp_path, prefix=prefix, name=NAME, body="echo 'TRAINING DONE'\n",
                   grid="idx: [%s]" % ", ".join(str(i) for i in range(count)), extra="freeze_secs: 600\n")
    assert run_orch(tmp_path, "build", "campaign.yaml", timeout=300).returncode == 0
    monkeypatch.chdir(tmp_path)
    commands: list[str] = []

    def counting(argv, timeout) -> CommandResult:
        commands.append("submit" if argv[0] == "/bin/sh" else argv[0])
        return run_command(argv, timeout)

    store = StateStore.open(tmp_path)
    monitor = Monitor(load_jobs("campaign.yaml"), SlurmScheduler(counting), store,
                      MonitorOptions(poll_secs=1, max_jobs=100))
    monitor.start()
    peak_in_queue, cycles, queries_per_cycle = 0, 0, []
    started = time.monotonic()
    try:
        while True:
            commands.clear()
            report = monitor.cycle()
            cycles += 1
            queries_per_cycle.append(sum(1 for c in commands if c != "submit"))
            listed = subprocess.run(["squeue", "--me", "-h", "-o", "%j"], capture_output=True, text=True, timeout=60)
            peak_in_queue = max(peak_in_queue, sum(1 for n in listed.stdout.split() if n.startswith(prefix)))
            if report.finished or time.monotonic() - started > 1500:
                break
            time.sleep(1)
    finally:
        monitor.close()
    assert report.finished, f"not finished after {cycles} cycles"
    records = store.jobs()
    assert len(records) == count and {r.state.value for r in records.values()} == {"done"}
    assert submissions(tmp_path) == {f"{prefix}{i}": 1 for i in range(count)}  # each submitted once
    assert max(queries_per_cycle) <= 3, queries_per_cycle
    assert peak_in_queue <= 100
    print(f"1000 jobs: {cycles} cycles, {time.monotonic() - started:.0f} s, peak {peak_in_queue} in the queue, "
          f"scheduler queries per cycle: max {max(queries_per_cycle)}")
