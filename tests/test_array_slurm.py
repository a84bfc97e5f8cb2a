"""Job arrays on the real Slurm test cluster (`job_array`): jobs ready together go to Slurm as `sbatch --array`, never
more tasks than its MaxArraySize (5 on the test cluster), counted against MaxSubmitJobs task by task as Slurm counts
them; each task is tracked once as `<array id>_<index>`, a failed task is resubmitted alone, a monitor killed during
the array's sbatch adopts its tasks, and `orch cancel` cancels one task.

Each job counts its runs in its own file: a task run twice, or a job run both as a task and alone, counts twice.
"""

from __future__ import annotations

import getpass
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from monitor_campaign import (campaign_state, console, run_orch, sigkill_when, start_orch, status, submissions, wait_for,
                              write_campaign)
from test_monitor_production import REQUEUE_AWARE, preempt

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# One line per run in logs/<name>.runs; job 3 fails its first run (a crash to resubmit), every other run succeeds.
BODY = """
    echo "run $SLURM_JOB_NAME $SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID" >> logs/{name}.runs
    if [ {idx} = 3 ] && [ $(wc -l < logs/{name}.runs) = 1 ]; then echo crashing; exit 1; fi
    sleep {secs}; echo "TRAINING DONE"
    """
# The same for every job (an array runs one command): each sbatch call is one line of submissions.log.
ARRAY_CMD = "echo submit >> submissions.log && sbatch {sbatch_script}"


def attempts(root: Path) -> list[tuple[str, str | None, int | None]]:
    """(job, scheduler id, array index) of every attempt, oldest first (read once the monitor has ended)."""
    db = sqlite3.connect(campaign_state(root) / "state.db")
    try:
        return db.execute("SELECT job, scheduler_id, array_index FROM attempts ORDER BY id").fetchall()
    finally:
        db.close()


def runs(root: Path, name: str) -> list[str]:
    path = root / "logs" / f"{name}.runs"
    return path.read_text().splitlines() if path.exists() else []


def accounted_tasks(ids: list[str]) -> dict[str, str]:
    """sacct's state of each of these ids (array tasks `N_i` included), once all have ended."""
    def rows() -> dict[str, str]:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(ids), "-o", "JobID,State"],
                             capture_output=True, text=True, timeout=60).stdout
        return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)

    return wait_for(lambda: (found := rows()) and set(ids) <= set(found) and all(
        state not in ("PENDING", "RUNNING") for state in found.values()) and found, 60, interval=1,
                    what="every submission ended in accounting")


def test_arrays_meet_max_array_size_and_max_submit_jobs_and_run_every_job_once(slurm_cluster, slurm_job_prefix,
                                                                                tmp_path):
    prefix = slurm_job_prefix
    write_campaign(tmp_path, prefix=prefix, name="{prefix}{idx}", cmd=ARRAY_CMD, grid="idx: [0, 1, 2, 3, 4, 5, 6, 7]",
                   body=BODY.replace("{secs}", "2"), extra="job_array: always\nmax_failures: 2\n")
    names = [f"{prefix}{i}" for i in range(8)]
    # 8 jobs, at most 5 tasks per array, and the user may have only 6 jobs (tasks) in the queue at once.
    slurm_cluster.sacctmgr("modify", "user", getpass.getuser(), "set", "MaxSubmitJobs=6")
    try:
        result = run_orch(tmp_path, "build-and-run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", "1",
                          timeout=300)
    finally:
        slurm_cluster.sacctmgr("modify", "user", getpass.getuser(), "set", "MaxSubmitJobs=-1")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    rows = attempts(tmp_path)
    # Two arrays of 4 (8 ready jobs, evenly by MaxArraySize 5); the second, with the first queued, would pass
    # MaxSubmitJobs: Slurm refuses it whole, and its jobs go one by one up to the limit, then as slots free.
    first = re.search(r"submitted (\d+)_0 \(.*\) as task 0 of array \1 \(4 tasks\)", out)
    assert first, out[-4000:]
    assert [(job, sid) for job, sid, index in rows[:4]] == [(names[i], f"{first.group(1)}_{i}") for i in range(4)]
    assert "of 4 jobs refused for a queue limit" in out and "AssocMaxSubmitJobLimit" in out, out[-4000:]
    assert all(index is None or index < 5 for _, _, index in rows)
    # Every job ran once, job 3 twice: its crash was resubmitted alone, its array-mates never ran again.
    for i, name in enumerate(names):
        assert len(runs(tmp_path, name)) == (2 if i == 3 else 1), (name, runs(tmp_path, name))
    retried = [sid for job, sid, _ in rows if job == names[3]]
    assert len(retried) == 2 and not retried[1].startswith(first.group(1)), retried
    # Nothing failed for a limit: each job done; sacct has each recorded submission, all COMPLETED but the crash.
    states = status(tmp_path)
    assert all(states[name]["state"] == "done" for name in names), states
    accounted = accounted_tasks([sid for _, sid, _ in rows])
    assert len(accounted) == len(rows) and sorted(accounted.values()) == ["COMPLETED"] * (len(rows) - 1) + ["FAILED"]


