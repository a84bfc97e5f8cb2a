"""`orch run --once`: one monitor cycle per call, from cron or scrontab; ticks never overlap a monitor or each other."""

from __future__ import annotations

import time

import pytest

from monitor_campaign import campaign_state, console, run_orch, start_orch, status, submissions, wait_for, write_campaign

pytestmark = pytest.mark.slow


def test_a_loop_of_ticks_finishes_the_campaign_with_each_job_once(tmp_path):
    prefix = write_campaign(tmp_path, """
        echo "iteration 1"; sleep 1; echo "TRAINING DONE"
        """, grid="idx: [0, 1, 2]")
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    ticks = 0
    while ticks < 40:
        tick = run_orch(tmp_path, "run", "campaign.yaml", "--once", "--scheduler", "local", "--max-jobs", "2")
        assert tick.returncode == 0, tick.stdout + tick.stderr
        ticks += 1
        if "3 jobs: 3 done" in tick.stdout:
            break
        time.sleep(0.5)
    rows = status(tmp_path)
    assert {row["state"] for row in rows.values()} == {"done"}, rows
    assert [rows[f"{prefix}_{i}"]["attempts"] for i in range(3)] == [1, 1, 1]
    assert ticks >= 3  # --max-jobs 2: the third job waited for a later tick
    assert not (campaign_state(tmp_path) / "monitor.lease").exists()  # every tick released it
    # A tick of a finished campaign submits nothing and re-runs no termination check of a done job.
    again = run_orch(tmp_path, "run", "campaign.yaml", "--once", "--scheduler", "local")
    assert again.returncode == 0 and "submitted" not in again.stdout
    assert [status(tmp_path)[f"{prefix}_{i}"]["attempts"] for i in range(3)] == [1, 1, 1]


def test_a_tick_never_overlaps_a_running_monitor(tmp_path):
    prefix = write_campaign(tmp_path, """
        echo "iteration 1"; sleep 20; echo "TRAINING DONE"
        """)
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    monitor = start_orch(tmp_path, "run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.3")
    try:
        wait_for(lambda: "-> running" in console(tmp_path), 30, what="job running")
        tick = run_orch(tmp_path, "run", "campaign.yaml", "--once", "--scheduler", "local")
        assert tick.returncode == 0 and "tick skipped" in tick.stderr, tick.stderr
        assert status(tmp_path)[f"{prefix}_0"]["attempts"] == 1
    finally:
        monitor.terminate()
        monitor.wait(30)


def test_cron_lines_run_the_tick_from_the_campaign_folder(tmp_path):
    write_campaign(tmp_path, "echo hi\n")
    result = run_orch(tmp_path, "cron", "campaign.yaml", "--every", "2")
    assert result.returncode == 0
    lines = [line for line in result.stdout.splitlines() if line.startswith("*/2 * * * * ")]
    assert len(lines) == 2 and f"cd {tmp_path} && " in lines[0]
    assert "run" in lines[0] and f"{tmp_path}/campaign.yaml --once --yes" in lines[0] and "ticks.log" in lines[0]
    assert "#SCRON --job-name=orch-campaign-" in result.stdout
    assert run_orch(tmp_path, "cron", "campaign.yaml", "--every", "90").returncode == 2


@pytest.mark.slurm
def test_ticks_finish_a_campaign_on_real_slurm_with_each_job_submitted_once(slurm_cluster, slurm_job_prefix, tmp_path):
    prefix = write_campaign(tmp_path, """
        echo "iteration 1"; sleep 3; echo "TRAINING DONE"
        """, grid="idx: [0, 1, 2]", prefix=slurm_job_prefix + "tick")
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        tick = run_orch(tmp_path, "run", "campaign.yaml", "--once", "--yes", "--scheduler", "slurm", "--max-jobs", "2")
        assert tick.returncode == 0, tick.stdout + tick.stderr
        if "3 jobs: 3 done" in tick.stdout:
            break
        time.sleep(1)
    rows = status(tmp_path)
    assert {row["state"] for row in rows.values()} == {"done"}, rows
    assert submissions(tmp_path) == {f"{prefix}_{i}": 1 for i in range(3)}  # real sbatch calls, each once
