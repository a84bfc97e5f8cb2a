"""Cooldown branches start from a linked pretraining checkpoint (orchestrator.campaign.cooldown_link)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from campaign_fixtures import make_checkpoint, write_tracker
from orchestrator.campaign.checkpoints import complete_iterations, tracked_iteration
from orchestrator.campaign.cooldown_link import link_checkpoint, link_cooldown_checkpoint

REPO = Path(__file__).resolve().parents[1]


def helper_env() -> dict[str, str]:
    """An environment where `orch` is found only through ORCH_PYTHON (the venv's python)."""
    env = dict(os.environ)
    env["PATH"] = "/usr/bin:/bin"
    env["ORCH_PYTHON"] = sys.executable
    return env


def test_links_checkpoint_and_writes_tracker(tmp_path):
    source = make_checkpoint(tmp_path / "exp" / "checkpoints", 1000)
    assert link_cooldown_checkpoint(str(tmp_path), "exp", 1000, "20")
    branch = tmp_path / "exp" / "cooldown_s20" / "checkpoints"
    link = branch / "iter_0001000"
    assert link.is_symlink() and link.resolve() == source.resolve()
    assert (branch / "latest_checkpointed_iteration.txt").read_text().strip() == "1000"
    assert complete_iterations(branch) == [1000]  # the branch sees a loadable checkpoint


def test_missing_or_unfinished_checkpoint_is_not_linked(tmp_path):
    assert not link_cooldown_checkpoint(str(tmp_path), "exp", 1000, "20")  # no pretraining folder at all
    make_checkpoint(tmp_path / "exp" / "checkpoints", 500)
    assert not link_cooldown_checkpoint(str(tmp_path), "exp", 1000, "20")  # other iteration only
    make_checkpoint(tmp_path / "exp" / "checkpoints", 1000, track=False)  # still being written (or died)
    assert not link_cooldown_checkpoint(str(tmp_path), "exp", 1000, "20")
    assert not (tmp_path / "exp" / "cooldown_s20").exists()


def test_linking_twice_is_harmless_and_never_rolls_the_branch_back(tmp_path):
    make_checkpoint(tmp_path / "exp" / "checkpoints", 1000)
    assert link_cooldown_checkpoint(str(tmp_path), "exp", 1000, "20")
    assert link_cooldown_checkpoint(str(tmp_path), "exp", 1000, "20")
    branch = tmp_path / "exp" / "cooldown_s20" / "checkpoints"
    assert sorted(p.name for p in branch.iterdir()) == ["iter_0001000", "latest_checkpointed_iteration.txt"]
    # the cooldown saved its own checkpoint since: a repeated link (restart) must keep that progress
    make_checkpoint(branch, 1100)
    write_tracker(branch, 1100)
    assert link_cooldown_checkpoint(str(tmp_path), "exp", 1000, "20")
    assert tracked_iteration(branch) == 1100


def test_deepspeed_layout(tmp_path):
    source = make_checkpoint(tmp_path / "exp" / "checkpoints", 300, "deepspeed")
    write_tracker(tmp_path / "exp" / "checkpoints", 400, "deepspeed")
    assert link_cooldown_checkpoint(str(tmp_path), "exp", 300, "2x")
    branch = tmp_path / "exp" / "cooldown_s2x" / "checkpoints"
    assert (branch / "global_step300").resolve() == source.resolve()
    assert (branch / "latest").read_text() == "global_step300"


@pytest.mark.parametrize("fmt", ["zero3", "pipeline", "mds", "torch_dist", "torch_tp_pp", "universal"])
def test_every_counted_layout_links_with_the_trackers_its_trainer_reads(tmp_path, fmt):
    source_root = tmp_path / "stage1" / "checkpoints"
    source = make_checkpoint(source_root, 300, fmt)
    destination = tmp_path / "stage2" / "checkpoints"
    assert link_checkpoint(source_root, destination, 300)
    assert (destination / source.name).resolve() == source.resolve()
    expected = {"universal": {"latest_universal"}, "zero3": {"latest"}, "pipeline": {"latest"},
                "mds": {"latest", "latest_checkpointed_iteration.txt"}}.get(fmt, {"latest_checkpointed_iteration.txt"})
    assert {p.name for p in destination.iterdir() if p.is_file()} == expected
    assert complete_iterations(destination) == [300]


def test_cooldown_helper_keeps_autoexperiment_argument_order(tmp_path):
    make_checkpoint(tmp_path / "exp" / "checkpoints", 1000)
    command = ["bash", str(REPO / "helpers" / "cooldown_helper.sh"), str(tmp_path), "exp"]
    missing = subprocess.run([*command, "2000", "40"], capture_output=True, text=True, env=helper_env(), cwd=tmp_path)
    assert (missing.returncode, missing.stdout) == (0, "0\n")
    linked = subprocess.run([*command, "1000", "40"], capture_output=True, text=True, env=helper_env(), cwd=tmp_path)
    assert (linked.returncode, linked.stdout) == (0, "1\n"), linked.stderr
    assert (tmp_path / "exp" / "cooldown_s40" / "checkpoints" / "iter_0001000").is_symlink()


def test_convert_helper_prints_pending(tmp_path):
    make_checkpoint(tmp_path / "checkpoints", 100)
    make_checkpoint(tmp_path / "checkpoints", 200)
    helper = str(REPO / "helpers" / "convert_helper.sh")

    def run(*args: str) -> str:
        result = subprocess.run(["bash", helper, *args], capture_output=True, text=True, env=helper_env())
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert run(str(tmp_path)) == "1\n"
    assert run(str(tmp_path), "150", "--count") == "1\n"
    assert run(str(tmp_path), "201") == "0\n"
    assert run(str(tmp_path / "missing")) == "0\n"
