"""Two login nodes over one shared campaign folder, emulated on one machine.

The campaign folder keeps one absolute path everywhere, as on a cluster: in this (the "compute") mount namespace
it is a bind mount of the real folder; each login node is its own mount + UTS namespace with its own host name,
where that path is replaced by a separate bindfs (FUSE) mount of the real folder, with its own caches and
node-local locks (like Lustre `localflock` or BeeGFS's default).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from monitor_campaign import orch_command, status, submissions, wait_for, write_campaign

LONG = """
for step in $(seq 1 12); do echo "iteration $step"; sleep 0.5; done
echo "TRAINING DONE"
"""

if shutil.which("bindfs") is None or shutil.which("unshare") is None or os.geteuid() != 0:
    if os.environ.get("CI"):
        raise RuntimeError("bindfs, unshare and root are needed: `make test` installs bindfs (scripts/install-test-tools.sh)")
    pytest.skip("bindfs/unshare/root missing (make test installs bindfs)", allow_module_level=True)


@pytest.fixture
def shared(tmp_path):
    back, folder = tmp_path / "back", tmp_path / "campaign"
    back.mkdir()
    folder.mkdir()
    subprocess.run(["mount", "--bind", str(back), str(folder)], check=True)
    try:
        yield back, folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def on_login_node(host: str, back: Path, folder: Path, command: list[str]) -> list[str]:
    """`command` run on login node `host`: its own namespaces and its own FUSE mount of the campaign folder."""
    script = (f"hostname {host} && umount -l {folder} && (bindfs -f {back} {folder} & echo $! > {back}/.bindfs-{host}) "
              f"&& for i in $(seq 50); do mountpoint -q {folder} && break; sleep 0.1; done && cd {folder} && "
              f"{shlex.join(command)}; rc=$?; cd /; fusermount -u {folder}; exit $rc")
    return ["unshare", "--mount", "--uts", "--propagation", "private", "bash", "-c", script]


def built_campaign(folder: Path, grid: str, prefix: str | None = None) -> str:
    """The campaign written and built in the shared folder; returns its job-name prefix."""
    name = "{prefix}{idx}" if prefix else "{prefix}_{idx}"
    prefix = write_campaign(folder, LONG, grid=grid, prefix=prefix, name=name)
    assert subprocess.run(orch_command("build", "campaign.yaml"), cwd=folder, capture_output=True).returncode == 0
    return prefix


def test_a_second_login_node_is_refused_and_reads_status_safely_while_the_first_runs(shared):
    back, folder = shared
    prefix = built_campaign(folder, "idx: [0, 1]")
    run = orch_command("run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.5")
    first = subprocess.Popen(on_login_node("login1", back, folder, run), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: any((back / ".orch" / "campaigns").glob("*/monitor.lease")) if (back / ".orch").exists()
                 else False, 60, what="login1's monitor to take the lease")
        second = subprocess.run(on_login_node("login2", back, folder, run), capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        refusal = [line for line in second.stderr.splitlines() if "another monitor holds this campaign" in line]
        assert len(refusal) == 1 and "login1 pid" in refusal[0] and "Traceback" not in second.stderr
        polls = []
        status = orch_command("status", "campaign.yaml", "--json")
        while first.poll() is None and len(polls) < 6:
            polled = subprocess.run(on_login_node("login2", back, folder, status), capture_output=True, text=True,
                                    timeout=120)
            assert polled.returncode == 0, polled.stderr
            polls.append(polled.stdout)
            time.sleep(0.5)
        assert polls and all(prefix in text for text in polls)
        assert first.wait(120) == 0
    finally:
        if first.poll() is None:
            first.kill()
    output = first.stdout.read()
    assert "2 jobs: 2 done" in output, output
    # Nothing lost and nothing doubled: the store, read here, is whole and has one attempt per job.
    (state,) = (back / ".orch" / "campaigns").glob("*/state.db")
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert dict(db.execute("SELECT job, COUNT(*) FROM attempts GROUP BY job")) == {f"{prefix}_0": 1, f"{prefix}_1": 1}
        assert {row[0] for row in db.execute("SELECT state FROM jobs")} == {"done"}
    finally:
        db.close()
    after = subprocess.run(on_login_node("login2", back, folder, orch_command("status", "campaign.yaml")),
                           capture_output=True, text=True, timeout=120)
    assert after.returncode == 0 and after.stdout.count("done") >= 2


@pytest.mark.slurm
def test_the_first_login_node_lost_mid_campaign_the_second_finishes_it_with_every_job_once(shared, slurm_job_prefix):
    back, folder = shared
    prefix = built_campaign(folder, "idx: [0, 1, 2]", slurm_job_prefix)
    run = orch_command("run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", "1", "--max-jobs", "2")
    first = subprocess.Popen(on_login_node("login1", back, folder, run), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: len(submissions(back)) == 2, 90, what="login1 to submit two jobs")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the node is gone: its monitor, its FUSE mount, everything on it
        first.wait(30)
    # login2 cannot tell a dead node from a slow one before the lease's TTL: a person says so with `orch unlock`.
    unlock = subprocess.run(on_login_node("login2", back, folder, orch_command("unlock", "campaign.yaml")),
                            capture_output=True, text=True, timeout=120)
    assert unlock.returncode == 0 and "login1" in unlock.stdout + unlock.stderr, unlock.stdout + unlock.stderr
    finish = subprocess.run(on_login_node("login2", back, folder, run), capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stdout + finish.stderr
    assert "3 jobs: 3 done" in finish.stdout
    # The two that ran on when login1 died were followed to their end, not resubmitted; the third submitted once.
    assert submissions(back) == {f"{prefix}{i}": 1 for i in range(3)}
    assert {name: row["attempts"] for name, row in status(folder).items()} == {f"{prefix}{i}": 1 for i in range(3)}


@pytest.mark.slurm
def test_a_monitor_paused_on_one_login_node_and_replaced_on_another_is_fenced(shared, slurm_job_prefix):
    back, folder = shared
    prefix = built_campaign(folder, "idx: [0, 1]", slurm_job_prefix)
    run = orch_command("run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", "0.5", "--max-jobs", "1")
    first = subprocess.Popen(on_login_node("login1", back, folder, run), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    second = None
    try:
        wait_for(lambda: len(submissions(back)) == 1, 90, what="login1 to submit the first job")
        os.killpg(first.pid, signal.SIGSTOP)  # paused (a hung file system, a stopped VM): its lease goes stale
        unlock = subprocess.run(on_login_node("login2", back, folder, orch_command("unlock", "campaign.yaml")),
                                capture_output=True, text=True, timeout=120)
        assert unlock.returncode == 0, unlock.stdout + unlock.stderr
        second = subprocess.Popen(on_login_node("login2", back, folder, run), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
        wait_for(lambda: (back / ".orch").exists() and "login2" in " ".join(
            p.read_text() for p in (back / ".orch" / "campaigns").glob("*/monitor.lease")), 60,
            what="login2 to take the lease")
        os.killpg(first.pid, signal.SIGCONT)
        assert first.wait(120) == 3  # fenced: it found the lease gone, did nothing more and stopped
        assert second.wait(300) == 0
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGCONT)
                os.killpg(process.pid, signal.SIGKILL)
    assert "lost the campaign's lease" in first.stdout.read()
    assert "2 jobs: 2 done" in second.stdout.read()
    assert submissions(back) == {f"{prefix}0": 1, f"{prefix}1": 1}  # neither monitor submitted anything twice
