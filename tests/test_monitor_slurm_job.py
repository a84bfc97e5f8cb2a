"""`orch run --as-slurm-job`: the monitor as a chain of real Slurm jobs on the test cluster, handing over to
each other (--dependency=singleton), every campaign job submitted once; and the checks before any of it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from monitor_campaign import campaign_state, run_orch, status, submissions, wait_for, write_campaign
from orchestrator.monitor.slurm_job import SCRIPT_NAME, chain_name, render_script
from orchestrator.state.lease import LEASE_NAME, Holder, Identity, read_holder, stale_reason

STEPS = """
for step in $(seq 1 {steps}); do echo "iteration $step"; sleep 1; done
echo "TRAINING DONE"
"""


def chain_jobs(name: str) -> list[tuple[str, str]]:
    """(id, state) of every job of the chain the accounting knows, oldest first."""
    listed = subprocess.run(["sacct", "-X", "-n", "-P", "--name", name, "-o", "JobID,State", "-S", "now-1hour"],
                            capture_output=True, text=True, timeout=60)
    rows = [tuple(line.split("|")[:2]) for line in listed.stdout.splitlines() if line.strip()]
    return sorted(rows, key=lambda row: int(row[0]))


def queued(name: str, states: str = "PENDING,RUNNING,COMPLETING") -> list[str]:
    listed = subprocess.run(["squeue", "--me", "-h", "-n", name, "-t", states, "-o", "%i"], capture_output=True,
                            text=True, timeout=60)
    return listed.stdout.split()


def generation_output(root) -> str:
    paths = sorted(campaign_state(root).glob("monitor-job-*.out"), key=lambda path: int(path.stem.split("-")[-1]))
    return "".join(path.read_text() for path in paths)


@pytest.fixture
def chain_cleanup():
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run(["scancel", f"--name={name}"], capture_output=True, timeout=60)


def start_chain(root, *flags: str) -> str:
    assert run_orch(root, "build", "campaign.yaml").returncode == 0
    started = run_orch(root, "run", "campaign.yaml", "--as-slurm-job", "--yes", "--max-jobs", "1", *flags)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "submitted the campaign's monitor as Slurm job" in started.stdout
    return chain_name(campaign_state(root))


@pytest.mark.slurm
@pytest.mark.slow
def test_generations_hand_over_until_the_campaign_is_done(slurm_cluster, slurm_job_prefix, tmp_path, chain_cleanup):
    prefix = write_campaign(tmp_path, STEPS.format(steps=8), grid="idx: [0, 1, 2]", prefix=slurm_job_prefix + "gen")
    name = start_chain(tmp_path, "--monitor-time", "1", "--monitor-handover-secs", "42")  # ~18 s per generation
    chain_cleanup.append(name)
    # Started again while the chain runs: nothing more is submitted.
    again = run_orch(tmp_path, "run", "campaign.yaml", "--as-slurm-job", "--yes")
    assert again.returncode == 0 and "already in the queue" in again.stdout, again.stdout + again.stderr
    seen = wait_for(lambda: line if "monitor job generation" in (line := _status_line(tmp_path)) else "", 60,
                    what="status naming the monitor job")
    assert re.search(r"monitor: Slurm job \d+ on \S+ pid \d+ \(heartbeat \d+s ago", seen), seen

    wait_for(lambda: all(row["state"] == "done" for row in status(tmp_path).values()), 240, interval=1,
             what="every job done")
    wait_for(lambda: not queued(name), 60, what="the chain to leave the queue")
    assert submissions(tmp_path) == {f"{prefix}_{i}": 1 for i in range(3)}
    jobs = wait_for(lambda: _completed_at_least(chain_jobs(name), 2), 60, what="accounting of the generations")
    completed = [job_id for job_id, state in jobs if state == "COMPLETED"]
    assert len(completed) >= 2, jobs  # at least one hand-over
    output = generation_output(tmp_path)
    assert output.count("handing over to the next generation") == len(completed) - 1, output
    assert "3 jobs: 3 done, 0 failed, 0 abandoned" in output
    # Each generation queued exactly one successor; the last one's was cancelled when the campaign was done.
    queued_ids = re.findall(r"queued the next generation of the monitor job: (\d+)", output)
    assert len(queued_ids) == len(set(queued_ids)) == len(completed), output
    assert f"cancelled the queued next generation {queued_ids[-1]}" in output
    assert "no monitor running" in _status_line(tmp_path)


@pytest.mark.slurm
@pytest.mark.slow
def test_a_generation_killed_mid_campaign_is_replaced_at_once(slurm_cluster, slurm_job_prefix, tmp_path, chain_cleanup):
    prefix = write_campaign(tmp_path, STEPS.format(steps=15), grid="idx: [0, 1]", prefix=slurm_job_prefix + "kill")
    name = start_chain(tmp_path, "--monitor-time", "3", "--monitor-handover-secs", "60")
    chain_cleanup.append(name)
    wait_for(lambda: any(row["state"] == "running" for row in status(tmp_path).values()), 90, what="a job running")
    holder = read_holder(campaign_state(tmp_path) / LEASE_NAME)
    assert holder.slurm_job == queued(name, "RUNNING")[0]
    killed = time.monotonic()
    os.kill(holder.pid, signal.SIGKILL)  # the generation dies without a word (OOM killer, a node's crash)
    # Its successor takes over the dead holder's lease at once, not after the lease's TTL (600 s).
    wait_for(lambda: "took over the monitor lease of" in generation_output(tmp_path), 90, what="the successor's takeover")
    assert time.monotonic() - killed < 90
    wait_for(lambda: all(row["state"] == "done" for row in status(tmp_path).values()), 240, interval=1,
             what="every job done")
    assert submissions(tmp_path) == {f"{prefix}_{i}": 1 for i in range(2)}
    wait_for(lambda: not queued(name), 60, what="the chain to leave the queue")


def _completed_at_least(rows: list[tuple[str, str]], count: int) -> list[tuple[str, str]] | None:
    return rows if sum(state == "COMPLETED" for _, state in rows) >= count else None


def _status_line(root) -> str:
    result = run_orch(root, "status", "campaign.yaml", timeout=60)
    return " ".join(result.stdout.split("┏")[0].split())


# -- no cluster needed ------------------------------------------------------------------------------------------

def test_a_holder_whose_slurm_job_ended_is_stale_and_one_still_running_is_not():
    me = Identity("node2", 100, "boot-b", slurm_job="12")
    holder = Holder("node1", 4242, "boot-a", "token", 1, heartbeat=1000.0, slurm_job="11")
    assert stale_reason(holder, me, now=1010.0, ttl=600, job_ended=lambda job: job == "11") == \
        "its Slurm job 11 has ended"
    assert stale_reason(holder, me, now=1010.0, ttl=600, job_ended=lambda job: False) == ""
    outside = Holder("login1", 4242, "boot-a", "token", 1, heartbeat=1000.0)  # a login-node monitor: never asked
    assert stale_reason(outside, me, now=1010.0, ttl=600, job_ended=lambda job: True) == ""


def test_the_generation_script_keeps_its_name_and_runs_one_cpu(tmp_path):
    name = chain_name(tmp_path)
    assert name.startswith(f"orch-monitor-{tmp_path.name}-")
    text = render_script(name, tmp_path, "/work dir", ["orch", "run", "/c/campaign.yaml", "--in-slurm-job"], "12:00:00",
                         "cpu", ["--account=proj"])
    (tmp_path / SCRIPT_NAME).write_text(text)
    assert chain_name(tmp_path) == name  # read back from the script: the same from every host
    for line in (f"#SBATCH --job-name={name}", "#SBATCH --dependency=singleton", "#SBATCH --time=12:00:00",
                 "#SBATCH --cpus-per-task=1", "#SBATCH --partition=cpu", "#SBATCH --account=proj",
                 "cd '/work dir' || exit 2", "exec orch run /c/campaign.yaml --in-slurm-job"):
        assert line in text.splitlines(), line


@pytest.mark.parametrize("flags, words", [
    (["--once"], "--once"),
    (["--retry-cancelled"], "--retry-cancelled"),
    (["--scheduler", "local"], "--scheduler local"),
    (["--monitor-time", "soon"], "--monitor-time"),
    (["--monitor-time", "1", "--monitor-handover-secs", "90"], "--monitor-handover-secs 90"),
])
def test_bad_monitor_job_flags_are_refused_in_one_line(tmp_path, flags, words):
    write_campaign(tmp_path, "echo hi\n")
    result = run_orch(tmp_path, "run", "campaign.yaml", "--as-slurm-job", *flags)
    assert result.returncode == 2 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (campaign_state(tmp_path) / SCRIPT_NAME).exists()


@pytest.mark.slurm
@pytest.mark.slow
def test_job_ended_asks_the_real_queue(slurm_cluster, slurm_job_prefix):
    from orchestrator.cli.run_as_job import job_ended_check

    submitted = subprocess.run(["sbatch", "--parsable", f"--job-name={slurm_job_prefix}holder", "--wrap", "sleep 60"],
                               capture_output=True, text=True, timeout=60, check=True)
    job_id = submitted.stdout.strip().split(";")[0]
    ended = job_ended_check()
    assert not ended(job_id)  # pending or running: its holder may be alive
    subprocess.run(["scancel", job_id], check=True, timeout=60)
    wait_for(lambda: ended(job_id), 30, what="the cancelled job to count as ended")


@pytest.mark.slurm
def test_the_chain_is_not_started_beside_a_live_monitor_elsewhere(slurm_cluster, slurm_job_prefix, tmp_path):
    from orchestrator.state.lease import MonitorLease

    write_campaign(tmp_path, STEPS.format(steps=1), prefix=slurm_job_prefix + "held")
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    MonitorLease.acquire(campaign_state(tmp_path), me=Identity("login9", 4242, "another-boot"))
    refused = run_orch(tmp_path, "run", "campaign.yaml", "--as-slurm-job", "--yes")
    assert refused.returncode == 2 and "another monitor holds this campaign: login9 pid 4242" in refused.stderr
    assert not (campaign_state(tmp_path) / SCRIPT_NAME).exists()  # nothing written, nothing submitted