def queued_arrays(prefix: str) -> list[str]:
    """This test's arrays in the queue (an array is named after its first job: `orch-array-<hex>-<job>`)."""
    listed = subprocess.run(["squeue", "--me", "-h", "-o", "%i|%j"], capture_output=True, text=True, timeout=30).stdout
    return [line for line in listed.splitlines() if "|orch-array-" in line and prefix in line]


def test_kill_9_during_the_array_sbatch_adopts_its_tasks_and_cancel_takes_one(slurm_cluster, slurm_job_prefix,
                                                                              tmp_path):
    prefix = slurm_job_prefix
    # The submit command sleeps after sbatch: a kill then lands after the array exists, before its ids are stored.
    write_campaign(tmp_path, prefix=prefix, name="{prefix}{idx}", cmd=ARRAY_CMD + " && sleep 5", grid="idx: [0, 1, 2]",
                   body=BODY.replace("{secs}", "15"), extra="job_array: always\n")
    names = [f"{prefix}{i}" for i in range(3)]
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    monitor = start_orch(tmp_path, "run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", "1")
    sigkill_when(monitor, lambda: submissions(tmp_path)["submit"] == 1 and queued_arrays(prefix), 60,
                 what="the array's sbatch")
    rows = attempts(tmp_path)
    assert [(job, sid, index) for job, sid, index in rows] == [(name, None, i) for i, name in enumerate(names)]
    monitor = start_orch(tmp_path, "run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", "1")
    try:
        adopted = wait_for(lambda: len(re.findall(r"adopted (\d+_\d) \(", (tmp_path / "orch-console.log").read_text()))
                           == 3, 60, what="the three tasks adopted")
        assert adopted
        # Cancel one task while it runs: only that task ends CANCELLED, its array-mates run on.
        wait_for(lambda: runs(tmp_path, names[1]), 60, what="task 1 running")
        cancelled = run_orch(tmp_path, "cancel", "campaign.yaml", "idx=1", timeout=120)
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        monitor.wait(120)
    finally:
        if monitor.poll() is None:
            monitor.kill()
    rows = attempts(tmp_path)
    ids = [sid for _, sid, _ in rows]
    array_id = ids[0].split("_")[0]
    assert ids == [f"{array_id}_{i}" for i in range(3)]  # the intents were filled with their tasks, nothing more
    assert submissions(tmp_path)["submit"] == 1
    accounted = accounted_tasks(ids)
    assert accounted[f"{array_id}_1"].startswith("CANCELLED")
    assert accounted[f"{array_id}_0"] == accounted[f"{array_id}_2"] == "COMPLETED"
    states = status(tmp_path)
    assert [states[name]["state"] for name in names] == ["done", "cancelled", "done"]
    assert all(len(runs(tmp_path, name)) == 1 for name in names)


def test_preempted_tasks_are_requeued_under_their_task_ids_and_run_on(slurm_cluster, slurm_job_prefix, tmp_path):
    """Partition `low` requeues what a `high` job preempts: each task comes back under its own `<array id>_<index>`,
    which the monitor keeps watching (no resubmission, no failure), and finishes on its second run."""
    prefix = slurm_job_prefix
    write_campaign(tmp_path, prefix=prefix, name="{prefix}{idx}", cmd=ARRAY_CMD, grid="idx: [0, 1]",
                   body="#SBATCH --partition=low\n" + REQUEUE_AWARE,
                   extra="job_array: always\nfreeze_secs: 3\nmax_failures: 1\n")
    names = [f"{prefix}{i}" for i in range(2)]
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    monitor = start_orch(tmp_path, "run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", "1")
    try:
        wait_for(lambda: len(re.findall(r"queued -> running: \d+_\d is RUNNING", console(tmp_path))) == 2, 60,
                 what="both tasks running")
        preempt(prefix)
        assert monitor.wait(180) == 0, console(tmp_path)[-3000:]
    finally:
        if monitor.poll() is None:
            monitor.kill()
    rows = attempts(tmp_path)
    array_id = rows[0][1].split("_")[0]
    assert rows == [(names[0], f"{array_id}_0", 0), (names[1], f"{array_id}_1", 1)]  # never resubmitted
    assert submissions(tmp_path)["submit"] == 1
    for index, name in enumerate(names):
        assert f"{array_id}_{index} runs again under the same id" in console(tmp_path)
        log = (tmp_path / "logs" / f"{name}.out").read_text()
        assert "first run" in log and "resumed after requeue" in log
    # Slurm's own line about the preemption goes to the batch step's output: the array's log, not the job's.
    array_log = next((campaign_state(tmp_path) / "arrays").glob("*.out")).read_text()
    assert array_log.count("DUE TO PREEMPTION") == 2
    assert set(accounted_tasks([row[1] for row in rows]).values()) == {"COMPLETED"}
