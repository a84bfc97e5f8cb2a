"""The spend ledger and provenance on the real test cluster (accounting via slurmdbd, 8 GPUs per node declared)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from monitor_campaign import campaign_state, run_orch, start_orch, status, wait_for, write_campaign
from orchestrator.state import StateStore

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SHORT = """
    sleep 3
    echo "TRAINING DONE"
    """


def test_ledger_takes_elapsed_and_gpus_from_slurm_accounting(tmp_path: Path, slurm_job_prefix: str) -> None:
    write_campaign(tmp_path, SHORT, name="{prefix}{idx}", grid="idx: [0, 1]", prefix=slurm_job_prefix,
                   cmd="sbatch {sbatch_script}")
    template = tmp_path / "job.sbatch"
    template.write_text(template.read_text().replace("#SBATCH --ntasks=1", "#SBATCH --ntasks=1\n#SBATCH --gres=gpu:2"))
    # Poll rarely: each job starts and ends between two polls, so its time can only come from Slurm's record.
    done = run_orch(tmp_path, "build-and-run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", "8", timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = status(tmp_path)
    for index in range(2):
        row = rows[f"{slurm_job_prefix}{index}"]
        assert 3 <= row["runtime_secs"] <= 8, row
        # 2 GPUs from sacct's AllocTRES (gres/gpu=2) x the elapsed seconds from ElapsedRaw.
        assert row["gpu_hours_spent"] == pytest.approx(2 * row["runtime_secs"] / 3600, abs=1e-4)
        assert row["gpu_hours_wasted"] == 0
    store = StateStore.open(campaign_state(tmp_path))
    attempts = store.attempts()
    store.close()
    assert all(a.gpus == 2 and a.estimate_gpus == 2 and a.estimate_hours == 0.05 for a in attempts)
    payload = json.loads(run_orch(tmp_path, "status", "campaign.yaml", "--json").stdout)
    assert payload["totals"]["gpu_hours_spent"] == pytest.approx(sum(r["gpu_hours_spent"] for r in rows.values()), abs=1e-3)


def test_provenance_is_committed_before_the_submit_command_runs(tmp_path: Path, slurm_job_prefix: str) -> None:
    """kill -9 of the monitor while its submit command runs: the intent already says what was submitted."""
    write_campaign(tmp_path, SHORT, name="{prefix}{idx}", prefix=slurm_job_prefix,
                   cmd="touch submitting && sleep 30 && exit 1")
    assert run_orch(tmp_path, "build", "campaign.yaml", "-f", "note=text").returncode == 0
    monitor = start_orch(tmp_path, "run", "campaign.yaml", "-f", "note=text", "--scheduler", "slurm", "--poll-secs", "1")
    try:
        wait_for(lambda: (tmp_path / "submitting").exists(), timeout=60, what="the submit command to start")
    finally:
        monitor.send_signal(signal.SIGKILL)
        monitor.wait(timeout=30)
    history = run_orch(tmp_path, "status", "campaign.yaml", "-f", "note=text", "--history", f"{slurm_job_prefix}0").stdout
    assert "intent (no id yet)" in history
    assert f"config_path: {tmp_path / 'campaign.yaml'}" in history and "fixes: ['note=text']" in history
    digest = next(line.split(": ")[1] for line in history.splitlines() if "script_sha256" in line)
    kept = campaign_state(tmp_path) / "scripts" / f"{digest}.sbatch"
    assert kept.read_bytes() == (tmp_path / "scripts" / f"{slurm_job_prefix}0.sbatch").read_bytes()
