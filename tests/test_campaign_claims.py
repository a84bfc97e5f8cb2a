"""Pending checkpoints, claims and done markers (orchestrator.campaign.claims, `orch ckpt`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from campaign_fixtures import make_checkpoint, write_tracker
from orchestrator.campaign.checkpoints import RunLayout
from orchestrator.campaign.claims import claim_next, mark_done, pending_iterations, read_lock, release

REPO = Path(__file__).resolve().parents[1]
ORCH = [sys.executable, "-m", "orchestrator"]


def orch(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*ORCH, *args], capture_output=True, text=True, check=check, cwd=REPO)


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def write_lock(run_dir: Path, iteration: int, pid: int, host: str, stamp: float) -> Path:
    lock = RunLayout(run_dir).lock_file(iteration)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(f"{pid} {host} {stamp}\n")
    return lock


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    for iteration in (100, 200, 300):
        make_checkpoint(tmp_path / "checkpoints", iteration)
    return tmp_path


def test_pending_skips_converted_and_claimed_and_below_min_iter(run_dir):
    assert pending_iterations(run_dir) == [100, 200, 300]
    mark_done(run_dir, 100)
    write_lock(run_dir, 200, os.getpid(), socket.gethostname(), time.time())
    assert pending_iterations(run_dir) == [300]
    assert pending_iterations(run_dir, min_iter=301) == []


def test_missing_run_dir_is_nothing_pending(tmp_path):
    assert pending_iterations(tmp_path / "absent") == []
    assert claim_next(tmp_path / "absent") is None
    assert orch("ckpt", "pending", str(tmp_path / "absent")).stdout == "0\n"
    assert not (tmp_path / "absent").exists()  # asking never creates the run folder


def test_checkpoint_being_written_is_not_pending(tmp_path):
    make_checkpoint(tmp_path / "checkpoints", 100, track=False)
    assert orch("ckpt", "pending", str(tmp_path)).stdout == "0\n"
    write_tracker(tmp_path / "checkpoints", 100)  # the trainer says it finished saving
    assert orch("ckpt", "pending", str(tmp_path)).stdout == "1\n"


def test_a_dead_save_is_never_pending_claimed_or_linked(tmp_path):
    from orchestrator.campaign.cooldown_link import link_checkpoint

    checkpoints = tmp_path / "checkpoints"
    make_checkpoint(checkpoints, 100, "torch_dist")
    make_checkpoint(checkpoints, 200, "torch_dist", files=["__0_0.distcp"], track=False)  # the job died mid-save
    assert pending_iterations(tmp_path) == [100]
    assert claim_next(tmp_path, min_iter=101) is None
    assert not link_checkpoint(checkpoints, tmp_path / "branch" / "checkpoints", 200)
    assert not (tmp_path / "branch").exists()


def test_pending_explain_says_why_for_every_folder(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for iteration in (100, 200, 300):
        make_checkpoint(checkpoints, iteration)
    make_checkpoint(checkpoints, 400, track=False)
    mark_done(tmp_path, 100)
    write_lock(tmp_path, 200, os.getpid(), socket.gethostname(), time.time())
    lines = orch("ckpt", "pending", str(tmp_path), "--explain").stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["100", "200", "300", "400"]
    assert lines[0].split("\t")[1].startswith("converted: ")
    assert lines[1].split("\t")[1].startswith("claimed: ")
    assert lines[2].split("\t")[1].startswith("pending: torch, complete")
    assert "above the tracker (latest_checkpointed_iteration.txt = 300)" in lines[3]


def test_claim_done_cycle_through_the_cli(run_dir):
    assert orch("ckpt", "pending", str(run_dir), "--count").stdout == "3\n"
    claimed = orch("ckpt", "claim", str(run_dir), "--min-iter", "150", "--owner-pid", str(os.getpid())).stdout
    assert claimed == "200\n"
    info = read_lock(RunLayout(run_dir).lock_file(200))
    assert (info.pid, info.host) == (os.getpid(), socket.gethostname())
    assert orch("ckpt", "pending", str(run_dir), "--count").stdout == "2\n"
    orch("ckpt", "done", str(run_dir), "200")
    assert (run_dir / "converted_checkpoints" / "iter_200.done").is_file()
    assert not RunLayout(run_dir).lock_file(200).exists()
    for expected in ("100", "300"):
        assert orch("ckpt", "claim", str(run_dir), "--owner-pid", str(os.getpid())).stdout.strip() == expected
    nothing = orch("ckpt", "claim", str(run_dir), check=False)
    assert (nothing.returncode, nothing.stdout) == (1, "")
    assert orch("ckpt", "pending", str(run_dir)).stdout == "0\n"



def test_done_refuses_a_checkpoint_that_is_not_there_or_not_whole(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    make_checkpoint(checkpoints, 100)
    make_checkpoint(checkpoints, 200, track=False)  # written above the tracker: not a finished save
    typo = orch("ckpt", "done", str(tmp_path), "999", check=False)
    assert typo.returncode == 2 and "no checkpoint of iteration 999 (the last ones: 100, 200)" in typo.stderr
    partial = orch("ckpt", "done", str(tmp_path), "200", check=False)
    assert partial.returncode == 2 and "is not complete" in partial.stderr and "Traceback" not in partial.stderr
    assert not (tmp_path / "converted_checkpoints" / "iter_999.done").exists()
    assert not (tmp_path / "converted_checkpoints" / "iter_200.done").exists()
    assert orch("ckpt", "done", str(tmp_path), "100").returncode == 0


def test_released_claim_is_pending_again(run_dir):
    assert claim_next(run_dir, owner_pid=os.getpid()) == 100
    assert 100 not in pending_iterations(run_dir)
    release(run_dir, 100)
    assert pending_iterations(run_dir)[0] == 100


def test_lock_of_dead_process_on_this_host_is_taken_over(run_dir):
    write_lock(run_dir, 100, dead_pid(), socket.gethostname(), time.time())
    assert pending_iterations(run_dir)[0] == 100
    assert claim_next(run_dir, owner_pid=os.getpid()) == 100
    assert read_lock(RunLayout(run_dir).lock_file(100)).pid == os.getpid()


def test_lock_from_another_host_is_stale_only_after_the_timeout(run_dir):
    write_lock(run_dir, 100, 1, "other-node", time.time() - 60)
    assert pending_iterations(run_dir, stale_secs=3600) == [200, 300]
    assert pending_iterations(run_dir, stale_secs=30) == [100, 200, 300]
    assert claim_next(run_dir, stale_secs=30, owner_pid=os.getpid()) == 100
    assert read_lock(RunLayout(run_dir).lock_file(100)).host == socket.gethostname()


def test_unparsable_lock_is_judged_by_its_age(run_dir):
    lock = write_lock(run_dir, 100, 0, "", 0)
    lock.write_text("garbage")
    assert pending_iterations(run_dir, stale_secs=3600) == [200, 300]
    old = time.time() - 7200
    os.utime(lock, (old, old))
    assert pending_iterations(run_dir, stale_secs=3600) == [100, 200, 300]


_WORKER = """
import json, os, sys, time
from orchestrator.campaign.claims import claim_next, mark_done
run_dir, out, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start_at - time.time()))  # start together: maximise contention
claimed = []
while True:
    iteration = claim_next(run_dir, owner_pid=os.getpid())
    if iteration is None:
        break
    claimed.append(iteration)
    time.sleep(0.05)  # "converting"
    mark_done(run_dir, iteration)
