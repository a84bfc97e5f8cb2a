"""One monitor per campaign whatever the host: the lease (state/lease.py), its takeover, fencing and `orch unlock`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import UserError
from orchestrator.jobs import Job
from orchestrator.monitor.loop import FENCED_EXIT, Monitor, MonitorOptions
from orchestrator.scheduler.base import Observation
from orchestrator.state import StateStore
from orchestrator.state.lease import LEASE_NAME, Identity, MonitorLease, break_lease, read_holder

HERE = Identity.here()
OTHER_HOST = Identity("login2", 4242, "another-boot")


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_monitor_on_another_host_is_refused_naming_the_holder(tmp_path):
    clock = Clock()
    first = MonitorLease.acquire(tmp_path, me=OTHER_HOST, clock=clock)
    clock.now += 42
    with pytest.raises(UserError) as refused:
        MonitorLease.acquire(tmp_path, me=HERE, clock=clock)
    assert "another monitor holds this campaign: login2 pid 4242 (heartbeat 42s ago, generation 1)" in str(refused.value)
    assert first.still_held()


def test_the_lease_is_a_whole_file_with_host_pid_boot_token_generation(tmp_path):
    lease = MonitorLease.acquire(tmp_path)
    data = json.loads((tmp_path / LEASE_NAME).read_text())
    assert set(data) == {"host", "pid", "boot_id", "token", "generation", "heartbeat", "slurm_job"}
    assert data["slurm_job"] == os.environ.get("SLURM_JOB_ID", "")  # set inside a Slurm job (a monitor job)
    assert (data["host"], data["pid"], data["generation"]) == (HERE.host, os.getpid(), 1) and len(data["token"]) == 32
    assert not [p for p in tmp_path.iterdir() if p.name != LEASE_NAME]  # no temporary file left behind
    lease.release()
    assert not (tmp_path / LEASE_NAME).exists()


def test_a_stale_lease_is_taken_over_after_the_ttl_and_its_holder_is_fenced(tmp_path):
    clock = Clock()
    paused = MonitorLease.acquire(tmp_path, ttl=600, me=OTHER_HOST, clock=clock)
    clock.now += 599
    with pytest.raises(UserError):
        MonitorLease.acquire(tmp_path, ttl=600, me=HERE, clock=clock)
    clock.now += 2  # the holder was paused past the TTL
    successor = MonitorLease.acquire(tmp_path, ttl=600, me=HERE, clock=clock)
    assert successor.holder.generation == 2 and "login2 pid 4242" in successor.took_over and "TTL 600s" in successor.took_over
    # The paused monitor resumes: it may not renew, submit or cancel.
    assert not paused.still_held() and not paused.heartbeat()
    assert read_holder(tmp_path / LEASE_NAME).token == successor.holder.token


def test_a_dead_holder_on_this_host_is_taken_over_at_once(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = Identity(HERE.host, int(dead.stdout), HERE.boot_id)
    MonitorLease.acquire(tmp_path, me=gone)
    lease = MonitorLease.acquire(tmp_path)
    assert "is gone" in lease.took_over and lease.holder.generation == 2
    rebooted = Identity(HERE.host, os.getpid(), "a boot before the last reboot")
    (tmp_path / LEASE_NAME).unlink()
    MonitorLease.acquire(tmp_path, me=rebooted)
    assert "rebooted since" in MonitorLease.acquire(tmp_path).took_over


def test_unlock_breaks_the_lease_and_says_whose(tmp_path):
    MonitorLease.acquire(tmp_path, me=OTHER_HOST)
    assert break_lease(tmp_path).startswith("login2 pid 4242")
    assert break_lease(tmp_path) == ""
    MonitorLease.acquire(tmp_path)  # at once, no TTL to wait


class CountingScheduler:
    name = "fake"

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, job: Job, exclude=()) -> str:
        self.submitted.append(job.name)
        return str(100 + len(self.submitted))

    def query(self, ids, names) -> dict[str, Observation]:
        return {}

    def cancel(self, ids) -> None:
        raise AssertionError("nothing to cancel here")


def test_a_fenced_monitor_submits_nothing_and_stops(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jobs = [Job(f"j{i}", "t", f"j{i}.sbatch", f"j{i}.out", "sbatch", {}, check_interval_secs=1) for i in range(3)]
    for job in jobs:
        Path(job.sbatch_script).write_text("#!/bin/bash\n")
    lease = MonitorLease.acquire(tmp_path / "state")
    scheduler = CountingScheduler()
    monitor = Monitor(jobs, scheduler, StateStore.open(tmp_path / "state"), MonitorOptions(poll_secs=0.01, max_jobs=1),
                      lease=lease)
    monitor.start()
    monitor.cycle()
    assert scheduler.submitted == ["j0"]
    break_lease(tmp_path / "state")  # `orch unlock` from another login node, or a takeover after the TTL
    MonitorLease.acquire(tmp_path / "state", me=OTHER_HOST)
    assert monitor.run() == FENCED_EXIT and monitor.fenced
    assert scheduler.submitted == ["j0"]
    assert read_holder(tmp_path / "state" / LEASE_NAME).host == "login2"  # the fenced monitor leaves it alone


def test_orch_run_refuses_while_another_host_monitors_and_unlock_frees_it(tmp_path):
    (tmp_path / "job.sbatch").write_text("#!/bin/bash\n#SBATCH --job-name={name}\necho 'TRAINING DONE'\n")
    (tmp_path / "c.yaml").write_text('template: job.sbatch\nname: "j{idx}"\nsbatch_script: "s/{name}.sbatch"\n'
                                     'output_file: "s/{name}.out"\ncmd: "sbatch {sbatch_script}"\n'
                                     'termination_str: "TRAINING DONE"\ncheck_interval_secs: 1\nidx: [0]\n')

    def orch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)

    assert orch("build", "c.yaml").returncode == 0
    from orchestrator.state.campaign import campaign_dir

    MonitorLease.acquire(campaign_dir(tmp_path / "c.yaml", tmp_path), me=OTHER_HOST)
    refused = orch("run", "c.yaml", "--scheduler", "local", "--poll-secs", "0.2")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "another monitor holds this campaign: login2 pid 4242" in refused.stderr
    assert "monitor: login2 pid 4242" in orch("status", "c.yaml").stdout
    unlocked = orch("unlock", "c.yaml")
    assert unlocked.returncode == 0 and "broke the monitor lease of login2 pid 4242" in unlocked.stdout
    ran = orch("run", "c.yaml", "--scheduler", "local", "--poll-secs", "0.2")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert not (campaign_dir(tmp_path / "c.yaml", tmp_path) / LEASE_NAME).exists()  # released at the end
    assert "no monitor running" in orch("status", "c.yaml").stdout
