"""`orch run` against the real one-node Slurm cluster (scripts/slurm-test-cluster.sh).

Every submission goes through the job's `cmd`, which appends the job name to `submissions.log`
before calling sbatch: the tests count real sbatch calls with it. Names carry a unique prefix, so
other tests on the same cluster never interfere.
"""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from monitor_campaign import (campaign_state, console, run_orch, sigkill_when, start_orch, status, submissions, wait_for,
                              write_campaign)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture
def prefix(slurm_job_prefix: str) -> str:
    """A unique job-name prefix; conftest cancels whatever of it is left in the queue afterwards."""
    return slurm_job_prefix


NAME = "{prefix}{idx}"


def queue_names(prefix: str) -> list[str]:
    result = subprocess.run(["squeue", "--me", "-h", "-o", "%j"], capture_output=True, text=True, timeout=30)
    return [name for name in result.stdout.split() if name.startswith(prefix)]


def run_slurm(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_orch(root, *args, "--scheduler", "slurm", "--poll-secs", "1", timeout=timeout)


def test_campaign_end_to_end_respects_max_jobs(slurm_cluster, prefix, tmp_path):
    write_campaign(tmp_path, prefix=prefix, name=NAME, body="""
        for step in 1 2 3 4 5; do echo "iteration $step"; sleep 0.5; done
        echo "TRAINING DONE"
        """, grid="idx: [0, 1, 2, 3]")
    peak, stop = [0], threading.Event()

    def watch_queue() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], len(queue_names(prefix)))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_queue, daemon=True)
    watcher.start()
    try:
        result = run_slurm(tmp_path, "build-and-run", "campaign.yaml", "--max-jobs", "2")
    finally:
        stop.set()
        watcher.join(10)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 jobs: 4 done" in result.stdout
    assert peak[0] == 2  # the limit was reached and never passed
    assert submissions(tmp_path) == {f"{prefix}{i}": 1 for i in range(4)}
    assert {row["state"] for row in status(tmp_path).values()} == {"done"}


def test_sigkill_between_sbatch_and_id_write_never_submits_twice(slurm_cluster, prefix, tmp_path):
    # The submit command sleeps after sbatch: a kill then lands after the job exists and before its id is stored.
    write_campaign(tmp_path, prefix=prefix, name=NAME, body="""
        for step in $(seq 1 10); do echo "iteration $step"; sleep 0.5; done
        echo "TRAINING DONE"
        """, grid="idx: [0, 1]", cmd="echo {name} >> submissions.log && sbatch {sbatch_script} && sleep 4")
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    monitor = start_orch(tmp_path, "run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", "1")
    sigkill_when(monitor, lambda: f"{prefix}1" in queue_names(prefix), 40, what="the second job's sbatch")
    db = sqlite3.connect(campaign_state(tmp_path) / "state.db")  # the monitor is gone: the live store is free
    ids = dict(db.execute("SELECT job, scheduler_id FROM attempts"))
    db.close()  # an open connection would keep the next monitor out (it opens the store exclusively)
    assert ids[f"{prefix}1"] is None  # the intent was stored, the id never was
    assert ids[f"{prefix}0"] is not None
    resumed = run_slurm(tmp_path, "run", "campaign.yaml", timeout=90)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{prefix}1: adopted" in resumed.stdout
    assert submissions(tmp_path) == {f"{prefix}0": 1, f"{prefix}1": 1}


def test_controller_outage_resubmits_nothing(slurm_cluster, prefix, tmp_path):
    write_campaign(tmp_path, prefix=prefix, name=NAME, body="""
        for step in $(seq 1 25); do echo "iteration $step"; sleep 1; done
        echo "TRAINING DONE"
        """, grid="idx: [0, 1]", extra="freeze_secs: 60\n")
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    monitor = start_orch(tmp_path, "run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", "1")
    try:
        logs = [tmp_path / "logs" / f"{prefix}{i}.out" for i in (0, 1)]
        wait_for(lambda: console(tmp_path).count("-> running") == 2 and all(
            log.exists() and log.stat().st_size for log in logs), 40, what="both jobs running and writing")
        failures_before = console(tmp_path).count("scheduler query failed")
        slurm_cluster.control("stop-controller")
        try:
            wait_for(lambda: console(tmp_path).count("scheduler query failed") > failures_before, 40,
                     what="the monitor to notice")
            time.sleep(3)
        finally:
            slurm_cluster.control("start-controller")
        assert monitor.wait(90) == 0, console(tmp_path)
    finally:
        if monitor.poll() is None:
            monitor.kill()
    assert submissions(tmp_path) == {f"{prefix}0": 1, f"{prefix}1": 1}
    assert "nothing is resubmitted" in console(tmp_path)