json.dump(claimed, open(out, "w"))
"""


def test_concurrent_claimers_take_each_checkpoint_exactly_once(tmp_path):
    iterations = list(range(10, 610, 10))  # 60 checkpoints
    for iteration in iterations:
        make_checkpoint(tmp_path / "checkpoints", iteration)
    outputs = [tmp_path / f"worker{n}.json" for n in range(4)]
    start_at = str(time.time() + 3)
    workers = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path), str(out), start_at], cwd=REPO)
        for out in outputs
    ]
    assert all(worker.wait(timeout=300) == 0 for worker in workers)
    claimed = [iteration for out in outputs for iteration in json.loads(out.read_text())]
    assert sorted(claimed) == iterations  # all of them, none twice
    assert pending_iterations(tmp_path) == []


def test_concurrent_cli_claimers_in_shell_loops(tmp_path):
    for iteration in range(1, 9):
        make_checkpoint(tmp_path / "checkpoints", iteration * 100)
    loop = (
        'while ITER="$(' + " ".join(ORCH) + ' ckpt claim "$1" --owner-pid $$)"; do echo "$ITER" >> "$2"; '
        + " ".join(ORCH) + ' ckpt done "$1" "$ITER"; done'
    )
    logs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    shells = [subprocess.Popen(["bash", "-c", loop, "loop", str(tmp_path), str(log)], cwd=REPO) for log in logs]
    assert all(shell.wait(timeout=300) == 0 for shell in shells)
    claimed = [int(line) for log in logs if log.exists() for line in log.read_text().split()]
    assert sorted(claimed) == [n * 100 for n in range(1, 9)]
    assert len(list((tmp_path / "converted_checkpoints").glob("iter_*.done"))) == 8
