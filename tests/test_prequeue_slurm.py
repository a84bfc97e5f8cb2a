"""Pre-queued continuations on the real Slurm test cluster: the next segment waits in the queue behind the running one
(`sbatch --dependency=afterany:ID`), starts when it ends, and every segment runs exactly once, with a `kill -9` of
the monitor between the two submissions too.

The segment scripts count their work in a file: two segments running at once, or one run twice, would count an
iteration twice. sacct tells when each submission was queued, started and ended.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from monitor_campaign import (campaign_state, run_orch, sigkill_when, start_orch, submissions, wait_for, write_campaign,
                              write_tinylm_segments)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# A segment does up to SEGMENT iterations of TOTAL and exits 0, as a trainer that saved and stopped at its limit;
# a segment that finds the work done says so and exits at once (as templates/megatron does).
SEGMENT_BODY = """
    n=$(cat logs/{name}.count 2>/dev/null || echo 0)
    if [ $n -ge {total} ]; then echo "TRAINING DONE (nothing left)"; exit 0; fi
    end=$((n + {segment}))
    while [ $n -lt $end ] && [ $n -lt {total} ]; do
        n=$((n + 1)); echo $n > logs/{name}.count; echo "done $n" >> logs/{name}.work
        echo " iteration $n/ {total} | elapsed time per iteration (ms): {ms}.0 |"; sleep {secs}
    done
    if [ $n -ge {total} ]; then echo "TRAINING DONE"; fi
    """


def recorded_ids(root: Path) -> list[str]:
    """Every submission orch recorded for the campaign, oldest first (read after the monitor has ended)."""
    db = sqlite3.connect(campaign_state(root) / "state.db")
    try:
        return [row[0] for row in db.execute("SELECT scheduler_id FROM attempts WHERE scheduler_id IS NOT NULL "
                                             "ORDER BY id")]
    finally:
        db.close()


def accounted(ids: list[str]) -> list[dict[str, str]]:
    """These submissions in Slurm's accounting, once each has ended there. By id: sacct lists a job that never became
    eligible (a pre-queued segment cancelled while it waited on its dependency) only when asked for by id (sacct(1))."""
    def rows() -> list[dict[str, str]]:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(ids), "-o", "JobID,Submit,Start,End,State"],
                             capture_output=True, text=True, timeout=60).stdout
        keys = ("id", "submit", "start", "end", "state")
        return sorted((dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()),
                      key=lambda row: int(row["id"]))

    return wait_for(lambda: (found := rows()) and len(found) == len(ids) and all(
        r["end"] not in ("", "Unknown") for r in found) and found, 60, interval=1,
                    what=f"{len(ids)} ended submissions in accounting")


def exactly_once(root: Path, name: str) -> list[dict[str, str]]:
    """Every sbatch call (counted by the job's cmd) is one recorded submission, and accounting has each of them."""
    ids = recorded_ids(root)
    assert len(ids) == len(set(ids)) == submissions(root)[name], (ids, submissions(root))
    return accounted(ids)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def ran(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r["start"] not in ("", "None", "Unknown")]


def assert_back_to_back(rows: list[dict[str, str]]) -> list[float]:
    """Runs never overlapped, and each was queued before the one it continues ended. Returns the gaps (s)."""
    runs = ran(rows)
    gaps = []
    for before, after in zip(runs, runs[1:]):
        assert when(after["start"]) >= when(before["end"]), (before, after)  # one segment at a time
        assert when(after["submit"]) < when(before["end"]), (before, after)  # pre-queued, not resubmitted
        gaps.append((when(after["start"]) - when(before["end"])).total_seconds())
    return gaps


def test_segments_pre_queued_run_back_to_back_each_exactly_once(slurm_cluster, slurm_job_prefix, tmp_path):
    prefix = slurm_job_prefix
    write_campaign(tmp_path, prefix=prefix, name="{prefix}chain",
                   body=SEGMENT_BODY.format(total=24, segment=8, ms=1500, secs=1.5, name="{name}"),
                   extra="prequeue: always\n")
    # A 5 s poll: a resubmitting monitor would leave up to that between segments; Slurm starts a pre-queued one at once.
    # Each segment (12 s) outlasts two polls, so the monitor queues every continuation while its predecessor runs.
    result = run_orch(tmp_path, "build-and-run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", "5",
                      timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    name = f"{prefix}chain"
    work = (tmp_path / "logs" / f"{name}.work").read_text().split("\n")
    assert [line for line in work if line] == [f"done {i}" for i in range(1, 25)]  # every iteration once, in order
    assert re.search(r"pre-queued \d+ behind \d+ \(prequeue: always\)", result.stdout)
    assert "continued by the pre-queued" in result.stdout
    rows = exactly_once(tmp_path, name)
    gaps = assert_back_to_back(rows)
    print("submissions:", rows, "gaps (s):", gaps)
    assert len(ran(rows)) >= 3  # three segments of work (a fourth, if Slurm started the last standby, found none)
    assert max(gaps) <= 3, gaps  # measured here: 0-1 s
    # Nothing is left queued once the job is done: the last pre-queued segment was cancelled (or found no work).
    leftover = subprocess.run(["squeue", "-h", "--name", name, "-o", "%i"], capture_output=True, text=True,
                              timeout=30).stdout.split()
    assert leftover == []
    assert all(r["state"] == "COMPLETED" or r["state"].startswith("CANCELLED") for r in rows), rows


def test_kill_9_between_the_two_submissions_adopts_the_pre_queued_one(slurm_cluster, slurm_job_prefix, tmp_path):
    prefix = slurm_job_prefix
    # The submit command sleeps after sbatch: a kill then lands after the pre-queued job exists, before its id is stored.
    write_campaign(tmp_path, prefix=prefix, name="{prefix}killed",
                   body=SEGMENT_BODY.format(total=30, segment=15, ms=1000, secs=1, name="{name}"),
                   extra="prequeue: always\n", cmd="echo {name} >> submissions.log && sbatch {sbatch_script} && sleep 5")
    name = f"{prefix}killed"
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    monitor = start_orch(tmp_path, "run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", "1")
    sigkill_when(monitor, lambda: submissions(tmp_path)[name] == 2 and len(queued(name)) == 2, 60,
                 what="the pre-queued segment's sbatch")
    db = sqlite3.connect(campaign_state(tmp_path) / "state.db")  # the monitor is gone: the live store is free
    attempts = db.execute("SELECT scheduler_id, standby, after_id FROM attempts ORDER BY id").fetchall()
    db.close()
    first_id = attempts[0][0]
    assert attempts == [(first_id, 0, None), (None, 1, first_id)]  # the intent was stored, the id never was
    resumed = run_orch(tmp_path, "run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", "1", timeout=240)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "as its pre-queued segment" in resumed.stdout
    work = (tmp_path / "logs" / f"{name}.work").read_text().split("\n")
    assert [line for line in work if line] == [f"done {i}" for i in range(1, 31)]
    rows = exactly_once(tmp_path, name)
    assert_back_to_back(rows)
    assert len(ran(rows)) >= 2


def queued(name: str) -> list[str]:
    return subprocess.run(["squeue", "-h", "--name", name, "-o", "%i"], capture_output=True, text=True,
                          timeout=30).stdout.split()


def test_auto_pre_queues_a_trainer_that_saves_on_its_signal(slurm_cluster, slurm_job_prefix, tmp_path):
    """tinylm logs Megatron's iteration lines and saves and exits on SIGTERM: `prequeue: auto` reads the time per
    iteration, sees the work outlasting the segment's signal, and queues the next segment; each resumes from the
    previous one's save."""
    name = f"{slurm_job_prefix}auto"
    iterations = 500  # 50 s of training, about 2 segments before the signal
    write_tinylm_segments(tmp_path, name, iterations, extra="prequeue: auto\n")
    result = run_orch(tmp_path, "build-and-run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", "2",
                      timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"pre-queued \d+ behind \d+ \(prequeue: auto: about \d+ s of training left, \d+ s before its "
                     r"--signal", result.stdout), result.stdout
    output = (tmp_path / "logs" / f"{name}.out").read_text()
    assert "continued by the pre-queued" in result.stdout
    # Every graceful ending, continued by a pre-queued segment or resubmitted (Slurm may signal up to 60 s early: here
    # once 1 s into a segment, before any log line could tell the monitor anything).
    saved = [int(i) for i in re.findall(r"saved iteration (\d+), then exiting program after receiving SIGTERM\) without "
                                        r"termination", result.stdout)]
    resumed = [int(found) for found in re.findall(r"loading checkpoint from ckpt at iteration (\d+)", output)]
    assert saved and resumed[:len(saved)] == saved  # each segment resumed from the previous one's save
    assert f"iteration {iterations:8d}/{iterations:8d}" in output
    rows = exactly_once(tmp_path, name)
    assert_back_to_back(rows)
    assert "TIMEOUT" not in {r["state"] for r in rows}