def test_frozen_job_is_cancelled_and_resubmitted(slurm_cluster, prefix, tmp_path):
    write_campaign(tmp_path, prefix=prefix, name=NAME, body="""
        n=$(cat logs/{name}.count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > logs/{name}.count
        echo "attempt $n"
        if [ $n -eq 1 ]; then sleep 120; fi
        echo "TRAINING DONE"
        """, extra="freeze_secs: 3\n")
    result = run_slurm(tmp_path, "build-and-run", "campaign.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "frozen: no new output for 3s" in result.stdout
    assert submissions(tmp_path) == {f"{prefix}0": 2}


def test_clean_exit_resubmitted_until_done_and_crash_loop_stops(slurm_cluster, prefix, tmp_path):
    write_campaign(tmp_path, prefix=prefix, name="{prefix}{kind}", body="""
        if [ "{kind}" = crash ]; then echo "boom"; exit 3; fi
        n=$(cat logs/{name}.count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > logs/{name}.count
        echo "iteration $n"  # each attempt gets further: a continuation
        if [ $n -ge 3 ]; then echo "TRAINING DONE"; fi
        """, grid="kind: [resume, crash]", extra="max_failures: 2\n")
    result = run_slurm(tmp_path, "build-and-run", "campaign.yaml")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 jobs: 1 done, 1 failed, 0 abandoned" in result.stdout
    assert submissions(tmp_path) == {f"{prefix}resume": 3, f"{prefix}crash": 2}
    rows = status(tmp_path)
    assert rows[f"{prefix}crash"]["state"] == "failed"
    assert "2 failed attempts in a row" in rows[f"{prefix}crash"]["reason"]


def test_start_condition_orders_jobs_and_max_start_attempts_abandons(slurm_cluster, prefix, tmp_path):
    write_campaign(tmp_path, prefix=prefix, name="{prefix}{kind}", body="""
        echo "running {kind}"; sleep 1
        if [ "{kind}" = first ]; then touch logs/first.done; fi
        echo "TRAINING DONE"
        """, grid="""
        kind:
          - first: {start_condition_cmd: ""}
          - second: {start_condition_cmd: "test -e logs/first.done && echo 1 || echo 0"}
          - never: {start_condition_cmd: "echo 0"}
        """)
    # 10 checks, a second apart: room for `first` to be scheduled, run and end on a busy machine (with 4,
    # a slow scheduling pass once left `second` abandoned too).
    result = run_slurm(tmp_path, "build-and-run", "campaign.yaml", "--max-start-attempts", "10")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "3 jobs: 2 done, 0 failed, 1 abandoned" in result.stdout
    order = (tmp_path / "submissions.log").read_text().split()
    assert order == [f"{prefix}first", f"{prefix}second"]
    rows = status(tmp_path)
    assert rows[f"{prefix}never"]["state"] == "abandoned"
    assert "start condition not met after 10 tries" in rows[f"{prefix}never"]["reason"]


def test_jobs_submitted_before_orch_are_adopted_not_resubmitted(slurm_cluster, prefix, tmp_path):
    write_campaign(tmp_path, prefix=prefix, name=NAME, body="""
        for step in 1 2 3 4; do echo "iteration $step"; sleep 0.5; done
        echo "TRAINING DONE"
        """, grid="idx: [0, 1]")
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    # As an AutoExperiment run (or a lost .orch/) leaves it: a job in the queue, no store.
    sbatch = subprocess.run(["sbatch", f"scripts/{prefix}0.sbatch"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert sbatch.returncode == 0, sbatch.stderr
    outside_id = sbatch.stdout.split()[-1]
    result = run_slurm(tmp_path, "run", "campaign.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{prefix}0: adopted {outside_id}" in result.stdout
    assert submissions(tmp_path) == {f"{prefix}1": 1}
    assert status(tmp_path)[f"{prefix}0"]["scheduler_id"] == outside_id
