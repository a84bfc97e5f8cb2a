"""`orch run` end to end on the local backend (real processes, no Slurm): the CLI, the store, the lock, signals."""

from __future__ import annotations

import signal

import pytest

from monitor_campaign import campaign_state, console, run_orch, start_orch, status, wait_for, write_campaign

pytestmark = pytest.mark.slow

STEPS = """
for step in 1 2 3; do echo "iteration $step"; sleep 0.2; done
echo "TRAINING DONE"
"""


def test_small_campaign_end_to_end(tmp_path):
    prefix = write_campaign(tmp_path, STEPS, grid="idx: [0, 1, 2]")
    result = run_orch(tmp_path, "build-and-run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 jobs: 3 done, 0 failed, 0 abandoned" in result.stdout
    rows = status(tmp_path)
    assert {row["state"] for row in rows.values()} == {"done"}
    assert [rows[f"{prefix}_{i}"]["attempts"] for i in range(3)] == [1, 1, 1]
    assert rows[f"{prefix}_0"]["last_line"] == "TRAINING DONE"
    table = run_orch(tmp_path, "status", "campaign.yaml")
    assert table.returncode == 0
    assert all(f"{prefix}_{i}" in table.stdout for i in range(3))  # names are never cut
    log = (campaign_state(tmp_path) / "monitor.log").read_text()
    assert log.count("submitted") == 3 and "running -> done" in log
    # A second run finds everything done and submits nothing.
    again = run_orch(tmp_path, "run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.3")
    assert again.returncode == 0 and "submitted" not in again.stdout
    assert [row["attempts"] for row in status(tmp_path).values()] == [1, 1, 1]


def test_dry_run_submits_nothing(tmp_path):
    write_campaign(tmp_path, STEPS, grid="idx: [0, 1]")
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    result = run_orch(tmp_path, "run", "campaign.yaml", "--dry", "--scheduler", "local")
    assert result.returncode == 0
    assert "2 of 2 jobs would be submitted" in result.stdout
    limited = run_orch(tmp_path, "run", "campaign.yaml", "--dry", "--max-jobs", "1", "--scheduler", "local")
    assert "1 of 2 jobs would be submitted" in limited.stdout and "waits for a free slot" in limited.stdout
    assert not (campaign_state(tmp_path) / "state.db").exists()


def test_dry_run_says_which_scripts_are_not_built(tmp_path):
    write_campaign(tmp_path, STEPS, grid="idx: [0, 1]")
    result = run_orch(tmp_path, "run", "campaign.yaml", "--dry", "--scheduler", "local")
    assert result.returncode == 0
    assert "2 of 2 script(s) not built yet: `orch build` first" in result.stdout
    assert result.stdout.count("would submit after `orch build`:") == 2
    assert "2 of 2 jobs would be submitted now (2 of them once built)" in result.stdout
    assert not (tmp_path / "scripts").exists()


def test_auto_with_a_slurm_that_does_not_answer_stops_at_once(tmp_path):
    """sbatch is on PATH (the test cluster's client) but its controller cannot be reached: say so, do not back off."""
    import os
    import shutil
    import subprocess

    from monitor_campaign import orch_command

    assert shutil.which("sbatch"), "make test installs the Slurm client"
    write_campaign(tmp_path, STEPS)
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    env = {**os.environ, "SLURM_CONF": str(tmp_path / "no-such-slurm.conf")}
    # Without a config Slurm's clients look for the controller in DNS SRV records first: measured here, squeue then
    # takes 59 s to give up, and orch's own command timeout is 60 s.
    result = subprocess.run(orch_command("run", "campaign.yaml", "--yes"), cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--scheduler auto chose slurm (sbatch is on PATH) but it does not answer" in result.stderr
    assert "--scheduler local" in result.stderr
    assert not (campaign_state(tmp_path) / "state.db").exists()


def test_run_without_built_scripts_is_a_user_error(tmp_path):
    write_campaign(tmp_path, STEPS)
    result = run_orch(tmp_path, "run", "campaign.yaml", "--scheduler", "local")
    assert result.returncode == 2
    assert "orch build" in result.stderr and "Traceback" not in result.stderr


def test_second_monitor_refused_then_sigterm_and_readoption(tmp_path):
    prefix = write_campaign(tmp_path, """
        for step in $(seq 1 30); do echo "iteration $step"; sleep 0.2; done
        echo "TRAINING DONE"
        """, grid="idx: [0, 1]")
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    first = start_orch(tmp_path, "run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.3")
    try:
        wait_for(lambda: console(tmp_path).count("-> running") == 2, 30, what="both jobs running")
        second = run_orch(tmp_path, "run", "campaign.yaml", "--scheduler", "local")
        assert second.returncode == 2
        assert "already monitoring" in second.stderr and len(second.stderr.strip().splitlines()) == 1
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 128 + signal.SIGTERM
    finally:
        if first.poll() is None:
            first.kill()
    assert "re-adopted by the next `orch run`" in console(tmp_path)
    assert {row["state"] for row in status(tmp_path).values()} == {"running"}  # jobs kept running
    resumed = run_orch(tmp_path, "run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.3", timeout=90)
    assert resumed.returncode == 0, resumed.stdout
    assert "submitted" not in resumed.stdout
    rows = status(tmp_path)
    assert [rows[f"{prefix}_{i}"]["attempts"] for i in (0, 1)] == [1, 1]


def test_resubmitted_until_done_and_crash_loop_gives_up(tmp_path):
    prefix = write_campaign(tmp_path, """
        if [ "{kind}" = crash ]; then echo "boom"; exit 3; fi
        n=$(cat logs/{name}.count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > logs/{name}.count
        echo "iteration $n"
        if [ $n -ge 3 ]; then echo "TRAINING DONE"; fi
        """, grid="kind: [resume, crash]", name="{prefix}_{kind}", extra="max_failures: 2\n")
    result = run_orch(tmp_path, "build-and-run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.3")
    assert result.returncode == 1, result.stdout
    assert "2 jobs: 1 done, 1 failed, 0 abandoned" in result.stdout
    rows = status(tmp_path)
    assert rows[f"{prefix}_resume"]["state"] == "done" and rows[f"{prefix}_resume"]["attempts"] == 3
    assert rows[f"{prefix}_crash"]["state"] == "failed" and rows[f"{prefix}_crash"]["attempts"] == 2


def test_a_job_that_completes_without_its_termination_rule_is_not_resubmitted_forever(tmp_path):
    """A finished training whose termination rule never matches (a typo'd termination_str, a wrong message):
    every attempt loads the last checkpoint and exits 0 at the same iteration. Bounded like a crash loop."""
    prefix = write_campaign(tmp_path, """
        echo "loading checkpoint at iteration 800"; echo " iteration      800/     800 | lm loss: 1.9"
        echo "training already finished"
        """, extra="max_failures: 3\n")
    result = run_orch(tmp_path, "build-and-run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.3")
    assert result.returncode == 1, result.stdout
    assert "no progress since the previous attempt" in result.stdout and "1 failed" in result.stdout
    # The first attempt got from nothing to iteration 800; the next three got nowhere.
    assert status(tmp_path)[f"{prefix}_0"]["attempts"] == 4


def test_cancel_is_durable_across_restarts_until_retried(tmp_path):
    prefix = write_campaign(tmp_path, """
        echo "started"; sleep 120
        """)
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    monitor = start_orch(tmp_path, "run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.3")
    try:
        wait_for(lambda: "-> running" in console(tmp_path), 30, what="job running")
        # No --scheduler: the campaign's monitor submitted to the local backend, and cancel knows it.
        cancelled = run_orch(tmp_path, "cancel", "campaign.yaml")
        assert cancelled.returncode == 0 and "1 submissions cancelled in local" in cancelled.stdout, cancelled.stdout
        assert monitor.wait(30) == 0  # not resubmitted; a user's cancel is not a failure of the campaign
    finally:
        if monitor.poll() is None:
            monitor.kill()
    row = status(tmp_path)[f"{prefix}_0"]
    assert row["state"] == "cancelled" and row["attempts"] == 1
    assert row["reason"].startswith("cancelled by ") and "@" in row["reason"]  # who, where and when
    # A restart (a login-node reboot) leaves it cancelled: nothing would be submitted, nothing is.
    dry = run_orch(tmp_path, "run", "campaign.yaml", "--dry")
    assert "stays cancelled" in dry.stdout and "0 of 1 jobs would be submitted" in dry.stdout
    again = run_orch(tmp_path, "run", "campaign.yaml", "--poll-secs", "0.3")
    assert again.returncode == 0 and "submitted" not in again.stdout and "1 cancelled by the user" in again.stdout
    assert status(tmp_path)[f"{prefix}_0"]["attempts"] == 1
    # Until the user says otherwise.
    retry = run_orch(tmp_path, "run", "campaign.yaml", "--dry", "--retry-cancelled")
    assert "1 of 1 jobs would be submitted" in retry.stdout


def test_status_before_any_run(tmp_path):
    prefix = write_campaign(tmp_path, STEPS, grid="idx: [0, 1]")
    rows = status(tmp_path)
    assert {name: row["state"] for name, row in rows.items()} == {f"{prefix}_0": "waiting", f"{prefix}_1": "waiting"}
    assert "no monitor has run here yet" in run_orch(tmp_path, "status", "campaign.yaml").stdout
    assert not (tmp_path / ".orch").exists()  # status writes nothing
